"""Prior predictive checks: data sets drawn from the priors, against the observed data.

Hyperparameters are drawn from their priors (:func:`hierbayes.backend.prior.draw_hyperparameters`),
the random effects from ``N(0, S)`` given each draw, and the response from the model's
likelihood (with its AR(1)/CAR(1) residual correlation) on the model's own design, so
every simulated data set has the observed layout; a censored model's draws are censored
row by row as the data are (:func:`hierbayes.predict.predictive.censored_replicates`). A
few summary statistics of each simulated data set are compared with the observed ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from hierbayes.design.build import Design
from hierbayes.predict.predictive import (
    ParameterDraws, censored_replicates, correlation_parameter, fitted_draws,
)
from hierbayes.likelihood.recover import covariance_cholesky
from hierbayes import names

#: readable names of the statistics of :func:`summary_statistics`
STATISTICS = {
    "mean": "mean of y",
    "sd": "sd of y",
    "lag1_autocorr": "within-cluster lag-1 autocorrelation",
    "between_sd": "between-cluster sd of cluster means",
}


def _cluster_index(design: Design) -> np.ndarray | None:
    """Cluster of each design row: the residual-correlation cluster, else the first factor."""
    if design.layout is not None:
        idx = np.empty(design.n, dtype=int)
        for c in range(design.layout.n_clusters):
            idx[design.layout.pos[c, design.layout.mask[c]]] = c
        return idx
    if design.groups:
        return np.asarray(design.groups[0].index)
    return None


def _consecutive_pairs(design: Design) -> tuple[np.ndarray, np.ndarray]:
    """Design rows (previous, next) of consecutive observations within a cluster, in time
    order when the model has a residual correlation, else in the design's row order."""
    lay = design.layout
    if lay is not None:
        both = lay.mask[:, 1:] & lay.mask[:, :-1]
        return lay.pos[:, :-1][both], lay.pos[:, 1:][both]
    idx = _cluster_index(design)
    if idx is None:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    order = np.argsort(idx, kind="stable")
    same = idx[order][1:] == idx[order][:-1]
    return order[:-1][same], order[1:][same]


def summary_statistics(y: np.ndarray, design: Design) -> pd.DataFrame:
    """Summary statistics of data sets ``y`` (D, N) laid out as ``design``'s rows.

    Parameters
    ----------
    y : ndarray, shape (D, N) or (N,)
        Responses in design row order.
    design : Design

    Returns
    -------
    DataFrame
        One row per data set, columns ``mean``, ``sd``, ``lag1_autocorr`` (Pearson
        correlation of consecutive observations within a cluster, random effects
        included), ``between_sd`` (sd over clusters of the cluster means). The last two are
        NaN without a grouping factor.

    Examples
    --------
    >>> stats = summary_statistics(model.design.y, model.design)
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    out = {"mean": y.mean(axis=1), "sd": y.std(axis=1)}
    prev, nxt = _consecutive_pairs(design)
    if prev.size > 1:
        a, b = y[:, prev], y[:, nxt]
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
        den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["lag1_autocorr"] = (a * b).sum(axis=1) / den
    else:
        out["lag1_autocorr"] = np.full(y.shape[0], np.nan)
    idx = _cluster_index(design)
    if idx is not None:
        n_c = int(idx.max()) + 1
        counts = np.bincount(idx, minlength=n_c)
        sums = np.stack([np.bincount(idx, weights=row, minlength=n_c) for row in y])
        out["between_sd"] = (sums / counts).std(axis=1)
    else:
        out["between_sd"] = np.full(y.shape[0], np.nan)
    return pd.DataFrame(out)


@dataclass
class PriorPredictive:
    """Draws from the prior predictive distribution of a model.

    Attributes
    ----------
    prior : xarray.Dataset
        Hyperparameter draws (dims ``draw``, ...): ``beta``, ``sigma``, ``sd_<g>``,
        ``corr_<g>``, ``phi``.
    y : ndarray, shape (draws, rows)
        Simulated responses in the user's row order (NaN for rows the model dropped).
    observed : ndarray, shape (rows,)
        The observed response in the user's row order.
    design : Design
    seed : int or None
    """

    prior: xr.Dataset
    y: np.ndarray
    observed: np.ndarray
    design: Design
    seed: int | None = None

    def statistics(self) -> pd.DataFrame:
        """Summary statistics of every simulated data set (see :func:`summary_statistics`)."""
        return summary_statistics(self.y[:, self.design.rows], self.design)

    def observed_statistics(self) -> pd.Series:
        """The same statistics of the observed data."""
        return summary_statistics(self.observed[self.design.rows], self.design).iloc[0]

    def compare(self) -> pd.DataFrame:
        """Observed statistic, prior predictive quantiles (5%, 50%, 95%) and the share of
        simulated data sets below the observed value, one row per statistic."""
        sim, obs = self.statistics(), self.observed_statistics()
        rows = {}
        for k in sim.columns:
            s = sim[k].to_numpy()
            s = s[np.isfinite(s)]
            if s.size == 0 or not np.isfinite(obs[k]):
                continue
            q5, q50, q95 = np.quantile(s, [0.05, 0.5, 0.95])
            rows[k] = {"observed": obs[k], "q5%": q5, "median": q50, "q95%": q95,
                       "p_below": float((s < obs[k]).mean())}
        return pd.DataFrame.from_dict(rows, orient="index")

    def plot(self, n_curves: int = 50, figsize=(15, 3.2)) -> Figure:
        """Prior predictive densities of y (``n_curves`` data sets) and histograms of the
        summary statistics, each against the observed data (black).

        Examples
        --------
        >>> pp = model.sample_prior_predictive(draws=500, seed=1)   # doctest: +SKIP
        >>> pp.plot().savefig("prior_predictive.png")              # doctest: +SKIP
        """
        from hierbayes.kde import kde

        sim, obs = self.statistics(), self.observed_statistics()
        stats = [k for k in STATISTICS if np.isfinite(obs[k])]
        fig = Figure(figsize=figsize, layout="constrained")
        axes = fig.subplots(1, 1 + len(stats))
        ax = axes[0]
        y_obs = self.observed[self.design.rows]
        ys = self.y[:, self.design.rows][:n_curves]
        lo, hi = np.nanquantile(np.concatenate([ys.ravel(), y_obs]), [0.01, 0.99])
        grid = np.linspace(lo, hi, 256)
        for row in ys:
            ax.plot(grid, kde(row, grid), color="#7570b3", alpha=0.25, lw=0.8)
        ax.plot(grid, kde(y_obs, grid), color="black", lw=2, label="observed")
        ax.plot([], [], color="#7570b3", label="prior predictive")
        ax.set_title("y")
        ax.legend(fontsize=7)
        for ax, k in zip(axes[1:], stats):
            s = sim[k].to_numpy()
            s = s[np.isfinite(s)]
            lo, hi = np.quantile(np.append(s, obs[k]), [0.01, 0.99])
            lo, hi = min(lo, obs[k]), max(hi, obs[k])
            ax.hist(np.clip(s, lo, hi), bins=40, range=(lo, hi), color="#7570b3", alpha=0.7)
            ax.axvline(obs[k], color="black", lw=2)
            ax.set_title(STATISTICS[k], fontsize=9)
            ax.set_yticks([])
        fig.suptitle(f"Prior predictive check ({self.y.shape[0]} draws; black: observed)")
        return fig


def sample_prior_predictive(
    design: Design, priors: dict, draws: int = 500, seed: int | None = None
) -> PriorPredictive:
    """Draw hyperparameters, random effects and responses from the prior.

    Parameters
    ----------
    design : Design
    priors : dict of str to Prior
    draws : int
        Number of simulated data sets.
    seed : int, optional

    Returns
    -------
    PriorPredictive

    Examples
    --------
    >>> pp = sample_prior_predictive(model.design, model.priors, draws=200, seed=1)  # doctest: +SKIP
    """
    from hierbayes.backend.prior import draw_hyperparameters

    if draws < 1:
        raise ValueError(f"draws must be a positive integer, got {draws}.")
    ss = np.random.SeedSequence(seed)
    seed_prior, seed_data = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
    prior = draw_hyperparameters(design, priors, draws, seed_prior)
    rng = np.random.default_rng(seed_data)
    b, chol = {}, {}
    for g in design.groups:
        sd = prior[names.sd(g.name)].transpose("draw", names.term_dim(g.name)).values
        key = names.corr(g.name)
        corr = (
            prior[key].transpose("draw", names.term_dim(g.name), f"{g.name}__term_bis").values
            if key in prior else None
        )
        chol[g.name] = covariance_cholesky(sd, corr)
        z = rng.standard_normal((draws, g.n_levels, g.q))
        b[g.name] = np.einsum("dqr,dnr->dnq", chol[g.name], z)
    # responses from the model's family, as the posterior predictive draws them
    extra = {k: prior[k].values for k in (*design.spec.family.extra_params, "sd_ar") if k in prior}
    coefs = {k: prior[names.dpar_coef(k)].transpose("draw", names.dpar_dim(k)).values
             for k in design.dpars}
    extra.update({k: design.dpars[k].rows(c) for k, c in coefs.items()})  # (draws, N)
    if names.SIGMA_OCC in prior:  # an sd per occasion: per row
        so = prior[names.SIGMA_OCC].transpose("draw", names.OCCASION_DIM).values
        extra.update({names.SIGMA_OCC: so, "sigma": so[:, design.occasion_index]})
    pd_ = ParameterDraws(
        beta=prior["beta"].transpose("draw", "coef").values,
        sigma=extra.get("sigma"),
        phi=correlation_parameter(prior, design,
                                   lambda n, *dims: prior[n].transpose("draw", *dims).values),
        b=b, chol=chol, chains=np.zeros(draws, dtype=int), draws=np.arange(draws),
        extra=extra, dpar_coefs=coefs,
    )
    y = censored_replicates(fitted_draws(pd_, design, rng), design)  # censored as the data are
    return PriorPredictive(
        prior=prior, y=design.to_user_order(y), observed=design.to_user_order(design.y),
        design=design, seed=seed,
    )
