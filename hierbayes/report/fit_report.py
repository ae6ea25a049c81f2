"""The report of a fit: summary, diagnostics verdicts, shrinkage, residuals, PPC, figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hierbayes.predict.predictive import effects_posterior, posterior_predictive
from hierbayes.report.diagnostics import verdict_lines
from hierbayes.report.html import write_report
from hierbayes.report.plots import (
    plot_caterpillar, plot_ppc, plot_shrinkage_arrows, plot_shrinkage_densities, ppc_caption,
    rank_plot, trace_plot,
)
from hierbayes.report.residuals import (
    censored_rows_note, ppc_lag1_autocorr, residual_summary, within_group_residuals,
)
from hierbayes.report.ols import cluster_ols
from hierbayes.report.shrinkage import shrinkage_frame, shrinkage_table
from hierbayes import names


def ppc_lag1(fit, y_rep: np.ndarray) -> pd.Series:
    """Posterior predictive check of the lag-1 within-cluster autocorrelation of residuals
    (y minus the fixed part): observed value, replicated mean and the tail probability."""
    d = fit.design
    beta = fit.posterior["beta"].mean(("chain", "draw")).values
    fixed = d.X @ beta
    obs = float(ppc_lag1_autocorr(d.y - fixed, d))
    rep = ppc_lag1_autocorr(y_rep - fixed[None], d)
    return pd.Series(
        {"observed": obs, "replicated mean": float(rep.mean()), "P(rep >= obs)": float((rep >= obs).mean())},
        name="lag-1 autocorrelation",
    )


def loo_table(fit) -> tuple[pd.DataFrame | None, str | None]:
    """PSIS-LOO of ``fit`` as a one-row table (ELPD, its se, p_loo, unit, Pareto k counts),
    or None and the reason when the fit has no pointwise log-likelihood (a latent AR
    process, whose draws are not kept)."""
    from hierbayes.criticism.comparison import loo

    try:
        res = loo(fit)
    except (ValueError, NotImplementedError) as err:
        return None, str(err)
    row = {"elpd_loo": res.elpd_loo, "se": res.se, "p_loo": res.p_loo,
           "units": res.n_units, "left out": res.unit}
    row.update(res.k_counts().to_dict())
    return pd.DataFrame([row], index=["PSIS-LOO"]), None


def write_fit_report(fit, out_dir, n_ppc: int = 200, seed: int = 0) -> Path:
    """Write a self-contained HTML report (and PNG figures) of ``fit`` into ``out_dir``:
    the summary with the diagnostics' verdicts, the diagnostics table, the PSIS-LOO table,
    residual and shrinkage tables, shrinkage and posterior predictive figures, a caterpillar
    plot of every factor's random effects, trace and rank plots of the hyperparameters.

    Examples
    --------
    >>> fit.report("report/")   # doctest: +SKIP
    """
    d = fit.design
    diag = fit.diagnose()
    text = str(fit.summary()) + "\n\n" + verdict_lines(diag)
    tables: dict[str, pd.DataFrame] = {"Diagnostics": diag}
    figures = {}
    loo, why_not = loo_table(fit)
    if loo is not None:
        tables["Leave-one-out cross-validation (PSIS-LOO)"] = loo
    else:
        text += f"\n\nPSIS-LOO not available: {why_not}"
    with_b = effects_posterior(fit.idata)
    if d.groups and all(names.effects(g.name) in with_b for g in d.groups):
        resid = within_group_residuals(fit.idata, d)
        note = censored_rows_note(d)
        title = "Standardized within-group residuals" + ("" if note is None else f" ({note})")
        tables[title] = residual_summary(resid).to_frame().T
        try:
            ols = cluster_ols(d)
        except NotImplementedError as err:  # ordinal: no per-cluster fits, and the reason
            ols = None
            text += f"\n\nShrinkage report left out: {err}"
        if ols is not None:
            text += f"\n\nPer-cluster (no pooling) estimates of the shrinkage report: {ols.attrs['method']}."
            frame = shrinkage_frame(fit.idata, d, ols=ols)
            tables["Shrinkage towards the population (per term)"] = shrinkage_table(fit.idata, d, frame=frame)
            figures["By-group OLS and mixed-model cluster coefficients"] = plot_shrinkage_densities(frame)
            figures["Per-cluster shrinkage: OLS estimate to posterior mean"] = plot_shrinkage_arrows(frame)
        y_rep = posterior_predictive(fit.idata, d, n_draws=n_ppc, seed=seed)
        family = d.spec.family.name
        levels = {"levels": d.response_levels} if d.response_levels else {}
        figures[ppc_caption(family)] = plot_ppc(d.y, y_rep, family, **levels)
        if d.correlation is not None:
            tables["Posterior predictive check: lag-1 residual autocorrelation"] = ppc_lag1(fit, y_rep).to_frame().T
    for g in d.groups:
        if names.effects(g.name) in with_b:
            figures[f"Random effects of {g.name}: posterior means and 94% intervals"] = (
                plot_caterpillar(fit.idata, g.name))
    figures["Trace plots of the hyperparameters"] = trace_plot(fit.idata, compact=True)
    figures["Rank plots of the hyperparameters"] = rank_plot(fit.idata)
    return write_report(out_dir, text, tables, figures, title=f"hierbayes: {d.spec.formula}")
