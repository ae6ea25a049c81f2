"""Simulate data from a model specification at given parameter values."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from hierbayes.design.build import build_design
from hierbayes.spec.families import get as get_family
from hierbayes.spec.formula import ModelSpec, parse
from hierbayes import names
from hierbayes.likelihood import arprocess, structured


def _spec(model_spec, correlation, family, dpars: dict) -> ModelSpec:
    """A ModelSpec from a formula, a ModelSpec or a Model (its spec); ``dpars`` the
    parameter formulas given as keywords (``sigma=``, ``zi=``, ``hu=``)."""
    if isinstance(model_spec, str):
        return parse(model_spec, correlation=correlation, family=family or "gaussian", **dpars)
    for k, v in dpars.items():
        if v is not None:
            raise ValueError(f"{k}= goes with a formula; a spec or model brings its own {k} formula.")
    spec = getattr(model_spec, "spec", model_spec)
    if not isinstance(spec, ModelSpec):
        raise TypeError(
            "simulate needs a formula, a ModelSpec (hierbayes.spec.formula.parse) or a hb.Model as its "
            f"first argument, got {type(model_spec).__name__}."
        )
    if correlation is not None and correlation != spec.correlation:
        raise ValueError(
            f"correlation={correlation!r} differs from the model's {spec.correlation!r}; "
            "give it once, in the model or here."
        )
    if family is not None and get_family(family) != spec.family:
        raise ValueError(
            f"family={family!r} differs from the model's {spec.family!r}; give it once, in "
            "the model or here."
        )
    return spec


def _needed(d, spec: ModelSpec) -> set[str]:
    """The parameters the model's data-generating process needs (``beta`` may be omitted)."""
    fam = spec.family
    extra = {names.dpar_coef(p) if p in d.dpars else p for p in fam.extra_params}
    if d.sd_by_occasion:  # hb.Unstructured(sd_by_occasion=True): an sd per occasion
        extra = (extra - {"sigma"}) | {names.SIGMA_OCC}
    needed = {"beta", *extra} | {names.sd(g.name) for g in d.groups}
    if d.correlation is not None and d.correlation.kind == "arma":  # the coefficients
        needed |= {v for v, k in ((names.AR_COEF, d.correlation.p), (names.MA_COEF, d.correlation.q)) if k}
    elif d.correlation is not None:
        needed.add(names.RESID_CORR if d.correlation.kind == "unstructured" else names.PHI)
        if not fam.collapsible:  # the latent AR process on the linear-predictor scale
            needed.add(names.SD_AR)
    return needed


def _aliases(params: dict, d) -> dict:
    """``rho`` is compound symmetry's name for ``phi`` (its posterior variable)."""
    if d.correlation is None or d.correlation.kind != "compsymm" or "rho" not in params:
        return params
    if names.PHI in params:
        raise ValueError("give the compound-symmetry correlation once: as rho or as phi.")
    out = {k: v for k, v in params.items() if k != "rho"}
    out[names.PHI] = params["rho"]
    return out


def _check_params(params: dict, d, spec: ModelSpec) -> None:
    """Every parameter the model needs is given, with the right shape; no unknown names."""
    needed = _needed(d, spec)
    allowed = needed | {names.corr(g.name) for g in d.groups}
    missing = sorted(needed - set(params) - {"beta"})
    if missing:
        raise KeyError(f"params lack {missing}; the model needs {sorted(needed)}.")
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise KeyError(f"params has unknown names {unknown}; the model's parameters are {sorted(allowed)}.")
    spec.family.check_params({k: v for k, v in params.items() if k in spec.family.extra_params})
    if names.SD_AR in needed and float(params[names.SD_AR]) <= 0:
        raise ValueError(f"{names.SD_AR} must be positive, got {params[names.SD_AR]}.")
    for g in d.groups:
        sd = np.atleast_1d(np.asarray(params[names.sd(g.name)], dtype=float))
        if sd.shape != (g.q,) or np.any(sd < 0):
            raise ValueError(
                f"{names.sd(g.name)} needs {g.q} non-negative values (terms {list(g.terms)}), got {sd.tolist()}."
            )
        if names.corr(g.name) in params:
            c = np.asarray(params[names.corr(g.name)], dtype=float)
            ok = (
                c.shape == (g.q, g.q) and np.allclose(c, c.T) and np.allclose(np.diag(c), 1.0)
                and np.linalg.eigvalsh(c).min() >= -1e-10
            )
            if not ok:
                raise ValueError(
                    f"{names.corr(g.name)} must be a {g.q} x {g.q} correlation matrix (symmetric, unit "
                    "diagonal, positive semi-definite)."
                )
    if d.correlation is not None and d.correlation.kind == "unstructured":
        K = len(d.occasions)
        c = np.asarray(params[names.RESID_CORR], dtype=float)
        ok = (c.shape == (K, K) and np.allclose(c, c.T) and np.allclose(np.diag(c), 1.0)
              and np.linalg.eigvalsh(c).min() > 0)
        if not ok:
            raise ValueError(
                f"{names.RESID_CORR} must be a {K} x {K} positive definite correlation matrix over "
                f"the occasions {list(d.occasions)} (symmetric, unit diagonal)."
            )
    elif d.correlation is not None and d.correlation.kind == "arma":
        _arma_theta(params, d)  # stationary and invertible, else an error naming them
    elif d.correlation is not None:
        lo, hi = d.phi_bounds
        phi = float(params["phi"])
        if not lo < phi < hi:
            raise ValueError(f"phi must lie in ({lo:g}, {hi:g}) for {type(d.correlation).__name__}, got {phi}.")


def simulate(
    formula: str | ModelSpec,
    data: pd.DataFrame,
    params: dict,
    *,
    correlation=None,
    family=None,
    seed: int | None = None,
    sigma: str | None = None,
    zi: str | None = None,
    hu: str | None = None,
) -> pd.DataFrame:
    """Draw the response of a mixed model of any family at given parameter values.

    The random effects are drawn from their normal distribution, the linear predictor
    ``eta = X beta + Z b`` formed, and the response drawn from the family at ``eta``
    (:meth:`hierbayes.spec.families.Family.draw`): Gaussian residuals with the model's
    AR(1)/CAR(1) correlation; for other families with a correlation, the latent AR process
    (marginal sd ``sd_ar``) is added to ``eta`` first, as the latent backend models it.

    Parameters
    ----------
    formula : str, ModelSpec or Model
        Model formula (or a parsed spec, or a ``hb.Model`` whose spec is used); its response
        column is (re)written.
    data : DataFrame
        Predictors, grouping and time columns (the layout); the response column may be absent.
    params : dict
        ``beta`` (dict label -> value, or array in design order), the family's parameters
        (``sigma``; ``nu``; ``alpha``; ``zi``, ``hu``; ``cutpoints``, K - 1 increasing values
        of an ordinal family, whose response is then the levels 1 .. K, or the family's
        ``levels=``: ``model.family.extra_params``), ``sd_<g>`` (array per
        term), ``corr_<g>`` (q x q correlation, optional, default identity), ``phi`` (with a
        correlation) and ``sd_ar`` (with a correlation, non-Gaussian families). The binomial
        family takes its trials from ``data``. A model with a sigma formula
        (``hb.Model(..., sigma="~ Sex")``) takes ``beta_sigma`` (dict label -> value, or an
        array in the formula's column order) instead of ``sigma``: row ``i`` gets the sd
        ``exp(x_i' beta_sigma)``, and with a correlation ``e_i = sigma_i u_i``, ``u`` the
        unit-variance AR process.
    correlation : hb.AR1, hb.CAR1, hb.CompSymm, hb.Unstructured or hb.ARMA, optional
        With a formula; a spec or model brings its own. ``params`` then holds ``phi``
        (``rho`` for compound symmetry, either name), ``corr_resid`` (the K x K
        correlation matrix over the occasions, in sorted order, of hb.Unstructured), or
        the coefficients ``ar`` (p values) and ``ma`` (q values) of hb.ARMA(p, q)
        (``x_t = sum ar_i x_(t-i) + e_t + sum ma_j e_(t-j)``; stationary and invertible).
    family : str or family object, optional
        With a formula (default ``"gaussian"``), as ``hb.Model`` takes it; a spec or model
        brings its own.
    sigma : str, optional
        With a formula: a formula for the residual sd (``"~ Sex"``, as
        ``hb.Model(sigma=...)``); ``params`` then gives ``beta_sigma``.
    zi, hu : str, optional
        With a formula: a formula for the zero-inflation (hurdle) probability on the logit
        scale (``"~ x"``, as ``hb.Model(zi=...)``); ``params`` then gives ``beta_zi``
        (``beta_hu``) instead of ``zi`` (``hu``).
        A censored model's responses are drawn uncensored; its censoring columns are not
        read (``hb.sbc(censor=...)`` censors them).
    seed : int, optional
        The whole data-generating process (random effects and residuals) is one call of one
        ``numpy.random.Generator``: the same seed gives the same data.

    Returns
    -------
    DataFrame
        A copy of ``data`` with the simulated response, in the same row order.

    Examples
    --------
    >>> import numpy as np, pandas as pd, hierbayes as hb
    >>> layout = pd.DataFrame({"id": np.repeat(np.arange(50), 4), "time": np.tile(np.arange(4), 50)})
    >>> sim = hb.simulate("y ~ time + (1 + time | id)", layout,
    ...                   {"beta": {"Intercept": 0.2, "time": 0.5}, "sigma": 1.0,
    ...                    "sd_id": [0.5, 0.25], "phi": 0.7},
    ...                   correlation=hb.AR1(time="time", group="id"), seed=1)
    >>> sim.shape
    (200, 3)
    >>> counts = hb.simulate("y ~ time + (1 | id)", layout,
    ...                      {"beta": [0.5, 0.1], "sd_id": [0.4]}, family="poisson", seed=1)
    >>> bool((counts.y >= 0).all() and (counts.y % 1 == 0).all())
    True
    """
    rng = np.random.default_rng(seed)
    # a censored model's responses are drawn uncensored (the censoring columns are not read)
    spec = dataclasses.replace(_spec(formula, correlation, family, {"sigma": sigma, "zi": zi, "hu": hu}),
                               censored=None, censored_upper=None)
    frame = data.copy().reset_index(drop=True)
    # a placeholder response (the design checks its type, not its support)
    frame[spec.response] = rng.standard_normal(len(frame))
    d = build_design(spec, frame, na_action="raise", check_support=False)
    params = _aliases(params, d)
    _check_params(params, d, spec)
    eta = _add_random_part(d.X @ _coefficients(params, d), d, params, rng)
    fam = spec.family
    if fam.collapsible:  # Gaussian: the residuals carry the correlation
        sd = None if "sigma" in d.dpars or d.sd_by_occasion else float(params["sigma"])
        y = eta + _residuals(d, sd, params, rng)
    else:
        if d.correlation is not None:
            eta = eta + _residuals(d, float(params[names.SD_AR]), params, rng)
        family_params = {k: params[k] for k in fam.extra_params if k not in d.dpars}
        for k in d.dpars:  # a formula for the parameter: one value per row
            family_params[k] = _dpar_rows(params, d, k)
        y = fam.draw(rng, eta, family_params, d.trials)
        if fam.ordered_response:  # codes 0 .. K-1 as the family's levels, else 1 .. K
            y = fam.response_values(y, fam.levels or ())
    out = data.copy()
    values = np.empty(len(frame), dtype=np.asarray(y).dtype)
    values[d.rows] = y
    out[spec.response] = values
    return out


def _coefficients(params: dict, d, key: str = "beta", labels=None) -> np.ndarray:
    """``params[key]`` as a vector in the order of ``labels`` (default: the design's
    fixed-effect columns; a dict: missing labels are 0)."""
    labels = list(d.fixed_names if labels is None else labels)
    beta = params.get(key, {})
    if isinstance(beta, dict):
        unknown = set(beta) - set(labels)
        if unknown:
            raise KeyError(f"{key} has labels {sorted(unknown)} not in the model's {labels}.")
        beta = np.array([float(beta.get(n, 0.0)) for n in labels])
    beta = np.asarray(beta, dtype=float)
    if beta.shape != (len(labels),):
        raise ValueError(
            f"{key} needs {len(labels)} values, one per column {labels}, got shape {beta.shape}; "
            "or give a dict label -> value."
        )
    return beta


def _dpar_rows(params: dict, d, name: str) -> np.ndarray:
    """The value per design row of a parameter with a formula (``sigma="~ Sex"``): the
    link's inverse of ``X_name beta_name`` at ``params["beta_<name>"]``."""
    blk = d.dpars[name]
    return blk.rows(_coefficients(params, d, names.dpar_coef(name), blk.names))[0]


def _add_random_part(mu: np.ndarray, d, params: dict, rng: np.random.Generator) -> np.ndarray:
    """``mu + sum_g Z_g b_g`` with each factor's effects drawn from N(0, sd corr sd)."""
    out = mu
    for g in d.groups:
        sd = np.atleast_1d(np.asarray(params[names.sd(g.name)], dtype=float))
        corr = np.asarray(params.get(names.corr(g.name), np.eye(g.q)), dtype=float)
        cov = sd[:, None] * corr * sd[None, :]
        b = rng.multivariate_normal(np.zeros(g.q), cov, size=g.n_levels)
        out = out + (g.Z * b[g.index]).sum(axis=1)
    return out


def _residuals(d, sd: float | None, params: dict, rng: np.random.Generator) -> np.ndarray:
    """Normal residuals with marginal sd ``sd``, independent or the AR(1)/CAR(1) process
    along each cluster's sorted rows (:func:`hierbayes.likelihood.arprocess.recursion`).
    ``sd=None`` with a sigma formula: ``e_i = sigma_i u_i``, ``u`` with unit variance."""
    if sd is None and d.sd_by_occasion:
        return _occasion_sds(params, d)[d.occasion_index] * _process(d, rng.standard_normal(d.n), params)
    if sd is None:
        return _dpar_rows(params, d, "sigma") * _process(d, rng.standard_normal(d.n), params)
    return _process(d, rng.standard_normal(d.n) * sd, params)


def _arma_theta(params: dict, d) -> np.ndarray:
    """hb.ARMA: the packed partial autocorrelations (1, 6) of the coefficients ``params["ar"]``
    (p values) and ``params["ma"]`` (q values), checked stationary and invertible."""
    from hierbayes.likelihood import arma

    c = d.correlation
    ar, ma = arma.pacf_of(params.get(names.AR_COEF), params.get(names.MA_COEF), c.p, c.q)
    return arma.pack(ar[None] if c.p else None, ma[None] if c.q else None)


def _occasion_sds(params: dict, d) -> np.ndarray:
    """``params["sigma_occasion"]``: K positive sds, one per occasion in sorted order."""
    sd = np.atleast_1d(np.asarray(params[names.SIGMA_OCC], dtype=float))
    if sd.shape != (len(d.occasions),) or np.any(sd <= 0):
        raise ValueError(f"{names.SIGMA_OCC} needs {len(d.occasions)} positive values, one per "
                         f"occasion {list(d.occasions)}, got {sd.tolist()}.")
    return sd


def _process(d, eps: np.ndarray, params: dict) -> np.ndarray:
    """Independent innovations ``eps`` carried through the AR(1)/CAR(1) recursion, if any."""
    if d.correlation is None:
        return eps
    lay = d.layout
    if d.correlation.kind == "arma":  # a Cholesky draw per time pattern
        theta = _arma_theta(params, d)
    elif d.correlation.dense:  # compound symmetry / unstructured: a Cholesky draw per cluster
        theta = np.asarray(params[names.RESID_CORR if d.correlation.kind == "unstructured"
                                  else names.PHI], dtype=float)[None]
    if d.correlation.dense:
        u = structured.draw_padded(_NormalsFrom(eps), d.correlation.kind, lay, theta, d.time)[0]
        out = np.zeros(d.n)
        out[lay.pos[lay.mask]] = u[lay.mask]
        return out
    innov = np.where(lay.mask, eps[np.where(lay.mask, lay.pos, 0)], 0.0)
    a = np.where(lay.mask, arprocess.lag_power(float(params["phi"]), lay.lag), 0.0)
    e = arprocess.recursion(innov, a)
    out = np.zeros(d.n)
    out[lay.pos[lay.mask]] = e[lay.mask]
    return out


class _NormalsFrom:
    """A generator stand-in whose standard normals are given, scaled innovations ``eps``
    (one per design row), laid out slot by slot as :func:`structured.draw_padded` asks."""

    def __init__(self, eps: np.ndarray):
        self._eps = eps
        self._used = 0

    def standard_normal(self, shape):
        k = int(np.prod(shape))
        out = self._eps[self._used:self._used + k].reshape(shape)
        self._used += k
        return out
