"""Backends: turn a Design and priors into a PyMC model. The only place that builds PyMC graphs."""

from __future__ import annotations

from hierbayes.likelihood.collapsed import CollapsedData, prepare
from hierbayes.design.build import Design


def choose(design: Design, backend: str) -> str:
    """Resolve ``backend="auto"``: marginal for Gaussian models with grouping factors (and a
    residual correlation, if any, within one of them), latent otherwise. With several
    factors the marginal backend is a hybrid: the factor of
    :func:`~hierbayes.likelihood.collapsed.collapsed_group` is integrated out, the others stay latent."""
    ok = (
        design.spec.family.collapsible
        and len(design.groups) >= 1
        and (
            design.correlation is None
            or design.correlation.group in [g.name for g in design.groups]
        )
    )
    if backend == "auto":
        return "marginal" if ok else "latent"
    if backend not in ("marginal", "latent"):
        raise ValueError(f"backend must be 'auto', 'marginal' or 'latent', got {backend!r}.")
    if backend == "marginal" and not ok:
        prepare(design)  # raises the specific reason
        raise ValueError(f"the {design.spec.family.name} family has no marginal backend; use 'latent'.")
    return backend


def check_priors(priors) -> None:
    """Check the user's priors against PyMC before anything is built
    (:func:`hierbayes.backend.params.check_priors`)."""
    from hierbayes.backend.params import check_priors as check

    check(priors)


def build_model(design: Design, priors, backend: str, cdata: CollapsedData | None = None):
    """Build the PyMC model for ``backend`` ("marginal" or "latent")."""
    if backend == "marginal":
        from hierbayes.backend import marginal

        return marginal.build(design, priors, cdata if cdata is not None else prepare(design))
    from hierbayes.backend import latent

    return latent.build(design, priors)
