"""nlme-like summary tables of a fit: fixed effects, variance components, residual sd, phi."""

from __future__ import annotations

import html

import arviz as az
import pandas as pd

from hierbayes import names
from hierbayes.criticism.sensitivity import hyperparameters

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
        ``sd``, the HDI bounds, ``mcse_mean``, ``ess_bulk``, ``ess_tail``, ``r_hat``.

    Examples
    --------
    >>> parameter_table(fit.idata, fit.design).index[0]  # doctest: +ELLIPSIS
    'Intercept'
    """
    section = {h.label: h.section for h in names.hyperparameters(design)}
    table = az.summary(hyperparameters(idata, design), hdi_prob=hdi_prob, kind="all")
    table.insert(0, "section", [section[label] for label in table.index])
    hdi_cols = [c for c in table.columns if c.startswith("hdi_")]
    return table[["section", "mean", "sd", *hdi_cols, "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]]


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
        df = df.copy()
        for c in ("ess_bulk", "ess_tail"):
            df[c] = df[c].round().astype("Int64")
        return df.to_string(float_format=lambda x: f"{x:.4f}")

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
        fmt = {"float_format": lambda x: f"{x:.4f}"}
        return (
            f"<div class='hierbayes-summary'>{head}"
            f"<h4>Random effects and residual</h4>{self.variance.to_html(**fmt)}"
            f"<h4>Fixed effects</h4>{self.fixed.to_html(**fmt)}{foot}</div>"
        )
