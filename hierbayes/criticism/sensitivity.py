"""Power-scaling prior sensitivity (Kallioinen et al. 2024), as priorsense does for brms.

The prior (top-level priors only, :mod:`hierbayes.criticism.logprior`) or the likelihood
(:mod:`hierbayes.criticism.loglik`) is raised to a power ``alpha`` near 1 and the posterior draws
are reweighted by Pareto-smoothed importance sampling; the change of each marginal
posterior (cumulative Jensen-Shannon distance per unit log-alpha) is its sensitivity.
Nothing is refitted. arviz-stats computes the diagnostic (:func:`arviz_stats.psense_summary`);
this module hands it the hyperparameters under the summary table's labels.

Reading the diagnosis (arviz-stats' rule, threshold 0.05 by default): prior sensitivity
above the threshold with likelihood sensitivity above it too is a *potential prior-data
conflict*; prior sensitivity alone is a *strong prior / weak likelihood* (the data say
little about that parameter beyond the prior).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from hierbayes.design.build import Design
from hierbayes import names


def hyperparameters(idata, design: Design) -> xr.Dataset:
    """The hyperparameters as scalar-per-draw variables named as in ``fit.summary()``.

    One variable per :func:`hierbayes.names.hyperparameters` entry whose posterior variable
    ``idata.posterior`` holds, in the summary's order: ``beta`` -> the coefficient labels,
    ``sd_<g>`` -> ``sd(term | g)``, the off-diagonal of ``corr_<g>`` -> ``corr(a, b | g)``,
    the family's parameters, ``phi`` and ``sd_ar`` by :data:`hierbayes.names.SCALAR_LABELS`
    (``sigma (residual sd)``, ...).

    Parameters
    ----------
    idata : arviz.InferenceData
        Or anything with a ``posterior`` Dataset (SBC passes the prior draws).
    design : Design

    Returns
    -------
    xarray.Dataset
        Variables with dims ``(chain, draw)`` only.

    Examples
    --------
    >>> list(hyperparameters(fit.idata, fit.design))[:2]  # doctest: +ELLIPSIS
    ['Intercept', 'time']
    """
    post = idata.posterior
    hypers = names.hyperparameters(design)
    return xr.Dataset({h.label: h.draws(post) for h in hypers if h.var in post})


def _sensitivity_data(fit) -> xr.DataTree:
    """A DataTree with the hyperparameters as posterior and the fit's log_prior and
    log_likelihood groups (computed and stored on the fit if missing)."""
    groups = fit.idata.groups()
    lp = fit.idata.log_prior if "log_prior" in groups else fit.log_prior()
    ll = fit.log_likelihood()
    return xr.DataTree.from_dict(
        {
            "posterior": hyperparameters(fit.idata, fit.design),
            "log_prior": xr.Dataset(lp) if not isinstance(lp, xr.Dataset) else lp,
            "log_likelihood": xr.Dataset(ll) if not isinstance(ll, xr.Dataset) else ll,
        }
    )


def prior_sensitivity(fit, threshold: float = 0.05, alphas=(0.99, 1.01)) -> pd.DataFrame:
    """Power-scaling sensitivity of every hyperparameter to the prior and the likelihood.

    Parameters
    ----------
    fit : Fit
    threshold : float
        Sensitivity above which a parameter is flagged (arviz-stats' default 0.05).
    alphas : (float, float)
        Power-scaling factors either side of 1 used for the derivative.

    Returns
    -------
    DataFrame
        Index: the summary's parameter labels; columns ``prior`` and ``likelihood``
        (sensitivities) and ``diagnosis`` (``"✓"``, ``"potential strong prior / weak
        likelihood"`` or ``"potential prior-data conflict"``).

    Notes
    -----
    Only the top-level priors are scaled (fixed effects, ``sigma``, ``sd_<g>``,
    ``corr_<g>``, ``phi``), not the random effects' ``N(0, S)``, as Kallioinen et al.
    recommend for hierarchical models. The likelihood is scaled per unit of
    :func:`hierbayes.criticism.loglik.log_likelihood` (clusters when residuals are correlated or
    the random effects are integrated out); power-scaling uses its sum, so the unit does
    not change the result.

    Examples
    --------
    >>> fit = model.fit(seed=1)                      # doctest: +SKIP
    >>> fit.prior_sensitivity()  # doctest: +SKIP
                             prior  likelihood diagnosis
    Intercept                0.001       0.087         ✓
    """
    from arviz_stats import psense_summary

    data = _sensitivity_data(fit)
    return psense_summary(data, threshold=threshold, alphas=alphas, round_to=4)


def power_scaled_moments(fit, alphas=(0.5, 0.67, 0.8, 0.9, 1.0, 1.11, 1.25, 1.5, 2.0)) -> pd.DataFrame:
    """Importance-weighted posterior mean and sd of each hyperparameter when the prior or
    the likelihood is raised to the power ``alpha`` (Pareto-smoothed weights, no refit).

    Returns
    -------
    DataFrame
        Columns ``component`` (``"prior"``/``"likelihood"``), ``alpha``, ``parameter``,
        ``mean``, ``sd``, ``pareto_k`` (reliability of the weights; above 0.7 the
        reweighted moments are not trustworthy).

    Examples
    --------
    >>> power_scaled_moments(fit).query("component == 'prior'")  # doctest: +SKIP
    """
    import arviz_stats  # noqa: F401  (registers the .azstats accessor)

    data = _sensitivity_data(fit)
    post = data["posterior"].to_dataset()
    params = list(post.data_vars)
    draws = np.stack([post[n].values.ravel() for n in params], axis=1)  # (S, P)
    rows = []
    for comp, group in (("prior", "log_prior"), ("likelihood", "log_likelihood")):
        ds = data[group].to_dataset()
        total = sum(
            ds[v].sum([d for d in ds[v].dims if d not in ("chain", "draw")]) for v in ds.data_vars
        )
        for a in alphas:
            if a == 1.0:
                w, k = np.full(draws.shape[0], 1.0 / draws.shape[0]), 0.0
            else:
                lw = total.azstats.power_scale_lw(alpha=a, dim=["chain", "draw"]).values.ravel()
                w = np.exp(lw - lw.max())
                w /= w.sum()
                k = _pareto_k((a - 1.0) * total.values.ravel())
            mean = w @ draws
            sd = np.sqrt(np.maximum(w @ (draws - mean) ** 2, 0.0))
            for n, m, s in zip(params, mean, sd):
                rows.append({"component": comp, "alpha": a, "parameter": n,
                             "mean": m, "sd": s, "pareto_k": k})
    return pd.DataFrame(rows)


def _pareto_k(log_weights: np.ndarray) -> float:
    """Pareto shape of the upper tail of importance ratios (PSIS diagnostic)."""
    from arviz_stats.base.array import array_stats

    _, k = array_stats.psislw(log_weights[None, :], axis=-1)
    return float(np.asarray(k).ravel()[0])


def plot_prior_sensitivity(fit, table: pd.DataFrame | None = None, ncols: int = 4) -> Figure:
    """How each hyperparameter's posterior mean (+- 1 sd) moves when the prior (purple) or
    the likelihood (green) is power-scaled by alpha in [0.5, 2]; panel titles carry the
    psense diagnosis.

    Parameters
    ----------
    fit : Fit
    table : DataFrame, optional
        The result of :func:`prior_sensitivity` (computed if not given).
    ncols : int

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> plot_prior_sensitivity(fit).savefig("psense.png")   # doctest: +SKIP
    """
    table = prior_sensitivity(fit) if table is None else table
    mom = power_scaled_moments(fit)
    params = list(dict.fromkeys(mom["parameter"]))
    nrows = int(np.ceil(len(params) / ncols))
    fig = Figure(figsize=(3.4 * ncols, 2.6 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    colors = {"prior": "#7570b3", "likelihood": "#1b9e77"}
    for ax, n in zip(axes, params):
        for comp, c in colors.items():
            m = mom[(mom.parameter == n) & (mom.component == comp)].sort_values("alpha")
            ax.plot(m.alpha, m["mean"], "o-", color=c, ms=3, label=comp)
            ax.fill_between(m.alpha, m["mean"] - m["sd"], m["mean"] + m["sd"], color=c, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xticks([0.5, 1, 2], ["0.5", "1", "2"])
        ax.xaxis.set_minor_formatter(NullFormatter())
        diag = table.loc[n, "diagnosis"] if n in table.index else ""
        flag = "" if diag in ("✓", "") else "\n" + diag.replace("potential ", "")
        ax.set_title(f"{n}{flag}", fontsize=8, color="black" if not flag else "#d95f02")
    for ax in axes[len(params):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    fig.supxlabel("power-scaling alpha")
    fig.suptitle("Power-scaling sensitivity: posterior mean +- sd")
    return fig
