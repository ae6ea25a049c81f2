"""hb.simulate: the data-generating process it draws from (moments of large simulations against
the model's own), seeds, row order, the forms of the model argument, and parameter errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.spec.formula import parse


def _panel(n_ids: int, times, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": np.repeat(np.arange(n_ids), len(times)), "t": np.tile(times, n_ids)})
    df["x"] = rng.normal(size=len(df))
    return df.sample(frac=1.0, random_state=seed)  # any row order, scrambled index


def _residual_matrix(sim: pd.DataFrame, beta: dict, times) -> np.ndarray:
    r = sim["y"] - beta["Intercept"] - beta["x"] * sim["x"]
    wide = sim.assign(r=r).pivot(index="id", columns="t", values="r")
    return wide[list(times)].to_numpy()


@pytest.mark.parametrize("phi", [0.7, -0.6])
def test_ar1_residual_correlation_with_gaps(phi):
    times = [0, 1, 3]  # lags 1, 2 and 3 within every cluster
    beta = {"Intercept": 1.0, "x": -0.5}
    sim = hb.simulate("y ~ x", _panel(6000, times), {"beta": beta, "sigma": 2.0, "phi": phi},
                      correlation=hb.AR1("t", "id"), seed=3)
    R = _residual_matrix(sim, beta, times)
    c = np.corrcoef(R, rowvar=False)
    se = 1 / np.sqrt(R.shape[0])
    assert abs(c[0, 1] - phi) < 4 * se and abs(c[1, 2] - phi**2) < 4 * se
    assert abs(c[0, 2] - phi**3) < 4 * se
    np.testing.assert_allclose(R.std(axis=0), 2.0, rtol=0.05)  # stationary: same sd at each time


def test_car1_correlation_decays_with_real_time_lags():
    times = [0.0, 0.5, 2.0]
    beta = {"Intercept": 0.0, "x": 1.0}
    phi = 0.6
    sim = hb.simulate("y ~ x", _panel(6000, times, seed=1), {"beta": beta, "sigma": 1.0, "phi": phi},
                      correlation=hb.CAR1("t", "id"), seed=4)
    c = np.corrcoef(_residual_matrix(sim, beta, times), rowvar=False)
    se = 1 / np.sqrt(6000)
    for (i, j), lag in {(0, 1): 0.5, (1, 2): 1.5, (0, 2): 2.0}.items():
        assert abs(c[i, j] - phi**lag) < 4 * se, (i, j, c[i, j], phi**lag)


def test_random_effects_have_the_given_covariance():
    times = np.arange(25.0)
    sd, rho = np.array([0.5, 0.25]), 0.3
    params = {"beta": {"Intercept": 0.2, "t": 0.1}, "sigma": 0.05, "sd_id": sd,
              "corr_id": np.array([[1.0, rho], [rho, 1.0]])}
    sim = hb.simulate("y ~ t + (1 + t | id)", _panel(3000, times), params, seed=5)
    # with a small residual sd, per-cluster OLS lines are the cluster coefficients
    coefs = np.array([np.polyfit(part["t"], part["y"], 1)[::-1] for _, part in sim.groupby("id")])
    assert np.all(np.abs(coefs.mean(axis=0) - [0.2, 0.1]) < 4 * sd / np.sqrt(3000))
    np.testing.assert_allclose(coefs.std(axis=0), sd, rtol=0.06)
    assert abs(np.corrcoef(coefs, rowvar=False)[0, 1] - rho) < 4 / np.sqrt(3000)


def test_seed_row_order_and_model_forms():
    layout = _panel(40, [0, 1, 2, 4], seed=2)
    params = {"beta": {"Intercept": 0.5, "x": 1.0}, "sigma": 1.0, "sd_id": [0.7], "phi": 0.4}
    ar = hb.AR1("t", "id")
    a = hb.simulate("y ~ x + (1 | id)", layout, params, correlation=ar, seed=8)
    b = hb.simulate("y ~ x + (1 | id)", layout, params, correlation=ar, seed=8)
    pd.testing.assert_frame_equal(a, b)
    c = hb.simulate("y ~ x + (1 | id)", layout, params, correlation=ar, seed=9)
    assert not np.allclose(a["y"], c["y"])
    # the user's rows, index and columns, untouched; the response added
    assert a.index.equals(layout.index)
    pd.testing.assert_frame_equal(a.drop(columns="y"), layout)
    # a parsed spec or a model give the same draws as the formula
    spec = parse("y ~ x + (1 | id)", correlation=ar)
    pd.testing.assert_frame_equal(hb.simulate(spec, layout, params, seed=8), a)
    model = hb.Model("y ~ x + (1 | id)", a, correlation=ar)
    pd.testing.assert_frame_equal(hb.simulate(model, layout, params, seed=8), a)
    with pytest.raises(ValueError, match="differs from the model's"):
        hb.simulate(spec, layout, params, correlation=hb.CAR1("t", "id"), seed=8)
    with pytest.raises(TypeError, match="formula, a ModelSpec"):
        hb.simulate(42, layout, params)


@pytest.mark.parametrize(
    "change, exc, msg",
    [
        ({"sd_id": None}, KeyError, r"params lack \['sd_id'\]"),
        ({"phi": None}, KeyError, r"params lack \['phi'\]"),
        ({"sd_ID": [1.0]}, KeyError, r"unknown names \['sd_ID'\]"),
        ({"sd_id": [0.5, 0.1]}, ValueError, r"sd_id needs 1 non-negative"),
        ({"sigma": 0.0}, ValueError, "sigma must be positive"),
        ({"phi": 1.2}, ValueError, r"phi must lie in \(-1, 1\)"),
        ({"corr_id": [[1.0, 0.2], [0.2, 1.0]]}, ValueError, "1 x 1 correlation matrix"),
        ({"beta": [1.0, 2.0, 3.0]}, ValueError, r"beta needs 2 values"),
        ({"beta": {"z": 1.0}}, KeyError, r"labels \['z'\]"),
    ],
)
def test_parameter_errors_name_the_parameter(change, exc, msg):
    params = {"beta": {"Intercept": 0.5, "x": 1.0}, "sigma": 1.0, "sd_id": [0.7], "phi": 0.4}
    params.update(change)
    params = {k: v for k, v in params.items() if v is not None}
    with pytest.raises(exc, match=msg):
        hb.simulate("y ~ x + (1 | id)", _panel(10, [0, 1, 2]), params, correlation=hb.AR1("t", "id"))
