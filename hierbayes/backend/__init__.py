"""Backends: turn a Design and priors into a PyMC model. The only place that builds PyMC graphs."""

from __future__ import annotations

from hierbayes.likelihood.collapsed import CollapsedData, collapsed_group, prepare
from hierbayes.design.build import Design


def marginal_unavailable(design: Design) -> str | None:
    """Why the marginal (collapsed) backend cannot take ``design``, or None when it can:
    the rule :func:`choose` applies (a collapsible family, a grouping factor, and the
    residual correlation, if any, within one of the factors).

    Examples
    --------
    >>> import hierbayes as hb
    >>> data = hb.datasets.load("clark_ar1")
    >>> marginal_unavailable(hb.Model("y ~ time + (1 | id)", data).design) is None
    True
    >>> data["k"] = (data["y"] > 0).astype(int)
    >>> marginal_unavailable(hb.Model("k ~ time + (1 | id)", data, family="bernoulli").design)
    'the bernoulli family has no marginal backend'
    """
    if not design.spec.family.collapsible:
        return f"the {design.spec.family.name} family has no marginal backend"
    if design.censoring is not None:
        return "a censored response has no marginal backend (its likelihood is not Gaussian)"
    if not design.groups:
        return "the model has no grouping factor to integrate out"
    corr = design.correlation
    if corr is not None and corr.group not in [g.name for g in design.groups]:
        return f"the residual correlation is within {corr.group!r}, which has no random effects"
    return None


def choose(design: Design, backend: str) -> str:
    """Resolve the ``backend`` argument.

    ``"marginal"`` integrates the random effects out: exactly for the Gaussian family (the
    collapsed backend, ``"marginal"``; with several factors a hybrid: the factor of
    :func:`~hierbayes.likelihood.collapsed.collapsed_group` is integrated out, the others stay
    latent), by adaptive Gauss-Hermite quadrature for Bernoulli, binomial, Poisson,
    negative binomial, Gamma and lognormal models (``"quadrature"``,
    :mod:`hierbayes.backend.glmm`; with several factors the same hybrid: the factor with the
    most levels integrated out, the others sampled). ``"auto"`` is the exact marginal backend
    where it applies, the quadrature one for a GLMM whose integrated factor has one or two
    random effects per cluster (q = 3 takes ``"marginal"`` explicitly), and the latent one
    otherwise; ``"latent"`` samples every effect.
    """
    from hierbayes.backend import glmm

    ok = marginal_unavailable(design) is None
    if backend == "auto":
        if ok:
            return "marginal"
        # q = 1-2: integrated out (benchmarks/bench_glmm.py: q = 1 4-100x the latent backend's
        # ESS/s; q = 2, B1 at 5 x 5 nodes: the latent fit did not converge, see README.md);
        # q = 3 only when asked for (backend="marginal"): 125 nodes, not measured against latent
        one = glmm.unavailable(design) is None and glmm.integrated_group(design).q <= 2
        return "quadrature" if one else "latent"
    if backend not in ("marginal", "latent", "quadrature"):
        raise ValueError(f"backend must be 'auto', 'marginal', 'latent' or 'quadrature', got {backend!r}.")
    if backend == "latent":
        return backend
    if backend == "quadrature" or (backend == "marginal" and not design.spec.family.collapsible):
        why = glmm.unavailable(design)
        if why is not None:
            raise ValueError(f"backend={backend!r}: {why}; use backend='latent'.")
        return "quadrature"
    if not ok:
        prepare(design)  # raises the specific reason
        raise ValueError(f"backend='marginal': {marginal_unavailable(design)}; use 'latent'.")
    return backend


def check_priors(priors) -> None:
    """Check the user's priors against PyMC before anything is built
    (:func:`hierbayes.backend.params.check_priors`)."""
    from hierbayes.backend.params import check_priors as check

    check(priors)


def check_nagq(nagq, backend: str) -> int | None:
    """``nagq`` (Gauss-Hermite nodes per effect) checked: a whole number >= 1, and only for
    the quadrature backend.

    Examples
    --------
    >>> check_nagq(None, "marginal") is None, check_nagq(5, "quadrature")
    (True, 5)
    """
    if nagq is None:
        return None
    if isinstance(nagq, bool) or not isinstance(nagq, int) or nagq < 1:
        raise ValueError(f"nagq must be a whole number >= 1 (1: Laplace), got {nagq!r}.")
    if backend != "quadrature":
        raise ValueError(f"nagq sets the quadrature of a GLMM's random effects; this model's "
                         f"backend is {backend!r} (drop nagq, or pass backend='marginal' for a "
                         "Bernoulli/binomial/Poisson/negative binomial model).")
    return nagq


def sampled_groups(design: Design, backend: str) -> list:
    """The grouping factors whose effects NUTS samples under ``backend`` (the others are
    integrated out): all for the latent backend, all but the collapsed one for the
    marginal backend and the quadrature backend (none with one factor)."""
    if backend == "latent":
        return list(design.groups)
    if backend == "quadrature":
        from hierbayes.backend import glmm

        return glmm.sampled_groups(design)
    if backend == "marginal":
        cg = collapsed_group(design)
        return [g for g in design.groups if g.name != cg.name]
    return []


def build_model(design: Design, priors, backend: str, cdata: CollapsedData | None = None,
                nagq: int | None = None, centering=None):
    """Build the PyMC model for ``backend`` ("marginal", "quadrature" or "latent"), the
    sampled factors parameterised per ``centering`` (:mod:`hierbayes.backend.centring`)."""
    if backend == "quadrature":
        from hierbayes.backend import glmm

        return glmm.build(design, priors, nagq, centering)
    if backend == "marginal":
        from hierbayes.backend import marginal

        return marginal.build(design, priors, cdata if cdata is not None else prepare(design),
                              centering)
    from hierbayes.backend import latent

    return latent.build(design, priors, centering)
