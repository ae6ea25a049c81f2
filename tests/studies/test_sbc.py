"""Simulation-based calibration: mechanics on two simulations (fast), the uniformity test
on known rank sets, and a small calibration run of a Gaussian AR(1) mixed model (slow)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.backend.prior import draw_hyperparameters
from hierbayes.studies.parallel import task_seeds
from hierbayes.studies.sbc import SBCResult

AR = hb.AR1(time="time", group="id")
PRIORS = {"sigma": hb.Prior("HalfNormal", sigma=1.0), "sd_id": hb.Prior("HalfNormal", sigma=1.0),
          "phi": hb.Prior("Uniform", lower=0.0, upper=0.9)}
LABELS = ["Intercept", "time", "sd(Intercept | id)", "sigma (residual sd)", "phi (AR(1) correlation)"]


def _model(n_ids: int, n_times: int) -> hb.Model:
    ids = np.repeat(np.arange(n_ids), n_times)
    df = pd.DataFrame({"id": ids, "time": np.tile(np.arange(n_times), n_ids)})
    df["y"] = np.random.default_rng(0).normal(size=len(df))  # replaced by each simulation
    return hb.Model("y ~ time + (1 | id)", df, correlation=AR, priors=PRIORS)


def test_sbc_mechanics_two_simulations():
    model = _model(15, 5)
    with ThreadPoolExecutor(1) as ex:  # in-process: the second fit reuses the compiled model
        res = hb.sbc(model, 2, executor=ex, seed=3, n_ranks=49, draws=100, tune=150)
    assert list(res.ranks.columns) == LABELS
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    r = res.ranks.to_numpy()
    assert r.shape == (2, 5) and np.all((r >= 0) & (r <= 49)) and np.all(r == np.round(r))
    # the truths are the prior draws made from the first spawned seed
    prior = draw_hyperparameters(model.design, model.priors, 2, task_seeds(3, 5)[0])
    np.testing.assert_allclose(res.truth["sigma (residual sd)"], prior["sigma"].values)
    np.testing.assert_allclose(res.truth["time"], prior["beta"].sel(coef="time").values)
    assert (res.fits.min_ess > 0).all()
    fig = res.plot()
    assert len([a for a in fig.axes if a.get_visible()]) == 5


def test_sbc_input_errors():
    model = _model(5, 3)
    with pytest.raises(ValueError, match="draws \\* chains = 40 is fewer than n_ranks = 99"):
        hb.sbc(model, 2, draws=20, chains=2)
    with pytest.raises(ValueError, match="n_sims"):
        hb.sbc(model, 0)


def _result(ranks: np.ndarray, n_ranks: int) -> SBCResult:
    df = pd.DataFrame({"a": ranks})
    return SBCResult(ranks=df, truth=df * 0.0, n_ranks=n_ranks, fits=pd.DataFrame())


def test_uniformity_test_accepts_uniform_and_rejects_peaked_ranks():
    rng = np.random.default_rng(0)
    uniform = _result(rng.integers(0, 100, size=400), 99)
    t = uniform.uniformity()
    assert t.loc["a", "bins"] == 20 and t.loc["a", "n"] == 400
    assert t.loc["a", "p_value"] > 0.01
    # an over-dispersed posterior puts the truth near the middle: peaked ranks
    peaked = _result(np.clip(rng.normal(50, 12, size=400).round(), 0, 99).astype(int), 99)
    assert peaked.uniformity().loc["a", "p_value"] < 1e-6
    # bin counts: ranks 0..99 into 10 bins of 10 values
    exact = _result(np.arange(100).repeat(2), 99)
    assert exact.uniformity(bins=10).loc["a", "chi2"] == 0.0
    with pytest.raises(ValueError, match="bins must divide"):
        exact.uniformity(bins=7)


@pytest.mark.slow
def test_sbc_gaussian_ar1_calibrated():
    res = hb.sbc(_model(20, 5), 40, seed=11, n_ranks=49, draws=250, tune=400, max_workers=2)
    assert res.fits.error.isna().all()
    test = res.uniformity(bins=5)
    assert (test.p_value > 0.001).all(), test


def test_sbc_runs_with_uncorrelated_terms():
    """`(1 + time || id)` has no corr_id: the simulation parameters must not ask for one."""
    ids = np.repeat(np.arange(12), 4)
    df = pd.DataFrame({"id": ids, "time": np.tile(np.arange(4), 12), "y": 0.0})
    df["y"] = np.random.default_rng(1).normal(size=len(df))
    model = hb.Model("y ~ time + (1 + time || id)", df,
                     priors={"sigma": hb.Prior("HalfNormal", sigma=1.0),
                             "sd_id": hb.Prior("HalfNormal", sigma=0.5)})
    with ThreadPoolExecutor(1) as ex:
        res = hb.sbc(model, 2, executor=ex, seed=5, n_ranks=19, draws=20, tune=100)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert {"sd(Intercept | id)", "sd(time | id)"} <= set(res.ranks.columns)
    assert not any(c.startswith("cor") for c in res.ranks.columns)


def test_refits_use_the_models_frozen_copy_of_the_data():
    """Editing the caller's DataFrame after hb.Model() changes no sweep/SBC refit."""
    from hierbayes.studies.parallel import FitTask

    df = pd.DataFrame({"id": np.repeat(np.arange(6), 3), "time": np.tile(np.arange(3), 6)})
    df["y"] = np.random.default_rng(2).normal(size=len(df))
    model = hb.Model("y ~ time + (1 | id)", df)
    y_before = model.design.y.copy()
    df["y"] = 100.0
    df.loc[0, "id"] = 99
    rebuilt = FitTask(inputs=model.inputs, priors=dict(model.priors), fit_kwargs={}, seed=0).build()
    np.testing.assert_array_equal(rebuilt.design.y, y_before)
    assert rebuilt.design.groups[0].n_levels == 6


# ------------------------------------------------------------------ censored models

CENS_PRIORS = {"Intercept": hb.Prior("Normal", mu=0, sigma=1), "x": hb.Prior("Normal", mu=0, sigma=1),
               "sd_g": hb.Prior("HalfNormal", sigma=0.5), "sigma": hb.Prior("HalfNormal", sigma=1.0)}


def _censored_model(n_g: int, n_per: int) -> hb.Model:
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"g": np.repeat(np.arange(n_g), n_per), "x": rng.normal(size=n_g * n_per)})
    df["y"] = rng.normal(size=len(df))  # replaced by each simulation
    df["c"] = np.where(df.y < -0.5, "left", "none")
    df["y"] = np.maximum(df.y, -0.5)
    return hb.Model("y | cens(c) ~ x + (1 | g)", df, priors=CENS_PRIORS)


def test_sbc_of_a_censored_model_censors_every_simulation():
    seen = []

    def limit(data):  # in-process (thread pool): a closure may record what it returns
        out = hb.DetectionLimit(lower=-0.5, response="y", indicator="c")(data)
        seen.append(out)
        return out

    with ThreadPoolExecutor(1) as ex:
        res = hb.sbc(_censored_model(8, 5), 2, executor=ex, seed=3, n_ranks=19, draws=30, tune=100,
                     censor=limit)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert {"Intercept", "x", "sigma (residual sd)"} <= set(res.ranks.columns)
    assert len(seen) == 3  # the first data set checked up front, then one per simulation
    for d in seen:
        assert d.y.min() == -0.5 and ((d.y == -0.5) == (d.c == "left")).all()
    assert not seen[1].y.equals(seen[2].y)  # each simulation its own data set


def test_sbc_of_a_censored_model_needs_the_censoring_process():
    model = _censored_model(4, 3)
    with pytest.raises(ValueError, match="needs censor=.*hb.DetectionLimit"):
        hb.sbc(model, 2)
    with pytest.raises(TypeError, match="hb.DetectionLimit"):
        hb.sbc(model, 2, censor={"lower": -0.5})
    with pytest.raises(TypeError, match="censor= must return a data frame of the 12"):
        hb.sbc(model, 2, censor=lambda d: d.head(3))
    with pytest.raises(KeyError, match=r"\['c'\]"):
        hb.sbc(model, 2, censor=lambda d: d.drop(columns="c"))
    with pytest.raises(ValueError, match="censor= is for a censored model"):
        hb.sbc(_model(5, 3), 2, censor=hb.DetectionLimit(lower=0.0))


@pytest.mark.slow
def test_sbc_censored_gaussian_calibrated():
    """About a third of the rows below the detection limit -0.5 (varies with the prior draw)."""
    res = hb.sbc(_censored_model(20, 6), 40, seed=13, n_ranks=49, draws=250, tune=400, max_workers=2,
                 censor=hb.DetectionLimit(lower=-0.5))
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert (res.uniformity(bins=5).p_value > 0.001).all(), res.uniformity(bins=5)
