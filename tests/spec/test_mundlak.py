"""Cluster-mean centring formula functions (Mundlak's within/between decomposition)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.spec.mundlak import cdev, cmean


def test_cmean_and_cdev_values_and_errors():
    x, g = np.array([1.0, 3.0, 10.0, 2.0]), np.array(["a", "a", "b", "b"])
    np.testing.assert_allclose(cmean(x, g), [2.0, 2.0, 6.0, 6.0])
    np.testing.assert_allclose(cdev(x, g), [-1.0, 1.0, 4.0, -4.0])
    with pytest.raises(ValueError, match="equal length"):
        cmean(x, g[:3])
    with pytest.raises(ValueError, match="cdev.*must be numeric"):
        cdev(np.array(["u", "v"]), np.array(["a", "b"]))


def test_formula_columns_use_the_rows_the_model_keeps():
    df = pd.DataFrame({"g": list("aabbcc"), "x": [1.0, 3.0, 10.0, np.nan, 4.0, 6.0],
                       "y": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]})
    with pytest.warns(UserWarning, match="dropped 1"):
        d = hb.Model("y ~ cmean(x, g) + cdev(x, g) + (1 | g)", df).design
    assert d.fixed_names == ("Intercept", "cmean(x, g)", "cdev(x, g)")
    user = d.to_user_order(d.X.T, axis=-1)
    np.testing.assert_allclose(user[1], [2, 2, 10, np.nan, 5, 5])
    np.testing.assert_allclose(user[2], [-1, 1, 0, np.nan, -1, 1])


def test_within_coefficient_recovers_the_slope_when_x_correlates_with_the_effect():
    rng = np.random.default_rng(21)
    C, n = 60, 6
    g = np.repeat(np.arange(C), n)
    u = rng.normal(0, 1.0, C)  # cluster effects
    x = (1.5 * u)[g] + rng.normal(size=C * n)  # cluster means of x follow the effects
    y = 2.0 + 0.5 * x + u[g] + rng.normal(0, 0.5, C * n)
    df = pd.DataFrame({"id": g, "x": x, "y": y})
    fit = hb.Model("y ~ cmean(x, id) + cdev(x, id) + (1 | id)", df).fit(
        draws=300, tune=300, chains=2, seed=3, progressbar=False
    )
    within = fit.posterior["beta"].sel(coef="cdev(x, id)").values.ravel()
    lo, hi = np.quantile(within, [0.005, 0.995])
    assert lo < 0.5 < hi and hi - lo < 0.3
    between = fit.posterior["beta"].sel(coef="cmean(x, id)").values.ravel()
    assert np.quantile(between, 0.01) > 0.7  # 0.5 + the effects' projection on x
    naive = hb.Model("y ~ x + (1 | id)", df).fit(
        draws=300, tune=300, chains=2, seed=3, progressbar=False
    )
    slope = naive.posterior["beta"].sel(coef="x").values.ravel()
    assert np.quantile(slope, 0.01) > 0.5  # the single slope mixes in the correlation
