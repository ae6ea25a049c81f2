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
