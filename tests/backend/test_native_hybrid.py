"""The native hybrid callback (hierbayes.backend.native.hybrid_bridge) computes exactly the
PyMC hybrid marginal model's log-density and gradient, constants included, and the natural
parameters and sampled factors' effects of its draws.

Random small crossed and nested designs: unbalanced, size-1 clusters, q = 1 and 2 in each
factor (LKJ-correlated and ``||``), centred and non-centred sampled factors, with and without
AR(1)/CAR(1) residuals within the collapsed factor, three factors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.backend.native import bridge, hybrid_bridge as hyb
from hierbayes.sampling.nuts import SamplerOptions, decide_native


def _frame(seed: int, n: int = 46, nested: bool = False) -> pd.DataFrame:
    """Unbalanced rows over g (9 levels, some of one row), h (5 levels), k (3 levels); a
    time t distinct within g (with gaps) for the residual correlation."""
    rng = np.random.default_rng(seed)
    sizes = np.array([1, 1, 2, 3, 4, 5, 7, 9, 14])[: 9]
    sizes = sizes * n // sizes.sum() + (np.arange(9) < n - (sizes * n // sizes.sum()).sum())
    g = np.repeat(np.arange(9), sizes)
    t = np.concatenate([np.sort(rng.choice(np.arange(2 * s + 2), s, replace=False)) for s in sizes])
    N = g.size
    df = pd.DataFrame({"g": [f"g{v}" for v in g], "t": t.astype(float),
                       "h": [f"h{v}" for v in rng.integers(0, 5, N)],
                       "k": [f"k{v}" for v in rng.integers(0, 3, N)],
                       "x": rng.normal(size=N), "w": rng.normal(size=N)})
    if nested:
        df["a"] = [f"a{v}" for v in g // 3]  # g nested in a
    df["y"] = 0.5 + df.x + rng.normal(0, 0.8, 9)[g] + rng.normal(size=N)
    return df.sample(frac=1, random_state=seed).reset_index(drop=True)


CASES = {
    "q1 q1 non-centred": ("y ~ x + (1 | g) + (1 | h)", None, {"h": False}, {}),
    "q1 q1 centred": ("y ~ x + (1 | g) + (1 | h)", None, {"h": True}, {}),
    "q2 lkj, q2 lkj non-centred": ("y ~ x + (1 + x | g) + (1 + x | h)", None, {"h": False}, {}),
    "q2 lkj, q2 lkj centred": ("y ~ x + (1 + x | g) + (1 + x | h)", None, {"h": True},
                               {"corr_h": hb.Prior("LKJ", eta=2.0)}),
    "q1, q2 independent centred": ("y ~ x + w + (1 | g) + (1 + w || h)", None, {"h": True}, {}),
    "q2 independent, q2 independent non-centred": ("y ~ x + (1 + x || g) + (1 + x || h)", None,
                                                   {"h": False}, {}),
    "ar1, q1 + q2 lkj": ("y ~ x + (1 | g) + (1 + x | h)", "ar1", {"h": False}, {}),
    "ar1, q2 lkj + q1 centred": ("y ~ x + (1 + x | g) + (1 | h)", "ar1", {"h": True},
                                 {"phi": hb.Prior("Uniform", lower=-0.5, upper=1.0)}),
    "car1, q1 + q1": ("y ~ x + (1 | g) + (1 | h)", "car1", {"h": False},
                      {"phi": hb.Prior("Beta", alpha=2.0, beta=2.0)}),
    "three factors": ("y ~ x + (1 | g) + (1 | h) + (1 + x | k)", None, {"h": True, "k": False},
                      {"sigma": hb.Prior("Exponential", lam=1.3),
                       "sd_h": hb.Prior("Gamma", alpha=2.0, beta=1.5),
                       "sd_k": hb.Prior("HalfNormal", sigma=[1.0, 0.5])}),
    "nested": ("y ~ x + (1 | a / g)", None, None, {}),
    # the default run's cases: each covers several of the above in one model
    "ar1, q2 lkj + q2 lkj centred + q1 non-centred": (
        "y ~ x + (1 + x | g) + (1 + x | h) + (1 | k)", "ar1", {"h": True, "k": False},
        {"corr_h": hb.Prior("LKJ", eta=2.0)}),
    "car1, q1 + q2 independent centred + q2 lkj non-centred": (
        "y ~ x + w + (1 | g) + (1 + w || h) + (1 + x | k)", "car1", {"h": True, "k": False},
        {"phi": hb.Prior("Beta", alpha=2.0, beta=2.0), "sd_h": hb.Prior("Gamma", alpha=2.0, beta=1.5)}),
}
#: the cases of the default run (the others are marked slow: their features are covered here)
FAST = {"nested", "ar1, q2 lkj + q2 lkj centred + q1 non-centred",
        "car1, q1 + q2 independent centred + q2 lkj non-centred"}


def _model(name: str) -> hb.Model:
    formula, corr, centered, priors = CASES[name]
    df = _frame(len(name), nested="a /" in formula)
    correlation = {"ar1": hb.AR1("t", "g"), "car1": hb.CAR1("t", "g"), None: None}[corr]
    return hb.Model(formula, df, correlation=correlation, priors=priors or None, centered=centered)


def _slices(model, point: dict) -> dict[str, tuple[int, int]]:
    """Offset and size of each free variable's value in the sampled vector (nutpie's order)."""
    out, k = {}, 0
    for v in model.value_vars:
        size = int(np.size(point[v.name]))
        out[v.name] = (k, size)
        k += size
    return out


@pytest.mark.parametrize("name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow)
                                  for n in CASES])
def test_hybrid_kernel_equals_pymc_logp_and_gradient(fast_mode, name):
    import pytensor

    m = _model(name)
    assert m.backend == "marginal" and len(m.design.groups) >= 2
    assert hyb.unsupported(m.design, m.priors, m.backend) is None, name
    model = m.build()
    ip = model.initial_point()
    slices = _slices(model, ip)
    buf, info = hyb.pack(m.design, m.priors, slices)
    shapes = {k: np.shape(v) for k, v in ip.items()}
    # one function for the log-density, its gradient and the expanded variables
    lp = model.logp()
    outs = [lp, *pytensor.grad(lp, model.value_vars),
            *model.replace_rvs_by_values([model[n] for n in info["expanded"][0]])]
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", mode=fast_mode)
    nv = len(model.value_vars)
    rng = np.random.default_rng(1)
    finite = 0
    for _ in range(10):
        x = rng.normal(size=info["n_dim"]) * 0.7
        pt = {k: x[o:o + s].reshape(shapes[k]) for k, (o, s) in slices.items()}
        res = fn(pt)
        want = float(res[0])
        got, got_g = hyb.logp_and_grad(buf, x)
        if not np.isfinite(want):
            assert not np.isfinite(got), name
            continue
        finite += 1
        assert abs(got - want) <= 1e-8 * max(1.0, abs(want)), (name, got, want)
        want_g = np.concatenate([np.ravel(g) for g in res[1:1 + nv]])
        np.testing.assert_allclose(got_g, want_g, rtol=1e-8, atol=1e-8 * max(1, np.abs(want_g).max()))
        flat = np.concatenate([np.ravel(v) for v in res[1 + nv:]])
        np.testing.assert_allclose(hyb.expand(buf, x), flat, rtol=1e-10, atol=1e-12)
    assert finite >= 5, name


def test_hybrid_is_chosen_and_the_one_factor_kernel_says_why_not():
    m = _model("q1 q1 centred")
    assert "one grouping factor" in bridge.unsupported(m.design, m.priors, m.backend)
    dec = decide_native(m.design, m.priors, m.backend, SamplerOptions())
    assert dec.use and dec.kind == "hybrid"
    assert decide_native(m.design, m.priors, m.backend, SamplerOptions(compiler="jax")).use is False


@pytest.mark.parametrize("priors, backend, reason", [
    ({"x": hb.Prior("Uniform", lower=-5, upper=5)}, "marginal", "'x'"),
    ({"sd_h": hb.Prior("TruncatedNormal", mu=0, sigma=1, lower=0)}, "marginal", "sd_h"),
    ({}, "latent", "marginal backend"),
])
def test_unsupported_hybrids_say_why(priors, backend, reason):
    m = hb.Model("y ~ x + (1 | g) + (1 | h)", _frame(3), priors=priors or None)
    why = hyb.unsupported(m.design, m.priors, backend)
    assert why is not None and reason in why
    if backend == "marginal":
        with pytest.raises(ValueError, match=f"compiler='native' does not apply.*{reason}"):
            decide_native(m.design, m.priors, backend, SamplerOptions(compiler="native"))


def test_one_factor_model_is_not_a_hybrid():
    m = hb.Model("y ~ x + (1 | g)", _frame(4))
    assert "several grouping factors" in hyb.unsupported(m.design, m.priors, m.backend)
    assert decide_native(m.design, m.priors, m.backend, SamplerOptions()).kind == "gaussian"


@pytest.mark.slow
def test_native_hybrid_fit_matches_jax_fit():
    """End to end: the same variables, dims and coords as the JAX path, the summary header
    names the kernel, and posterior means agree within Monte Carlo error."""
    df = _frame(7, n=300)
    m = hb.Model("y ~ x + (1 | g) + (1 | h)", df)
    kw = dict(draws=300, tune=300, chains=2, seed=3, progressbar=False)
    fn = m.fit(**kw)
    fj = m.fit(compiler="jax", **kw)
    assert fn.timing["compiler"] == "native" and fj.timing["compiler"] == "jax"
    assert "log-density: native numba kernel (hybrid" in "\n".join(fn.header())
    assert "native kernel not used" not in "\n".join(fn.header())
    pn, pj = fn.posterior, fj.posterior
    assert set(pn.data_vars) == set(pj.data_vars)
    for v in pj.data_vars:
        assert pn[v].dims == pj[v].dims, v
        for dim in pn[v].dims[2:]:
            assert list(pn[v][dim].values) == list(pj[v][dim].values), (v, dim)
    for v in ("beta", "sigma", "sd_g", "sd_h", "b_h", "b_g"):
        a, b = pn[v].mean(("chain", "draw")).values, pj[v].mean(("chain", "draw")).values
        sd = np.sqrt(pn[v].var(("chain", "draw")).values + pj[v].var(("chain", "draw")).values)
        assert np.all(np.abs(a - b) <= 0.5 * sd + 1e-12), v

