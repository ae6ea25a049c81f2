"""Per-factor centring of sampled random effects: the rule, the override, its errors, the
models it builds (same posterior either way) and what the summary reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.backend import centring


def _crossed(n_s: int, n_i: int, sd_s: float, sd_i: float, sigma: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"s": np.repeat(np.arange(n_s), n_i), "i": np.tile(np.arange(n_i), n_s)})
    df["x"] = rng.normal(size=len(df))
    df["y"] = (0.5 * df.x + rng.normal(0, sd_s, n_s)[df.s] + rng.normal(0, sd_i, n_i)[df.i]
               + rng.normal(0, sigma, len(df)))
    return df


def test_precision_ratio_is_n_sb2_over_sw2():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(400), 10)
    r = rng.normal(0, 0.5, 400)[g] + rng.normal(0, 1.0, g.size)
    assert centring.precision_ratio(r, g, 400) == pytest.approx(10 * 0.25, rel=0.25)
    # no spread between levels: the excess is floored at 0
    assert centring.precision_ratio(rng.normal(size=g.size), g, 400) < 0.3
    # one row per level, or constant residuals: not estimable
    assert np.isnan(centring.precision_ratio(np.arange(5.0), np.arange(5), 5))
    assert np.isnan(centring.precision_ratio(np.ones(20), np.repeat(np.arange(4), 5), 4))


def test_rule_centres_data_rich_factors_and_not_sparse_ones():
    # items: 200 rows each, sd 0.5 vs sigma 1: ratio ~50 -> centred; subjects: 4 rows
    # each with a small spread (0.3 vs 1): ratio ~0.36 -> non-centred
    df = _crossed(200, 4, 0.3, 0.5, 1.0)
    c = hb.Model("y ~ x + (1 | s) + (1 | i)", df, backend="latent").centering
    assert set(c) == {"s", "i"}
    assert c["i"].centered and c["i"].ratio > 10
    assert not c["s"].centered and c["s"].ratio < 1
    assert c["s"].source == "rule" and c["s"].describe().startswith("non-centred (median")


def test_a_weakly_identified_slope_keeps_a_factor_non_centred():
    """40 rows per subject: the intercept is data-rich (ratio ~26), but the slope on a
    two-level condition (+-0.5) with sd 0.2 is not (ratio 40 * 0.25 * 0.04 = 0.4)."""
    rng = np.random.default_rng(5)
    S, n = 300, 40
    g = np.repeat(np.arange(S), n)
    c = np.where(rng.random(S * n) < 0.5, -0.5, 0.5)
    y = rng.normal(0, 0.8, S)[g] + rng.normal(0, 0.2, S)[g] * c + rng.normal(size=S * n)
    df = pd.DataFrame({"g": g, "c": c, "y": y})
    ratio_intercept = centring.precision_ratio(y - y.mean(), g, S)
    assert ratio_intercept > 10
    m = hb.Model("y ~ c + (1 + c | g)", df, backend="latent")
    assert not m.centering["g"].centered
    assert 0.2 < m.centering["g"].ratio < 0.8


def test_non_gaussian_families_need_a_larger_ratio():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(100), 30)
    eta = rng.normal(0, 0.5, 100)[g]
    df = pd.DataFrame({"g": g, "y": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int)})
    c = hb.Model("y ~ 1 + (1 | g)", df, family="bernoulli", backend="latent").centering["g"]
    # 30 rows x p(1-p) 0.25 x sd^2 0.25: ratio ~1.9, centred for a Gaussian, not here
    assert 1.0 < c.ratio < centring.THRESHOLD_NON_GAUSSIAN and not c.centered


def test_only_sampled_factors_are_parameterised():
    df = _crossed(30, 8, 1.0, 0.5, 1.0)
    assert hb.Model("y ~ x + (1 | s)", df).centering == {}  # integrated out
    m = hb.Model("y ~ x + (1 | s) + (1 | i)", df)  # marginal: s collapsed, i sampled
    assert m.backend == "marginal" and set(m.centering) == {"i"}


def test_user_override_and_its_errors():
    df = _crossed(30, 8, 1.0, 0.5, 1.0)
    m = hb.Model("y ~ x + (1 | s) + (1 | i)", df, backend="latent", centered={"s": False})
    assert m.centering["s"] == centring.Centering(False, m.centering["s"].ratio, "user")
    assert m.centering["s"].describe() == "non-centred (as given)"
    with pytest.raises(ValueError, match="names no sampled grouping factor: the model's grouping factors are"):
        hb.Model("y ~ x + (1 | s)", df, backend="latent", centered={"subject": True})
    with pytest.raises(ValueError, match="its effects are integrated out"):
        hb.Model("y ~ x + (1 | s) + (1 | i)", df, centered={"s": True})
    with pytest.raises(ValueError, match="must be True or False"):
        hb.Model("y ~ x + (1 | s)", df, backend="latent", centered={"s": "yes"})
    with pytest.raises(TypeError, match="dict of factor name to bool"):
        hb.Model("y ~ x + (1 | s)", df, backend="latent", centered=True)


def test_centred_and_non_centred_models_hold_the_same_random_effects():
    df = _crossed(12, 6, 1.0, 0.5, 1.0)
    df["t"] = np.tile(np.arange(6), 12) / 5.0
    f = "y ~ x + (1 + t | s) + (1 | i)"
    cen = hb.Model(f, df, backend="latent", centered={"s": True, "i": True}).build()
    non = hb.Model(f, df, backend="latent", centered={"s": False, "i": False}).build()
    assert {"b_s", "b_i"} <= {v.name for v in cen.free_RVs}
    assert {"z_s", "z_i"} <= {v.name for v in non.free_RVs}
    assert {"b_s", "b_i"} <= set(non.named_vars) and cen["b_s"].eval().shape == non["b_s"].eval().shape


def test_centred_fit_matches_non_centred_fit_and_is_reported():
    df = _crossed(40, 6, 0.8, 0.6, 1.0, seed=3)
    fits = [hb.Model("y ~ x + (1 | s) + (1 | i)", df, backend="latent", centered={"s": c, "i": c})
            .fit(draws=400, tune=400, chains=2, seed=2, progressbar=False) for c in (True, False)]
    a, b = (f.summary().table for f in fits)
    for label in ("x", "sd(Intercept | s)", "sd(Intercept | i)", "sigma (residual sd)"):
        se = np.hypot(a.loc[label, "mcse_mean"], b.loc[label, "mcse_mean"])
        assert abs(a.loc[label, "mean"] - b.loc[label, "mean"]) < 5 * se + 0.02, label
    assert "Sampled effects: s centred (as given); i centred (as given)" in str(fits[0].summary())


def test_a_cached_hybrid_model_refits_with_new_data():
    """The compiled hybrid graph prunes the AR layout arrays of a model without
    correlation; a refit with new values must not pass them back (nutpie refuses them)."""
    df = _crossed(20, 6, 1.0, 0.5, 1.0)
    priors = {"sigma": hb.Prior("HalfNormal", sigma=2), "sd_s": hb.Prior("HalfNormal", sigma=2),
              "sd_i": hb.Prior("HalfNormal", sigma=2), "Intercept": hb.Prior("Normal", mu=0, sigma=2),
              "beta": hb.Prior("Normal", mu=0, sigma=2)}
    hits = []
    for shift in (0.0, 1.0):
        data = df.assign(y=df.y + shift * (df.s == 0))
        fit = hb.Model("y ~ x + (1 | s) + (1 | i)", data, priors=priors).fit(
            draws=50, tune=50, chains=1, seed=1, progressbar=False)
        hits.append(fit.timing["cache_hit"])
    assert hits == [False, True]
