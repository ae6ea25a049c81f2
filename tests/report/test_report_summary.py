"""The printed summary: every number to the precision its Monte Carlo error supports."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from fake_fits import fake_fit, frame

import hierbayes as hb
from hierbayes.report.summary import format_table, mc_decimals, rhat_text, significant


def _fit(seed=0):
    """A fake fit whose sd(time | id)-like scalars have tiny Monte Carlo errors."""
    model = hb.Model("y ~ x + (1 | id)", frame(n_ids=6))
    fit = fake_fit(model, seed=seed, draws=400)
    rng = np.random.default_rng(seed)
    post = fit.idata.posterior
    post["beta"].values[..., 1] = rng.normal(2e-4, 1e-5, post["beta"].shape[:2])
    post["sigma"].values[...] = rng.normal(0.4060, 0.0183, post["sigma"].shape)
    return fit


def test_no_nonzero_value_prints_as_zero():
    s = _fit().summary()
    text = str(s)
    zeros = re.findall(r"(?<![\d.])-?0\.0+(?![\d.e])", text)
    assert not zeros, text
    row = format_table(s.table.drop(columns="section")).loc["x"]
    assert float(row["mean"]) == pytest.approx(s.table.loc["x", "mean"], rel=0.05)
    assert float(row["mcse_mean"]) == pytest.approx(s.table.loc["x", "mcse_mean"], rel=0.05)
    assert float(row["mcse_mean"]) > 0


def test_decimals_follow_the_monte_carlo_error():
    s = _fit().summary()
    row = s.table.loc["sigma (residual sd)"]
    dec = mc_decimals(row["mcse_mean"])
    printed = format_table(s.table.drop(columns="section")).loc["sigma (residual sd)", "mean"]
    assert len(printed.split(".")[1]) == dec
    # the table keeps unrounded values: rounding is for printing only
    assert row["mean"] != round(row["mean"], 4)


def test_formatters():
    t = pd.DataFrame({"mean": [0.40603, 2e-5], "sd": [0.18297, 1e-6], "hdi_3%": [0.094, 1.8e-5],
                      "mcse_mean": [0.00496, 3.1e-8], "ess_bulk": [1533.4, 800.0],
                      "r_hat": [1.0104, 1.0003]}, index=["a", "b"])
    out = format_table(t, rhat_max=1.01)
    assert out.loc["a"].tolist() == ["0.406", "0.183", "0.094", "0.0050", "1533", "1.0104"]
    assert out.loc["b", "mean"] == "2.0000e-05" or float(out.loc["b", "mean"]) == pytest.approx(2e-5)
    assert out.loc["b", "mcse_mean"] == "3.1e-08"
    assert out.loc["b", "r_hat"] == "1.000"
    assert significant(0.0) == "0" and significant(-0.004962) == "-0.0050"
    assert rhat_text(1.013, 1.01) == "1.013" and rhat_text(1.0099, 1.01) == "1.010"
    assert mc_decimals(float("nan")) is None
