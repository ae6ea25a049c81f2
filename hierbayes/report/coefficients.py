"""Cluster-level coefficients from the posterior: fixed part + random part, as nlme's ``coef()``.

A fixed-effect column that only rescales a random-effect column within each cluster is
*absorbed* into that term: the intercept of a treated id includes the treatment effect, and
``time:treatment`` joins the time slope of treated ids. The rule, applied per fixed column
``j`` and random-effect column ``k``: ``X[:, j]`` is absorbed into ``k`` when
``X[:, j] == Z[:, k] * h[c]`` on every row for a per-cluster constant ``h[c]``; then

    coef[c, k] = b[c, k] + sum_j h[c, j] * beta[j]   (sum over the columns absorbed into k).

Fixed columns absorbed nowhere (row-level covariates) are not part of the cluster
coefficients.
"""

from __future__ import annotations

import warnings

import numpy as np
from arviz_stats.base import array_stats
import pandas as pd
import xarray as xr

from hierbayes.predict.predictive import effects_posterior
from hierbayes.report.ols import group_block
from hierbayes import names

_ATOL = 1e-8


def _absorb_column(x: np.ndarray, z: np.ndarray, idx: np.ndarray, C: int):
    """Per-cluster ratio ``h`` with ``x == z * h[idx]``, or None when there is none.

    Clusters where ``z`` is zero on every row leave ``h`` undetermined: they get the common
    value of ``h`` when all determined clusters share one, NaN otherwise.
    """
    den = np.bincount(idx, weights=z * z, minlength=C)
    det = den > 0
    h = np.where(det, np.bincount(idx, weights=x * z, minlength=C) / np.where(det, den, 1), 0.0)
    err = np.bincount(idx, weights=np.abs(x - z * h[idx]), minlength=C)
    n = np.bincount(idx, minlength=C)
    if np.any(err > _ATOL * (1.0 + np.max(np.abs(x))) * np.maximum(n, 1)):
        return None
    if not det.all():
        hd = h[det]
        common = hd.size and np.allclose(hd, hd[0], rtol=0, atol=_ATOL * (1 + abs(hd[0])))
        h[~det] = hd[0] if common else np.nan
    return h


def absorption_matrix(design, group: str | None = None) -> np.ndarray:
    """Per-cluster map from fixed effects to cluster coefficients, shape (C, q, p).

    ``A[c, k, j]`` is the multiplier of ``beta[j]`` in the coefficient of random-effect
    term ``k`` of cluster ``c`` (0 when fixed column ``j`` is not absorbed into term ``k``).

    Parameters
    ----------
    design : hierbayes.design.build.Design
    group : str, optional
        Grouping factor; default the only one (or the one with the most levels).

    Returns
    -------
    numpy.ndarray, shape (n_levels, q, p)

    Notes
    -----
    Each fixed column is absorbed into at most one term: the term of the same name when it
    qualifies, else the first that does. In a cluster where ``Z[:, k]`` is zero on every row
    (e.g. observed only at ``time == 0``) the multiplier cannot be read from the data; it
    takes the value shared by all other clusters (``time`` into ``time``: 1), or NaN when
    clusters differ (``time:treatment``), which makes that coefficient NaN.

    Examples
    --------
    >>> from hierbayes import datasets
    >>> from hierbayes.spec.formula import parse
    >>> from hierbayes.design.build import build_design
    >>> df = datasets.load("clark_ar1")
    >>> d = build_design(parse("y ~ time * treatment + (1 + time | id)"), df)
    >>> d.fixed_names
    ('Intercept', 'time', 'treatment[treatment]', 'time:treatment[treatment]')
    >>> A = absorption_matrix(d)
    >>> A.shape
    (2500, 2, 4)
    >>> A[-1]  # a treated id: intercept + treatment, time + time:treatment
    array([[1., 0., 1., 0.],
           [0., 1., 0., 1.]])
    """
    g = group_block(design, group)
    X = np.asarray(design.X, dtype=float)
    Z = np.asarray(g.Z, dtype=float)
    idx = np.asarray(g.index, dtype=np.int64)
    C, q, p = g.n_levels, g.q, X.shape[1]
    A = np.zeros((C, q, p))
    undetermined = 0
    for j in range(p):
        found = {
            k: h for k in range(q) if (h := _absorb_column(X[:, j], Z[:, k], idx, C)) is not None
        }
        if not found:
            continue
        name = design.fixed_names[j]
        k = g.terms.index(name) if name in g.terms and g.terms.index(name) in found else min(found)
        A[:, k, j] = found[k]
        undetermined += int(np.isnan(found[k]).sum())
    if undetermined:
        warnings.warn(
            f"{undetermined} cluster coefficient(s) of {g.name!r} are NaN: their clusters never "
            "observe the random-effect column a cluster-level fixed effect multiplies, so its "
            "share cannot be read from the design.",
            UserWarning,
            stacklevel=2,
        )
    return A


def posterior_var(idata, name: str, hint: str = "") -> xr.DataArray:
    """The posterior variable ``name`` of ``idata``; a clear error (with ``hint``) if absent.

    Read from :func:`~hierbayes.predict.predictive.effects_posterior`: for a fit whose
    random effects were recovered at thinned draws, every variable at those draws, so that
    the reports combining ``b_<g>`` with ``beta`` use the same draws for both."""
    if getattr(idata, "posterior", None) is None:
        raise ValueError("idata has no posterior group; pass the InferenceData of a fit.")
    post = effects_posterior(idata)
    if name not in post:
        raise KeyError(
            f"posterior has no variable {name!r}{hint}; it has {sorted(post.data_vars)}."
        )
    return post[name]


def align(da: xr.DataArray, dim: str, labels, what: str) -> xr.DataArray:
    """Order ``da`` along ``dim`` as ``labels`` (compared as strings)."""
    if dim not in da.dims:
        raise ValueError(f"{what} has dims {da.dims}; expected a dim named {dim!r}.")
    have = [str(v) for v in da[dim].values]
    want = [str(v) for v in labels]
    if have == want:
        return da
    if sorted(have) != sorted(want):
        missing = sorted(set(want) - set(have))[:5]
        extra = sorted(set(have) - set(want))[:5]
        raise ValueError(
            f"{what} labels along {dim!r} do not match the design (missing e.g. {missing}, "
            f"unexpected e.g. {extra}); was the posterior fitted on this design?"
        )
    pos = {v: i for i, v in enumerate(have)}
    return da.isel({dim: [pos[v] for v in want]})


def cluster_coefficient_draws(idata, design, group: str | None = None) -> xr.DataArray:
    """Posterior draws of the cluster coefficients, dims (chain, draw, level, term).

    Parameters
    ----------
    idata : arviz.InferenceData
        Posterior with ``beta`` (dim ``coef``) and ``b_{group}`` (dims ``group``,
        ``{group}__term``).
    design : hierbayes.design.build.Design
    group : str, optional
        Grouping factor; default the only one (or the one with the most levels).

    Returns
    -------
    xarray.DataArray
        ``b[c, k] + sum_j A[c, k, j] beta[j]`` (see :func:`absorption_matrix`), with coords
        ``level`` = the group's levels and ``term`` = its terms; ``attrs["group"]`` names it.

    Examples
    --------
    >>> draws = cluster_coefficient_draws(idata, design)
    >>> draws.sel(term="time").mean(("chain", "draw"))     # doctest: +SKIP
    """
    g = group_block(design, group)
    term_dim = names.term_dim(g.name)
    b = posterior_var(
        idata,
        names.effects(g.name),
        " (random-effect draws; a marginal fit must recover them before cluster coefficients)",
    )
    b = align(b, g.name, g.levels, names.effects(g.name))
    b = align(b, term_dim, g.terms, names.effects(g.name)).transpose("chain", "draw", g.name, term_dim)
    draws = np.array(b.values, dtype=float)
    if design.X.shape[1]:
        beta = align(posterior_var(idata, "beta"), "coef", design.fixed_names, "beta")
        beta = beta.transpose("chain", "draw", "coef").values
        A = absorption_matrix(design, g.name)
        draws = draws + np.einsum("ckj,sdj->sdck", A, beta)
    return xr.DataArray(
        draws,
        dims=("chain", "draw", "level", "term"),
        coords={
            "chain": b["chain"].values,
            "draw": b["draw"].values,
            "level": list(g.levels),
            "term": list(g.terms),
        },
        name=f"coef_{g.name}",
        attrs={"group": g.name},
    )


def hdi_bounds(samples: np.ndarray, hdi_prob: float = 0.94) -> tuple[np.ndarray, np.ndarray]:
    """Highest-density interval of draws along axis 0, vectorised over the other axes.

    arviz-stats' estimator (``arviz_stats.hdi``, method "nearest": the narrowest window
    holding ``floor(prob * n)`` + 1 sorted draws); NaN where any draw is NaN.

    Examples
    --------
    >>> lo, hi = hdi_bounds(np.random.default_rng(0).normal(size=(4000, 2)), 0.94)
    >>> bool(np.allclose(hi - lo, 2 * 1.88, atol=0.15))  # 94% of N(0, 1): +-1.88
    True
    """
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must be in (0, 1), got {hdi_prob}.")
    x = np.asarray(samples, dtype=float)
    n = x.shape[0]
    if n < 2 or int(np.floor(hdi_prob * n)) >= n:
        raise ValueError(f"need more draws for a {hdi_prob:.0%} HDI (have {n}).")
    bounds = array_stats.hdi(np.moveaxis(x, 0, -1), hdi_prob)  # arviz-stats' estimator
    lo, hi = bounds[..., 0], bounds[..., 1]
    bad = np.isnan(x).any(axis=0)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def cluster_coefficients(
    idata, design, group: str | None = None, hdi_prob: float = 0.94
) -> pd.DataFrame:
    """Posterior summary of the cluster coefficients (nlme's ``coef()`` with uncertainty).

    Parameters
    ----------
    idata : arviz.InferenceData
    design : hierbayes.design.build.Design
    group : str, optional
        Grouping factor; default the only one (or the one with the most levels).
    hdi_prob : float
        Probability of the highest-density interval.

    Returns
    -------
    pandas.DataFrame
        Index (level, term); columns ``mean``, ``sd``, ``hdi_{lo}%``, ``hdi_{hi}%``
        (arviz's names, e.g. ``hdi_3%`` and ``hdi_97%``). ``.unstack("term")`` gives the
        wide, nlme-like layout.

    Examples
    --------
    >>> tab = cluster_coefficients(idata, design)
    >>> tab["mean"].unstack("term").head()          # doctest: +SKIP
    """
    draws = cluster_coefficient_draws(idata, design, group)
    v = draws.values
    flat = v.reshape((-1,) + v.shape[2:])
    lo, hi = hdi_bounds(flat, hdi_prob)
    tail = 100 * (1 - hdi_prob) / 2
    index = pd.MultiIndex.from_product(
        [list(draws["level"].values), list(draws["term"].values)], names=["level", "term"]
    )
    return pd.DataFrame(
        {
            "mean": flat.mean(axis=0).ravel(),
            "sd": flat.std(axis=0, ddof=1).ravel(),
            f"hdi_{tail:g}%": lo.ravel(),
            f"hdi_{100 - tail:g}%": hi.ravel(),
        },
        index=index,
    ).rename_axis(index=[draws.attrs["group"], "term"])
