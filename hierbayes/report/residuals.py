"""Within-group residuals, their nlme-style summary, and a lag-1 autocorrelation statistic.

The within-group residual of row ``i`` is ``y_i - x_i' beta - sum_g z_gi' b_g[c_i]``: the
response minus the cluster-level fitted value (all random effects included), as
``residuals(fit, type = "pearson")`` of an ``lme`` fit divided by the residual sd. A censored
row's response is a bound, not a value, so its residual is unknown: NaN, left out of the
summary and counted (:func:`censored_rows_note`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierbayes.report.coefficients import align, posterior_var
from hierbayes import names


def standardized_residuals(resid, sigma_hat) -> np.ndarray:
    """Residuals divided by the residual standard deviation (nlme's ``type = "pearson"``).

    Parameters
    ----------
    resid : array_like
        Raw residuals, any shape.
    sigma_hat : float or array_like
        Residual sd, broadcastable against ``resid`` (e.g. one value per draw, shaped
        ``(S, 1)`` for residuals of shape ``(S, N)``); must be positive.

    Returns
    -------
    numpy.ndarray

    Examples
    --------
    >>> standardized_residuals([1.0, -2.0], 2.0)
    array([ 0.5, -1. ])
    """
    sigma = np.asarray(sigma_hat, dtype=float)
    if not np.all(np.isfinite(sigma) & (sigma > 0)):
        raise ValueError(f"sigma_hat must be positive and finite, got {sigma_hat!r}.")
    return np.asarray(resid, dtype=float) / sigma


def residual_summary(values) -> pd.Series:
    """Five-number summary of residuals, as nlme prints "Standardized Within-Group Residuals".

    Parameters
    ----------
    values : array_like
        Residuals; non-finite values are ignored.

    Returns
    -------
    pandas.Series
        Index ``Min``, ``Q1``, ``Med``, ``Q3``, ``Max`` (quantiles as R's default, type 7).

    Examples
    --------
    >>> residual_summary([-2.0, -1.0, 0.0, 1.0, 2.0]).tolist()
    [-2.0, -1.0, 0.0, 1.0, 2.0]
    """
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no finite residuals to summarise.")
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return pd.Series(q, index=["Min", "Q1", "Med", "Q3", "Max"], name="residuals")


def censored_rows_note(design) -> str | None:
    """What the residuals of a censored model leave out (None: nothing).

    Examples
    --------
    >>> censored_rows_note(design) is None   # an uncensored model
    True
    """
    if design.censoring is None:
        return None
    counts = {k: v for k, v in design.censoring.counts().items() if k != "none" and v}
    n = sum(counts.values())
    kinds = ", ".join(f"{v} {k}" for k, v in counts.items())
    return (f"exact rows only: {n} censored row(s) left out" + (f" ({kinds})" if kinds else "")
            + ", their residuals are unknown")


def within_group_residuals(idata, design, standardize: bool = True) -> np.ndarray:
    """Within-group residuals at the posterior means of ``beta``, ``b_*`` and ``sigma``
    (NaN on a censored model's censored rows, whose responses are bounds).

    Parameters
    ----------
    idata : arviz.InferenceData
        Posterior with ``beta``, ``sigma`` and ``b_{g}`` for every grouping factor ``g``.
    design : hierbayes.design.build.Design
    standardize : bool
        Divide by the posterior mean of ``sigma`` (default), as nlme's summary does. For
        families with a non-identity link the residuals are on the response scale,
        ``y - E[y]``, and standardizing gives Pearson residuals ``(y - E[y]) / sd[y]``
        (a latent AR(1) process, not stored, is left in them).

    Returns
    -------
    numpy.ndarray, shape (N,)
        In design row order (``design.to_user_order`` maps it to the data's order).

    Examples
    --------
    >>> r = within_group_residuals(idata, design)
    >>> residual_summary(r)                          # doctest: +SKIP
    """
    resid = _residuals(idata, design, standardize)
    if design.censoring is None:
        return resid
    from hierbayes.design.censoring import NONE

    return np.where(design.censoring.code == NONE, resid, np.nan)


def _residuals(idata, design, standardize: bool) -> np.ndarray:
    """:func:`within_group_residuals` on every row, the censored ones' bounds taken as values."""
    fitted = np.zeros(design.n)
    if design.X.shape[1]:
        beta = align(posterior_var(idata, "beta"), "coef", design.fixed_names, "beta")
        fitted += np.asarray(design.X, float) @ beta.mean(("chain", "draw")).values
    for g in design.groups:
        b = posterior_var(
            idata, names.effects(g.name), " (random-effect draws, needed for within-group residuals)"
        )
        b = align(b, g.name, g.levels, names.effects(g.name))
        b = align(b, names.term_dim(g.name), g.terms, names.effects(g.name))
        bm = b.mean(("chain", "draw")).transpose(g.name, names.term_dim(g.name)).values
        fitted += np.einsum("nk,nk->n", np.asarray(g.Z, float), bm[g.index])
    family = design.spec.family
    if family.link != "identity":
        # Pearson residuals (y - E[y]) / sd[y] at the posterior means, on the response scale
        # (an ordinal family's cut-points stay a vector: the mean of ordered draws is ordered)
        params = {k: posterior_var(idata, k).mean(("chain", "draw")).values
                  for k in family.extra_params if k not in design.dpars}
        for k, blk in design.dpars.items():  # a parameter formula (zi="~ x"): its mean per row
            coefs = align(posterior_var(idata, names.dpar_coef(k)), names.dpar_dim(k), blk.names,
                          names.dpar_coef(k))
            flat = coefs.stack(sample=("chain", "draw")).transpose("sample", names.dpar_dim(k)).values
            params[k] = blk.rows(flat).mean(axis=0)
        resid = np.asarray(design.y, float) - family.fitted(fitted, params, design.trials)
        if not standardize:
            return resid
        return resid / np.sqrt(family.variance(fitted, params, design.trials))
    resid = np.asarray(design.y, float) - fitted
    if not standardize:
        return resid
    if "sigma" in design.dpars:  # a sigma formula: each row by its own sd (nlme's pearson)
        blk = design.dpars["sigma"]
        coefs = align(posterior_var(idata, names.dpar_coef("sigma")), names.dpar_dim("sigma"),
                      blk.names, names.dpar_coef("sigma"))
        flat = coefs.stack(sample=("chain", "draw")).transpose("sample", names.dpar_dim("sigma")).values
        return standardized_residuals(resid, blk.rows(flat).mean(axis=0))
    return standardized_residuals(resid, float(posterior_var(idata, "sigma").mean()))


def ppc_lag1_autocorr(resid, design) -> np.ndarray:
    """Lag-1 within-cluster autocorrelation of residuals.

    The Pearson correlation of the pairs ``(r_i, r_{i+1})`` of consecutive design rows that
    belong to the same cluster (rows are sorted by cluster, then time). Compute it for the
    observed residuals and for residuals of posterior predictive draws to check an AR model:
    the observed value should look like a typical replicated one.

    Parameters
    ----------
    resid : array_like, shape (..., N)
        Residuals in design row order; leading axes (e.g. chain, draw) are kept.
    design : hierbayes.design.build.Design
        Must have a clustering (``design.cluster``): a grouping factor or a correlation.

    Returns
    -------
    numpy.ndarray, shape (...)
        One correlation per leading index (a 0-d array for one residual vector).

    Notes
    -----
    Pairs are consecutive *rows*, whatever the time gap between them; with an AR(1) in
    integer time and gaps, pairs that are more than one step apart are included.

    Examples
    --------
    >>> rho_obs = ppc_lag1_autocorr(within_group_residuals(idata, design), design)
    """
    r = np.asarray(resid, dtype=float)
    cluster = getattr(design, "cluster", None)
    if cluster is None:
        raise ValueError(
            "the design has no clusters (no grouping factor or correlation), so within-cluster "
            "autocorrelation is undefined."
        )
    if r.shape[-1] != len(cluster):
        raise ValueError(
            f"resid has {r.shape[-1]} values on its last axis; the design has {len(cluster)} rows."
        )
    same = np.asarray(cluster)[1:] == np.asarray(cluster)[:-1]
    if not same.any():
        raise ValueError("no cluster has two or more rows: lag-1 autocorrelation is undefined.")
    a = r[..., :-1][..., same]
    b = r[..., 1:][..., same]
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return np.sum(a * b, axis=-1) / np.sqrt(np.sum(a * a, axis=-1) * np.sum(b * b, axis=-1))
