"""The marginal GLMM likelihood by adaptive Gauss-Hermite quadrature is exact where it should
be and the kernel is the reference:

- each cluster's log-likelihood against scipy.integrate.quad (q = 1) and dblquad (q = 2), a
  brute-force wide Gauss-Hermite grid (non-adaptive, 80 nodes for q = 1, 64 x 64 for q = 2)
  and, for q = 3, a design whose integral factorises into three quad integrals; on random
  designs with small, large and size-1 clusters, extreme linear predictors and all-0 / all-1
  Bernoulli clusters, for every family;
- one node is the Laplace approximation, computed independently with scipy.optimize;
- the gradient (beta, L, alpha, row offsets) against central finite differences;
- the numba kernel's values, modes and gradients against the numpy reference (1e-8).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from scipy import integrate, optimize, special

from hierbayes.likelihood import quadrature as Q
from hierbayes.likelihood import quadrature_kernel as qk
from hierbayes.spec import families as F

FAMILIES = {
    "bernoulli logit": F.Bernoulli(),
    "bernoulli probit": F.Bernoulli(link="probit"),
    "binomial logit": F.Binomial(),
    "binomial probit": F.Binomial(link="probit"),
    "poisson": F.Poisson(),
    "negbinomial": F.NegativeBinomial(),
    "gamma": F.Gamma(),
    "lognormal": F.LogNormal(),
}
ALPHA = 1.7
#: families whose linear predictors are on a log scale of the response (extremes at +-8)
LOG_SCALE = ("poisson", "negbinomial", "gamma", "lognormal")


def par(family) -> dict:
    """The family's parameter (if any) at ``ALPHA``, under its own name."""
    return {name: ALPHA for name in family.extra_params}


def design(family, q: int, sizes, seed: int, sd: float = 0.8, shift: float = 0.0):
    """Rows of clusters of the given sizes, simulated from the model; returns
    ``(rows, beta, L)``. ``shift`` moves every linear predictor (extreme designs)."""
    rng = np.random.default_rng(seed)
    sizes = np.asarray(sizes)
    C = sizes.size
    cl = np.repeat(np.arange(C), sizes)
    N = cl.size
    X = np.column_stack([np.ones(N), rng.normal(size=N)])
    Z = np.column_stack([np.ones(N), rng.normal(size=(N, q - 1))])[:, :q]
    L = np.tril(0.3 * rng.normal(size=(q, q)), -1) + sd * np.eye(q)
    beta = np.array([0.3 + shift, -0.5])
    eta = X @ beta + (Z * (rng.normal(size=(C, q)) @ L.T)[cl]).sum(axis=1)
    trials = rng.integers(1, 12, N).astype(float) if family.name == "binomial" else None
    y = family.draw(rng, np.clip(eta, -30, 6), par(family), trials)
    rows, _ = Q.cluster_rows(y, X, Z, cl, n_clusters=C, trials=trials,
                             offset=0.1 * rng.normal(size=N))
    return rows, beta, L


def cluster_args(family, rows, beta, L, c):
    """``(y, n, eta0, W, params)`` of cluster ``c``."""
    s = rows.cluster(c)
    return (rows.y[s], rows.trials[s], rows.X[s] @ beta + rows.offset[s], rows.Z[s] @ L,
            par(family))


def log_integrand(family, y, n, eta0, W, params):
    """``u -> sum_i log p(y_i | eta0 + W u) - u'u/2`` (log density checked against scipy in
    tests/spec/test_family_derivatives.py)."""
    def f(u):
        u = np.atleast_1d(u)
        with np.errstate(over="ignore"):  # quad's far tails: exp(eta) = inf, density 0
            return family.eta_derivatives(y, eta0 + W @ u, params, n)[0].sum() - 0.5 * u @ u
    return f


def independent_mode(f, q):
    res = optimize.minimize(lambda u: -f(u), np.zeros(q), method="BFGS", options={"gtol": 1e-10})
    return res.x, -res.fun


def root_mode(family, y, n, eta0, W, params):
    """The mode as the root of ``W' l'(eta0 + W u) - u`` (scipy.optimize.root)."""
    grad = lambda u: W.T @ family.eta_derivatives(y, eta0 + W @ u, params, n)[1] - u  # noqa: E731
    return optimize.root(grad, np.zeros(W.shape[1]), tol=1e-14).x


# ------------------------------------------------------------------ exact references


def quad_loglik(f) -> float:
    """log of ``integral exp(f(u)) du / sqrt(2 pi)`` by scipy.integrate.quad around the mode."""
    u, top = independent_mode(f, 1)
    step = 1e-4
    curv = -(f(u + step) - 2 * top + f(u - step)) / step**2
    scale = 1 / np.sqrt(max(curv, 1e-12))
    g = lambda t: np.exp(f(u[0] + scale * t) - top)  # noqa: E731
    kw = dict(epsabs=1e-14, epsrel=1e-12, limit=500)
    val = integrate.quad(g, -np.inf, 0, **kw)[0] + integrate.quad(g, 0, np.inf, **kw)[0]
    return top + np.log(val * scale / np.sqrt(2 * np.pi))


def dblquad_loglik(f) -> float:
    """The q = 2 integral by scipy.integrate.dblquad on a box of +-12 Laplace sds."""
    u, top = independent_mode(f, 2)
    step = 1e-4
    Hm = np.empty((2, 2))
    for a in range(2):
        for b in range(2):
            ea, eb = step * np.eye(2)[a], step * np.eye(2)[b]
            Hm[a, b] = -(f(u + ea + eb) - f(u + ea - eb) - f(u - ea + eb) + f(u - ea - eb)) / (4 * step**2)
    A = np.linalg.cholesky(np.linalg.inv(Hm))
    g = lambda t2, t1: np.exp(f(u + A @ np.array([t1, t2])) - top)  # noqa: E731
    val = integrate.dblquad(g, -12, 12, -12, 12, epsabs=1e-13, epsrel=1e-11)[0]
    return top + np.log(val * np.linalg.det(A) / (2 * np.pi))


def wide_grid_loglik(f, q: int, nodes: int) -> float:
    """Non-adaptive Gauss-Hermite: ``sum_k w_k exp(f(sqrt 2 x_k) + x_k'x_k) / pi^(q/2)``."""
    x, w = np.polynomial.hermite.hermgauss(nodes)
    grids = np.meshgrid(*([x] * q), indexing="ij")
    wgrids = np.meshgrid(*([w] * q), indexing="ij")
    X = np.stack([g.ravel() for g in grids], axis=1)
    logw = np.sum([np.log(g.ravel()) for g in wgrids], axis=0)
    terms = np.array([f(np.sqrt(2) * xk) + xk @ xk for xk in X]) + logw
    return special.logsumexp(terms) - 0.5 * q * np.log(np.pi)


SIZES_Q1 = [1, 1, 2, 3, 5, 8, 40]


def _small_counts(family) -> float:
    return -1.5 if family.name in ("poisson", "negbinomial") else 0.0


@pytest.mark.parametrize("shift", [0.0, -3.0, 3.0])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_q1_cluster_loglik_matches_quad(name, shift):
    """30 adaptive nodes against quad, every cluster (sizes 1-40, predictors shifted by +-3)."""
    family = FAMILIES[name]
    if family.name in ("poisson", "negbinomial") and shift > 0:
        shift = 1.5
    rows, beta, L = design(family, 1, SIZES_Q1, seed=1)
    rows = rows.with_offset(rows.offset + shift)
    ll, _ = Q.loglik_reference(family, rows, beta, L, ALPHA, nagq=30)
    for c in range(rows.n_clusters):
        ref = quad_loglik(log_integrand(family, *cluster_args(family, rows, beta, L, c)))
        assert abs(ll[c] - ref) < 1e-7, (c, ll[c], ref)


@pytest.mark.parametrize("name", ["bernoulli logit", "bernoulli probit"])
def test_q1_all_zero_and_all_one_bernoulli_clusters(name):
    """One-sided integrands: every response 0 or every response 1, 1 to 30 rows."""
    family = FAMILIES[name]
    rows, beta, L = design(family, 1, [1, 4, 30, 1, 4, 30], seed=2)
    y = np.concatenate([np.zeros(35), np.ones(35)])
    rows = Q.ClusterRows(y, rows.X, rows.Z, rows.trials, rows.offset, rows.starts)
    ll, _ = Q.loglik_reference(family, rows, beta, L, nagq=40)
    for c in range(rows.n_clusters):
        ref = quad_loglik(log_integrand(family, *cluster_args(family, rows, beta, L, c)))
        assert abs(ll[c] - ref) < 1e-7, (c, ll[c], ref)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_q1_extreme_linear_predictors(name):
    """Linear predictors near +-30 (+-8 for counts): finite, and equal to quad."""
    family = FAMILIES[name]
    big = 8.0 if family.name in LOG_SCALE else 30.0
    for shift in (-big, big):
        rows, beta, L = design(family, 1, [1, 3, 10], seed=3)
        rows = rows.with_offset(rows.offset + shift)
        ll, _ = Q.loglik_reference(family, rows, beta, L, ALPHA, nagq=20)
        assert np.all(np.isfinite(ll))
        for c in range(rows.n_clusters):
            ref = quad_loglik(log_integrand(family, *cluster_args(family, rows, beta, L, c)))
            assert abs(ll[c] - ref) < 1e-7 * max(1.0, abs(ref)), (shift, c, ll[c], ref)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_q1_matches_a_wide_non_adaptive_grid(name):
    """120 non-adaptive nodes (no mode, no scaling) agree with 30 adaptive ones, where the
    conditional density of the effect is not too peaked for a fixed grid (small counts)."""
    family = FAMILIES[name]
    rows, beta, L = design(family, 1, [1, 2, 3, 5], seed=4, sd=0.7, shift=_small_counts(family))
    ll, _ = Q.loglik_reference(family, rows, beta, L, ALPHA, nagq=30)
    for c in range(rows.n_clusters):
        ref = wide_grid_loglik(log_integrand(family, *cluster_args(family, rows, beta, L, c)), 1, 120)
        assert abs(ll[c] - ref) < 1e-7, (c, ll[c], ref)


@pytest.mark.parametrize("name", ["bernoulli logit", "binomial probit", "poisson", "negbinomial",
                                  "gamma", "lognormal"])
def test_q2_cluster_loglik_matches_dblquad(name):
    family = FAMILIES[name]
    rows, beta, L = design(family, 2, [1, 3, 12], seed=5)
    ll, _ = Q.loglik_reference(family, rows, beta, L, ALPHA, nagq=20)
    for c in range(rows.n_clusters):
        ref = dblquad_loglik(log_integrand(family, *cluster_args(family, rows, beta, L, c)))
        assert abs(ll[c] - ref) < 1e-6, (c, ll[c], ref)


@pytest.mark.parametrize("name", ["bernoulli logit", "bernoulli probit", "poisson", "negbinomial",
                                  "gamma", "lognormal"])
def test_q2_matches_a_wide_non_adaptive_grid(name):
    family = FAMILIES[name]
    rows, beta, L = design(family, 2, [1, 2, 4], seed=6, sd=0.6, shift=_small_counts(family))
    ll, _ = Q.loglik_reference(family, rows, beta, L, ALPHA, nagq=20)
    for c in range(rows.n_clusters):
        ref = wide_grid_loglik(log_integrand(family, *cluster_args(family, rows, beta, L, c)), 2, 64)
        assert abs(ll[c] - ref) < 1e-7, (c, ll[c], ref)


@pytest.mark.parametrize("name", ["bernoulli logit", "poisson"])
def test_q3_product_grid_on_a_design_that_factorises(name):
    """Each row loads on one effect and L is diagonal: the 3-d integral is the product of
    three 1-d integrals. The 3-d product grid equals the three 1-d grids (to rounding) and,
    with 25 nodes, the three quad integrals."""
    family = FAMILIES[name]
    rng = np.random.default_rng(7)
    n = 9
    Z = np.zeros((n, 3))
    Z[np.arange(n), np.arange(n) % 3] = rng.uniform(0.5, 1.5, n)
    X = np.ones((n, 1))
    y = family.draw(rng, rng.normal(size=n), {}, None)
    rows, _ = Q.cluster_rows(y, X, Z, np.zeros(n, dtype=int))
    L = np.diag([0.5, 1.0, 1.5])
    parts = []
    for j in range(3):
        s = np.arange(n) % 3 == j
        parts.append((y[s], np.ones(s.sum()), np.full(s.sum(), 0.2), (Z[s, j] * L[j, j])[:, None], {}))
    for nagq in (2, 5):
        ll, _ = Q.loglik_reference(family, rows, [0.2], L, nagq=nagq)
        one_d = sum(Q.cluster_loglik(family, *a, nagq=nagq)[0] for a in parts)
        assert abs(ll[0] - one_d) < 1e-11
    ll, _ = Q.loglik_reference(family, rows, [0.2], L, nagq=25)
    ref = sum(quad_loglik(log_integrand(family, *a)) for a in parts)
    assert abs(ll[0] - ref) < 1e-7


@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("name", ["bernoulli logit", "binomial probit", "negbinomial"])
def test_one_node_is_the_laplace_approximation(name, q):
    """nagq = 1 gives g(u*) - log|H| / 2, with u* and H found independently."""
    family = FAMILIES[name]
    rows, beta, L = design(family, q, [1, 4, 9], seed=8)
    ll, modes = Q.loglik_reference(family, rows, beta, L, ALPHA, nagq=1)
    for c in range(rows.n_clusters):
        y, n, eta0, W, params = cluster_args(family, rows, beta, L, c)
        u = root_mode(family, y, n, eta0, W, params)
        top = log_integrand(family, y, n, eta0, W, params)(u)
        d2 = family.eta_derivatives(y, eta0 + W @ u, params, n)[2]
        H = np.eye(q) - W.T @ (d2[:, None] * W)
        np.testing.assert_allclose(modes[c], u, atol=1e-9)
        assert abs(ll[c] - (top - 0.5 * np.linalg.slogdet(H)[1])) < 1e-10


def test_an_empty_cluster_contributes_nothing():
    rows, _ = Q.cluster_rows(np.array([1.0, 0.0]), np.ones((2, 1)), np.ones((2, 1)),
                             np.array([0, 2]), n_clusters=3)
    family = F.Bernoulli()
    ref = Q.grad_reference(family, rows, [0.1], [[0.9]], nagq=5)
    out = Q.marginal_glmm(family, rows, nagq=5).value_and_grad([0.1], [[0.9]])
    assert abs(ref["per_cluster"][1]) < 1e-14 and abs(out["per_cluster"][1]) < 1e-14
    np.testing.assert_allclose(out["beta"], ref["beta"], rtol=1e-10)


def test_more_nodes_converge():
    """Errors fall with the node count (a Poisson cluster of small counts)."""
    family = F.Poisson()
    f_args = (np.array([1.0, 1.0]), np.ones(2), np.array([-3.0, -2.4]), np.ones((2, 1)), {})
    ref = quad_loglik(log_integrand(family, *f_args))
    err = [abs(Q.cluster_loglik(family, *f_args, nagq=k)[0] - ref) for k in (1, 5, 9, 15, 25)]
    assert err[-1] < 1e-8 and all(a > b for a, b in zip(err[1:], err[2:]))


# ---------------------------------------------------------------------- gradients


def _fd_gradient(family, rows, beta, L, nagq, rows_to_check):
    """Central differences of the reference's total log-likelihood."""
    def f(b=beta, LL=L, a=ALPHA, off=rows.offset):
        return Q.loglik_reference(family, rows.with_offset(off), b, LL, a, nagq=nagq)[0].sum()

    h = 1e-5
    q = L.shape[0]
    g_beta = np.array([(f(b=beta + h * e) - f(b=beta - h * e)) / (2 * h) for e in np.eye(beta.size)])
    g_L = np.zeros((q, q))
    for a in range(q):
        for b in range(a + 1):
            E = np.zeros((q, q))
            E[a, b] = h
            g_L[a, b] = (f(LL=L + E) - f(LL=L - E)) / (2 * h)
    g_alpha = (f(a=ALPHA + h) - f(a=ALPHA - h)) / (2 * h)
    g_off = []
    for i in rows_to_check:
        e = np.zeros(rows.y.size)
        e[i] = h
        g_off.append((f(off=rows.offset + e) - f(off=rows.offset - e)) / (2 * h))
    return g_beta, g_L, g_alpha, np.array(g_off)


@pytest.mark.parametrize("nagq", [1, 4])
@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_gradient_matches_central_differences(name, q, nagq):
    family = FAMILIES[name]
    rows, beta, L = design(family, q, [1, 2, 5, 9], seed=10 + q)
    out = Q.grad_reference(family, rows, beta, L, ALPHA, nagq=nagq)
    check = [0, 3, rows.y.size - 1]
    g_beta, g_L, g_alpha, g_off = _fd_gradient(family, rows, beta, L, nagq, check)
    np.testing.assert_allclose(out["beta"], g_beta, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(out["L"], g_L, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(out["offset"][check], g_off, atol=1e-6, rtol=1e-6)
    if family.extra_params:
        assert abs(out["param"] - g_alpha) < 1e-6 * max(1.0, abs(g_alpha))
    else:
        assert out["param"] == 0.0


# ------------------------------------------------------------------ kernel = reference


def _assert_kernel_equals_reference(family, rows, beta, L, nagq):
    ref = Q.grad_reference(family, rows, beta, L, ALPHA, nagq=nagq)
    out = Q.marginal_glmm(family, rows, nagq=nagq).value_and_grad(beta, L, ALPHA)
    assert abs(out["ll"] - ref["ll"]) < 1e-8 * max(1.0, abs(ref["ll"]))
    for key in ("per_cluster", "modes", "beta", "L", "offset"):
        np.testing.assert_allclose(out[key], ref[key], rtol=1e-8, atol=1e-8, err_msg=key)
    assert abs(out["param"] - ref["param"]) < 1e-8 * max(1.0, abs(ref["param"]))


@pytest.mark.parametrize("nagq", [1, 2, 3, 5])
@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_kernel_equals_numpy_reference(name, q, nagq):
    family = FAMILIES[name]
    rows, beta, L = design(family, q, [1, 1, 2, 4, 7, 15, 30], seed=20 + q)
    _assert_kernel_equals_reference(family, rows, beta, L, nagq)


@pytest.mark.parametrize("q", [2, 3])
@pytest.mark.parametrize("name", ["bernoulli logit", "binomial logit", "poisson"])
def test_factorised_nodes_equal_the_direct_evaluation(name, q):
    """On a product grid the logit and Poisson nodes take e^eta as products of per-dimension
    exponentials; the same grid in another order (no product structure for the kernel) is
    evaluated node by node and gives the same values and gradients."""
    import dataclasses

    family = FAMILIES[name]
    rows, beta, L = design(family, q, [1, 2, 5, 12, 30], seed=50 + q, sd=1.5)
    m = Q.marginal_glmm(family, rows, nagq=5)
    perm = np.random.default_rng(q).permutation(m.nodes.shape[0])
    shuffled = dataclasses.replace(m, nodes=np.ascontiguousarray(m.nodes[perm]),
                                   log_weights=m.log_weights[perm], modes=np.zeros_like(m.modes),
                                   center=int(np.flatnonzero(perm == m.center)[0]))
    assert qk.factorised_side(m.code, m.nodes, q) == 5
    assert qk.factorised_side(m.code, shuffled.nodes, q) == 0
    a, b = m.value_and_grad(beta, L), shuffled.value_and_grad(beta, L)
    for key in ("per_cluster", "beta", "L", "offset"):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-10, atol=1e-10, err_msg=key)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_kernel_equals_reference_at_extreme_predictors(name):
    family = FAMILIES[name]
    big = 8.0 if family.name in LOG_SCALE else 30.0
    for shift in (-big, big):
        rows, beta, L = design(family, 2, [1, 3, 10], seed=30)
        _assert_kernel_equals_reference(family, rows.with_offset(rows.offset + shift), beta, L, 3)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_kernel_row_terms_equal_the_family(name):
    """The kernel's per-row log density and derivatives are the family's, over a grid."""
    family = FAMILIES[name]
    rng = np.random.default_rng(40)
    counts = family.name in LOG_SCALE
    eta = np.linspace(-20, 15, 61) if counts else np.linspace(-30, 30, 61)
    binomial = family.name == "binomial"
    n = rng.integers(1, 12, eta.size).astype(float) if binomial else np.ones(eta.size)
    y = family.draw(rng, np.clip(eta, -20, 5), par(family), n if binomial else None)
    code = Q.family_code(family)
    got = np.array([qk.row_terms(code, yi, ni, ei, ALPHA) for yi, ni, ei in zip(y, n, eta)])
    got[:, 0] += [qk.const_terms(code, yi, ni, ALPHA)[0] for yi, ni in zip(y, n)]
    want = family.eta_derivatives(y, eta, par(family), n)
    for k in range(4):
        np.testing.assert_allclose(got[:, k], want[k], rtol=1e-11, atol=1e-11, err_msg=str(k))
    if family.extra_params:
        dl, d1, d2 = family.param_derivatives(y, eta, par(family))[Q.family_param(family)]
        c_alpha = np.array([qk.const_terms(code, yi, 1.0, ALPHA)[1] for yi in y])
        np.testing.assert_allclose(got[:, 4] + c_alpha, dl, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(got[:, 5], d1, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(got[:, 6], d2, rtol=1e-11, atol=1e-11)


def test_kernel_digamma_and_mills_ratio():
    x = np.concatenate([np.linspace(0.01, 3, 50), np.linspace(3, 500, 50)])
    np.testing.assert_allclose([qk.digamma(v) for v in x], special.digamma(x), rtol=1e-13, atol=1e-13)
    t = np.linspace(-60, 8, 200)
    got = np.array([qk.log_ndtr_mills(v) for v in t])
    np.testing.assert_allclose(got[:, 0], special.log_ndtr(t), rtol=1e-13, atol=1e-15)
    mills = np.exp(-0.5 * t * t - 0.5 * np.log(2 * np.pi) - special.log_ndtr(t))
    np.testing.assert_allclose(got[:, 1], mills, rtol=1e-12)


# ------------------------------------------------------------------- warm starts, API


def test_warm_start_gives_the_same_value_in_fewer_newton_steps():
    family = F.Bernoulli()
    rows, beta, L = design(family, 2, [3, 8, 8, 20], seed=50)
    m = Q.marginal_glmm(family, rows)
    cold = m.value_and_grad(beta, L)
    warm = m.value_and_grad(beta, L)
    assert warm["newton_steps"] < cold["newton_steps"]
    assert abs(warm["ll"] - cold["ll"]) < 1e-12 * abs(cold["ll"])
    np.testing.assert_allclose(warm["beta"], cold["beta"], rtol=1e-9)
    m.reset()
    assert m.value_and_grad(beta, L)["newton_steps"] == cold["newton_steps"]


def test_loglik_without_gradient_and_the_default_nodes():
    family = F.Poisson()
    rows, beta, L = design(family, 2, [2, 5], seed=51)
    m = Q.marginal_glmm(family, rows)
    assert m.nagq == Q.DEFAULT_NAGQ[2] and m.nodes.shape == (Q.DEFAULT_NAGQ[2] ** 2, 2)
    np.testing.assert_allclose(m.loglik(beta, L), Q.loglik_reference(family, rows, beta, L)[0], rtol=1e-10)
    assert sorted(Q.DEFAULT_NAGQ) == [1, 2, 3]


def test_offset_argument_replaces_the_rows_offset():
    family = F.Bernoulli()
    rows, beta, L = design(family, 1, [2, 5], seed=52)
    off = np.linspace(-1, 1, rows.y.size)
    a = Q.marginal_glmm(family, rows).value_and_grad(beta, L, offset=off)
    b = Q.marginal_glmm(family, rows.with_offset(off)).value_and_grad(beta, L)
    assert a["ll"] == b["ll"]


def test_cluster_rows_sorts_by_cluster():
    rows, order = Q.cluster_rows(np.arange(5.0), np.arange(5.0)[:, None], np.ones((5, 1)),
                                 np.array([2, 0, 2, 1, 0]))
    assert rows.starts.tolist() == [0, 2, 3, 5] and rows.y.tolist() == [1, 4, 3, 0, 2]
    assert order.tolist() == [1, 4, 3, 0, 2] and rows.sizes.tolist() == [2, 1, 2]


def test_errors_name_the_fix():
    rows, _ = Q.cluster_rows(np.ones(2), np.ones((2, 1)), np.ones((2, 1)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="no kernel for the gaussian family.*backend='latent'"):
        Q.marginal_glmm(F.Gaussian(), rows)
    with pytest.raises(ValueError, match="lower triangular"):
        Q.loglik_reference(F.Poisson(), Q.cluster_rows(np.ones(2), np.ones((2, 1)), np.ones((2, 2)),
                                                       np.zeros(2, dtype=int))[0], [0.0], [[1, 1], [0, 1]])
    wide, _ = Q.cluster_rows(np.ones(2), np.ones((2, 1)), np.ones((2, 4)), np.zeros(2, dtype=int))
    with pytest.raises(ValueError, match="1 to 3 effects per cluster"):
        Q.marginal_glmm(F.Poisson(), wide)
    with pytest.raises(ValueError, match="positive whole number"):
        Q.gauss_hermite_grid(0, 1)


def test_kernel_returns_the_cholesky_factor_of_each_clusters_hessian():
    family = F.NegativeBinomial()
    rows, beta, L = design(family, 2, [1, 4, 9], seed=53)
    out = Q.marginal_glmm(family, rows).value_and_grad(beta, L, ALPHA)
    for c in range(rows.n_clusters):
        u, _, H, _, _ = Q.cluster_mode(family, *cluster_args(family, rows, beta, L, c))
        np.testing.assert_allclose(out["chol_H"][c], np.linalg.cholesky(H), rtol=1e-9)


def test_kernel_is_callable_from_compiled_code():
    """A backend's nutpie callback calls the kernel from its own numba code."""
    family = F.Bernoulli()
    rows, beta, L = design(family, 1, [2, 5, 5], seed=54)
    m = Q.marginal_glmm(family, rows, nagq=3)

    @numba.njit
    def callback(code, y, tr, X, Z, off, starts, consts, nodes, logw, center, beta, L, modes):
        C, N = starts.size - 1, y.size
        out = qk.value_and_grad(code, y, tr, X, Z, off, starts, beta, L, 1.0, consts, nodes, logw,
                                center, 1e-10, 50, modes, np.zeros((C, 1, 1)), np.zeros(C),
                                np.zeros(N), True, (0,))
        return out[0], out[1]

    ll, g_beta = callback(m.code, rows.y, rows.trials, rows.X, rows.Z, rows.offset, rows.starts,
                          m.constants, m.nodes, m.log_weights, m.center, beta, L,
                          np.zeros((rows.n_clusters, 1)))
    ref = m.value_and_grad(beta, L)
    assert ll == ref["ll"] and np.array_equal(g_beta, ref["beta"])


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_zero_and_large_effect_sds(name):
    """L = 0 gives the fixed-effects log-likelihood; sds of 0 and 20 match the reference."""
    family = FAMILIES[name]
    rows, beta, L = design(family, 2, [1, 3, 8], seed=55)
    m = Q.marginal_glmm(family, rows)
    out = m.value_and_grad(beta, np.zeros((2, 2)), ALPHA)
    eta = rows.X @ beta + rows.offset
    fixed = family.eta_derivatives(rows.y, eta, par(family), rows.trials)[0].sum()
    assert abs(out["ll"] - fixed) < 1e-10 * max(1.0, abs(fixed))
    assert np.all(np.isfinite(out["L"]))
    for LL in (np.zeros((2, 2)), 20.0 * np.eye(2)):
        m.reset()
        _assert_kernel_equals_reference(family, rows, beta, LL, 3)


def test_design_rows_follow_the_model_design():
    import pandas as pd

    import hierbayes as hb

    rng = np.random.default_rng(56)
    df = pd.DataFrame({"k": rng.integers(0, 6, 40), "n": 6, "x": rng.normal(size=40),
                       "g": rng.choice(list("abcde"), 40), "h": rng.choice(list("uv"), 40)})
    design = hb.Model("k | trials(n) ~ x + (1 + x | g) + (1 | h)", df, family="binomial").design
    rows, order = Q.design_rows(design)
    g = design.group("g")
    assert rows.q == 2 and rows.n_clusters == 5
    np.testing.assert_array_equal(rows.y, design.y[order])
    np.testing.assert_array_equal(rows.Z, g.Z[order])
    np.testing.assert_array_equal(rows.trials, design.trials[order])
    assert np.all(np.diff(g.index[order]) >= 0)
    assert Q.design_rows(design, "h")[0].n_clusters == 2
