"""The marginal GLMM backend (quadrature): the PyMC model's density and gradient, the backend
choice, the compiled-model key, recovery of the effects against the exact conditional, and a
posterior that agrees with the latent backend's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.backend import glmm
from hierbayes.likelihood import quadrature, recover_glmm


def _poisson(n_clusters=40, size=4, seed=1, slope_sd=None):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_clusters), size)
    x = rng.normal(size=g.size)
    b0 = rng.normal(0, 0.6, n_clusters)
    eta = 0.5 + 0.3 * x + b0[g]
    if slope_sd:
        eta = eta + rng.normal(0, slope_sd, n_clusters)[g] * x
    return pd.DataFrame({"g": [f"c{k:02d}" for k in g], "x": x, "y": rng.poisson(np.exp(eta))})


def _data(family, n_clusters=12, size=5, seed=1, slope_sd=0.3):
    """Data for ``family``: the Poisson data, as 0/1 above the median (Bernoulli) or as a
    positive response ``exp(eta + noise)`` (Gamma, lognormal)."""
    df = _poisson(n_clusters, size, seed, slope_sd)
    if family == "bernoulli":
        df["y"] = (df["y"] > df["y"].median()).astype(int)
    elif family in ("gamma", "lognormal"):
        df["y"] = np.exp(0.5 + 0.3 * df["x"] + np.random.default_rng(seed).normal(0, 0.6, len(df)))
    return df


def _flat(point):
    keys = list(point)
    return keys, np.concatenate([np.ravel(point[k]) for k in keys])


@pytest.mark.parametrize("formula, family", [
    ("y ~ x + (1 | g)", "poisson"),
    ("y ~ x + (1 + x | g)", "poisson"),
    ("y ~ x + (1 + x || g)", "negbinomial"),
    ("y ~ x + (1 | g)", "gamma"),
    ("y ~ x + (1 + x | g)", "gamma"),
    ("y ~ x + (1 | g)", "lognormal"),
    ("y ~ x + (1 + x || g)", "lognormal"),
])
def test_model_density_has_the_kernels_gradient(fast_mode, formula, family):
    m = hb.Model(formula, _data(family), family=family, backend="marginal")
    assert m.backend == "quadrature"
    model = m.build()
    fp = quadrature.family_param(m.design.spec.family)
    assert fp is None or fp in model.named_vars  # the family's own parameter name
    ip = model.initial_point()
    keys, x0 = _flat(ip)
    rng = np.random.default_rng(0)
    x0 = x0 + rng.normal(0, 0.3, x0.size)

    def point(v):
        out, k = {}, 0
        for key in keys:
            s = np.size(ip[key])
            out[key] = v[k:k + s].reshape(np.shape(ip[key]))
            k += s
        return out

    logp, dlogp = model.compile_logp(mode=fast_mode), model.compile_dlogp(mode=fast_mode)
    h = 1e-6
    fd = np.array([(logp(point(x0 + h * e)) - logp(point(x0 - h * e))) / (2 * h) for e in np.eye(x0.size)])
    np.testing.assert_allclose(dlogp(point(x0)), fd, rtol=1e-5, atol=1e-5)


def test_backend_choice():
    df = _poisson()
    assert hb.Model("y ~ x + (1 | g)", df, family="poisson").backend == "quadrature"  # auto
    assert hb.Model("y ~ x + (1 | g)", df, family="poisson", backend="marginal").backend == "quadrature"
    df["z"] = np.random.default_rng(2).normal(size=len(df))
    # auto: two effects per cluster integrated out, three only when asked for
    assert hb.Model("y ~ x + (1 + x | g)", df, family="poisson").backend == "quadrature"
    assert hb.Model("y ~ x + (1 + x + z | g)", df, family="poisson").backend == "latent"
    assert hb.Model("y ~ x + (1 + x + z | g)", df, family="poisson", backend="marginal").backend == "quadrature"
    df["h"] = np.arange(len(df)) % 3
    # two factors: the hybrid (tests/backend/test_glmm_hybrid.py); a residual correlation is refused
    assert hb.Model("y ~ x + (1 | g) + (1 | h)", df, family="poisson", backend="marginal").backend == "quadrature"
    df["t"] = df.groupby("g").cumcount()
    with pytest.raises(ValueError, match="residual correlation of a non-Gaussian family is a latent process"):
        hb.Model("y ~ x + (1 | g)", df, family="poisson", backend="marginal",
                 correlation=hb.AR1(time="t", group="g"))
    with pytest.raises(ValueError, match="student family has no marginal backend"):
        hb.Model("x ~ 1 + (1 | g)", df, family="student", backend="marginal")


def test_compiled_model_is_reused_only_for_the_same_data():
    df = _poisson()
    a = hb.Model("y ~ x + (1 | g)", df, family="poisson", backend="marginal")
    b = hb.Model("y ~ x + (1 | g)", df.copy(), family="poisson", backend="marginal")
    c = hb.Model("y ~ x + (1 | g)", df.assign(y=df.y[::-1].to_numpy()), family="poisson", backend="marginal")
    assert a.structure_key() == b.structure_key() != c.structure_key()


def test_recovered_effects_follow_the_exact_conditional():
    """At fixed parameters, the Metropolis draws of each cluster's effect have the mean and
    sd of its conditional density, computed on a grid."""
    m = hb.Model("y ~ x + (1 | g)", _poisson(), family="poisson", backend="marginal")
    mg = glmm.likelihood(m.design)
    beta, L, D = np.array([0.4, 0.3]), np.array([[0.65]]), 3000
    b, info = recover_glmm.draw_random_effects(mg, np.tile(beta, (1, D, 1)), np.tile(L, (1, D, 1, 1)),
                                               None, np.random.default_rng(0))
    assert info["acceptance"] > 0.8
    rows, grid = mg.rows, np.linspace(-8, 8, 3201)
    for c in range(rows.n_clusters):
        sl = slice(rows.starts[c], rows.starts[c + 1])
        eta = rows.X[sl] @ beta
        lp = stats.poisson.logpmf(rows.y[sl][None], np.exp(eta[None] + np.outer(L[0, 0] * grid, rows.Z[sl, 0]))).sum(1)
        w = np.exp(lp - 0.5 * grid**2 - (lp - 0.5 * grid**2).max())
        w /= w.sum()
        mu = (w * L[0, 0] * grid).sum()
        sd = np.sqrt((w * (L[0, 0] * grid - mu) ** 2).sum())
        draws = b[0, :, c, 0]
        assert abs(draws.mean() - mu) < 4 * sd / np.sqrt(D / 2), c
        assert abs(draws.std() / sd - 1) < 0.1, c


def test_posterior_agrees_with_the_latent_backend():
    """Means within Monte Carlo error of a latent fit's, sds within 10 %, and the recovered
    effects alike (the latent fit is the reference: same priors, same data)."""
    df = _poisson(30, 4, seed=3)
    kw = dict(draws=1000, tune=1000, chains=2, seed=2, progressbar=False)
    q = hb.Model("y ~ x + (1 | g)", df, family="poisson", backend="marginal").fit(**kw)
    lat = hb.Model("y ~ x + (1 | g)", df, family="poisson", backend="latent").fit(**kw)
    assert q.n_divergences() == 0
    tq, tl = q.summary().table, lat.summary().table
    for name in tl.index:
        se = np.hypot(tq.loc[name, "mcse_mean"], tl.loc[name, "mcse_mean"])
        assert abs(tq.loc[name, "mean"] - tl.loc[name, "mean"]) < 4 * se + 1e-3, name
        assert abs(tq.loc[name, "sd"] / tl.loc[name, "sd"] - 1) < 0.1, name
    bq = q.posterior["b_g"].isel(g__term=0)
    bl = lat.posterior["b_g"].isel(g__term=0)
    diff = (bq.mean(("chain", "draw")) - bl.mean(("chain", "draw"))) / bl.std(("chain", "draw"))
    assert float(abs(diff).max()) < 0.25
    ratio = bq.std(("chain", "draw")) / bl.std(("chain", "draw"))
    assert 0.85 < float(ratio.min()) and float(ratio.max()) < 1.15
    assert "adaptive Gauss-Hermite" in "\n".join(q.header())
    # LOO's unit is the cluster: the kernel's per-cluster marginal log-likelihoods
    ll = q.log_likelihood()["y"]
    assert ll.dims == ("chain", "draw", "g") and ll.sizes["g"] == 30
    d0 = q.posterior.isel(chain=0, draw=0)
    mg = glmm.likelihood(q.design)
    want = mg.value_and_grad(d0["beta"].values, d0["sd_g"].values.reshape(1, 1), grad=False)["ll"]
    assert float(ll.isel(chain=0, draw=0).sum()) == pytest.approx(want, rel=1e-10)
    assert np.isfinite(q.loo().elpd_loo)



def test_reversed_factor_gives_the_design_orders_likelihood():
    """The backend hands the kernel Z's columns reversed (the sampler's intercept-last
    Cholesky factor); at nagq = 1 (Laplace, invariant to the factor chosen) that is the same
    likelihood as the design's order with chol(S)."""
    from hierbayes.likelihood import quadrature

    data = _poisson(15, 6, slope_sd=0.4)
    assert hb.Model("y ~ x + (1 + x | g)", data, family="poisson").backend == "quadrature"  # auto, q = 2
    m = hb.Model("y ~ x + (1 + x | g)", data, family="poisson", backend="marginal")
    assert m.backend == "quadrature"
    g = m.design.groups[0]
    S = np.array([[0.5, 0.1], [0.1, 0.2]])
    order = glmm.term_order(g)
    assert order.tolist() == [1, 0]
    rev = glmm.likelihood(m.design, nagq=1)
    rows, _ = quadrature.cluster_rows(m.design.y, m.design.X, g.Z, g.index, g.n_levels)
    plain = quadrature.marginal_glmm(m.design.spec.family, rows, nagq=1)
    beta = np.array([0.4, 0.3])
    a = rev.value_and_grad(beta, np.linalg.cholesky(S[order][:, order]), grad=False)["per_cluster"]
    b = plain.value_and_grad(beta, np.linalg.cholesky(S), grad=False)["per_cluster"]
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("formula, family", [
    ("y ~ x + (1 | g)", "poisson"),
    ("y ~ x + (1 + x | g)", "poisson"),
    ("y ~ x + (1 + x || g)", "negbinomial"),
    ("y ~ x + (1 | g)", "bernoulli"),
    ("y ~ x + (1 | g)", "gamma"),
    ("y ~ x + (1 + x | g)", "gamma"),
    ("y ~ x + (1 | g)", "lognormal"),
    ("y ~ x + (1 + x | g)", "lognormal"),
])
def test_native_callback_equals_the_pymc_model(fast_mode, formula, family):
    """The nutpie callback (priors, Jacobians, the quadrature likelihood) gives the PyMC
    model's log-density and gradient at random points, and its draws' natural parameters."""
    from hierbayes.backend.native import bridge, glmm_bridge

    m = hb.Model(formula, _data(family), family=family, backend="marginal")
    assert glmm_bridge.unsupported(m.design, m.priors, m.backend) is None
    model = m.build()
    _, slices = bridge.initial_point_fn(model)
    buf, info = glmm_bridge.pack(m.design, m.priors, slices, model.hb_marginal_glmm)
    fp = quadrature.family_param(m.design.spec.family)
    assert fp is None or fp in info["expanded"][0]
    shapes = {k: np.shape(v) for k, v in model.initial_point().items()}
    logp, dlogp = model.compile_logp(mode=fast_mode), model.compile_dlogp(mode=fast_mode)
    dets = model.compile_fn(model.replace_rvs_by_values([model[n] for n in info["expanded"][0]]),
                            inputs=model.value_vars, on_unused_input="ignore", mode=fast_mode)
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.normal(size=info["n_dim"]) * 0.6
        pt = {k: x[o:o + s].reshape(shapes[k]) for k, (o, s) in slices.items()}
        got, got_g = glmm_bridge.logp_and_grad(buf, x)
        want = float(logp(pt))
        assert abs(got - want) <= 1e-8 * max(1.0, abs(want))
        np.testing.assert_allclose(got_g, dlogp(pt), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(glmm_bridge.expand(buf, x),
                                   np.concatenate([np.ravel(a) for a in dets(pt)]), rtol=1e-12, atol=1e-12)


def test_nagq_is_the_models_node_count_everywhere():
    df = _poisson(15, 4)
    lap = hb.Model("y ~ x + (1 | g)", df, family="poisson", nagq=1)
    assert lap.build().hb_marginal_glmm.nagq == 1
    assert lap.structure_key() != hb.Model("y ~ x + (1 | g)", df, family="poisson").structure_key()
    fit = lap.fit(draws=50, tune=100, chains=1, seed=1, progressbar=False)
    assert "quadrature, 1 nodes per effect" in "\n".join(fit.header())
    ll = fit.log_likelihood()["y"].isel(chain=0, draw=0)
    d0 = fit.posterior.isel(chain=0, draw=0)
    want = glmm.likelihood(lap.design, nagq=1).value_and_grad(
        d0["beta"].values, d0["sd_g"].values.reshape(1, 1), grad=False)["ll"]
    assert float(ll.sum()) == pytest.approx(want, rel=1e-10)  # LOO with the fit's own nodes
    with pytest.raises(ValueError, match="nagq must be a whole number >= 1"):
        hb.Model("y ~ x + (1 | g)", df, family="poisson", nagq=0)
    with pytest.raises(ValueError, match="nagq sets the quadrature .* backend is 'marginal'"):
        hb.Model("x ~ 1 + (1 | g)", df, nagq=3)
