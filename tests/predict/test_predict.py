"""Predictions for new rows, checked on fake posteriors against hand computations from the
user's DataFrame (never from the Design), plus one small real fit on simulated data."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
from fake_fits import fake_fit, frame

import hierbayes as hb

def _post(fit, name, **sel):
    return fit.posterior[name].sel(**sel).stack(s=("chain", "draw")).transpose("s", ...).values


def _by_hand_mu(fit, new):
    """Intercept + x + arm[b] fixed part plus the cluster's (Intercept, x) random effects."""
    beta = _post(fit, "beta")
    X = np.column_stack([np.ones(len(new)), new["x"], (new["arm"] == "b").astype(float)])
    names = list(fit.posterior["coef"].values)
    assert names == ["Intercept", "x", "arm[b]"]
    mu = beta @ X.T
    b = np.stack([_post(fit, "b_id", id=lab) for lab in new["id"]], axis=1)  # (D, M, q)
    Z = np.column_stack([np.ones(len(new)), new["x"]])
    return mu + np.einsum("mq,dmq->dm", Z, b), beta @ X.T


def test_existing_cluster_mean_is_x_beta_plus_z_b():
    df = frame()
    fit = fake_fit(hb.Model("y ~ x + arm + (1 + x | id)", df))
    new = pd.DataFrame({"id": ["s3", "s0", "s3"], "x": [0.2, -1.0, 2.0], "arm": ["b", "a", "a"]},
                       index=[10, 11, 12])
    pred = fit.predict(new)
    full, fixed = _by_hand_mu(fit, new)
    got = pred.draws.stack(s=("chain", "draw")).transpose("s", "row").values
    np.testing.assert_allclose(got, full, rtol=1e-12, atol=1e-12)
    assert list(pred.table.index) == [10, 11, 12]
    assert (pred.table["re_id"] == "fitted").all()
    np.testing.assert_allclose(pred.table["mean"], full.mean(axis=0))
    assert {"sd", "q2.5%", "q97.5%"} <= set(pred.table.columns)
    # groups="none": the fixed part only, and no cluster column is needed
    none = fit.predict(new.drop(columns="id"), groups="none")
    np.testing.assert_allclose(none.draws.stack(s=("chain", "draw")).transpose("s", "row").values, fixed)
    assert (none.table["re_id"] == "none").all()


def test_new_cluster_draws_carry_the_random_effect_variance():
    """At fixed parameters the spread across draws is z'Sz for a new cluster's mean, plus
    sigma^2 for a new observation; a fitted cluster's mean does not vary."""
    df = frame()
    model = hb.Model("y ~ x + (1 + x | id)", df)
    sd, corr, sigma = np.array([0.8, 0.5]), np.array([[1.0, 0.4], [0.4, 1.0]]), 0.7
    S = np.outer(sd, sd) * corr
    fit = fake_fit(model, fixed={"beta": [0.3, 0.5], "sigma": sigma, "sd_id": sd, "corr_id": corr,
                                 "b_id": np.zeros((6, 2))}, chains=4, draws=2000)
    new = pd.DataFrame({"id": ["s2", "zz", "zz", "yy"], "x": [1.5, 1.5, -0.5, 1.5]})
    mean = fit.predict(new, seed=1)
    assert list(mean.table["re_id"]) == ["fitted", "new", "new", "new"]
    z = np.array([1.0, 1.5])
    v = z @ S @ z
    assert mean.table["sd"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    for i in (1, 3):
        assert mean.table["sd"].iloc[i] ** 2 == pytest.approx(v, rel=0.08)
    # rows of one new cluster share its effects: covariance z1' S z2; other clusters independent
    draws = mean.draws.stack(s=("chain", "draw")).transpose("s", "row").values
    z2 = np.array([1.0, -0.5])
    assert np.cov(draws[:, 1], draws[:, 2])[0, 1] == pytest.approx(z @ S @ z2, abs=0.05)
    assert abs(np.corrcoef(draws[:, 1], draws[:, 3])[0, 1]) < 0.06
    resp = fit.predict(new, kind="response", seed=2)
    assert resp.table["sd"].iloc[0] ** 2 == pytest.approx(sigma**2, rel=0.08)
    assert resp.table["sd"].iloc[1] ** 2 == pytest.approx(v + sigma**2, rel=0.08)
    # groups="new" treats a fitted label as a new cluster too
    as_new = fit.predict(new, groups="new", seed=3)
    assert (as_new.table["re_id"] == "new").all()
    assert as_new.table["sd"].iloc[0] ** 2 == pytest.approx(v, rel=0.08)


@pytest.mark.parametrize("corr", ["ar1", "car1"])
def test_ar_forecast_is_the_closed_form_conditional_mean(corr):
    df = frame(seed=4)
    if corr == "car1":
        df["time"] = df["time"] * 0.7 + 0.1
    structure = hb.AR1("time", "id") if corr == "ar1" else hb.CAR1("time", "id")
    fit = fake_fit(hb.Model("y ~ x + arm + (1 + x | id)", df, correlation=structure), seed=5)
    last = df.loc[df.groupby("id")["time"].idxmax()].set_index("id")
    step = 1.0 if corr == "ar1" else 0.45
    new = pd.DataFrame({"id": ["s1", "s4", "s4"], "x": [0.3, -0.2, 0.9], "arm": ["a", "b", "b"]})
    new["time"] = [last.loc["s1", "time"] + step, last.loc["s4", "time"] + step,
                   last.loc["s4", "time"] + 3 * step]
    pred = fit.predict(new)
    mu, _ = _by_hand_mu(fit, new)
    phi = _post(fit, "phi")
    # the last fitted residual of each cluster, from its row in the user's data
    e_last = {}
    for lab in ("s1", "s4"):
        row = last.loc[lab]
        fixed = _post(fit, "beta") @ np.array([1.0, row["x"], float(row["arm"] == "b")])
        b = _post(fit, "b_id", id=lab)
        e_last[lab] = row["y"] - fixed - b @ np.array([1.0, row["x"]])
    lag = (new["time"] - last.loc[new["id"], "time"].to_numpy()).to_numpy()
    expected = mu + np.column_stack(
        [np.sign(phi) ** lag[i] * np.abs(phi) ** lag[i] * e_last[lab] for i, lab in enumerate(new["id"])]
    )
    got = pred.draws.stack(s=("chain", "draw")).transpose("s", "row").values
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    assert pred.table["ar_conditioned"].all()
    # without the fitted clusters' residuals (groups="new") there is no AR forecast
    assert not fit.predict(new, groups="new").table["ar_conditioned"].any()


def test_ar_response_variance_and_interior_times():
    """A new observation one lag ahead has variance sigma^2 (1 - phi^(2 lag)); a missing
    occasion inside the series is interpolated from both neighbours (bridge formula)."""
    df = frame(seed=6)
    model = hb.Model("y ~ x + (1 | id)", df, correlation=hb.AR1("time", "id"))
    fit = fake_fit(model, fixed={"beta": [0.3, 0.5], "sigma": 0.9, "sd_id": [0.6], "phi": 0.6,
                                 "b_id": np.zeros((6, 1))}, chains=4, draws=2000)
    s1 = df[df["id"] == "s1"].set_index("time")  # times 0, 1, 3, 4
    new = pd.DataFrame({"id": ["s1", "s1"], "time": [6.0, 2.0], "x": [0.0, 0.0]})
    pred = fit.predict(new, kind="response", seed=0)
    e = s1["y"] - 0.3 - 0.5 * s1["x"]
    a = 0.6**2
    assert pred.table["sd"].iloc[0] ** 2 == pytest.approx(0.81 * (1 - a**2), rel=0.08)
    mean = fit.predict(new)
    assert mean.table["mean"].iloc[0] == pytest.approx(0.3 + a * e.loc[4.0], abs=1e-12)
    # bridge between times 1 and 3 (lags 1 and 1): mean phi (e1 + e3) / (1 + phi^2)
    bridge = 0.6 * (e.loc[1.0] + e.loc[3.0]) / (1 + 0.36)
    assert mean.table["mean"].iloc[1] == pytest.approx(0.3 + bridge, abs=1e-12)
    assert pred.table["sd"].iloc[1] ** 2 == pytest.approx(0.81 * (1 - 0.36) / (1 + 0.36), rel=0.08)


def test_new_level_of_a_fixed_categorical_is_an_error_naming_column_and_level():
    df = frame()
    fit = fake_fit(hb.Model("y ~ x + arm + (1 + x | id)", df))
    new = pd.DataFrame({"id": ["s1"], "x": [0.0], "arm": ["c"]})
    with pytest.raises(ValueError, match=r"column 'arm' has level\(s\) \['c'\]"):
        fit.predict(new)
    with pytest.raises(KeyError, match=r"\['x'\]"):
        fit.predict(pd.DataFrame({"id": ["s1"], "arm": ["a"]}))
    with pytest.raises(ValueError, match="missing values"):
        fit.predict(pd.DataFrame({"id": ["s1"], "x": [np.nan], "arm": ["a"]}))
    with pytest.raises(ValueError, match="kind must be"):
        fit.predict(new, kind="link")
    with pytest.raises(ValueError, match="groups must be"):
        fit.predict(new, groups="all")


def test_repeated_time_in_new_data_is_an_error():
    df = frame()
    fit = fake_fit(hb.Model("y ~ x + (1 | id)", df, correlation=hb.AR1("time", "id")))
    new = pd.DataFrame({"id": ["s1", "s1"], "time": [5.0, 5.0], "x": [0.0, 1.0]})
    with pytest.raises(ValueError, match="time 5 appears twice for cluster 's1'"):
        fit.predict(new)


def test_posterior_predictive_is_stored_for_arviz():
    import matplotlib

    matplotlib.use("Agg")
    df = frame()
    df.loc[3, "x"] = np.nan  # a dropped row: observed_data and the replicates skip it
    with pytest.warns(UserWarning, match="dropped 1"):
        model = hb.Model("y ~ x + (1 + x | id)", df, correlation=hb.AR1("time", "id"))
    fit = fake_fit(model)
    y_rep = fit.posterior_predictive(n_draws=40)
    pp = fit.idata.posterior_predictive["y"]
    assert pp.dims == ("chain", "draw", "obs")
    assert pp.sizes["chain"] == 2 and pp.sizes["draw"] == 20
    np.testing.assert_array_equal(pp["obs"].values, fit.idata.observed_data["obs"].values)
    assert y_rep.shape == (40, len(df)) and np.isnan(y_rep[:, 3]).all()
    fit.posterior_predictive(n_draws=10)  # replaces the stored group
    assert fit.idata.posterior_predictive.sizes["draw"] == 5
    az.plot_ppc(fit.idata, num_pp_samples=5)
