"""The latent backend's likelihood given the random effects is exact: the whitened
Gaussian potential equals sum_c log N(y_c; mu_c, sigma^2 R_c(phi)) with scipy, and
without a residual correlation the observed ``y`` has the plain Normal log-density.

No sampling: the model is compiled and evaluated at points of its value variables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hierbayes.spec.correlation import AR1, CAR1
from hierbayes.design.build import build_design
from hierbayes.spec.priors import resolve_priors
from hierbayes.spec.formula import parse

CORR = {"ar1": AR1("t", "g"), "car1": CAR1("t", "g"), None: None}

#: name -> (fixed, [(re_expr, re_cols, factor)], corr, phi to set (None: keep the point's), seed)
CASES = {
    "ar1-q2": ("x + w", [("1 + x", ["1", "x"], "g")], "ar1", None, 1),
    "ar1-q2-negative-phi": ("x", [("1 + x", ["1", "x"], "g")], "ar1", -0.55, 2),
    "ar1-q3": ("0 + x", [("1 + x + t", ["1", "x", "t"], "g")], "ar1", 0.8, 3),
    "car1-q1": ("x", [("1", ["1"], "g")], "car1", None, 4),
    "ar1-crossed": ("x", [("1 + x", ["1", "x"], "g"), ("1", ["1"], "h")], "ar1", 0.35, 5),
    "none-q2": ("x + w", [("1 + x", ["1", "x"], "g")], None, None, 6),
    "none-crossed": ("x", [("1", ["1"], "g"), ("0 + w", ["w"], "h")], None, None, 7),
}


@pytest.fixture(scope="module")
def latent_models(ref):
    from hierbayes.backend import build_model

    cache = {}

    def get(name):
        if name not in cache:
            fixed, terms, corr, _, seed = CASES[name]
            rng = np.random.default_rng(seed)
            df = ref.random_frame(rng, n_clusters=5, max_size=5, times=corr or "ar1")
            df["h"] = rng.choice(["h1", "h2", "h3"], size=len(df))  # crossed with g
            rhs = " + ".join([fixed] + [f"({e} | {f})" for e, _, f in terms])
            d = build_design(parse(f"y ~ {rhs}", correlation=CORR[corr]), df)
            model = build_model(d, resolve_priors(d, None), "latent")
            cache[name] = (model, df, d)
        return cache[name]

    return get


def _point(model, name, mode, seed=0):
    """A random point of the value variables; phi set through its transform when asked."""
    rng = np.random.default_rng(seed)
    point = {k: v + 0.5 * rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}
    phi = CASES[name][3]
    if phi is not None:
        rv = model["phi"]
        value = model.rvs_to_values[rv]
        tr = model.rvs_to_transforms.get(rv)
        if tr is not None:
            phi = tr.forward(np.array(phi), *rv.owner.inputs).eval(mode=mode)
        point[value.name] = np.asarray(phi)
    return point


def _evaluate(model, point, names, mode):
    outs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", mode=mode)
    return dict(zip(names, fn(point)))


def _mean(ref, df, d, fixed, terms, beta, b_by_factor):
    """mu = X beta + sum over factors of Z_g b_g[level], from the user's rows."""
    mu = ref.columns(df, ref.user_fixed_columns(fixed)) @ beta
    for _, cols, factor in terms:
        levels = list(d.group(factor).levels)
        b = b_by_factor[factor][[levels.index(str(v)) for v in df[factor]]]
        mu = mu + (ref.columns(df, cols) * b).sum(axis=1)
    return pd.Series(mu, index=df.index)


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n][2] is not None])
def test_whitened_potential_equals_dense_mvn(ref, latent_models, fast_mode, name):
    model, df, d = latent_models(name)
    fixed, terms, corr, phi_set, _ = CASES[name]
    factors = [f for _, _, f in terms]
    names = ["loglik", "beta", "sigma", "phi"] + [f"b_{f}" for f in factors]
    vals = _evaluate(model, _point(model, name, fast_mode), names, fast_mode)
    phi = float(vals["phi"])
    if phi_set is not None:
        assert phi == pytest.approx(phi_set, abs=1e-12)
    mu = _mean(ref, df, d, fixed, terms, vals["beta"], {f: vals[f"b_{f}"] for f in factors})
    want = ref.dense_conditional_loglik(df, mu, float(vals["sigma"]), phi, corr)
    assert abs(float(vals["loglik"]) - want) <= 1e-8 * max(1.0, abs(want))


@pytest.mark.parametrize("name", ["none-q2", "none-crossed"])
def test_observed_normal_without_correlation(ref, latent_models, fast_mode, name):
    model, df, d = latent_models(name)
    fixed, terms, _, _, _ = CASES[name]
    factors = [f for _, _, f in terms]
    point = _point(model, name, fast_mode)
    vals = _evaluate(model, point, ["beta", "sigma"] + [f"b_{f}" for f in factors], fast_mode)
    mu = _mean(ref, df, d, fixed, terms, vals["beta"], {f: vals[f"b_{f}"] for f in factors})
    want = stats.norm.logpdf(df["y"], mu, float(vals["sigma"])).sum()
    got = model.compile_logp(vars=[model["y"]], mode=fast_mode)(point)
    assert abs(got - want) <= 1e-8 * max(1.0, abs(want))


def test_random_effects_follow_the_covariance_factor(latent_models, fast_mode):
    """b = z F^T with S = diag(sd) corr diag(sd): b's rows are F z, so z = 0 gives b = 0 and
    a unit z_k picks column k of a factor of S."""
    model, _, d = latent_models("ar1-q3")
    point = _point(model, "ar1-q3", fast_mode)
    vals = _evaluate(model, point, ["sd_g", "corr_g", "b_g"], fast_mode)
    S = vals["sd_g"][:, None] * vals["corr_g"] * vals["sd_g"][None, :]
    z = np.asarray(point["z_g"])
    b = vals["b_g"]
    # b_c = F z_c for one F with F F^T = S: then b^T b summed over unit z's recovers S
    F = np.linalg.lstsq(z, b, rcond=None)[0].T
    np.testing.assert_allclose(z @ F.T, b, atol=1e-10)
    np.testing.assert_allclose(F @ F.T, S, rtol=1e-8, atol=1e-10)
    assert b.shape == (d.group("g").n_levels, 3)


def test_gradient_at_initial_point_car1(ref, latent_models, fast_mode):
    model = latent_models("car1-q1")[0]
    ref.check_model_gradient(model, model.initial_point(), fast_mode)


def test_gradient_at_initial_point_ar1(ref, latent_models, fast_mode):
    model = latent_models("ar1-q2")[0]
    ref.check_model_gradient(model, model.initial_point(), fast_mode)
