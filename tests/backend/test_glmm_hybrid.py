"""The GLMM hybrid (quadrature backend with several grouping factors): the factor with the
most levels integrated out, the others sampled as an offset. The PyMC model's density against
finite differences and against a brute-force reference (scipy quad per cluster), the native
callback against the PyMC model, the backend choice and its refusals, recovery given the
offsets, and (slow) a posterior that agrees with the latent backend's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import hierbayes as hb
from hierbayes.backend import glmm
from hierbayes.likelihood import recover_glmm


def _crossed(n_subj=12, n_item=5, seed=0, family="bernoulli", slope_sd=0.0):
    """Fully crossed subjects x items, a row-level covariate, effects on both factors."""
    rng = np.random.default_rng(seed)
    s = np.repeat(np.arange(n_subj), n_item)
    it = np.tile(np.arange(n_item), n_subj)
    x = rng.normal(size=s.size)
    eta = (0.2 + 0.5 * x + rng.normal(0, 0.8, n_subj)[s] + rng.normal(0, 0.5, n_item)[it]
           + rng.normal(0, slope_sd, n_item)[it] * x)
    y = (rng.random(s.size) < special.expit(eta)).astype(int) if family == "bernoulli" else rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "subj": [f"s{k:02d}" for k in s], "item": [f"i{k}" for k in it]})


def _flat(point):
    keys = list(point)
    return keys, np.concatenate([np.ravel(point[k]) for k in keys])


def _unflat(ip, keys, v):
    out, k = {}, 0
    for key in keys:
        n = np.size(ip[key])
        out[key] = v[k:k + n].reshape(np.shape(ip[key]))
        k += n
    return out


@pytest.mark.parametrize("formula, family, centered", [
    ("y ~ x + (1 | subj) + (1 | item)", "bernoulli", {"item": False}),
    # slow: the centred MvNormal graph compiles for ~10 s; its gradient is PyTensor's, and the
    # kernel's offset gradient is the first case's (the native test checks this model too)
    pytest.param("y ~ x + (1 | subj) + (1 + x | item)", "poisson", {"item": True}, marks=pytest.mark.slow),
])
def test_model_density_has_the_kernels_gradient(fast_mode, formula, family, centered):
    m = hb.Model(formula, _crossed(family=family, slope_sd=0.3), family=family, centered=centered)
    assert m.backend == "quadrature" and glmm.integrated_group(m.design).name == "subj"
    model = m.build()
    ip = model.initial_point()
    keys, x0 = _flat(ip)
    x0 = x0 + np.random.default_rng(0).normal(0, 0.3, x0.size)
    logp, dlogp = model.compile_logp(mode=fast_mode), model.compile_dlogp(mode=fast_mode)
    h = 1e-6
    fd = np.array([(logp(_unflat(ip, keys, x0 + h * e)) - logp(_unflat(ip, keys, x0 - h * e))) / (2 * h)
                   for e in np.eye(x0.size)])
    np.testing.assert_allclose(dlogp(_unflat(ip, keys, x0)), fd, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_jax_lowering_equals_the_c_backend():
    """The Op's JAX lowering (the host callback with the offsets' gradient, what nutpie runs
    when the native callback does not apply) gives the PyTensor graph's value and gradient.
    Slow: the JAX compile of logp and dlogp takes ~40 s on a loaded 2-core machine."""
    m = hb.Model("y ~ x + (1 | subj) + (1 | item)", _crossed(), family="bernoulli")
    model = m.build()
    ip = model.initial_point()
    keys, x0 = _flat(ip)
    p = _unflat(ip, keys, x0 + 0.2)
    assert float(model.compile_logp(mode="JAX")(p)) == pytest.approx(float(model.compile_logp()(p)), abs=1e-10)
    np.testing.assert_allclose(model.compile_dlogp(mode="JAX")(p), model.compile_dlogp()(p), atol=1e-12)


def test_hybrid_density_is_the_brute_force_integral(fast_mode):
    """The model's log-likelihood at fixed beta, sds and item effects equals, cluster by
    cluster, the subject effect integrated by scipy quad given those item effects."""
    df = _crossed(n_subj=6, n_item=4, seed=2)
    m = hb.Model("y ~ x + (1 | subj) + (1 | item)", df, family="bernoulli", nagq=31,
                 centered={"item": True})
    model = m.build()
    loglik = model.compile_fn(model.replace_rvs_by_values([model["loglik"]]), inputs=model.value_vars,
                              on_unused_input="ignore", mode=fast_mode)
    beta, sd_s = np.array([0.3, -0.6]), 1.3
    b_item = np.array([0.7, -0.4, 0.1, -1.1])
    point = {"beta": beta, "sd_subj_log__": np.log([sd_s]), "sd_item_log__": np.log([0.5]),
             "b_item": b_item[:, None]}
    d = m.design
    item = d.group("item")
    eta0 = d.X @ beta + b_item[item.index]
    subj = d.group("subj")
    want = 0.0
    for c in range(subj.n_levels):
        rows = subj.index == c

        def f(u):
            p = special.expit(eta0[rows] + sd_s * u)
            return np.exp(stats.bernoulli.logpmf(d.y[rows], p).sum()) * stats.norm.pdf(u)

        want += np.log(integrate.quad(f, -12, 12, epsabs=1e-13, epsrel=1e-12)[0])
    assert float(loglik(point)[0]) == pytest.approx(want, abs=1e-7)


@pytest.mark.parametrize("formula, family, centered", [
    ("y ~ x + (1 | subj) + (1 | item)", "bernoulli", None),
    ("y ~ x + (1 | subj) + (1 + x | item)", "negbinomial", {"item": True}),
    ("y ~ x + (1 + x | subj) + (1 + x | item)", "poisson", {"item": False}),
    ("y ~ x + (1 | subj) + (1 + x || item)", "poisson", {"item": True}),
])
def test_native_callback_equals_the_pymc_model(fast_mode, formula, family, centered):
    """The callback (priors and Jacobians of both factors, the sampled effects centred or
    not, the quadrature with their offset) gives the PyMC model's log-density, gradient and
    natural parameters (the sampled factors' b among them) at random points."""
    from hierbayes.backend.native import bridge, glmm_bridge

    data = _crossed(family="bernoulli" if family == "bernoulli" else "poisson", slope_sd=0.3)
    m = hb.Model(formula, data, family=family, backend="marginal", centered=centered)
    assert glmm_bridge.unsupported(m.design, m.priors, m.backend) is None
    model = m.build()
    _, slices = bridge.initial_point_fn(model)
    buf, info = glmm_bridge.pack(m.design, m.priors, slices, model.hb_marginal_glmm, model.hb_row_order)
    assert "b_item" in info["expanded"][0]
    shapes = {k: np.shape(v) for k, v in model.initial_point().items()}
    logp, dlogp = model.compile_logp(mode=fast_mode), model.compile_dlogp(mode=fast_mode)
    dets = model.compile_fn(model.replace_rvs_by_values([model[n] for n in info["expanded"][0]]),
                            inputs=model.value_vars, on_unused_input="ignore", mode=fast_mode)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x = rng.normal(size=info["n_dim"]) * 0.6
        pt = {k: x[o:o + s].reshape(shapes[k]) for k, (o, s) in slices.items()}
        got, got_g = glmm_bridge.logp_and_grad(buf, x)
        want = float(logp(pt))
        assert abs(got - want) <= 1e-8 * max(1.0, abs(want))
        np.testing.assert_allclose(got_g, dlogp(pt), rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(glmm_bridge.expand(buf, x),
                                   np.concatenate([np.ravel(a) for a in dets(pt)]), rtol=1e-12, atol=1e-12)


def test_backend_choice_and_refusals():
    df = _crossed()
    auto = hb.Model("y ~ x + (1 | subj) + (1 | item)", df, family="bernoulli")
    assert auto.backend == "quadrature" and list(auto.centering) == ["item"]
    assert hb.Model("y ~ x + (1 | item) + (1 | subj)", df, family="bernoulli",
                    backend="marginal").backend == "quadrature"
    # auto: the integrated factor has q <= 2; q = 3 only when asked for
    assert hb.Model("y ~ x + (1 + x | subj) + (1 | item)", df, family="bernoulli").backend == "quadrature"
    df["x2"] = df.x**2
    assert hb.Model("y ~ x + (1 + x + x2 | subj) + (1 | item)", df, family="bernoulli").backend == "latent"
    assert hb.Model("y ~ x + (1 + x + x2 | subj) + (1 | item)", df, family="bernoulli",
                    backend="marginal").backend == "quadrature"
    # q = 2 on the sampled factor is fine for auto
    assert hb.Model("y ~ x + (1 | subj) + (1 + x | item)", df, family="bernoulli").backend == "quadrature"
    df["x3"] = df.x**3
    with pytest.raises(ValueError, match=r"1 to 3 effects per cluster, not 4 of 'subj' \(the factor with the most"):
        hb.Model("y ~ x + (1 + x + x2 + x3 | subj) + (1 | item)", df, family="bernoulli", backend="marginal")
    with pytest.raises(ValueError, match="names no sampled grouping factor: its effects are integrated out"):
        hb.Model("y ~ x + (1 | subj) + (1 | item)", df, family="bernoulli", centered={"subj": True})
    with pytest.raises(ValueError, match="no grouping factor to integrate out"):
        hb.Model("y ~ x", df, family="bernoulli", backend="marginal")


def test_recovery_conditions_on_each_draws_offset():
    """At fixed parameters and a given offset (the sampled effects), the Metropolis draws of
    each subject's effect have the mean and sd of its conditional density on a grid."""
    df = _crossed(n_subj=8, n_item=6, seed=4, family="poisson")
    m = hb.Model("y ~ x + (1 | subj) + (1 | item)", df, family="poisson")
    mg, order = glmm.likelihood_and_order(m.design)
    item = m.design.group("item")
    b_item = np.linspace(-0.8, 0.8, item.n_levels)
    off = b_item[item.index][order]
    beta, L, D = np.array([0.2, 0.5]), np.array([[0.7]]), 2000
    b, info = recover_glmm.draw_random_effects(mg, np.tile(beta, (1, D, 1)), np.tile(L, (1, D, 1, 1)), None,
                                               np.random.default_rng(0), offset=lambda d: np.tile(off, (len(d), 1)))
    assert info["acceptance"] > 0.8
    rows, grid = mg.rows, np.linspace(-8, 8, 3201)
    for c in range(rows.n_clusters):
        sl = slice(rows.starts[c], rows.starts[c + 1])
        eta = rows.X[sl] @ beta + off[sl]
        lp = stats.poisson.logpmf(rows.y[sl][None], np.exp(eta[None] + L[0, 0] * grid[:, None])).sum(1)
        w = np.exp(lp - 0.5 * grid**2 - (lp - 0.5 * grid**2).max())
        w /= w.sum()
        mu = (w * L[0, 0] * grid).sum()
        sd = np.sqrt((w * (L[0, 0] * grid - mu) ** 2).sum())
        assert abs(b[0, :, c, 0].mean() - mu) < 4 * sd / np.sqrt(D / 2), c
        assert abs(b[0, :, c, 0].std() / sd - 1) < 0.1, c


def test_a_short_fit_holds_every_factors_effects():
    """A short native fit: b_<g> for both factors, the header names the integrated factor, the
    metric is low-rank, LOO is per subject and equals the kernel's per-cluster values given
    the draw's item effects."""
    m = hb.Model("y ~ x + (1 | subj) + (1 | item)", _crossed(n_subj=20, n_item=6, seed=5), family="bernoulli")
    fit = m.fit(draws=100, tune=150, chains=2, seed=1, progressbar=False)
    post = fit.posterior
    assert post["b_subj"].sizes["subj"] == 20 and post["b_item"].sizes["item"] == 6
    header = "\n".join(fit.header())
    assert "subj integrated out by adaptive Gauss-Hermite quadrature" in header
    assert "item sampled (hybrid" in header and "native numba kernel" in header
    assert fit.options.mass_matrix == "low_rank"  # the hybrid's default metric
    ll = fit.log_likelihood()["y"]
    assert ll.dims == ("chain", "draw", "subj")
    d0 = post.isel(chain=0, draw=0)
    mg, order = glmm.likelihood_and_order(m.design)
    item = m.design.group("item")
    off = d0["b_item"].values[item.index, 0][order]
    want = mg.value_and_grad(d0["beta"].values, d0["sd_subj"].values.reshape(1, 1), offset=off, grad=False)
    np.testing.assert_allclose(ll.isel(chain=0, draw=0).values, want["per_cluster"], rtol=1e-10)


@pytest.mark.slow
def test_posterior_agrees_with_the_latent_backend():
    """Means within 4 MCSE of a latent fit's, sds within 15 %, for the hyperparameters and
    the effects of both factors."""
    df = _crossed(n_subj=60, n_item=10, seed=6)
    kw = dict(draws=1000, tune=1000, chains=4, seed=2, progressbar=False)
    hy = hb.Model("y ~ x + (1 | subj) + (1 | item)", df, family="bernoulli").fit(**kw)
    lat = hb.Model("y ~ x + (1 | subj) + (1 | item)", df, family="bernoulli", backend="latent").fit(**kw)
    assert hy.n_divergences() <= 4  # (1 of 4,000 at this seed: sd_item near 0, 10 items)
    th, tl = hy.summary().table, lat.summary().table
    for name in tl.index:
        se = np.hypot(th.loc[name, "mcse_mean"], tl.loc[name, "mcse_mean"])
        assert abs(th.loc[name, "mean"] - tl.loc[name, "mean"]) < 4 * se + 1e-3, name
        assert abs(th.loc[name, "sd"] / tl.loc[name, "sd"] - 1) < 0.15, name
    for g in ("subj", "item"):
        bh = hy.posterior[f"b_{g}"].isel({f"{g}__term": 0})
        bl = lat.posterior[f"b_{g}"].isel({f"{g}__term": 0})
        diff = (bh.mean(("chain", "draw")) - bl.mean(("chain", "draw"))) / bl.std(("chain", "draw"))
        assert float(abs(diff).max()) < 0.25, g
        ratio = bh.std(("chain", "draw")) / bl.std(("chain", "draw"))
        assert 0.85 < float(ratio.min()) and float(ratio.max()) < 1.15, g
