"""Hyperparameters from priors: fixed effects, residual sd, phi, random-effect covariances.

Shared by both backends, so a latent and a marginal fit of one model carry the same
prior and the same variable names.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierbayes.design.build import Design, GroupBlock
from hierbayes.spec.priors import check_pacf_prior, Prior, half_form, lkj_eta
from hierbayes import names


def coords_for(design: Design) -> dict[str, list]:
    """dims and coords of every variable: fixed-effect labels, group levels and terms."""
    coords: dict[str, list] = {"coef": list(design.fixed_names)}
    for g in design.groups:
        coords[g.name] = list(g.levels)
        coords[names.term_dim(g.name)] = list(g.terms)
        coords[names.bis(names.term_dim(g.name))] = list(g.terms)
    for k, blk in design.dpars.items():
        coords[names.dpar_dim(k)] = list(blk.names)
    if design.response_levels:
        coords[names.CUTPOINT_DIM] = names.cutpoint_labels(design.response_levels)
    if design.occasions:
        coords[names.OCCASION_DIM] = list(design.occasions)
        coords[names.bis(names.OCCASION_DIM)] = list(design.occasions)
    corr = design.correlation
    if corr is not None and corr.kind == "arma":
        coords.update({names.AR_LAG_DIM: list(range(1, corr.p + 1)),
                       names.MA_LAG_DIM: list(range(1, corr.q + 1))})
    return coords


def _dist_kwargs(name: str, prior: Prior) -> dict:
    kwargs = {}
    for k, v in prior.params.items():
        if isinstance(v, Prior):
            kwargs[k] = make_rv(f"{name}_{k}", v)
        else:
            kwargs[k] = np.asarray(v, dtype=float) if not isinstance(v, str) else v
    return kwargs


def _dist_class(prior: Prior):
    cls = getattr(pm, prior.dist, None)
    if cls is None or not hasattr(cls, "dist"):
        raise ValueError(
            f"prior distribution {prior.dist!r} is not a PyMC distribution; use a name such as "
            "'Normal', 'StudentT', 'HalfNormal', 'HalfStudentT', 'Exponential', 'Uniform'."
        )
    return cls


def _built_form(prior: Prior) -> Prior:
    """The prior as it is built: a truncated whole-line prior centred at 0 as PyMC's
    half-distribution (``HalfNormal`` for ``Normal(0, s)`` truncated at 0)."""
    return half_form(prior) or prior


def make_rv(name: str, prior: Prior, **kw):
    """A named PyMC random variable for ``prior`` (hyperpriors become their own variables);
    a truncated prior is PyMC's half-distribution where one equals it, else ``pm.Truncated``."""
    prior = _built_form(prior)
    if prior.truncated_at is not None:
        base = _dist_class(prior).dist(**_dist_kwargs(name, prior))
        return pm.Truncated(name, base, lower=prior.truncated_at, **kw)
    return _dist_class(prior)(name, **_dist_kwargs(name, prior), **kw)


def make_dist(name: str, prior: Prior, **kw):
    """An unnamed distribution (``.dist``) for ``prior``, e.g. LKJ's ``sd_dist``."""
    prior = _built_form(prior)
    if prior.truncated_at is not None:
        base = _dist_class(prior).dist(**_dist_kwargs(name, prior))
        return pm.Truncated.dist(base, lower=prior.truncated_at, **kw)
    return _dist_class(prior).dist(**_dist_kwargs(name, prior), **kw)


def fixed_effects(design: Design, priors: dict[str, Prior]):
    """``beta`` with dims ``coef``: one vector variable when the priors share a family."""
    coef_names = list(design.fixed_names)
    return _coefficients(names.FIXED, names.COEF_DIM, coef_names, [priors[n] for n in coef_names])


def _coefficients(var: str, dim: str, labels: list[str], ps: list[Prior]):
    """A coefficient vector ``var`` (dims ``dim``): one vector variable when the priors
    share a family, else one variable per coefficient (``<var>_<label>``) stacked."""
    if not labels:
        return pt.zeros(0)
    same = all(p.dist == ps[0].dist and set(p.params) == set(ps[0].params)
               and p.truncated_at is None for p in ps)
    if same and not any(p.hyperpriors for p in ps):
        params = {
            k: np.array([float(np.asarray(p.params[k])) for p in ps]) for k in ps[0].params
        }
        return _dist_class(ps[0])(var, **params, dims=dim)
    parts = [make_rv(f"{var}_{n}", p) for n, p in zip(labels, ps)]
    return pm.Deterministic(var, pt.stack(parts), dims=dim)


def dpar_coefficients(design: Design, priors: dict[str, Prior], name: str):
    """The coefficients ``beta_<name>`` (dims ``coef_<name>``) of a parameter's formula."""
    blk = design.dpars[name]
    return _coefficients(names.dpar_coef(name), names.dpar_dim(name), list(blk.names),
                         [priors[names.dpar_prior_key(name, c)] for c in blk.names])


def dpar_rows(design: Design, priors: dict[str, Prior], name: str, X=None):
    """A distributional parameter per design row: ``inverse_link(X beta_<name>)``
    (``exp`` for ``sigma``); ``X`` a tensor of its design rows (default: ``pm.Data``
    of ``design.dpars[name].X``), e.g. on the padded layout."""
    from hierbayes.spec.families import inverse_link

    blk = design.dpars[name]
    coef = dpar_coefficients(design, priors, name)
    if X is None:
        X = pm.Data(f"X_{name}", blk.X, shape=blk.X.shape)
    return inverse_link(blk.link, (X * coef).sum(axis=-1), xp=pt)


def residual_sd(priors: dict[str, Prior]):
    return make_rv("sigma", priors["sigma"])


def family_params(design: Design, priors: dict[str, Prior]) -> dict:
    """The family's own parameters (``sigma``, ``nu``, ``alpha``), by name: a scalar
    variable each, or a length-N tensor (:func:`dpar_rows`) for one with a formula."""
    out = {}
    for k in design.spec.family.extra_params:
        if k == names.CUTPOINTS:
            out[k] = cutpoints(design, priors)
        elif k in design.dpars:
            out[k] = dpar_rows(design, priors, k)
        elif k == "sigma" and design.sd_by_occasion:
            out[k] = occasion_sd_rows(design, priors)
        else:
            out[k] = make_rv(k, priors[k])
    return out


def cutpoints(design: Design, priors: dict[str, Prior]):
    """The K - 1 cut-points of an ordinal family (dims ``cutpoint``): the prior of
    ``priors["cutpoints"]`` on each, under PyMC's ordered transform (brms' ordered
    cut-points), starting at the link's quantiles of the observed cumulative frequencies
    (equal starting values would be outside the ordered support)."""
    from pymc.distributions.transforms import ordered

    fam, K = design.spec.family, len(design.response_levels)
    start = fam.initial_cutpoints(design.y, K)
    return make_rv(names.CUTPOINTS, priors[names.CUTPOINTS], dims=names.CUTPOINT_DIM,
                   transform=ordered, initval=start)


def occasion_sd_rows(design: Design, priors: dict[str, Prior]):
    """``sigma_occasion`` (dims ``occasion``, each with ``sigma``'s prior) of
    hb.Unstructured(sd_by_occasion=True), as one residual sd per design row."""
    sd = make_rv(names.SIGMA_OCC, priors["sigma"], dims=names.OCCASION_DIM)
    idx = pm.Data("occ_idx", design.occasion_index, shape=(design.n,))
    return sd[idx]


def ar_phi(design: Design, priors: dict[str, Prior]):
    """The correlation parameter ``phi`` (AR(1)/CAR(1) coefficient, compound-symmetry
    ``rho``); the K x K correlation matrix ``corr_resid`` of an unstructured correlation
    (:func:`residual_correlation`); None without a correlation."""
    if design.correlation is None:
        return None
    if design.correlation.kind == "unstructured":
        return residual_correlation(design, priors)
    if design.correlation.kind == "arma":
        return arma_parameters(design, priors)
    return make_rv("phi", priors["phi"])


def arma_parameters(design: Design, priors: dict[str, Prior]):
    """hb.ARMA(p, q): the partial autocorrelations ``arma_ar_pacf`` (dims ``ar_lag``) and
    ``arma_ma_pacf`` (dims ``ma_lag``) with their priors (default Uniform(-1, 1)), the
    coefficients ``ar``, ``ma`` as deterministics, and the packed parameter vector
    (:mod:`hierbayes.likelihood.arma`) the likelihood takes."""
    from hierbayes.likelihood import arma

    corr = design.correlation
    parts, lists = [], {}
    for name, dim, k in ((names.ARMA_AR_PACF, names.AR_LAG_DIM, corr.p),
                         (names.ARMA_MA_PACF, names.MA_LAG_DIM, corr.q)):
        if k:
            check_pacf_prior(name, priors[name])  # resolve_priors checked it; a built model too
        kap = make_rv(name, priors[name], dims=dim) if k else pt.zeros(0)
        lists[name] = [kap[i] for i in range(k)]
        parts += [kap, pt.zeros(arma.MAX_ORDER - k)]
    ar, ma = arma.coefficients(lists[names.ARMA_AR_PACF], lists[names.ARMA_MA_PACF])
    if corr.p:
        pm.Deterministic(names.AR_COEF, pt.stack(ar), dims=names.AR_LAG_DIM)
    if corr.q:
        pm.Deterministic(names.MA_COEF, pt.stack(ma), dims=names.MA_LAG_DIM)
    return pt.concatenate(parts)


def residual_correlation(design: Design, priors: dict[str, Prior]):
    """``corr_resid`` (dims ``occasion`` x ``occasion_bis``), the unstructured residual
    correlation matrix over the design's K occasions, with an LKJ prior (``eta`` of
    ``priors["corr_resid"]``, default 2).

    Built by ``pm.LKJCholeskyCov``, whose sds are independent of the correlation and do not
    enter the likelihood; their prior is narrow (log-normal, sd 0.1 on the log scale) so
    that the off-diagonal coordinates of the packed factor, ``sd_i`` times the correlation
    factor, do not form a funnel along the unidentified sds (with ``Exponential(1)`` sds a
    3 x 3 fit had 60 divergent transitions of 600)."""
    K = len(design.occasions)
    p = priors.get(names.RESID_CORR, Prior("LKJ", eta=2.0))
    if p.dist != "LKJ":
        raise ValueError(f"{names.RESID_CORR} takes an hb.Prior('LKJ', eta=...) prior, got {p.dist}.")
    chol = pm.LKJCholeskyCov(
        names.chol("resid"), n=K, eta=float(p.params.get("eta", 2.0)),
        sd_dist=pm.LogNormal.dist(0.0, 0.1, shape=K), compute_corr=True,
    )[1]
    odim = names.OCCASION_DIM
    return pm.Deterministic(names.RESID_CORR, chol, dims=(odim, names.bis(odim)))


def re_covariance(group: GroupBlock, priors: dict[str, Prior]):
    """Random-effect covariance of one group: a factor ``F`` (q x q, ``S = F F^T``) and ``S``.

    Registers ``sd_<g>`` (dims term) and, for q > 1, ``corr_<g>`` (dims term x term).

    The sampler works on the Cholesky factor of the covariance with the terms in *reverse*
    order (slopes first, intercept last). The prior is the same -- LKJ is invariant to
    permuting the terms and the sds keep their own priors -- but the geometry is not: with
    few occasions the intercept variance trades off against the residual sd and phi along
    a ridge down to zero, and in the usual intercept-first factor the intercept-slope
    correlation then becomes unidentified (a funnel). Intercept-last, the identified
    slope variance and intercept-slope covariance are their own coordinates and only the
    intercept's conditional sd moves along the ridge.
    """
    g, q, tdim = group.name, group.q, names.term_dim(group.name)
    sd_prior = priors[names.sd(g)]
    if q == 1:
        sd = make_rv(names.sd(g), sd_prior, dims=tdim)
        F = sd.reshape((1, 1))
        return F, F * F
    if not group.correlated:  # (1 + x || g): independent terms, a diagonal covariance
        sd = make_rv(names.sd(g), sd_prior, dims=tdim)
        return pt.diag(sd), pt.diag(sd * sd)
    corr_prior = priors.get(names.corr(g), Prior("LKJ", eta=1.0))
    if corr_prior.dist != "LKJ":
        raise ValueError(f"{names.corr(g)} takes an hb.Prior('LKJ', eta=...) prior, got {corr_prior.dist}.")
    eta = lkj_eta(priors, g)
    rev = _reverse_params(sd_prior, q)
    sd_dist = make_dist(names.sd(g), rev, shape=q)
    chol_rev, corr_rev, sds_rev = pm.LKJCholeskyCov(
        names.chol(g), n=q, eta=eta, sd_dist=sd_dist, compute_corr=True
    )
    pm.Deterministic(names.sd(g), sds_rev[::-1], dims=tdim)
    pm.Deterministic(names.corr(g), corr_rev[::-1, ::-1], dims=(tdim, names.bis(tdim)))
    F = chol_rev[::-1, :]
    return F, pt.dot(F, F.T)


def _reverse_params(prior: Prior, q: int) -> Prior:
    """The sd prior with per-term parameters listed in reverse term order."""
    params = {}
    for k, v in prior.params.items():
        arr = np.asarray(v) if not isinstance(v, Prior) else None
        params[k] = arr[::-1].copy() if arr is not None and arr.ndim == 1 and arr.size == q else v
    return prior.with_params(**params)


# ------------------------------------------------------------------- checks at hb.Model()

#: what the prior of a random-effect correlation takes (hierbayes' name, not PyMC's)
_LKJ_PARAMS = ("eta",)


def _supp_dims(cls) -> int:
    """The support's number of dims of a PyMC distribution class (0: univariate)."""
    for attr in ("rv_op", "rv_type"):
        nd = getattr(getattr(cls, attr, None), "ndim_supp", None)
        if isinstance(nd, int):
            return nd
    return 0


def prior_distribution(name: str):
    """The PyMC class of a prior's distribution name: a univariate continuous distribution
    (``pm.Normal``, ``pm.HalfStudentT``, ...), or None for any other name.

    Examples
    --------
    >>> from hierbayes.backend.params import prior_distribution
    >>> prior_distribution("HalfNormal").__name__, prior_distribution("Poisson")
    ('HalfNormal', None)
    """
    cls = getattr(pm, name, None) if name.isidentifier() else None
    if not isinstance(cls, type) or not hasattr(cls, "dist"):
        return None
    if issubclass(cls, pm.Distribution) and not issubclass(cls, pm.Continuous):
        return None  # discrete, or a wrapper such as Truncated / Censored / Mixture
    if cls is pm.Continuous or _supp_dims(cls) != 0:
        return None
    return cls


def parameter_names(cls) -> tuple[list[str], list[str]]:
    """The named parameters of ``cls.dist`` (PyMC's signature, less ``*args``/``**kwargs``)
    and those of them that have no default (required).

    Examples
    --------
    >>> import pymc as pm
    >>> from hierbayes.backend.params import parameter_names
    >>> parameter_names(pm.HalfNormal), parameter_names(pm.Cauchy)
    ((['sigma', 'tau'], []), (['alpha', 'beta'], ['alpha', 'beta']))
    """
    import inspect

    sig = inspect.signature(cls.dist)
    named = [p for p in sig.parameters.values()
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "cls"]
    return [p.name for p in named], [p.name for p in named if p.default is p.empty]


def _close(word: str, options) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_prior(key: str, prior: Prior, where: str | None = None) -> None:
    """Raise a ValueError unless ``prior`` names a PyMC distribution it can be built from:
    a univariate continuous PyMC distribution (``LKJ`` with ``eta`` for ``corr_<g>``),
    parameters that its ``dist()`` takes and every parameter it requires; hyperpriors
    checked the same way.

    Parameters
    ----------
    key : str
        The parameter the prior is for (``"sd_id"``), named in the error.
    prior : Prior
    where : str, optional
        How to name it in the error (default: ``the prior of 'key'``); hyperpriors are
        ``the hyperprior of 'key''s 'sigma'``.

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.backend.params import check_prior
    >>> check_prior("sd_id", hb.Prior("HalfNormal", scale=1))
    Traceback (most recent call last):
    ...
    ValueError: the prior of 'sd_id' is HalfNormal(scale=1), but HalfNormal takes no parameter 'scale'; its parameters are sigma, tau (PyMC's pm.HalfNormal.dist). Write e.g. hb.Prior('HalfNormal', sigma=...).
    """
    where = where or f"the prior of {key!r}"
    if names.is_group_corr(key) and where == f"the prior of {key!r}":
        _check_names(where, prior, "LKJ", list(_LKJ_PARAMS), [], "hierbayes' LKJ prior")
        return
    cls = prior_distribution(prior.dist)
    if cls is None:
        hint = ("; LKJ is the prior of a random-effect correlation (corr_<g>) only"
                if prior.dist == "LKJ" else _close(prior.dist, _known_distributions()))
        raise ValueError(
            f"{where} is {prior}, but {prior.dist!r} is not a univariate continuous PyMC "
            f"distribution{hint}. Use one such as Normal, StudentT, HalfNormal, "
            "HalfStudentT, Exponential, Gamma, Uniform, Beta."
        )
    valid, required = parameter_names(cls)
    _check_names(where, prior, prior.dist, valid, required, f"PyMC's pm.{prior.dist}.dist")
    for k, hyper in prior.hyperpriors.items():
        check_prior(key, hyper, f"the hyperprior of {key!r}'s {k!r}")


def _check_names(where: str, prior: Prior, dist: str, valid: list[str], required: list[str],
                 source: str) -> None:
    if prior.dist != dist:
        raise ValueError(f"{where} is {prior}; it takes an hb.Prior('{dist}', ...) prior.")
    listed = ", ".join(valid) if valid else "none"
    for k in prior.params:
        if k not in valid:
            raise ValueError(
                f"{where} is {prior}, but {dist} takes no parameter {k!r}{_close(k, valid)}; its "
                f"parameters are {listed} ({source}). Write e.g. hb.Prior({dist!r}"
                + (f", {valid[0]}=...)." if valid else ").")
            )
    missing = [k for k in required if k not in prior.params]
    if missing:
        raise ValueError(
            f"{where} is {prior}, but {dist} needs {', '.join(map(repr, missing))}; its "
            f"parameters are {listed} ({source})."
        )


def _known_distributions() -> list[str]:
    return [n for n in dir(pm) if n[0].isupper() and prior_distribution(n) is not None]


def check_priors(priors: dict[str, Prior]) -> None:
    """:func:`check_prior` on every entry of ``priors`` (what ``hb.Model`` runs on the user's
    priors, so that a misspelt distribution or parameter fails when the model is built, not
    at fit time inside PyMC).

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.backend.params import check_priors
    >>> check_priors({"sigma": hb.Prior("HalfNormal", sigma=1), "corr_id": hb.Prior("LKJ", eta=2)})
    """
    for key, prior in (priors or {}).items():
        if isinstance(prior, Prior):
            check_prior(key, prior)
