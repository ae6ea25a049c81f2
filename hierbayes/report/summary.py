"""nlme-like summary tables of a fit: fixed effects, variance components, residual sd, phi."""

from __future__ import annotations

import html
import math

import arviz as az
import numpy as np
import pandas as pd

from hierbayes import names
from hierbayes.criticism.sensitivity import hyperparameters
from hierbayes.report.diagnostics import sampling_diagnostics

COLUMNS = ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]


def parameter_table(idata, design, hdi_prob: float = 0.94) -> pd.DataFrame:
    """All hyperparameters in one table (index: readable labels; column ``section``).

    Rows are :func:`hierbayes.names.hyperparameters` (those in the posterior, in that order),
    summarised by one :func:`arviz.summary` call over
    :func:`hierbayes.criticism.sensitivity.hyperparameters`.

    Parameters
    ----------
    idata : arviz.InferenceData
    design : Design
    hdi_prob : float
        Mass of the highest-density interval (columns ``hdi_<lower>%``, ``hdi_<upper>%``).

    Returns
    -------
    pandas.DataFrame
        Columns ``section`` (``fixed``, ``random``, ``residual``, ``correlation``), ``mean``,
        ``sd``, the HDI bounds, ``mcse_mean``, ``ess_bulk``, ``ess_tail``, ``r_hat``, all
        unrounded (rounding is for printing only: :func:`format_table`).

    Examples
    --------
    >>> parameter_table(fit.idata, fit.design).index[0]  # doctest: +ELLIPSIS
    'Intercept'
    """
    section = {h.label: h.section for h in names.hyperparameters(design)}
    hyper = hyperparameters(idata, design)
    table = az.summary(hyper, hdi_prob=hdi_prob, kind="stats", round_to="none")
    table = table.join(sampling_diagnostics(hyper))  # arviz-stats, as diagnose() reports them
    table.insert(0, "section", [section[label] for label in table.index])
    hdi_cols = [c for c in table.columns if c.startswith("hdi_")]
    return table[["section", "mean", "sd", *hdi_cols, "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]]


# --------------------------------------------------------------------------- printing

#: significant digits of a number whose Monte Carlo error is unknown (or zero)
SIGNIFICANT = 4


def significant(x: float, digits: int = 2) -> str:
    """``x`` to ``digits`` significant digits: fixed point from 1e-4 to 1e6, else
    scientific; integer digits are kept (``1533.2`` to 3 digits is ``1533``); never
    ``0.0000`` for a nonzero value.

    Examples
    --------
    >>> significant(0.004962), significant(0.00004216), significant(1533.2, 3), significant(0.0)
    ('0.0050', '4.2e-05', '1533', '0')
    """
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    lead = math.floor(math.log10(abs(x)))
    if -4 <= lead < 6:
        return f"{x:.{max(digits - 1 - lead, 0)}f}"
    return f"{x:.{digits - 1}e}"


def mc_decimals(mcse: float) -> int | None:
    """Decimals a posterior summary supports: those down to the leading digit of its
    Monte Carlo standard error (mcse 0.005 -> 3, 0.0004 -> 4, 0.02 -> 2, 3.1 -> 0); None
    when the error is zero or not finite.

    Examples
    --------
    >>> mc_decimals(0.0050), mc_decimals(0.00042), mc_decimals(3.1), mc_decimals(0.0)
    (3, 4, 0, None)
    """
    mcse = float(mcse)
    if not math.isfinite(mcse) or mcse <= 0:
        return None
    return max(-math.floor(math.log10(mcse)), 0)


def to_decimals(x: float, decimals: int | None) -> str:
    """``x`` with ``decimals`` decimals, or :data:`SIGNIFICANT` significant digits when
    that is None or would print a nonzero ``x`` as zero (the value is smaller than its
    Monte Carlo error's last digit)."""
    x = float(x)
    if decimals is None or not math.isfinite(x):
        return significant(x, SIGNIFICANT)
    out = f"{x:.{decimals}f}"
    if x != 0 and float(out) == 0:
        return significant(x, 2)
    return out


def rhat_text(r: float, threshold: float) -> str:
    """R-hat with 3 decimals, or 4 where 3 would hide which side of ``threshold`` it lies
    (1.0104 > 1.01 is printed ``1.0104``, not ``1.010``)."""
    r = float(r)
    if not math.isfinite(r):
        return str(r)
    out = f"{r:.3f}"
    if (r > threshold) != (float(out) > threshold):
        out = f"{r:.4f}"
    return out


def format_table(df: pd.DataFrame, rhat_max: float | None = None) -> pd.DataFrame:
    """The summary table as strings, every number to the precision it has.

    ``mean``, ``sd`` and the HDI bounds get the decimals their row's Monte Carlo SE
    supports (:func:`mc_decimals`); ``mcse_mean`` two significant digits; ESS whole
    numbers; ``r_hat`` three decimals (four where needed to show it exceeds ``rhat_max``).
    A nonzero value is never printed as zero.

    Parameters
    ----------
    df : pandas.DataFrame
        Rows of :func:`parameter_table` (any subset of its columns).
    rhat_max : float, optional
        Default :data:`hierbayes.report.diagnostics.THRESHOLDS` ``.rhat_max``.

    Returns
    -------
    pandas.DataFrame
        Same index and columns, string cells.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"mean": [0.40603], "sd": [0.18297], "mcse_mean": [0.00496],
    ...                   "ess_bulk": [1533.4], "r_hat": [1.00412]}, index=["sd(1 | id)"])
    >>> format_table(t).iloc[0].tolist()
    ['0.406', '0.183', '0.0050', '1533', '1.004']
    """
    if rhat_max is None:
        from hierbayes.report.diagnostics import THRESHOLDS

        rhat_max = THRESHOLDS.rhat_max
    out = pd.DataFrame(index=df.index, columns=df.columns, dtype=object)
    for label, row in df.iterrows():
        dec = mc_decimals(row["mcse_mean"]) if "mcse_mean" in row else None
        for col, x in row.items():
            out.loc[label, col] = _cell(col, x, dec, rhat_max)
    return out


def _cell(col: str, x, decimals: int | None, rhat_max: float) -> str:
    """One printed cell of :func:`format_table`."""
    if not isinstance(x, (int, float, np.number)) or isinstance(x, bool):
        return str(x)
    if not np.isfinite(x):
        return "NaN"
    if col.startswith("ess"):
        return f"{x:.0f}"
    if col == "r_hat":
        return rhat_text(x, rhat_max)
    if col.startswith("mcse"):
        return significant(x, 2)
    return to_decimals(x, decimals)


class Summary:
    """Summary of a fit: ``.table`` (all parameters), ``.fixed``, ``.variance``, header lines.

    ``str(summary)`` is an nlme-like print-out; in a notebook it renders as HTML.
    """

    def __init__(self, table: pd.DataFrame, header: list[str], footer: list[str]):
        self.table = table
        self.header = header
        self.footer = footer

    @property
    def fixed(self) -> pd.DataFrame:
        return self.table[self.table.section == "fixed"].drop(columns="section")

    @property
    def variance(self) -> pd.DataFrame:
        return self.table[self.table.section != "fixed"].drop(columns="section")

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def _fmt(self, df: pd.DataFrame) -> str:
        return format_table(df).to_string()

    def __str__(self) -> str:
        out = list(self.header)
        out += ["", "Random effects and residual:", self._fmt(self.variance)]
        out += ["", "Fixed effects:", self._fmt(self.fixed)]
        if self.footer:
            out += [""] + self.footer
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "".join(f"<div>{html.escape(h)}</div>" for h in self.header)
        foot = "".join(f"<div>{html.escape(f)}</div>" for f in self.footer)
        return (
            f"<div class='hierbayes-summary'>{head}"
            f"<h4>Random effects and residual</h4>{format_table(self.variance).to_html()}"
            f"<h4>Fixed effects</h4>{format_table(self.fixed).to_html()}{foot}</div>"
        )
