"""The marginal backend under unstructured and ARMA residual correlations: the collapsed
log-likelihood against the dense multivariate normal, the PyMC model's potential, the
recovered effects' conditional, and the backend choice."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.likelihood import arma, collapsed, recover

K = 6


def _frame(seed=3, n_clusters=12):
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_clusters):
        n = int(rng.integers(1, 6))
        for o in np.sort(rng.choice(K, n, replace=False)):
            rows.append({"g": f"c{c:02d}", "occ": int(o), "x": rng.normal()})
    df = pd.DataFrame(rows).sample(frac=1, random_state=seed).reset_index(drop=True)
    df["y"] = rng.normal(size=len(df))
    return df


def _corr_matrix(rng):
    A = rng.normal(size=(K, K))
    C = A @ A.T + K * np.eye(K)
    d = np.sqrt(np.diag(C))
    return C / d[:, None] / d[None, :]


def _theta(corr, rng):
    if corr.kind == "unstructured":
        C = _corr_matrix(rng)
        return C, lambda t: C[np.ix_(t, t)]
    th = np.zeros(arma.WIDTH)
    th[: corr.p] = [0.5, -0.2][: corr.p]
    th[arma.MAX_ORDER : arma.MAX_ORDER + corr.q] = [-0.3, 0.1][: corr.q]
    r = np.array(arma.acf(list(th[: corr.p]), list(th[arma.MAX_ORDER : arma.MAX_ORDER + corr.q]), 12), float)
    return th, lambda t: r[np.abs(t[:, None] - t[None, :])]


CASES = [
    (hb.Unstructured(time="occ", group="g"), "y ~ x + (0 + x | g)"),
    (hb.Unstructured(time="occ", group="g", sd_by_occasion=True), "y ~ x + (0 + x | g)"),
    (hb.ARMA(time="occ", group="g", p=1, q=1), "y ~ x + (1 | g)"),
    (hb.ARMA(time="occ", group="g", p=2, q=0), "y ~ x + (1 + x | g)"),
    (hb.ARMA(time="occ", group="g", p=0, q=2), "y ~ x + (1 + x || g)"),
]


@pytest.mark.parametrize("corr, formula", CASES, ids=[f"{type(c).__name__}-{f}" for c, f in CASES])
def test_collapsed_loglik_is_the_dense_marginal(corr, formula):
    df = _frame()
    rng = np.random.default_rng(1)
    m = hb.Model(formula, df, correlation=corr)
    assert m.backend == "marginal"
    cd, d = m._cdata, m.design
    g = d.groups[0]
    theta, R = _theta(corr, rng)
    beta, sigma = np.array([0.3, -0.5]), 0.8
    B = rng.normal(size=(g.q, g.q))
    S = B @ B.T + 0.2 * np.eye(g.q)
    occ_sd = rng.uniform(0.5, 2.0, K)
    rs = None
    if d.sd_by_occasion:
        rs = np.where(cd.arrays["mask"] > 0, occ_sd[cd.arrays["occ"]], 1.0)
    ll = collapsed.loglik_padded(np, cd.arrays, cd.corr, beta, sigma, theta, S, g.q,
                                 row_sigma=rs, dense=cd.dense)
    total = collapsed.loglik_padded(np, cd.arrays, cd.corr, beta, sigma, theta, S, g.q,
                                    row_sigma=rs, dense=cd.dense, total=True)
    ref = []
    for lab in d.cluster_levels:  # from the user's rows, cluster by cluster
        sub = df[df.g == lab].sort_values("occ")
        t = sub.occ.to_numpy()
        X = np.column_stack([np.ones(len(sub)), sub.x])
        Z = X[:, 1:2] if "0 + x" in formula else X[:, : g.q]
        sd = occ_sd[t] if d.sd_by_occasion else np.full(len(t), sigma)
        V = sd[:, None] * R(t) * sd[None, :] + Z @ S @ Z.T
        ref.append(stats.multivariate_normal(X @ beta, V).logpdf(sub.y.to_numpy()))
    np.testing.assert_allclose(ll, ref, rtol=1e-10, atol=1e-10)
    assert total == pytest.approx(sum(ref), rel=1e-10)


@pytest.mark.parametrize("corr, formula", CASES[1:3], ids=["unstructured-sd", "arma11"])
def test_the_pymc_models_potential_is_the_collapsed_loglik(fast_mode, corr, formula):
    m = hb.Model(formula, _frame(5), correlation=corr)
    model = m.build()
    point = model.initial_point()
    rng = np.random.default_rng(2)
    point = {k: v + rng.normal(scale=0.2, size=np.shape(v)) for k, v in point.items()}
    outs = model.unobserved_value_vars  # every parameter on its own scale, deterministics too
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", mode=fast_mode)
    vals = dict(zip([v.name for v in outs], fn(point)))
    (loglik,) = model.replace_rvs_by_values([model["loglik"]])
    pot = model.compile_fn(loglik, inputs=model.value_vars, on_unused_input="ignore", mode=fast_mode)(point)
    d, cd = m.design, m._cdata
    g = d.groups[0]
    S = np.diag(np.atleast_1d(vals[f"sd_{g.name}"]) ** 2)
    if corr.kind == "unstructured":
        theta = vals["corr_resid"]
    else:
        theta = arma.theta_draws(lambda n, _d: np.atleast_2d(vals[n]), corr.p, corr.q)[0]
    rs, sigma = None, vals.get("sigma")
    if d.sd_by_occasion:
        rs = np.where(cd.arrays["mask"] > 0, vals["sigma_occasion"][cd.arrays["occ"]], 1.0)
    ref = collapsed.loglik_padded(np, cd.arrays, cd.corr, vals["beta"], sigma, theta, S, g.q,
                                  row_sigma=rs, dense=cd.dense, total=True)
    assert float(pot) == pytest.approx(ref, rel=1e-9)


def test_recovered_effects_follow_their_dense_conditional():
    corr = hb.ARMA(time="occ", group="g", p=1, q=1)
    df = _frame(7, n_clusters=4)
    m = hb.Model("y ~ x + (1 + x | g)", df, correlation=corr)
    d, g = m.design, m.design.groups[0]
    rng = np.random.default_rng(3)
    theta, R = _theta(corr, rng)
    beta, sigma = np.array([0.2, 0.4]), 0.7
    S = np.array([[0.5, 0.1], [0.1, 0.3]])
    D = 20000
    b = recover.draw_random_effects(d, np.tile(beta, (D, 1)), np.full(D, sigma), np.tile(theta, (D, 1)),
                                    np.tile(np.linalg.cholesky(S), (D, 1, 1)), np.random.default_rng(4))
    for c, lab in enumerate(g.levels):
        sub = df[df.g == lab].sort_values("occ")
        t = sub.occ.to_numpy()
        X = np.column_stack([np.ones(len(sub)), sub.x])
        V = sigma**2 * R(t) + X @ S @ X.T
        G = S @ X.T @ np.linalg.inv(V)
        mean = G @ (sub.y.to_numpy() - X @ beta)
        cov = S - G @ X @ S
        se = np.sqrt(np.diag(cov) / D)
        assert np.all(np.abs(b[:, c].mean(0) - mean) < 5 * se), lab
        np.testing.assert_allclose(np.cov(b[:, c].T), cov, rtol=0.06, atol=0.005)


def test_backend_choice_and_the_native_kernels_reason():
    df = _frame()
    U = hb.Unstructured(time="occ", group="g")
    assert hb.Model("y ~ x + (0 + x | g)", df, correlation=U).backend == "marginal"
    assert hb.Model("y ~ x + (0 + x | g)", df, correlation=U, backend="latent").backend == "latent"
    assert hb.Model("y ~ x", df, correlation=U).backend == "latent"  # gls: nothing to integrate
    with pytest.raises(ValueError, match="padded layout"):
        collapsed.prepare(hb.Model("y ~ x + (0 + x | g)", df, correlation=U).design, layout="pooled")
    from hierbayes.backend.native.bridge import unsupported

    m = hb.Model("y ~ x + (1 | g)", df, correlation=hb.ARMA(time="occ", group="g", p=1))
    assert "hb.ARMA is not in it" in unsupported(m.design, m.priors, m.backend)


@pytest.mark.slow
def test_marginal_arma_posterior_agrees_with_the_latent_fit():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"id": np.repeat(np.arange(60), 5), "t": np.tile(np.arange(5), 60)})
    df = df.sample(frac=0.85, random_state=2).reset_index(drop=True)
    df["x"] = rng.normal(size=len(df))
    A = hb.ARMA(time="t", group="id", p=1, q=1)
    sim = hb.simulate("y ~ x + (1 | id)", df, {"beta": [1.0, 0.5], "sigma": 1.0, "sd_id": [0.7],
                                              "ar": [0.5], "ma": [0.3]}, correlation=A, seed=4)
    kw = dict(draws=1000, tune=1000, chains=4, seed=1, progressbar=False)
    fits = {be: hb.Model("y ~ x + (1 | id)", sim, correlation=A, backend=be).fit(target_accept=0.9, **kw)
            for be in ("marginal", "latent")}
    tm, tl = (fits[b].summary().table for b in ("marginal", "latent"))
    assert tm["r_hat"].max() <= 1.01
    mcse = np.sqrt(tm["mcse_mean"] ** 2 + tl["mcse_mean"] ** 2)
    assert (np.abs(tm["mean"] - tl["mean"]) < 4 * mcse + 0.02).all()
    assert (np.abs(tm["sd"] / tl["sd"] - 1) < 0.15).all()
