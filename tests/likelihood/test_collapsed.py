"""The collapsed (marginal) Gaussian log-density is exact: it equals
scipy.stats.multivariate_normal on the dense covariance Z S Z^T + sigma^2 R(phi), summed
over clusters, in both layouts, in numpy and through the PyMC graph (DESIGN.md step 5).

No sampling: the PyMC model is only compiled and evaluated at points.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from hierbayes.likelihood import arprocess
from hierbayes.likelihood import collapsed
from hierbayes.spec.correlation import AR1, CAR1
from hierbayes.design.build import build_design
from hierbayes.spec.priors import resolve_priors
from hierbayes.spec.formula import parse

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None)

#: random-effect expressions by q, and their dense columns ("1" = intercept)
RE = {
    1: [("1", ["1"]), ("0 + x", ["x"])],
    2: [("1 + x", ["1", "x"]), ("1 + t", ["1", "t"])],
    3: [("1 + x + t", ["1", "x", "t"])],
}
FIXED = ["x + w", "x", "0 + x", "t + x"]
CORR = {"ar1": AR1("t", "g"), "car1": CAR1("t", "g"), None: None}


def _tol(ref: float) -> float:
    """1e-8 absolute for values of order one, relative beyond (sums over many rows)."""
    return 1e-8 * max(1.0, abs(ref))


@st.composite
def cases(draw):
    corr = draw(st.sampled_from([None, "ar1", "car1"]))
    if corr == "ar1":
        phi = draw(st.floats(-0.95, 0.95))  # negative phi: sign alternates with odd lags
    elif corr == "car1":
        phi = draw(st.floats(0.02, 0.98))
    else:
        phi = None
    q = draw(st.integers(1, 3))
    re_expr, re_cols = draw(st.sampled_from(RE[q]))
    return {
        "corr": corr,
        "phi": phi,
        "q": q,
        "re": (re_expr, re_cols),
        "fixed": draw(st.sampled_from(FIXED)),
        "layout": draw(st.sampled_from(["padded", "pooled"])),
        # balanced clusters share time patterns: the pooled layout then pools clusters
        "balanced": draw(st.booleans()),
        "n_clusters": draw(st.integers(3, 7)),
        "max_size": draw(st.integers(2, 6)),
        "sigma": draw(st.floats(0.3, 3.0)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _setup(ref, case):
    """Random frame, design, parameters and the dense reference value for one case."""
    rng = np.random.default_rng(case["seed"])
    times = case["corr"] if case["corr"] is not None else "ar1"
    df = ref.random_frame(
        rng,
        n_clusters=case["n_clusters"],
        min_size=2 if case["balanced"] else 1,
        max_size=case["max_size"],
        times=times,
        balanced=case["balanced"],
    )
    fixed_cols = ref.user_fixed_columns(case["fixed"])
    assume(len(df) >= len(fixed_cols) + 2 and df["t"].nunique() > 1)
    re_expr, re_cols = case["re"]
    formula = f"y ~ {case['fixed']} + ({re_expr} | g)"
    d = build_design(parse(formula, correlation=CORR[case["corr"]]), df)
    labels = ["Intercept" if c == "1" else c for c in fixed_cols]
    assert list(d.fixed_names) == labels
    assert list(d.groups[0].terms) == ["Intercept" if c == "1" else c for c in re_cols]
    beta = rng.normal(size=len(fixed_cols))
    S = ref.random_spd(rng, case["q"], scale=rng.uniform(0.2, 2.0))
    return df, d, fixed_cols, re_cols, beta, S


@FAST
@given(case=cases())
def test_collapsed_loglik_equals_dense_mvn(ref, case):
    df, d, fixed_cols, re_cols, beta, S = _setup(ref, case)
    sigma, phi, corr = case["sigma"], case["phi"], case["corr"]
    cd = collapsed.prepare(d, case["layout"])
    assert cd.layout == case["layout"] and cd.q == case["q"] and cd.corr == corr
    got = float(collapsed.loglik(np, cd, beta, sigma, phi, S))
    want = ref.dense_marginal_loglik(df, fixed_cols, re_cols, beta, sigma, phi, S, corr)
    assert abs(got - want) <= _tol(want), (got, want)


@FAST
@given(case=cases())
def test_padded_per_cluster_values(ref, case):
    """The padded layout's per-cluster terms belong to the clusters in ``cluster_levels`` order."""
    df, d, fixed_cols, re_cols, beta, S = _setup(ref, case)
    sigma, phi, corr = case["sigma"], case["phi"], case["corr"]
    cd = collapsed.prepare(d, "padded")
    per = collapsed.loglik_padded(np, cd.arrays, corr, beta, sigma, phi, S, cd.q)
    assert per.shape == (len(d.cluster_levels),)
    for c, lab in enumerate(d.cluster_levels):
        part = df[df["g"] == lab]
        want = ref.dense_marginal_loglik(part, fixed_cols, re_cols, beta, sigma, phi, S, corr)
        assert abs(per[c] - want) <= _tol(want), (lab, per[c], want)


def test_pooled_layout_pools_balanced_clusters(ref):
    rng = np.random.default_rng(5)
    df = ref.random_frame(rng, n_clusters=6, min_size=4, max_size=4, times="ar1", balanced=True)
    d = build_design(parse("y ~ x + (1 + t | g)", correlation=AR1("t", "g")), df)
    cd = collapsed.prepare(d, "pooled")
    assert cd.arrays["count"].tolist() == [6.0]  # one shared pattern for all 6 clusters
    assert collapsed.prepare(d).layout == "pooled"  # and "auto" picks it
    beta, S = np.array([0.2, -0.4]), ref.random_spd(rng, 2)
    want = ref.dense_marginal_loglik(df, ["1", "x"], ["1", "t"], beta, 1.1, -0.6, S, "ar1")
    assert collapsed.loglik(np, cd, beta, 1.1, -0.6, S) == pytest.approx(want, rel=1e-10)


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(seed=st.integers(0, 2**32 - 1), corr=st.sampled_from(["ar1", "car1"]), phi=st.floats(-0.95, 0.95))
def test_whitening_and_precision(ref, seed, corr, phi):
    """Whitening: sum w^2 = e^T R^-1 e and -sum log s_k = -log|R| / 2; the pooled layout's
    precision matrix is R^-1 on the observed slots."""
    phi = abs(phi) + 0.02 if corr == "car1" else phi
    rng = np.random.default_rng(seed)
    df = ref.random_frame(rng, n_clusters=4, max_size=5, times=corr)
    d = build_design(parse("y ~ x + (1 | g)", correlation=CORR[corr]), df)
    arrays = collapsed.prepare(d, "padded").arrays
    a, inv_s2 = arprocess.coefficients(np, corr, phi, arrays["lag"], arrays["inner"], arrays["odd"])
    w = arprocess.whiten(np, arrays["Y"], a, inv_s2)
    P = collapsed.precision_matrix(np, a, inv_s2, arrays["Y"].shape[1])
    for c, lab in enumerate(d.cluster_levels):
        part = df[df["g"] == lab].sort_values("t")
        n, e = len(part), part["y"].to_numpy()
        R = ref.correlation_matrix(part["t"].to_numpy(), phi, corr)
        assert (w[c] ** 2).sum() == pytest.approx(e @ np.linalg.solve(R, e), rel=1e-9, abs=1e-10)
        assert 0.5 * np.log(inv_s2[c]).sum() == pytest.approx(-0.5 * np.linalg.slogdet(R)[1], abs=1e-9)
        np.testing.assert_allclose(P[c, :n, :n], np.linalg.inv(R), rtol=1e-8, atol=1e-8)


def test_prepare_rejects_unsupported_structures(ref):
    rng = np.random.default_rng(2)
    df = ref.random_frame(rng, n_clusters=4, times="ar1")
    df["h"] = np.where(df["x"] > 0, "u", "v")
    two = build_design(parse("y ~ x + (1 | g) + (1 | h)"), df)
    with pytest.raises(ValueError, match="pooled layout needs a single grouping factor"):
        collapsed.prepare(two, "pooled")
    assert collapsed.prepare(two).layout == "padded"  # hybrid: g collapsed, h an offset
    other = build_design(parse("y ~ x + (1 | h)", correlation=AR1("t", "g")), df)
    with pytest.raises(ValueError, match="within 'g'.*on 'h'"):
        collapsed.prepare(other)
    one = build_design(parse("y ~ x + (1 | g)"), df)
    with pytest.raises(ValueError, match="layout"):
        collapsed.prepare(one, "dense")


# ----------------------------------------------------------------------- symbolic gradient


@pytest.mark.parametrize(
    "corr, phi, layout",
    [
        ("ar1", 0.45, "padded"),
        ("ar1", -0.6, "pooled"),
        ("car1", 0.3, "padded"),
        ("car1", 0.7, "pooled"),
        (None, None, "padded"),
        pytest.param("ar1", 0.0, "padded"),
        pytest.param("ar1", 0.0, "pooled"),
    ],
)
def test_symbolic_gradient_matches_finite_differences(ref, fast_mode, corr, phi, layout):
    """PyTensor's gradient of the collapsed density (what NUTS uses) against central
    differences of the numpy value (exact by the tests above), at fixed parameters."""
    import pytensor
    import pytensor.tensor as pt

    rng = np.random.default_rng(7)
    df = ref.random_frame(rng, n_clusters=4, max_size=4, times=corr or "ar1")
    d = build_design(parse("y ~ x + (1 + x | g)", correlation=CORR[corr]), df)
    cd = collapsed.prepare(d, layout)
    arrays = {k: pt.constant(v) for k, v in cd.arrays.items()}
    b, s, f, S = pt.dvector("beta"), pt.dscalar("sigma"), pt.dscalar("phi"), pt.dmatrix("S")
    if layout == "pooled":
        T = cd.arrays["Z"].shape[1]
        ll = collapsed.loglik_pooled(pt, arrays, corr, b, s, f, S, cd.q, T).sum()
    else:
        ll = collapsed.loglik_padded(pt, arrays, corr, b, s, f, S, cd.q).sum()
    grads = pt.grad(ll, [b, s, f, S], disconnected_inputs="ignore")
    fn = pytensor.function([b, s, f, S], [ll, *grads], mode=fast_mode, on_unused_input="ignore")
    beta, sigma, S0 = np.array([0.3, -0.2]), 0.8, ref.random_spd(rng, 2)
    phi0 = 0.0 if phi is None else phi
    value, g_beta, g_sigma, g_phi, g_S = fn(beta, sigma, phi0, S0)

    def num(beta=beta, sigma=sigma, phi=phi, S=S0):
        return float(collapsed.loglik(np, cd, beta, sigma, phi, S))

    assert value == pytest.approx(num(), rel=1e-12)
    h = 1e-6
    e = np.eye(2)
    fd_beta = [(num(beta=beta + h * e[k]) - num(beta=beta - h * e[k])) / (2 * h) for k in range(2)]
    np.testing.assert_allclose(g_beta, fd_beta, rtol=1e-5, atol=1e-6)
    fd_sigma = (num(sigma=sigma + h) - num(sigma=sigma - h)) / (2 * h)
    assert g_sigma == pytest.approx(fd_sigma, rel=1e-5, abs=1e-6)
    if phi is not None:
        fd_phi = (num(phi=phi + h) - num(phi=phi - h)) / (2 * h)
        assert g_phi == pytest.approx(fd_phi, rel=1e-5, abs=1e-6)
    for i, j in [(0, 0), (1, 0), (1, 1)]:  # the density reads the lower triangle of S
        dS = np.zeros((2, 2))
        dS[i, j] = h
        fd_S = (num(S=S0 + dS) - num(S=S0 - dS)) / (2 * h)
        assert g_S[i, j] == pytest.approx(fd_S, rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------- through PyMC

#: name -> (fixed, (re_expr, re_cols), corr, layout, balanced, seed)
PYMC_CASES = {
    "q1-none-pooled": ("x", ("1", ["1"]), None, "pooled", False, 1),
    "q2-ar1-padded": ("x + w", ("1 + x", ["1", "x"]), "ar1", "padded", False, 2),
    "q3-car1-pooled": ("x", ("1 + x + t", ["1", "x", "t"]), "car1", "pooled", False, 3),
    "q2-ar1-balanced-pooled": ("t + x", ("1 + t", ["1", "t"]), "ar1", "pooled", True, 4),
    "q1-slope-ar1-padded": ("x", ("0 + x", ["x"]), "ar1", "padded", False, 5),
}


@pytest.fixture(scope="module")
def pymc_models(ref):
    """Marginal PyMC models (built lazily, once per case) with their data."""
    from hierbayes.backend import build_model

    cache = {}

    def get(name):
        if name not in cache:
            fixed, (re_expr, re_cols), corr, layout, balanced, seed = PYMC_CASES[name]
            rng = np.random.default_rng(seed)
            df = ref.random_frame(
                rng, n_clusters=5, min_size=2 if balanced else 1, max_size=5,
                times=corr or "ar1", balanced=balanced,
            )
            d = build_design(parse(f"y ~ {fixed} + ({re_expr} | g)", correlation=CORR[corr]), df)
            cd = collapsed.prepare(d, layout)
            model = build_model(d, resolve_priors(d, None), "marginal", cd)
            cache[name] = (model, df, d, cd, ref.user_fixed_columns(fixed), re_cols, corr)
        return cache[name]

    return get


def _parameters(model, point, q, mode):
    """The potential and the (beta, sigma, phi, S) of the model at a point of its value
    variables, whatever the sampled parameterisation (free variables or deterministics)."""
    names = ["loglik", "beta", "sigma", "sd_g"]
    names += ["phi"] if "phi" in model.named_vars else []
    names += ["corr_g"] if q > 1 else []
    outs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", mode=mode)
    vals = dict(zip(names, fn(point)))
    sd = np.atleast_1d(vals["sd_g"])
    corr = vals.get("corr_g", np.eye(1))
    S = sd[:, None] * corr * sd[None, :]
    phi = None if vals.get("phi") is None else float(vals["phi"])
    return float(vals["loglik"]), vals["beta"], float(vals["sigma"]), phi, S


@pytest.mark.parametrize("name", list(PYMC_CASES)[:4])
def test_pymc_potential_equals_numpy_and_dense(ref, pymc_models, fast_mode, name):
    model, df, d, cd, fixed_cols, re_cols, corr = pymc_models(name)
    assert "loglik" in [p.name for p in model.potentials]
    rng = np.random.default_rng(0)
    point = {k: v + 0.4 * rng.normal(size=np.shape(v)) for k, v in model.initial_point().items()}
    ll, beta, sigma, phi, S = _parameters(model, point, cd.q, fast_mode)
    assert (phi is None) == (corr is None)
    assert np.all(np.linalg.eigvalsh(S) > 0)
    via_numpy = float(collapsed.loglik(np, cd, beta, sigma, phi, S))
    dense = ref.dense_marginal_loglik(df, fixed_cols, re_cols, beta, sigma, phi, S, corr)
    assert abs(ll - via_numpy) <= _tol(via_numpy)
    assert abs(ll - dense) <= _tol(dense)
    # compile_logp of the potential alone gives the same number
    only = model.compile_logp(vars=[model["loglik"]], mode=fast_mode)
    assert only(point) == pytest.approx(ll, rel=1e-12)


@pytest.mark.parametrize("name", ["q1-none-pooled", "q2-ar1-padded"])
def test_model_gradient_at_initial_point(ref, pymc_models, fast_mode, name):
    model = pymc_models(name)[0]
    ref.check_model_gradient(model, model.initial_point(), fast_mode)


def test_model_gradient_at_initial_point_phi_zero(ref, pymc_models, fast_mode):
    model, _, _, cd, _, _, _ = pymc_models("q1-slope-ar1-padded")
    point = model.initial_point()
    assert _parameters(model, point, cd.q, fast_mode)[3] == 0.0  # phi = 0 exactly here
    ref.check_model_gradient(model, point, fast_mode)


def test_numpy_value_matches_scipy_logpdf_for_one_cluster(ref):
    """A hand-sized case: one cluster of 3 with a gap (times 0, 1, 3), q = 2, AR1 phi < 0."""
    import pandas as pd

    df = pd.DataFrame(
        {"g": ["a", "a", "a", "b", "b"], "t": [3.0, 0.0, 1.0, 5.0, 7.0],
         "x": [0.3, -1.2, 0.8, 0.1, 2.0], "y": [1.0, -0.5, 0.7, 0.2, 1.9]}
    )
    d = build_design(parse("y ~ x + (1 + x | g)", correlation=AR1("t", "g")), df)
    beta, sigma, phi, S = np.array([0.1, 0.5]), 0.9, -0.5, np.array([[0.8, 0.2], [0.2, 0.3]])
    part = df.iloc[[1, 2, 0]]  # cluster a in time order
    Z = np.column_stack([np.ones(3), part["x"]])
    R = np.array([[1, phi, phi**3], [phi, 1, phi**2], [phi**3, phi**2, 1]])
    a = stats.multivariate_normal.logpdf(part["y"], Z @ beta, Z @ S @ Z.T + sigma**2 * R)
    Zb = np.column_stack([np.ones(2), df["x"].iloc[3:]])
    Rb = np.array([[1, phi**2], [phi**2, 1]])
    b = stats.multivariate_normal.logpdf(df["y"].iloc[3:], Zb @ beta, Zb @ S @ Zb.T + sigma**2 * Rb)
    for layout in ["padded", "pooled"]:
        got = collapsed.loglik(np, collapsed.prepare(d, layout), beta, sigma, phi, S)
        assert got == pytest.approx(a + b, rel=1e-12)
