"""Reporting: per-cluster OLS, cluster coefficients, shrinkage, diagnostics, residuals,
figures and a self-contained HTML report.

Small functions over a fit's :class:`arviz.InferenceData` and its
:class:`~hierbayes.design.Design`, returning DataFrames, xarray objects or matplotlib
figures.
"""

from __future__ import annotations

from .coefficients import (
    absorption_matrix,
    cluster_coefficient_draws,
    cluster_coefficients,
    hdi_bounds,
)
from .diagnostics import diagnose, hyper_posterior, verdict_lines
from .html import write_report
from .ols import cluster_ols
from .plots import (
    plot_ppc_density,
    plot_shrinkage_arrows,
    plot_shrinkage_densities,
    rank_plot,
    trace_plot,
)
from .residuals import (
    ppc_lag1_autocorr,
    residual_summary,
    standardized_residuals,
    within_group_residuals,
)
from .shrinkage import shrinkage_by_size, shrinkage_frame, shrinkage_table
from .within import FixedVsRandom, fixed_vs_random, within_estimator

__all__ = [
    "absorption_matrix",
    "cluster_coefficient_draws",
    "cluster_coefficients",
    "cluster_ols",
    "diagnose",
    "hdi_bounds",
    "hyper_posterior",
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
    "verdict_lines",
    "within_group_residuals",
    "write_report",
    "FixedVsRandom",
    "fixed_vs_random",
    "within_estimator",
]
