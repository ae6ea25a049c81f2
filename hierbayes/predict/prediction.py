"""Predictions for new rows: posterior draws of the mean or of new observations.

For every posterior draw (beta, sigma, phi, S_g, b_g) a new row i gets

    mu_i = x_i beta + sum_g z_ig b_g[c_i] + E[e_i | e_obs],

where the cluster's random effects ``b_g[c_i]`` are its posterior draws when the cluster
was seen in fitting, or fresh draws from N(0, S_g) for a cluster the model never saw (one
draw per cluster and posterior draw, shared by that cluster's rows). With AR(1)/CAR(1)
residuals, a new row of a fitted cluster is forecast conditionally on that cluster's
fitted residuals ``e_obs = y - X beta - Z b`` (of the same draw): the residual process is
Gaussian with correlation ``phi^|t - s|``, so

    E[e_new | e_obs] = R_no R_oo^-1 e_obs,   Cov = sigma^2 (R_nn - R_no R_oo^-1 R_on);

one step after the last observation at lag ``l`` this is ``phi^l e_last`` with variance
``sigma^2 (1 - phi^(2 l))`` (CAR(1): ``l`` the elapsed time). ``kind="response"`` adds a
draw of the residual from that conditional distribution (jointly over a cluster's new
rows), ``kind="mean"`` stops at ``mu``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from hierbayes import names
from hierbayes.likelihood import structured
from hierbayes.design.build import Design
from hierbayes.design.newdata import GROUP_MODES, NewRows, new_rows
from hierbayes.predict.predictive import (
    ParameterDraws, effects_posterior, family_param_rows, parameter_draws, thin,
)

KINDS = ("mean", "response", "probabilities")
#: the dim of the per-category probabilities of an ordinal family (``kind="probabilities"``)
CATEGORY_DIM = "category"


@dataclass(frozen=True)
class Prediction:
    """Posterior draws for new rows and their summary.

    Attributes
    ----------
    draws : xarray.DataArray
        Dims ``(chain, draw, row)``; ``row`` holds the new data's index labels. For
        ``kind="probabilities"`` (ordinal families) ``(chain, draw, row, category)``, the
        ``category`` coords the response's levels.
    table : pandas.DataFrame
        One row per new row (same index): ``mean``, ``sd``, the equal-tailed interval
        bounds (``q2.5%``, ``q97.5%`` for ``prob=0.95``) or, for ``kind="probabilities"``,
        the posterior mean probability of each level (``P(<level>)``) and, per grouping
        factor ``g``,
        ``re_<g>``: ``"fitted"`` (the cluster's posterior random effects), ``"new"``
        (drawn from the fitted population distribution) or ``"none"``; with a residual
        correlation, ``ar_conditioned`` says whether the row was forecast from its
        cluster's fitted residuals.
    kind : str
    groups : str
    prob : float
    """

    draws: xr.DataArray
    table: pd.DataFrame
    kind: str
    groups: str
    prob: float

    def to_frame(self) -> pd.DataFrame:
        """The summary table (a copy)."""
        return self.table.copy()

    def __repr__(self) -> str:
        head = (
            f"Prediction: {self.kind} for {len(self.table)} rows, random effects "
            f"{self.groups!r}, {self.draws.sizes['chain']} chains x {self.draws.sizes['draw']} draws, "
            f"{self.prob:.0%} equal-tailed intervals"
        )
        return head + "\n" + self.table.to_string()

    def _repr_html_(self) -> str:
        return f"<p>{repr(self).splitlines()[0]}</p>" + self.table.to_html()


# --------------------------------------------------------------------------- random effects


def _cluster_effects(new_g, chol: np.ndarray, b: np.ndarray | None, groups: str, rng):
    """Random effects (D, M, q) of every new row for one grouping factor, and the row status."""
    D, q = chol.shape[0], chol.shape[-1]
    use_fitted = new_g.seen if groups == "existing" else np.zeros(new_g.index.size, dtype=bool)
    out = np.zeros((D, new_g.index.size, q))
    if use_fitted.any():
        if b is None:
            raise KeyError(
                f"{names.effects(new_g.name)} is not in the posterior, so fitted clusters cannot use their "
                "random effects: refit with recover_random_effects=True, or predict with "
                "groups='new' or groups='none'."
            )
        out[:, use_fitted] = b[:, new_g.index[use_fitted]]
    fresh = ~use_fitted
    if fresh.any():
        labels, inverse = np.unique(new_g.labels[fresh], return_inverse=True)
        z = rng.standard_normal((D, labels.size, q))
        draws = np.einsum("dqk,dlk->dlq", chol, z)  # rows L z ~ N(0, S)
        out[:, fresh] = draws[:, inverse]
    status = np.where(use_fitted, "fitted", "new")
    return out, status


# --------------------------------------------------------------------------- AR residuals


def _fitted_residuals(design: Design, pd_: ParameterDraws, rows: np.ndarray) -> np.ndarray:
    """``y - X beta - sum_g Z_g b_g`` (D, len(rows)) for design rows ``rows``."""
    e = design.y[rows][None, :] - pd_.beta @ design.X[rows].T
    for g in design.groups:
        if g.name not in pd_.b:
            raise KeyError(
                f"{names.effects(g.name)} is not in the posterior, so the residuals of fitted clusters "
                "(needed for the AR forecast) are unknown: refit with "
                "recover_random_effects=True, or predict with groups='new' or groups='none'."
            )
        e = e - np.einsum("nq,dnq->dn", g.Z[rows], pd_.b[g.name][:, g.index[rows], :])
    return e


def _new_row_sd(design: Design, new: NewRows, pd_: ParameterDraws) -> np.ndarray:
    """The residual sd of every new row and draw, (D, M): a sigma formula's, or the sd of
    the row's occasion (hb.Unstructured(sd_by_occasion=True))."""
    if names.SIGMA_OCC not in pd_.extra:
        return family_param_rows(pd_, design, new.dpars)["sigma"]
    if new.time is None:
        raise ValueError(
            f"the residual sd depends on the occasion: the new data need the columns "
            f"{[design.correlation.time, design.correlation.group]} (or predict kind='mean')."
        )
    return pd_.extra[names.SIGMA_OCC][:, new.time.astype(np.int64)]


def _residual_part(design: Design, new: NewRows, pd_: ParameterDraws, groups: str, kind: str, rng):
    """Conditional residual mean (+ a draw for ``kind="response"``) per new row, (D, M),
    and whether each row was conditioned on fitted residuals."""
    D, M = pd_.n, new.m
    out = np.zeros((D, M))
    conditioned = np.zeros(M, dtype=bool)
    # a sigma formula: e_i = sigma_i u_i with u the unit-variance AR process (nlme), so the
    # fitted residuals are divided by their sd and the new rows' part scaled by theirs
    rowwise = "sigma" in pd_.dpar_coefs or names.SIGMA_OCC in pd_.extra
    needed = kind == "response" or (design.correlation is not None and new.cluster is not None)
    sd_new = _new_row_sd(design, new, pd_) if rowwise and needed else None
    if design.correlation is None or new.cluster is None:
        if kind == "response":
            sd = sd_new if rowwise else pd_.sigma[:, None]
            out += sd * rng.standard_normal((D, M))
        return out, conditioned
    lay = design.layout
    ckind = design.correlation.kind
    fitted = {lab: c for c, lab in enumerate(design.cluster_levels)}
    # clusters sharing (fitted times, new times) share every matrix: balanced data -> 1 pattern
    patterns: dict[tuple, list] = defaultdict(list)
    for lab in pd.unique(new.cluster):
        rows = np.flatnonzero(new.cluster == lab)
        rows = rows[np.argsort(new.time[rows])]
        c = fitted.get(lab, -1) if groups == "existing" else -1
        t_obs = () if c < 0 else tuple(design.time[lay.pos[c, : lay.sizes[c]]])
        patterns[(t_obs, tuple(new.time[rows]))].append((c, rows))
    for (t_obs, t_new), members in patterns.items():
        tn = np.array(t_new)
        R_nn = structured.correlation_matrix(ckind, tn, tn, pd_.phi)
        new_pos = np.array([rows for _, rows in members])  # (m, nn)
        if t_obs:
            to = np.array(t_obs)
            R_oo = structured.correlation_matrix(ckind, to, to, pd_.phi)
            R_on = structured.correlation_matrix(ckind, to, tn, pd_.phi)
            K = np.swapaxes(np.linalg.solve(R_oo, R_on), 1, 2)  # (D, nn, no) = R_no R_oo^-1
            cov = R_nn - K @ R_on
            obs_rows = np.array([lay.pos[c, : lay.sizes[c]] for c, _ in members])  # (m, no)
            e_obs = _fitted_residuals(design, pd_, obs_rows.ravel())
            if rowwise:
                e_obs = e_obs / pd_.sigma[:, obs_rows.ravel()]
            e_obs = e_obs.reshape(D, *obs_rows.shape)
            mean = np.einsum("dno,dmo->dmn", K, e_obs)
            out[:, new_pos] += sd_new[:, new_pos] * mean if rowwise else mean
            conditioned[new_pos.ravel()] = True
        else:
            cov = R_nn
        if kind == "response":
            cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
            jitter = 1e-10 * np.eye(tn.size)  # a new time equal to a fitted one: variance 0
            L = np.linalg.cholesky(cov + jitter)
            z = rng.standard_normal((D, len(members), tn.size))
            sd = sd_new[:, new_pos] if rowwise else pd_.sigma[:, None, None]
            out[:, new_pos] += sd * np.einsum("dnk,dmk->dmn", L, z)
    return out, conditioned


# --------------------------------------------------------------------------- public


def predict(
    fit,
    new_data: pd.DataFrame,
    kind: str = "mean",
    groups: str = "existing",
    *,
    prob: float = 0.95,
    n_draws: int | None = None,
    seed: int = 0,
) -> Prediction:
    """Posterior draws of the mean or of new observations for new rows.

    Parameters
    ----------
    fit : Fit
    new_data : pandas.DataFrame
        Rows to predict: the formula's predictors, the grouping columns (unless
        ``groups="none"``) and, with a residual correlation, its time and cluster columns.
        The response column is not needed.
    kind : {"mean", "response", "probabilities"}
        ``"mean"``: the expected value given the parameters (fixed part, random effects
        and, for a fitted cluster with AR(1)/CAR(1) residuals, the forecast of its residual;
        for an ordinal family the expected category index, 0 for the lowest level).
        ``"response"``: a new observation (adds residual noise with the fitted residual sd
        and correlation; for an ordinal family the level's index 0 .. K-1 into
        ``fit.design.response_levels``). ``"probabilities"`` (ordinal families): the
        probability of every level, dims ``(chain, draw, row, category)``.
    groups : {"existing", "new", "none"}
        ``"existing"``: clusters seen in fitting use their posterior random effects (and
        their fitted residuals for the AR forecast); unseen clusters get new random effects
        drawn from N(0, S) per posterior draw (brms ``allow_new_levels=TRUE,
        sample_new_levels="gaussian"``). ``"new"``: every cluster is treated as a new one,
        even when its label was fitted ("a new individual like this one"). ``"none"``: no
        random effects (brms ``re_formula=NA``): the population-level prediction.
    prob : float
        Probability mass of the equal-tailed intervals in the table.
    n_draws : int, optional
        Use about this many posterior draws, evenly spaced within each chain (default all).
    seed : int
        Seeds new random effects and residual draws.

    Returns
    -------
    Prediction
        ``.draws`` (xarray, dims ``chain, draw, row``) and ``.table`` (mean, sd, interval).

    Raises
    ------
    ValueError
        A fixed-effect categorical predictor has a level the model never saw (the message
        names the column and level), missing values, a repeated (cluster, time).
    KeyError
        A needed column is missing.

    Notes
    -----
    Rows of one new cluster share its random-effect draw, and with a residual correlation
    their residuals are drawn jointly, so sums and differences of predicted rows carry the
    right covariance. The conditional AR forecast uses every fitted residual of the
    cluster (for a new time after the last observation only the last one matters). A new
    row at a time the cluster was observed at gets that residual exactly (the AR model has
    no separate measurement error). With ``groups="none"`` the residual correlation is
    used only when the time and cluster columns are present (the per-row intervals do not
    depend on it).

    Examples
    --------
    >>> import pandas as pd
    >>> new = pd.DataFrame({"id": [1, 1, 99999], "time": [4, 5, 0],
    ...                     "treatment": ["control", "control", "treatment"]})
    >>> pred = fit.predict(new, kind="response")
    >>> pred.table[["mean", "q2.5%", "q97.5%"]]     # doctest: +SKIP
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    if kind == "probabilities" and not fit.spec.family.ordered_response:
        raise ValueError(
            f"kind='probabilities' gives the level probabilities of an ordinal (cumulative) "
            f"model; for the {fit.spec.family.name} family use kind='mean' (its mean: a "
            "probability for the Bernoulli)."
        )
    if groups not in GROUP_MODES:
        raise ValueError(f"groups must be one of {GROUP_MODES}, got {groups!r}.")
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1, got {prob}.")
    fam = fit.spec.family
    if not fam.collapsible and fit.design.correlation is not None:
        raise NotImplementedError(
            f"predict for the {fam.name} family with a latent {type(fit.design.correlation).__name__} "
            "process is not supported: the process draws of the fitted clusters are not stored."
        )
    design = fit.design
    new = new_rows(design, new_data, groups)
    # fitted clusters' effects: the draws they were recovered at (every draw by default)
    post = thin(effects_posterior(fit.idata) if groups == "existing" else fit.idata.posterior, n_draws)
    pd_ = parameter_draws(post, design)
    rng = np.random.default_rng(seed)

    mu = pd_.beta @ new.X.T if design.p else np.zeros((pd_.n, new.m))
    status = {}
    for g, ng in zip(design.groups, new.groups):
        b, status[g.name] = _cluster_effects(ng, pd_.chol[g.name], pd_.b.get(g.name), groups, rng)
        mu = mu + np.einsum("mq,dmq->dm", ng.Z, b)
    if groups == "none":
        status = {g.name: np.full(new.m, "none") for g in design.groups}
    if fam.collapsible:
        resid, conditioned = _residual_part(design, new, pd_, groups, kind, rng)
        values = mu + resid
    else:
        values, conditioned = _family_values(fam, mu, pd_, new_data, new, kind, fit.spec.trials, rng,
                                             design), None

    nc, nd = post.sizes["chain"], post.sizes["draw"]
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "row": np.asarray(new.row_labels)}
    if kind == "probabilities":
        coords[CATEGORY_DIM] = list(design.response_levels)
        draws = xr.DataArray(values.reshape(nc, nd, new.m, -1),
                             dims=("chain", "draw", "row", CATEGORY_DIM), coords=coords, name="p")
        return Prediction(draws, _probability_table(values, new, status, design), kind, groups, prob)
    draws = xr.DataArray(
        values.reshape(nc, nd, new.m),
        dims=("chain", "draw", "row"),
        coords=coords,
        name="y" if kind == "response" else "mu",
    )
    return Prediction(draws, _table(values, new, status, conditioned, design, prob), kind, groups, prob)


def _family_values(fam, eta, pd_: ParameterDraws, new_data, new: NewRows, kind: str, trials_col, rng,
                   design: Design):
    """Non-Gaussian families: the response mean ``E[y]`` per trial
    (:meth:`~hierbayes.spec.families.Family.fitted` without trials: a probability for the
    Bernoulli and binomial, a rate for count families, ``(1 - zi) mu`` for zero-inflated
    ones, ``exp(eta + sigma^2 / 2)`` for the lognormal, the expected category index of an
    ordinal family; a parameter formula evaluated on the new rows), its level probabilities
    (ordinal, (D, M, K)) or a draw of a new response (the binomial takes its trials from the
    new data's trials column)."""
    params = family_param_rows(pd_, design, new.dpars)
    if kind == "probabilities":
        return fam.probabilities(eta, params[names.CUTPOINTS])
    if kind == "mean":
        return fam.fitted(eta, params)
    trials = None
    if fam.needs_trials:
        if trials_col not in new_data.columns:
            raise KeyError(
                f"kind='response' for the {fam.name} family needs the trials column "
                f"{trials_col!r} in the new data."
            )
        trials = new_data[trials_col].to_numpy(dtype=float)
        if np.any(~np.isfinite(trials)) or np.any(trials < 0) or np.any(trials != np.round(trials)):
            raise ValueError(f"trials column {trials_col!r} of the new data must hold non-negative integers.")
        trials = trials[None, :]
    return fam.draw(rng, eta, params, trials)


def _probability_table(p, new: NewRows, status: dict, design: Design) -> pd.DataFrame:
    """Posterior mean probability of each level per new row, ``P(<level>)`` columns."""
    table = pd.DataFrame(p.mean(axis=0), index=new.row_labels,
                         columns=[f"P({lev})" for lev in design.response_levels])
    for name, s in status.items():
        table[f"re_{name}"] = s
    return table


def _table(values, new: NewRows, status: dict, conditioned, design: Design, prob: float) -> pd.DataFrame:
    lo, hi = (1 - prob) / 2, 1 - (1 - prob) / 2
    q = np.quantile(values, [lo, hi], axis=0)
    table = pd.DataFrame(
        {
            "mean": values.mean(axis=0),
            "sd": values.std(axis=0, ddof=1),
            f"q{100 * lo:g}%": q[0],
            f"q{100 * hi:g}%": q[1],
        },
        index=new.row_labels,
    )
    for name, s in status.items():
        table[f"re_{name}"] = s
    if design.correlation is not None:
        table["ar_conditioned"] = conditioned
    return table
