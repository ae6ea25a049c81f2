"""Gamma and lognormal GLMMs on the quadrature backend: the backend choice, the family
parameter under its own name (``shape``, ``sigma``) in recovery and LOO, recovery of the
effects against the exact conditional, and a posterior that agrees with the latent
backend's. (The PyMC model's gradient and the native callback: tests/backend/test_glmm.py,
whose cases include both families.)"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.backend import glmm
from hierbayes.likelihood import quadrature, recover_glmm
from hierbayes.spec import families as F

PARAM = {"gamma": ("shape", 4.0), "lognormal": ("sigma", 0.5)}


def _data(name, n_clusters=20, size=5, seed=1, slope_sd=None):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=g.size)
    eta = 0.5 + 0.3 * x + rng.normal(0, 0.5, n_clusters)[g]
    if slope_sd:
        eta = eta + rng.normal(0, slope_sd, n_clusters)[g] * x
    pname, value = PARAM[name]
    y = F.get(name).draw(rng, eta, {pname: value})
    return pd.DataFrame({"g": [f"c{k:02d}" for k in g], "x": x, "y": y})


@pytest.mark.parametrize("name", ["gamma", "lognormal"])
def test_backend_choice(name):
    df = _data(name)
    assert hb.Model("y ~ x + (1 | g)", df, family=name).backend == "quadrature"  # auto, q = 1
    m2 = hb.Model("y ~ x + (1 + x | g)", df, family=name)
    assert m2.backend == "quadrature"  # auto, q = 2: as for the count families
    assert glmm.unavailable(m2.design) is None
    df["h"] = np.arange(len(df)) % 3  # two factors: the hybrid, g integrated out
    hy = hb.Model("y ~ x + (1 | g) + (1 | h)", df, family=name, backend="marginal")
    assert hy.backend == "quadrature" and glmm.integrated_group(hy.design).name == "g"


def test_a_parameter_formula_stays_latent():
    """A formula for the lognormal's sigma is a per-row parameter the kernel does not take."""
    df = _data("lognormal")
    assert hb.Model("y ~ x + (1 | g)", df, family="lognormal", sigma="~ x").backend == "latent"
    with pytest.raises(ValueError, match="formula for the family's parameter"):
        hb.Model("y ~ x + (1 | g)", df, family="lognormal", sigma="~ x", backend="marginal")


@pytest.mark.parametrize("name", ["gamma", "lognormal"])
def test_recovered_effects_follow_the_exact_conditional(name):
    """At fixed parameters (the family's parameter passed by position, used by its own name in
    the Metropolis target), the draws of each cluster's effect have the mean and sd of its
    conditional density on a grid."""
    m = hb.Model("y ~ x + (1 | g)", _data(name, 8, 5), family=name)
    mg = glmm.likelihood(m.design)
    fam = m.design.spec.family
    pname, value = PARAM[name]
    beta, L, D = np.array([0.4, 0.3]), np.array([[0.5]]), 3000
    b, info = recover_glmm.draw_random_effects(mg, np.tile(beta, (1, D, 1)), np.tile(L, (1, D, 1, 1)),
                                               np.full((1, D), value), np.random.default_rng(0))
    assert info["acceptance"] > 0.8
    rows, grid = mg.rows, np.linspace(-8, 8, 3201)
    for c in range(rows.n_clusters):
        sl = slice(rows.starts[c], rows.starts[c + 1])
        eta = rows.X[sl] @ beta
        lp = fam.logpdf(rows.y[sl][None], eta[None] + np.outer(L[0, 0] * grid, rows.Z[sl, 0]),
                        {pname: value}).sum(1)
        w = np.exp(lp - 0.5 * grid**2 - (lp - 0.5 * grid**2).max())
        w /= w.sum()
        mu = (w * L[0, 0] * grid).sum()
        sd = np.sqrt((w * (L[0, 0] * grid - mu) ** 2).sum())
        draws = b[0, :, c, 0]
        assert abs(draws.mean() - mu) < 4 * sd / np.sqrt(D / 2), c
        assert abs(draws.std() / sd - 1) < 0.1, c


@pytest.mark.parametrize("name", ["gamma", "lognormal"])
def test_family_param_is_the_kernels_alpha(name):
    """The kernel's positional parameter is the family's own: the value at ``shape`` / ``sigma``
    equals the numpy reference taking it by name."""
    m = hb.Model("y ~ x + (1 | g)", _data(name, 6, 4), family=name)
    fam = m.design.spec.family
    assert quadrature.family_param(fam) == PARAM[name][0]
    mg = glmm.likelihood(m.design)
    beta, L, a = np.array([0.4, 0.3]), np.array([[0.5]]), PARAM[name][1]
    ll, _ = quadrature.loglik_reference(fam, mg.rows, beta, L, a, nagq=mg.nagq)
    np.testing.assert_allclose(mg.loglik(beta, L, a), ll, rtol=1e-10, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gamma", "lognormal"])
def test_posterior_agrees_with_the_latent_backend(name):
    """Means within 3 Monte Carlo errors + 0.05 of a latent fit's, sds within 20 %, the
    recovered effects alike, and LOO by cluster from the kernel's per-cluster values."""
    df = _data(name, 30, 5, seed=3)
    kw = dict(draws=500, tune=500, chains=2, seed=2, progressbar=False)
    q = hb.Model("y ~ x + (1 | g)", df, family=name).fit(**kw)
    lat = hb.Model("y ~ x + (1 | g)", df, family=name, backend="latent").fit(**kw)
    assert q.n_divergences() == 0
    tq, tl = q.summary().table, lat.summary().table
    for row in tl.index:
        se = np.hypot(tq.loc[row, "mcse_mean"], tl.loc[row, "mcse_mean"])
        assert abs(tq.loc[row, "mean"] - tl.loc[row, "mean"]) < 3 * se + 0.05, row
        assert abs(tq.loc[row, "sd"] / tl.loc[row, "sd"] - 1) < 0.2, row
    bq = q.posterior["b_g"].isel(g__term=0)
    bl = lat.posterior["b_g"].isel(g__term=0)
    diff = (bq.mean(("chain", "draw")) - bl.mean(("chain", "draw"))) / bl.std(("chain", "draw"))
    assert float(abs(diff).max()) < 0.3
    ratio = bq.std(("chain", "draw")) / bl.std(("chain", "draw"))
    assert 0.8 < float(ratio.min()) and float(ratio.max()) < 1.2
    ll = q.log_likelihood()["y"]
    assert ll.dims == ("chain", "draw", "g") and ll.sizes["g"] == 30
    d0 = q.posterior.isel(chain=0, draw=0)
    pname = PARAM[name][0]
    want = glmm.likelihood(q.design).value_and_grad(
        d0["beta"].values, d0["sd_g"].values.reshape(1, 1), float(d0[pname]), grad=False)["ll"]
    assert float(ll.isel(chain=0, draw=0).sum()) == pytest.approx(want, rel=1e-10)
    assert np.isfinite(q.loo().elpd_loo)
