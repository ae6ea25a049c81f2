"""Several grouping factors (crossed, nested) and independent terms ``||``.

Exact checks (no sampling): the hybrid collapsed likelihood with the latent factors' offset
equals the dense multivariate normal, and the recovery of the collapsed factor conditions on
the offset. Sampling checks: the hybrid and the fully latent backend agree on crossed and
nested Gaussian models.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.likelihood import collapsed
from hierbayes.likelihood import recover
from hierbayes.spec.correlation import AR1

FIT = dict(draws=300, tune=300, chains=2, progressbar=False)


def _with_crossed_factor(ref, seed):
    rng = np.random.default_rng(seed)
    df = ref.random_frame(rng, n_clusters=6, max_size=5)
    df["h"] = rng.choice(["u", "v", "w"], size=len(df))
    return df, rng


@pytest.mark.parametrize("corr", [None, "ar1"])
def test_hybrid_loglik_with_offset_equals_dense(ref, corr):
    df, rng = _with_crossed_factor(ref, 4)
    m = hb.Model(
        "y ~ x + (1 + x | g) + (1 | h)", df,
        correlation=AR1("t", "g") if corr else None,
    )
    d = m.design
    assert m.backend == "marginal" and collapsed.collapsed_group(d).name == "g"
    cdata = collapsed.prepare(d)
    assert cdata.layout == "padded" and "pos" in cdata.arrays
    beta, sigma, phi = np.array([0.3, -0.4]), 1.1, (0.6 if corr else None)
    S = ref.random_spd(rng, 2)
    b_h = {"u": 0.7, "v": -0.2, "w": 0.4}
    off_rows = np.array([b_h[lev] for lev in np.asarray(d.group("h").levels)[d.group("h").index]])
    ll = collapsed.loglik_padded(
        np, cdata.arrays, cdata.corr, beta, sigma, phi, S, 2, offset=d.layout.pad(off_rows)
    ).sum()
    shifted = df.assign(y=df["y"] - df["h"].map(b_h))
    expected = ref.dense_marginal_loglik(shifted, ["1", "x"], ["1", "x"], beta, sigma, phi, S, corr)
    assert ll == pytest.approx(expected, abs=1e-8 * max(1, abs(expected)))
    model = m.build()
    assert {"z_h", "b_h"} <= {v.name for v in model.free_RVs + model.deterministics}
    assert "z_g" not in model.named_vars


def _potential(model, mode):
    """The model's (single) potential as a function of its value variables."""
    (pot,) = model.replace_rvs_by_values(model.potentials)
    return model.compile_fn(pot, inputs=model.value_vars, mode=mode, point_fn=False)


def test_hybrid_graph_equals_numpy_likelihood_with_offset(ref, fast_mode):
    df, rng = _with_crossed_factor(ref, 6)
    m = hb.Model("y ~ x + (1 | g) + (1 | h)", df, correlation=AR1("t", "g"))
    d, model = m.design, m.build()
    point = {"beta": np.array([0.3, -0.4]), "sigma_log__": np.log(1.2),
             "phi_interval__": np.array(0.4), "sd_g_log__": np.log([0.7]),
             "sd_h_log__": np.log([0.5]), "z_h": np.array([[0.5], [-1.0], [1.5]])}
    value = _potential(model, fast_mode)(*[point[v.name] for v in model.value_vars])
    phi = 2 / (1 + np.exp(-0.4)) - 1  # Uniform(-1, 1) interval transform
    off = 0.5 * point["z_h"][d.group("h").index, 0]
    expected = collapsed.loglik_padded(
        np, collapsed.prepare(d).arrays, "ar1", point["beta"], 1.2, phi,
        np.array([[0.49]]), 1, offset=d.layout.pad(off),
    ).sum()
    assert float(value) == pytest.approx(expected, rel=1e-10)


def test_hybrid_recovery_conditions_on_latent_factors(ref):
    df, rng = _with_crossed_factor(ref, 5)
    d = hb.Model("y ~ x + (1 + x | g) + (1 | h)", df).design
    g = collapsed.collapsed_group(d)
    beta, sigma, S = np.array([0.3, -0.4]), 0.9, ref.random_spd(rng, 2)
    b_h = {"u": 0.7, "v": -0.2, "w": 0.4}
    off_rows = np.array([b_h[lev] for lev in np.asarray(d.group("h").levels)[d.group("h").index]])
    D = 4000
    b = recover.draw_random_effects(
        d, np.tile(beta, (D, 1)), np.full(D, sigma), None,
        np.tile(np.linalg.cholesky(S), (D, 1, 1)), np.random.default_rng(0),
        offset=np.tile(off_rows, (D, 1)),
    )
    shifted = df.assign(y=df["y"] - df["h"].map(b_h))
    exact = ref.dense_posterior_b(shifted, ["1", "x"], ["1", "x"], beta, sigma, None, S, None)
    for c, lab in enumerate(g.levels):
        mean, cov = exact[lab]
        se = np.sqrt(np.diag(cov) / D)
        np.testing.assert_array_less(np.abs(b[:, c].mean(0) - mean), 5 * se)


def test_double_bar_gives_independent_sds_and_no_correlation():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"g": np.repeat(list("abcdef"), 5), "x": rng.normal(size=30)})
    df["y"] = rng.normal(size=30)
    m = hb.Model("y ~ x + (1 + x || g)", df)
    assert not m.design.groups[0].correlated and "corr_g" not in m.priors
    names = set(m.build().named_vars)
    assert "sd_g" in names and "corr_g" not in names and "chol_g" not in names
    lat = hb.Model("y ~ x + (1 + x || g)", df, backend="latent").build()
    assert "corr_g" not in lat.named_vars and lat.initial_point()["sd_g_log__"].shape == (2,)
    assert hb.Model("y ~ x + (1 + x | g)", df).design.groups[0].correlated


def test_double_bar_marginal_density_uses_independent_sds(ref, fast_mode):
    rng = np.random.default_rng(1)
    df = ref.random_frame(rng, n_clusters=5, max_size=5, times=None)
    m = hb.Model("y ~ x + (1 + x || g)", df)
    model = m.build()
    beta, sigma, sd = np.array([0.2, 0.5]), 1.3, np.array([0.8, 0.3])
    point = {"beta": beta, "sigma_log__": np.log(sigma), "sd_g_log__": np.log(sd)}
    value = _potential(model, fast_mode)(*[point[v.name] for v in model.value_vars])
    expected = ref.dense_marginal_loglik(
        df, ["1", "x"], ["1", "x"], beta, sigma, None, np.diag(sd**2), None
    )
    assert float(value) == pytest.approx(expected, abs=1e-8 * max(1, abs(expected)))


def _agree(fa, fb, names):
    for v in names:
        a, b = fa.posterior[v], fb.posterior[v]
        ma, mb = a.mean(("chain", "draw")).values, b.mean(("chain", "draw")).values
        sd = np.maximum(a.std(("chain", "draw")).values, b.std(("chain", "draw")).values)
        # posterior means within Monte Carlo error: a few hundred effective draws each
        np.testing.assert_array_less(np.abs(ma - mb), 0.35 * sd + 1e-9, err_msg=v)


def test_crossed_hybrid_agrees_with_latent():
    rng = np.random.default_rng(2)
    S, I = 24, 12
    s, it = np.repeat(np.arange(S), I), np.tile(np.arange(I), S)
    x = rng.normal(size=S * I)
    y = 1 + 0.5 * x + rng.normal(0, 0.7, S)[s] + rng.normal(0, 0.5, I)[it] + rng.normal(size=S * I)
    df = pd.DataFrame({"subject": [f"s{k}" for k in s], "item": [f"i{k}" for k in it], "x": x, "y": y})
    formula = "y ~ x + (1 | subject) + (1 | item)"
    hyb = hb.Model(formula, df).fit(seed=1, **FIT)
    lat = hb.Model(formula, df, backend="latent").fit(seed=1, **FIT)
    assert hyb.backend == "marginal" and lat.backend == "latent"
    header = "\n".join(hyb.header())
    assert "subject collapsed" in header and "item latent (hybrid)" in header
    _agree(hyb, lat, ["beta", "sigma", "sd_subject", "sd_item", "b_subject", "b_item"])
    table = hyb.summary().table
    assert {"sd(Intercept | subject)", "sd(Intercept | item)"} <= set(table.index)
    for fit in (hyb, lat):
        # thinned evenly within each of the chains: 5 draws round up to 3 per chain
        n_chains = fit.posterior.sizes["chain"]
        assert fit.posterior_predictive(n_draws=5).shape == (n_chains * -(-5 // n_chains), len(df))
        assert fit.shrinkage("item").index.tolist() == ["Intercept"]
        assert fit.cluster_coefficients("item").shape[0] == I
        assert np.isfinite(fit.residuals()).all()


def test_nested_hybrid_agrees_with_latent():
    rng = np.random.default_rng(3)
    n_school, n_class, n_pupil = 8, 4, 6
    school = np.repeat(np.arange(n_school), n_class * n_pupil)
    klass = np.repeat(np.arange(n_class), n_pupil)[np.newaxis].repeat(n_school, 0).ravel()
    x = rng.normal(size=school.size)
    u = rng.normal(0, 0.6, n_school)[school]
    v = rng.normal(0, 0.4, (n_school, n_class))[school, klass]
    df = pd.DataFrame({"school": school, "class": klass, "x": x,
                       "y": 0.5 + 0.3 * x + u + v + rng.normal(size=school.size)})
    formula = "y ~ x + (1 | school/class)"
    hyb = hb.Model(formula, df).fit(seed=2, **FIT)
    lat = hb.Model(formula, df, backend="latent").fit(seed=2, **FIT)
    assert [g.name for g in hyb.design.groups] == ["school", "school:class"]
    assert "school:class collapsed" in "\n".join(hyb.header())
    _agree(hyb, lat, ["beta", "sigma", "sd_school", "sd_school:class", "b_school"])
    assert hyb.posterior["b_school:class"].shape[2:] == (n_school * n_class, 1)
