"""Compound-symmetry and unstructured residual log-densities against scipy's multivariate
normal on the dense covariance (random designs, unbalanced and size-1 clusters, rows in any
order)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.design.build import build_design, cluster_layout
from hierbayes.likelihood import structured
from hierbayes.spec.formula import parse


def _random_corr(rng, K):
    A = rng.standard_normal((K, K + 2))
    S = A @ A.T
    d = np.sqrt(np.diag(S))
    return S / d[:, None] / d[None, :]


def _clusters(rng, C, n_max):
    sizes = rng.integers(1, n_max + 1, size=C)
    sizes[0] = 1  # a size-1 cluster
    return np.repeat(np.arange(C), sizes), sizes


@pytest.mark.parametrize("seed", range(5))
def test_compsymm_logpdf_matches_dense(seed):
    rng = np.random.default_rng(seed)
    cluster, sizes = _clusters(rng, 7, 6)
    n_max = sizes.max()
    lo = -1.0 / (n_max - 1)
    rho = rng.uniform(lo + 0.01, 0.95)
    lay = cluster_layout(cluster, None, 7)
    u = rng.standard_normal(cluster.size)
    got = structured.compsymm_logpdf(np, lay.pad(u), sizes.astype(float), rho)
    for c in range(7):
        uc = u[cluster == c]
        n = uc.size
        R = (1 - rho) * np.eye(n) + rho * np.ones((n, n))
        ref = stats.multivariate_normal(np.zeros(n), R).logpdf(uc)
        assert got[c] == pytest.approx(ref, abs=1e-10, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_unstructured_logpdf_matches_dense(seed):
    rng = np.random.default_rng(seed)
    K, C = 5, 9
    Cm = _random_corr(rng, K)
    occ_rows, cl_rows = [], []
    for c in range(C):
        n = 1 if c == 0 else rng.integers(1, K + 1)
        occ = np.sort(rng.choice(K, size=n, replace=False))  # gaps allowed
        occ_rows += occ.tolist()
        cl_rows += [c] * n
    occ_rows, cl_rows = np.array(occ_rows), np.array(cl_rows)
    lay = cluster_layout(cl_rows, occ_rows.astype(float), C)
    u = rng.standard_normal(cl_rows.size)
    pats = structured.patterns(lay, occ_rows)
    got = structured.unstructured_logpdf(np, lay.pad(u), pats, Cm, C)
    for c in range(C):
        o = occ_rows[cl_rows == c]
        ref = stats.multivariate_normal(np.zeros(o.size), Cm[np.ix_(o, o)]).logpdf(u[cl_rows == c])
        assert got[c] == pytest.approx(ref, abs=1e-10, rel=1e-12)


def _shuffled_frame(rng, n_clusters=8, K=4):
    rows = []
    for c in range(n_clusters):
        n = 1 if c == 0 else rng.integers(1, K + 1)
        for o in np.sort(rng.choice(K, size=n, replace=False)):
            rows.append((f"s{c}", int(o), rng.standard_normal(), rng.standard_normal()))
    df = pd.DataFrame(rows, columns=["id", "occ", "x", "y"])
    return df.sample(frac=1.0, random_state=int(rng.integers(1 << 30))).reset_index(drop=True)


def _dense_cov(df, kind, theta, sigma):
    """The dense covariance over the user's rows."""
    same = df["id"].to_numpy()[:, None] == df["id"].to_numpy()[None, :]
    if kind == "compsymm":
        R = np.where(same, theta, 0.0)
    else:
        occ = df["occ"].to_numpy()
        R = np.where(same, theta[occ[:, None], occ[None, :]], 0.0)
    np.fill_diagonal(R, 1.0)
    return sigma**2 * R


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["compsymm", "unstructured"])
def test_latent_graph_loglik_matches_dense(seed, kind):
    """The latent backend's density (PyMC graph) at a point equals scipy's on the dense
    covariance of the data in the user's (shuffled) row order."""
    rng = np.random.default_rng(seed)
    df = _shuffled_frame(rng)
    corr = hb.CompSymm(group="id") if kind == "compsymm" else hb.Unstructured(time="occ", group="id")
    m = hb.Model("y ~ x", df, correlation=corr, backend="latent")
    d = m.design
    beta = rng.standard_normal(2)
    sigma = float(rng.uniform(0.5, 2.0))
    if kind == "compsymm":
        lo, hi = d.phi_bounds
        theta = float(rng.uniform(lo + 0.05, 0.9))
    else:
        theta = _random_corr(rng, len(d.occasions))
    import pymc as pm
    from hierbayes.backend import latent

    model = latent.build(d, m.priors)
    par = model["phi"] if kind == "compsymm" else model["corr_resid"]
    f = pm.compile([model["beta"], model["sigma"], par], model["loglik"], mode="FAST_COMPILE")
    got = float(f(beta, sigma, theta))
    X = np.column_stack([np.ones(len(df)), df["x"]])
    cov = _dense_cov(df, kind, theta, sigma)
    ref = stats.multivariate_normal(X @ beta, cov).logpdf(df["y"].to_numpy())
    assert got == pytest.approx(ref, abs=1e-8)


@pytest.mark.parametrize("kind", ["compsymm", "unstructured"])
def test_latent_graph_loglik_with_an_sd_per_occasion(kind):
    """``sigma="~ 0 + C(occ)"`` (nlme's varIdent by occasion) with a dense structure: the
    covariance ``D R D``, ``D`` the rows' sds."""
    import pymc as pm
    from hierbayes.backend import latent

    rng = np.random.default_rng(7)
    df = _shuffled_frame(rng)
    corr = hb.CompSymm(group="id") if kind == "compsymm" else hb.Unstructured(time="occ", group="id")
    m = hb.Model("y ~ x", df, correlation=corr, sigma="~ 0 + C(occ)", backend="latent")
    d = m.design
    model = latent.build(d, m.priors)
    beta, bsig = rng.standard_normal(2), rng.normal(0, 0.4, size=d.dpars["sigma"].X.shape[1])
    theta = (0.35 if kind == "compsymm" else _random_corr(rng, len(d.occasions)))
    par = model["phi"] if kind == "compsymm" else model["corr_resid"]
    f = pm.compile([model["beta"], model["beta_sigma"], par], model["loglik"], mode="FAST_COMPILE")
    got = float(f(beta, bsig, theta))
    X = np.column_stack([np.ones(len(df)), df["x"]])
    sd = np.exp(bsig)[df["occ"].to_numpy()]  # C(occ) columns in occasion order
    R = _dense_cov(df, kind, theta, 1.0)
    ref = stats.multivariate_normal(X @ beta, sd[:, None] * R * sd[None, :]).logpdf(df["y"].to_numpy())
    assert got == pytest.approx(ref, abs=1e-8)


@pytest.mark.parametrize("seed", range(3))
def test_collapsed_compsymm_matches_dense(seed):
    """The marginal backend's Woodbury step with compound-symmetry whitening
    (``R^-1/2 = a I + (b - a) J / n``) against the dense ``Z S Z' + sigma^2 R``."""
    from hierbayes.likelihood import collapsed

    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, 25)
    ids = np.repeat([f"s{i}" for i in range(25)], sizes)
    df = pd.DataFrame({"id": ids, "x": rng.standard_normal(ids.size), "z": rng.standard_normal(ids.size),
                       "y": rng.standard_normal(ids.size)}).sample(frac=1, random_state=seed)
    m = hb.Model("y ~ x + (0 + x + z | id)", df.reset_index(drop=True), correlation=hb.CompSymm("id"))
    cd = collapsed.prepare(m.design)
    beta, sigma = rng.standard_normal(2), float(rng.uniform(0.5, 2))
    rho = float(rng.uniform(m.design.phi_bounds[0] + 0.05, 0.9))
    A = rng.standard_normal((2, 2))
    S = A @ A.T + 0.1 * np.eye(2)
    ll = collapsed.loglik_padded(np, cd.arrays, cd.corr, beta, sigma, rho, S, 2)
    for c, lab in enumerate(m.design.cluster_levels):
        r = df[df.id == lab]
        n = len(r)
        Z = r[["x", "z"]].to_numpy()
        cov = sigma**2 * ((1 - rho) * np.eye(n) + rho * np.ones((n, n))) + Z @ S @ Z.T
        ref = stats.multivariate_normal(beta[0] + beta[1] * r.x, cov).logpdf(r.y)
        assert ll[c] == pytest.approx(ref, abs=1e-10, rel=1e-12)


# --------------------------------------------------------------------------- ARMA(p, q)


def _arma_acf_linear_system(ar, ma, L):
    """Reference: the autocovariances of ARMA(p, q) from the linear system for lags
    0..max(p, q) (Brockwell & Davis 3.3), then the AR recursion; normalised."""
    p, q = len(ar), len(ma)
    th = np.r_[1.0, ma]
    psi = np.zeros(q + 1)  # psi-weights 0..q (exact: finitely many needed)
    for j in range(q + 1):
        psi[j] = (th[j] if j <= q else 0.0) + sum(ar[i - 1] * psi[j - i] for i in range(1, min(j, p) + 1))
    r = max(p, q)
    A, b = np.zeros((r + 1, r + 1)), np.zeros(r + 1)
    for k in range(r + 1):
        A[k, k] += 1.0
        for j in range(1, p + 1):
            A[k, abs(k - j)] -= ar[j - 1]
        b[k] = sum(th[j] * psi[j - k] for j in range(k, q + 1))
    g = list(np.linalg.solve(A, b))
    for k in range(r + 1, L + 1):
        g.append(sum(ar[j - 1] * g[k - j] for j in range(1, p + 1)))
    g = np.array(g[: L + 1])
    return g / g[0]


def _arma_acf_psi(ar, ma, L, terms=5000):
    """Reference: the MA(infinity) representation with ``terms`` psi-weights."""
    psi = np.zeros(terms)
    for j in range(terms):
        psi[j] = (1.0 if j == 0 else (ma[j - 1] if j <= len(ma) else 0.0)) + sum(
            ar[i - 1] * psi[j - i] for i in range(1, min(j, len(ar)) + 1))
    g = np.array([psi[: terms - k] @ psi[k:] for k in range(L + 1)])
    return g / g[0]


def _random_arma(rng, p, q, lim=0.8):
    from hierbayes.likelihood import arma

    kap_ar, kap_ma = rng.uniform(-lim, lim, p), rng.uniform(-lim, lim, q)
    ar, ma = arma.coefficients(list(kap_ar), list(kap_ma))
    return kap_ar, kap_ma, np.array(ar), np.array(ma)


@pytest.mark.parametrize("p,q", [(1, 0), (0, 1), (1, 1), (2, 1), (1, 2), (3, 0), (0, 3), (3, 3), (2, 2)])
def test_arma_acf_is_exact(p, q):
    from hierbayes.likelihood import arma

    rng = np.random.default_rng(10 * p + q)
    for _ in range(3):
        kap_ar, kap_ma, ar, ma = _random_arma(rng, p, q)
        got = np.array(arma.acf(list(kap_ar), list(kap_ma), 25), dtype=float)
        np.testing.assert_allclose(got, _arma_acf_linear_system(ar, ma, 25), atol=1e-12)
        np.testing.assert_allclose(got, _arma_acf_psi(ar, ma, 25), atol=1e-8)
        # the round trip coefficients -> partial autocorrelations
        a_ar, a_ma = arma.pacf_of(ar, ma, p, q)
        np.testing.assert_allclose(a_ar, kap_ar, atol=1e-12)
        np.testing.assert_allclose(a_ma, kap_ma, atol=1e-12)


def test_arma_acf_against_a_long_simulated_series():
    from hierbayes.likelihood import arma

    rng = np.random.default_rng(3)
    ar, ma = np.array([0.5, -0.3]), np.array([0.4])
    n = 400_000
    e = rng.standard_normal(n + 200)
    x = np.zeros(n + 200)
    for t in range(2, n + 200):
        x[t] = ar[0] * x[t - 1] + ar[1] * x[t - 2] + e[t] + ma[0] * e[t - 1]
    x = x[200:] - x[200:].mean()
    sample = np.array([x[: n - k] @ x[k:] for k in range(6)]) / (x @ x)
    kap_ar, kap_ma = arma.pacf_of(ar, ma, 2, 1)
    np.testing.assert_allclose(np.array(arma.acf(list(kap_ar), list(kap_ma), 5), float), sample, atol=0.01)


def test_arma_pacf_map_keeps_stationarity_and_invertibility():
    from hierbayes.likelihood import arma

    rng = np.random.default_rng(5)
    for _ in range(50):
        kap_ar, kap_ma, ar, ma = _random_arma(rng, 3, 3, lim=0.999)
        # AR polynomial 1 - sum ar z^k and MA polynomial 1 + sum ma z^k: roots outside |z| = 1
        assert np.abs(np.roots(np.r_[-ar[::-1], 1.0])).min() > 1.0
        assert np.abs(np.roots(np.r_[ma[::-1], 1.0])).min() > 1.0
    with pytest.raises(ValueError, match="not stationary"):
        arma.pacf_of([1.2], [], 1, 0)
    with pytest.raises(ValueError, match="not invertible"):
        arma.pacf_of([], [0.5, 1.1], 0, 2)


def _arma_clusters(rng, C=9, T=12, n_max=7):
    cl, tm = [], []
    for c in range(C):
        n = 1 if c == 0 else int(rng.integers(1, n_max + 1))
        t = np.sort(rng.choice(T, size=n, replace=False)) + int(rng.integers(0, 5))  # gaps, offsets
        cl += [c] * n
        tm += t.tolist()
    return np.array(cl), np.array(tm)


@pytest.mark.parametrize("p,q", [(1, 1), (2, 0), (0, 2), (3, 2)])
def test_arma_logpdf_matches_dense(p, q):
    from hierbayes.likelihood import arma

    rng = np.random.default_rng(p * 7 + q)
    cl, tm = _arma_clusters(rng)
    C = int(cl.max()) + 1
    lay = cluster_layout(cl, tm.astype(float), C)
    kap_ar, kap_ma, ar, ma = _random_arma(rng, p, q, lim=0.9)
    theta = arma.pack(kap_ar[None], kap_ma[None] if q else None)[0] if p else arma.pack(None, kap_ma[None])[0]
    u = rng.standard_normal(cl.size)

    class _D:  # what structured.layout_arrays reads of a design
        layout, time, correlation = lay, tm.astype(float), hb.ARMA(time="t", group="g", p=p, q=q)

    arrays = structured.layout_arrays(_D)
    got = structured.cluster_logpdf(np, "arma", lay.pad(u), arrays, theta)
    total = structured.cluster_logpdf(np, "arma", lay.pad(u), arrays, theta, total=True)
    r = _arma_acf_linear_system(ar, ma, int(tm.max() - tm.min()))
    for c in range(C):
        t = tm[cl == c]
        R = r[np.abs(t[:, None] - t[None, :])]
        ref = stats.multivariate_normal(np.zeros(t.size), R).logpdf(u[cl == c])
        assert got[c] == pytest.approx(ref, abs=1e-10)
    assert total == pytest.approx(got.sum(), abs=1e-10)
    # the dense matrix of prediction and simulation
    R = structured.correlation_matrix("arma", tm[cl == 2], tm[cl == 2], theta[None])[0]
    t = tm[cl == 2]
    np.testing.assert_allclose(R, r[np.abs(t[:, None] - t[None, :])], atol=1e-12)


def test_arma10_equals_ar1():
    """ARMA(1, 0) is AR(1): the latent graphs' log-densities agree to 1e-10."""
    import pymc as pm
    from hierbayes.backend import latent

    rng = np.random.default_rng(4)
    cl, tm = _arma_clusters(rng)
    df = pd.DataFrame({"id": cl.astype(str), "t": tm, "x": rng.standard_normal(cl.size),
                       "y": rng.standard_normal(cl.size)}).sample(frac=1.0, random_state=2)
    vals = []
    for corr, par in ((hb.AR1(time="t", group="id"), "phi"), (hb.ARMA(time="t", group="id", p=1, q=0),
                                                              "arma_ar_pacf")):
        m = hb.Model("y ~ x", df, correlation=corr, backend="latent")
        model = latent.build(m.design, m.priors)
        f = pm.compile([model["beta"], model["sigma"], model[par]], model["loglik"], mode="FAST_COMPILE")
        for phi in (-0.7, 0.2, 0.85):
            val = np.array([phi]) if par != "phi" else phi
            vals.append(float(f(np.array([0.3, -0.5]), 1.3, val)))
    np.testing.assert_allclose(vals[:3], vals[3:], atol=1e-10, rtol=0)


@pytest.mark.parametrize("p,q", [(1, 1), (2, 1)])
def test_arma_latent_graph_loglik_matches_dense(p, q):
    """The latent backend's density at a point equals scipy's on the dense covariance of
    the user's shuffled rows; its gradient in a partial autocorrelation is the central
    difference's."""
    import pymc as pm
    import pytensor
    from hierbayes.backend import latent

    rng = np.random.default_rng(11 + p)
    cl, tm = _arma_clusters(rng)
    df = pd.DataFrame({"id": cl.astype(str), "t": tm, "x": rng.standard_normal(cl.size),
                       "y": rng.standard_normal(cl.size)}).sample(frac=1.0, random_state=3)
    df = df.reset_index(drop=True)
    m = hb.Model("y ~ x", df, correlation=hb.ARMA(time="t", group="id", p=p, q=q), backend="latent")
    model = latent.build(m.design, m.priors)
    kap_ar, kap_ma, ar, ma = _random_arma(rng, p, q, lim=0.9)
    beta, sigma = rng.standard_normal(2), 0.8
    f = pm.compile([model["beta"], model["sigma"], model["arma_ar_pacf"], model["arma_ma_pacf"]],
                   model["loglik"], mode="FAST_COMPILE")
    got = float(f(beta, sigma, kap_ar, kap_ma))
    r = _arma_acf_linear_system(ar, ma, int(tm.max() - tm.min()))
    t, g = df["t"].to_numpy(), df["id"].to_numpy()
    R = np.where(g[:, None] == g[None, :], r[np.abs(t[:, None] - t[None, :])], 0.0)
    X = np.column_stack([np.ones(len(df)), df["x"]])
    ref = stats.multivariate_normal(X @ beta, sigma**2 * R).logpdf(df["y"].to_numpy())
    assert got == pytest.approx(ref, abs=1e-8)


def test_arma_acf_pytensor_value_and_gradient():
    """The PyTensor ACF equals numpy's; its gradient is the central difference's."""
    import pytensor
    import pytensor.tensor as pt
    from hierbayes.likelihood import arma

    ka, km = pt.dvector("ka"), pt.dvector("km")
    r = arma.acf([ka[0], ka[1]], [km[0]], 6)
    f = pytensor.function([ka, km], pt.stack(r))
    g = pytensor.function([ka, km], pytensor.grad(r[3] + 2.0 * r[5], [ka, km]))
    a, m = np.array([0.4, -0.6]), np.array([0.7])
    np.testing.assert_allclose(f(a, m), np.array(arma.acf(list(a), list(m), 6), float), atol=1e-14)
    ga, gm = g(a, m)
    eps = 1e-6
    for k in range(2):
        e = np.zeros(2); e[k] = eps
        num = ((f(a + e, m)[3] + 2 * f(a + e, m)[5]) - (f(a - e, m)[3] + 2 * f(a - e, m)[5])) / (2 * eps)
        assert ga[k] == pytest.approx(num, rel=1e-6, abs=1e-9)
    e = np.array([eps])
    num = ((f(a, m + e)[3] + 2 * f(a, m + e)[5]) - (f(a, m - e)[3] + 2 * f(a, m - e)[5])) / (2 * eps)
    assert gm[0] == pytest.approx(num, rel=1e-6, abs=1e-9)
