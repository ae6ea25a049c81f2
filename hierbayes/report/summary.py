"""nlme-like summary tables of a fit: fixed effects, variance components, residual sd, phi."""

from __future__ import annotations

import html

import arviz as az
import numpy as np
import pandas as pd
from hierbayes import names

COLUMNS = ["mean", "sd", "hdi_3%", "hdi_97%", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]



def _rows(idata, var: str, labels: list[str], section: str, hdi_prob: float, sel=None):
    da = idata.posterior[var]
    if sel is not None:
        da = sel(da)
    s = az.summary(da.rename(var).to_dataset(), hdi_prob=hdi_prob, kind="all")
    s.index = labels
    s.insert(0, "section", section)
    return s


def parameter_table(idata, design, hdi_prob: float = 0.94) -> pd.DataFrame:
    """All hyperparameters in one table (index: readable labels; column ``section``)."""
    parts = []
    post = idata.posterior
    if "beta" in post:
        parts.append(_rows(idata, "beta", list(design.fixed_names), "fixed", hdi_prob))
    for g in design.groups:
        parts.append(
            _rows(idata, names.sd(g.name), [names.sd_label(t, g.name) for t in g.terms], "random", hdi_prob)
        )
        q = g.q
        if q > 1 and names.corr(g.name) in post:
            pairs = [(i, j) for i in range(q) for j in range(i)]
            tdim = names.term_dim(g.name)

            def sel(da, pairs=pairs, tdim=tdim):
                vals = np.stack([da.isel({tdim: i, names.bis(tdim): j}).values for i, j in pairs], -1)
                return da.isel({tdim: 0, names.bis(tdim): 0}).expand_dims(pair=len(pairs), axis=-1).copy(data=vals)

            labels = [names.corr_label(g.terms[j], g.terms[i], g.name) for i, j in pairs]
            parts.append(_rows(idata, names.corr(g.name), labels, "random", hdi_prob, sel))
    for name in design.spec.family.extra_params:
        if name in post:
            parts.append(_rows(idata, name, [names.label(name)], "residual", hdi_prob))
    for name in ("phi", "sd_ar"):
        if name in post:
            parts.append(_rows(idata, name, [names.label(name)], "correlation", hdi_prob))
    table = pd.concat(parts)
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
