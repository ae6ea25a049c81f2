"""Reporting: per-cluster OLS, cluster coefficients, shrinkage, diagnostics, residuals,
figures and a self-contained HTML report.

Small functions over a fit's :class:`arviz.InferenceData` and its
:class:`~hierbayes.design.build.Design`, returning DataFrames, xarray objects or matplotlib
figures.
"""

from __future__ import annotations

from hierbayes.report.coefficients import (
    absorption_matrix,
    cluster_coefficient_draws,
    cluster_coefficients,
    hdi_bounds,
)
from hierbayes.report.diagnostics import (
    Context,
    Diagnosis,
    chain_means,
    diagnose,
    hyper_posterior,
    verdict_lines,
)
from hierbayes.report.html import write_report
from hierbayes.report.ols import cluster_ols
from hierbayes.report.plots import (
    plot_caterpillar,
    plot_ppc,
    plot_ppc_bars,
    plot_ppc_density,
    plot_shrinkage_arrows,
    plot_shrinkage_densities,
    rank_plot,
    trace_plot,
    value_frequencies,
)
from hierbayes.report.residuals import (
    ppc_lag1_autocorr,
    residual_summary,
    standardized_residuals,
    within_group_residuals,
)
from hierbayes.report.shrinkage import shrinkage_by_size, shrinkage_frame, shrinkage_table
from hierbayes.report.within import FixedVsRandom, fixed_vs_random, within_estimator

__all__ = [
    "Context",
    "Diagnosis",
    "chain_means",
    "absorption_matrix",
    "cluster_coefficient_draws",
    "cluster_coefficients",
    "cluster_ols",
    "diagnose",
    "hdi_bounds",
    "hyper_posterior",
    "plot_caterpillar",
    "plot_ppc",
    "plot_ppc_bars",
    "plot_ppc_density",
    "plot_shrinkage_arrows",
    "plot_shrinkage_densities",
    "ppc_lag1_autocorr",
    "rank_plot",
    "residual_summary",
    "shrinkage_by_size",
    "shrinkage_frame",
    "shrinkage_table",
    "standardized_residuals",
    "trace_plot",
    "value_frequencies",
    "verdict_lines",
    "within_group_residuals",
    "write_report",
    "FixedVsRandom",
    "fixed_vs_random",
    "within_estimator",
]
