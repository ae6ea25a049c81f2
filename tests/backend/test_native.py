"""The native kernel (hierbayes.backend.native.bridge) computes exactly the PyMC model's
log-density and gradient, constants included, and the natural parameters of its draws.

Every case builds the marginal backend's PyMC model, packs the kernel's buffer for it and
compares at random points of the sampled (unconstrained) vector: ridge coordinates
(random intercept + AR(1)/CAR(1)) and PyMC's default transforms (no correlation, no
intercept term, ``||``), q = 1..3, unbalanced clusters with gaps, rows in random order,
and every prior family the kernel knows.
"""

from __future__ import annotations

import numpy as np
import pytest

import hierbayes as hb
from hierbayes.backend.native import kernel
from hierbayes.backend.native import bridge as native

CASES = {
    "ar1 q2 ridge": ("y ~ x + w + (1 + x | g)", "ar1", {}),
    "ar1 q1 ridge": ("y ~ x + (1 | g)", "ar1", {}),
    "car1 q3 ridge": ("y ~ x + (1 + x + w | g)", "car1", {"corr_g": hb.Prior("LKJ", eta=2.5)}),
    "no correlation q2": ("y ~ x + (1 + x | g)", None, {}),
    "no correlation q1": ("y ~ 0 + x + w + (1 | g)", None, {}),
    "independent slopes": ("y ~ x + (1 + x || g)", "ar1", {}),
    "no intercept term": ("y ~ x + (0 + x | g)", "ar1", {}),
    "plain q3 lkj": ("y ~ x + (1 + x + w | g)", None, {"corr_g": hb.Prior("LKJ", eta=0.7)}),
    "priors A": ("y ~ x + w + (1 + x | g)", "ar1", {
        "Intercept": hb.Prior("StudentT", nu=4, mu=0.3, sigma=2.0),
        "x": hb.Prior("StudentT", nu=4, mu=0, sigma=1.5),
        "w": hb.Prior("StudentT", nu=7, mu=0.1, sigma=1.0),
        "sigma": hb.Prior("Exponential", lam=1.3),
        "sd_g": hb.Prior("Gamma", alpha=2.0, beta=[1.5, 3.0]),
        "phi": hb.Prior("Uniform", lower=-0.5, upper=1.0),
    }),
    "priors B": ("y ~ x + (1 + x | g)", "car1", {
        "Intercept": hb.Prior("Normal", mu=0, sigma=3),
        "x": hb.Prior("Cauchy", alpha=0.0, beta=2.0),
        "sigma": hb.Prior("InverseGamma", alpha=3.0, beta=2.0),
        "sd_g": hb.Prior("LogNormal", mu=-0.5, sigma=1.0),
        "phi": hb.Prior("Beta", alpha=2.0, beta=2.0),
    }),
    "priors C": ("y ~ x + (1 | g)", None, {
        "sigma": hb.Prior("Weibull", alpha=1.5, beta=2.0),
        "sd_g": hb.Prior("HalfCauchy", beta=1.0),
        "x": hb.Prior("Flat"),
    }),
    "priors D": ("y ~ x + (1 + x | g)", "ar1", {
        "sigma": hb.Prior("HalfNormal", sigma=2.0),
        "sd_g": hb.Prior("HalfNormal", sigma=[1.0, 0.5]),
        "phi": hb.Prior("Beta", alpha=3.0, beta=1.5),
    }),
    # whole-line priors on positive parameters, truncated at 0 (issue 15 item 3): the half
    # form where mu = 0, PyMC's pm.Truncated (interval transform, log mass above 0) otherwise
    "truncated ridge q2": ("y ~ x + (1 + x | g)", "ar1", {
        "sigma": hb.Prior("Normal", mu=1.0, sigma=0.7),
        "sd_g": hb.Prior("StudentT", nu=4, mu=[0.5, -0.2], sigma=[1.0, 0.6]),
    }),
    "truncated ridge q1": ("y ~ x + (1 | g)", "car1", {
        "sigma": hb.Prior("Cauchy", alpha=-0.3, beta=1.5),
        "sd_g": hb.Prior("Normal", mu=0, sigma=2.0),
    }),
    "truncated plain q1": ("y ~ x + (1 | g)", None, {
        "sigma": hb.Prior("StudentT", nu=3, mu=0.4, sigma=1.0),
        "sd_g": hb.Prior("Normal", mu=0.8, sigma=0.5),
    }),
    "truncated plain lkj": ("y ~ x + (1 + x | g)", None, {
        "sigma": hb.Prior("Normal", mu=0, sigma=1.0),
        "sd_g": hb.Prior("Normal", mu=[1.0, -0.5], sigma=[1.0, 2.0]),
    }),
    "truncated independent": ("y ~ x + (1 + x || g)", "ar1", {
        "sd_g": hb.Prior("Cauchy", alpha=[0.2, 0.0], beta=1.0),
    }),
}


def _model(ref, formula, corr, priors, seed=0, balanced=False):
    rng = np.random.default_rng(seed)
    df = ref.random_frame(rng, n_clusters=7, min_size=2, max_size=5,
                          times=corr or "ar1", balanced=balanced)
    correlation = {"ar1": hb.AR1("t", "g"), "car1": hb.CAR1("t", "g"), None: None}[corr]
    return hb.Model(formula, df, correlation=correlation, priors=priors or None)


def _point(slices, shapes, x):
    return {k: x[o:o + s].reshape(shapes[k]) for k, (o, s) in slices.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_kernel_equals_pymc_logp_and_gradient(ref, fast_mode, name):
    formula, corr, priors = CASES[name]
    m = _model(ref, formula, corr, priors, seed=len(name))
    assert m.backend == "marginal"
    assert native.unsupported(m.design, m.priors, m.backend) is None, name
    model = m.build()
    _, slices = native.initial_point_fn(model)
    buf, info = native.pack(m.design, m.priors, slices)
    pooled, _ = native.pack(m.design, m.priors, slices, layout="pooled")
    dense, _ = native.pack(m.design, m.priors, slices, layout="direct_dense")
    # unbalanced: whitened per cluster
    assert buf[kernel.H_DIRECT] == kernel.DIRECT_WHITENED and pooled[kernel.H_DIRECT] == kernel.POOLED
    ip = model.initial_point()
    shapes = {k: np.shape(v) for k, v in ip.items()}
    logp = model.compile_logp(mode=fast_mode)
    dlogp = model.compile_dlogp(mode=fast_mode)
    det_names = info["expanded"][0]
    outs = model.replace_rvs_by_values([model[n] for n in det_names])
    dets = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", mode=fast_mode)
    rng = np.random.default_rng(1)
    finite = 0
    for _ in range(16):
        x = rng.normal(size=info["n_dim"]) * 0.8
        pt = _point(slices, shapes, x)
        want = float(logp(pt))
        got, got_g = native.logp_and_grad(buf, x)
        for other in (pooled, dense):  # same density, other layouts
            got_p, got_pg = native.logp_and_grad(other, x)
            assert got_p == pytest.approx(got, rel=1e-11, abs=1e-9) or not np.isfinite(got)
            if np.isfinite(got):
                np.testing.assert_allclose(got_pg, got_g, rtol=1e-9, atol=1e-9 * max(1, np.abs(got_g).max()))
        if not np.isfinite(want):  # e.g. phi outside a narrower prior's support
            assert not np.isfinite(got), name
            continue
        finite += 1
        want_g = dlogp(pt)
        # the tolerance of the collapsed density's exactness tests (test_collapsed.py)
        assert abs(got - want) <= 1e-8 * max(1.0, abs(want)), name
        np.testing.assert_allclose(got_g, want_g, rtol=1e-7, atol=1e-7 * max(1, np.abs(want_g).max()))
        flat = np.concatenate([np.ravel(v) for v in dets(pt)])
        np.testing.assert_allclose(native.expand(buf, x), flat, rtol=1e-10, atol=1e-12)
    assert finite >= 3, name


def test_patterns_pool_identical_clusters(fast_mode, ref):
    """Balanced data: one pattern holds every cluster; the density is still exact."""
    m = _model(ref, "y ~ x + (1 + t | g)", "ar1", {}, seed=3, balanced=True)
    model = m.build()
    _, slices = native.initial_point_fn(model)
    buf, info = native.pack(m.design, m.priors, slices)
    pat = native.kernel_patterns(m.design, m.design.groups[0])
    assert not pat["direct"]
    assert pat["K"].shape[0] == 1 and pat["count"][0] == m.design.groups[0].n_levels
    x = np.random.default_rng(2).normal(size=info["n_dim"])
    ip = model.initial_point()
    pt = _point(slices, {k: np.shape(v) for k, v in ip.items()}, x)
    want = float(model.compile_logp(mode=fast_mode)(pt))
    assert abs(native.logp_and_grad(buf, x)[0] - want) <= 1e-8 * max(1.0, abs(want))


def test_extreme_points_are_rejected_not_raised(ref):
    m = _model(ref, "y ~ x + (1 + x | g)", "ar1", {})
    model = m.build()
    _, slices = native.initial_point_fn(model)
    buf, info = native.pack(m.design, m.priors, slices)
    x = np.full(info["n_dim"], 800.0)
    val, _ = native.logp_and_grad(buf, x)
    assert not np.isfinite(val)


@pytest.mark.parametrize(
    "formula, corr, priors, backend, reason",
    [
        ("y ~ x + (1 | g)", "ar1", {"sigma": hb.Prior("HalfNormal", sigma=hb.Prior("HalfNormal", sigma=1))},
         "marginal", "sigma"),
        ("y ~ x + (1 | g)", None, {"x": hb.Prior("Uniform", lower=-5, upper=5)}, "marginal", "'x'"),
        ("y ~ x + (1 | g)", None, {"sd_g": hb.Prior("TruncatedNormal", mu=0, sigma=1, lower=0)},
         "marginal", "sd_g"),
        ("y ~ x + (1 | g)", None, {}, "latent", "marginal backend"),
    ],
)
def test_unsupported_models_say_why(ref, formula, corr, priors, backend, reason):
    m = _model(ref, formula, corr, priors)
    why = native.unsupported(m.design, m.priors, backend)
    assert why is not None and reason in why


def test_compiler_choice(ref):
    """'native' insists (clear error naming the reason); 'auto' falls back to JAX."""
    m = _model(ref, "y ~ x + (1 | g)", None, {"x": hb.Prior("Uniform", lower=-5, upper=5)})
    with pytest.raises(ValueError, match="compiler='native' does not apply.*'x'"):
        m.fit(draws=20, tune=20, chains=1, compiler="native", progressbar=False)
    fit = m.fit(draws=30, tune=30, chains=1, seed=1, progressbar=False)
    assert fit.timing["compiler"] == "jax"


@pytest.mark.parametrize("kw, name", [({"compiler": "cuda"}, "compiler"),
                                      ({"mass_matrix": "dense"}, "mass_matrix")])
def test_unknown_sampler_options_are_named(ref, kw, name):
    m = _model(ref, "y ~ x + (1 | g)", None, {})
    with pytest.raises(ValueError, match=f"{name} must be"):
        m.fit(draws=20, tune=20, chains=1, progressbar=False, **kw)


@pytest.mark.slow  # a full fit each way; the density and gradient are tested equal above
def test_native_fit_matches_jax_fit(ref):
    """End to end: same variables, dims and coords as the JAX path, posterior means within
    Monte Carlo error (the densities are equal, so only sampling noise differs)."""
    rng = np.random.default_rng(11)
    df = ref.random_frame(rng, n_clusters=40, min_size=3, max_size=6, times="ar1")
    m = hb.Model("y ~ x + (1 + x | g)", df, correlation=hb.AR1("t", "g"))
    a = m.fit(draws=500, tune=500, chains=2, seed=3, progressbar=False)
    b = m.fit(draws=500, tune=500, chains=2, seed=3, progressbar=False, compiler="jax")
    assert a.timing["compiler"] == "native" and b.timing["compiler"] == "jax"
    pa, pb = a.idata.posterior, b.idata.posterior
    assert set(pa.data_vars) == set(pb.data_vars)
    for v in ["beta", "sigma", "phi", "sd_g", "corr_g", "b_g"]:
        assert pa[v].dims == pb[v].dims
        for d in pa[v].dims[2:]:
            assert list(pa[v][d].values) == list(pb[v][d].values)
    for v in ["beta", "sigma", "phi", "sd_g"]:
        diff = np.abs(pa[v].mean(("chain", "draw")) - pb[v].mean(("chain", "draw")))
        sd = pb[v].std(("chain", "draw"))
        assert np.all(diff < 0.35 * sd + 1e-9), (v, diff.values, sd.values)


def test_initial_points_are_thread_safe(ref):
    """nutpie asks for starting points from its chain threads at once: every answer must
    be whole (an unlocked PyTensor function returned vectors of the wrong length)."""
    from concurrent.futures import ThreadPoolExecutor

    m = _model(ref, "y ~ x + (1 + x | g)", "ar1", {})
    init, slices = native.initial_point_fn(m.build())
    n = sum(s for _, s in slices.values())
    with ThreadPoolExecutor(8) as pool:
        points = list(pool.map(init, range(400)))
    assert all(p.shape == (n,) and np.all(np.isfinite(p)) for p in points)
    np.testing.assert_array_equal(points[17], init(17))


@pytest.mark.parametrize("corr", ["ar1", "car1", None])
@pytest.mark.parametrize("formula", ["y ~ x + (1 | g)", "y ~ x + w + (1 + x | g)",
                                     "y ~ x + w + (1 + x + w | g)"])
def test_whitened_layout_equals_dense_on_ragged_clusters(fast_mode, ref, corr, formula):
    """Work linear in the rows (whitening + Woodbury) gives the dense algebra's density and
    gradient: size-1 clusters, clusters of 12 rows, gaps, irregular times, rows shuffled."""
    rng = np.random.default_rng(7)
    df = ref.random_frame(rng, n_clusters=12, min_size=1, max_size=12, times=corr or "ar1")
    assert df.groupby("g").size().min() == 1 and df.groupby("g").size().max() >= 8
    correlation = {"ar1": hb.AR1("t", "g"), "car1": hb.CAR1("t", "g"), None: None}[corr]
    m = hb.Model(formula, df, correlation=correlation)
    model = m.build()
    _, slices = native.initial_point_fn(model)
    fast, info = native.pack(m.design, m.priors, slices, layout="direct")
    dense, _ = native.pack(m.design, m.priors, slices, layout="direct_dense")
    logp, dlogp = model.compile_logp(mode=fast_mode), model.compile_dlogp(mode=fast_mode)
    shapes = {k: np.shape(v) for k, v in model.initial_point().items()}
    checked = 0
    for _ in range(10):
        x = rng.normal(size=info["n_dim"]) * 0.7
        got, got_g = native.logp_and_grad(fast, x)
        want, want_g = native.logp_and_grad(dense, x)
        if not np.isfinite(want):
            assert not np.isfinite(got)
            continue
        assert abs(got - want) <= 1e-10 * max(1.0, abs(want))
        np.testing.assert_allclose(got_g, want_g, rtol=1e-8, atol=1e-8 * max(1, np.abs(want_g).max()))
        pt = _point(slices, shapes, x)
        assert abs(got - float(logp(pt))) <= 1e-8 * max(1.0, abs(want))
        np.testing.assert_allclose(got_g, dlogp(pt), rtol=1e-7, atol=1e-7 * max(1, np.abs(want_g).max()))
        checked += 1
    assert checked >= 5


@pytest.mark.parametrize("prior", [
    hb.Prior("Normal", mu=0.7, sigma=[0.5, 2.0]),
    hb.Prior("Normal", mu=-3.0, sigma=0.4),           # little mass above 0: log mass -20
    hb.Prior("StudentT", nu=3.5, mu=[-1.0, 2.0], sigma=1.3),
    hb.Prior("Cauchy", alpha=[0.5, -2.0], beta=0.8),
    hb.Prior("Normal", mu=0, sigma=[1.0, 3.0]),       # the half form: HalfNormal
])
def test_truncated_prior_rows_are_pymcs_density(prior):
    """A whole-line prior truncated at 0 (what a positive parameter's prior becomes) has the
    density of the PyMC graph the backends build (pm.Truncated or the half-distribution),
    to 1e-12, and -inf below 0."""
    import pymc as pm

    from hierbayes.backend.params import make_dist

    cut = prior.truncated(0)
    rows = native.prior_rows(cut, 2)
    dist = make_dist("sd", cut, shape=2)
    for v in [1e-6, 0.05, 0.9, 3.0, 40.0]:
        want = pm.logp(dist, np.full(2, v)).eval()
        for i in range(2):
            got, _ = kernel.prior_at(rows[i], 0, v)
            assert abs(got - want[i]) <= 1e-12 * max(1.0, abs(want[i])), (v, got, want[i])
    assert kernel.prior_at(rows[0], 0, -1e-9)[0] == -np.inf
