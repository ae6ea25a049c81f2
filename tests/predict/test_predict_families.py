"""Prediction for non-Gaussian families, exact at fixed (fake) posterior draws."""

from __future__ import annotations

import numpy as np
import pytest

import hierbayes as hb
from fake_fits import fake_fit, frame


def _counts(seed=0):
    df = frame(seed)
    rng = np.random.default_rng(seed)
    df["y"] = rng.poisson(np.exp(0.2 + 0.5 * df["x"]))
    df["n"] = 6
    df["k"] = rng.binomial(6, 0.4, size=len(df))
    return df


def test_poisson_mean_is_the_rate_and_response_draws_are_counts():
    df = _counts()
    model = hb.Model("y ~ x + (1 | id)", df, family="poisson")
    L = model.design.groups[0].n_levels
    b = np.linspace(-0.4, 0.4, L)[:, None]
    fit = fake_fit(model, fixed={"beta": [0.2, 0.5], "sd_id": [0.5], "b_id": b}, draws=2000)
    new = df.head(4)
    mean = fit.predict(new, kind="mean")
    levels = list(model.design.groups[0].levels)
    want = np.exp(0.2 + 0.5 * new["x"].to_numpy() + b[[levels.index(i) for i in new["id"]], 0])
    np.testing.assert_allclose(mean.table["mean"].to_numpy(), want, rtol=1e-12)
    resp = fit.predict(new, kind="response", seed=1)
    y = resp.draws.values
    assert np.all(y == np.round(y)) and np.all(y >= 0)
    # Poisson: mean and variance equal the rate (4,000 draws: 5 standard errors)
    se = np.sqrt(want / y.shape[0] / y.shape[1])
    assert np.all(np.abs(y.mean(axis=(0, 1)) - want) < 5 * se)


def test_binomial_response_needs_trials_and_respects_them():
    df = _counts(1)
    model = hb.Model("k | trials(n) ~ x + (1 | id)", df, family="binomial")
    fit = fake_fit(model, fixed={"beta": [0.0, 0.3], "sd_id": [0.5],
                                 "b_id": np.zeros((model.design.groups[0].n_levels, 1))})
    new = df.head(3).copy()
    p = fit.predict(new, kind="mean").table["mean"].to_numpy()
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-0.3 * new["x"].to_numpy())), rtol=1e-12)
    new["n"] = [1, 3, 10]
    y = fit.predict(new, kind="response", seed=2).draws.values
    assert np.all(y <= np.array([1, 3, 10])) and np.all(y >= 0)
    with pytest.raises(KeyError, match="trials column 'n'"):
        fit.predict(new.drop(columns="n"), kind="response")


def test_latent_ar_prediction_for_counts_is_refused_plainly():
    df = _counts(2)
    model = hb.Model("y ~ x + (1 | id)", df, family="poisson", correlation=hb.AR1("time", "id"))
    fit = fake_fit(model)
    with pytest.raises(NotImplementedError, match="latent AR1 process"):
        fit.predict(df.head(2))
