"""Compound-symmetry residual correlation (hb.CompSymm): refusals, backend choice, a fit
recovering rho, per-cluster log-likelihood, conditional prediction, simulate, posterior
predictive, save/load and model files; a slow SBC run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes import backend
from hierbayes.backend.native import bridge
from hierbayes.criticism.loglik import log_likelihood
from hierbayes.io import modelfile

CS = hb.CompSymm(group="id")
TRUE = {"beta": [0.5, 1.0], "sigma": 1.2, "rho": 0.6}


def _layout(n_ids=80, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, size=n_ids)  # unbalanced, size-1 clusters included
    ids = np.repeat([f"s{i:02d}" for i in range(n_ids)], sizes)
    df = pd.DataFrame({"id": ids, "x": rng.standard_normal(ids.size),
                       "school": rng.integers(0, 6, ids.size).astype(str)})
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # rows in any order


@pytest.fixture(scope="module")
def data():
    return hb.simulate("y ~ x", _layout(), TRUE, correlation=CS, seed=4)


@pytest.fixture(scope="module")
def fit(data):
    return hb.Model("y ~ x", data, correlation=CS).fit(draws=300, tune=300, chains=2, seed=2)


def test_random_intercept_on_the_same_group_is_refused(data):
    for f in ("y ~ x + (1 | id)", "y ~ x + (x | id)"):
        with pytest.raises(ValueError, match=r"drop the \(1 \| id\) term, or the correlation"):
            hb.Model(f, data, correlation=CS)


def test_non_gaussian_is_refused(data):
    d = data.assign(k=(data.y > 0).astype(int))
    with pytest.raises(ValueError, match="gaussian family"):
        hb.Model("k ~ x", d, correlation=CS, family="bernoulli")


def test_backend_choice_and_bounds(data):
    m = hb.Model("y ~ x", data, correlation=CS)
    assert m.backend == "latent"
    n_max = int(data.groupby("id").size().max())
    assert m.design.phi_bounds == pytest.approx((-1 / (n_max - 1), 1.0))
    assert m.priors["phi"].params == pytest.approx({"lower": -1 / (n_max - 1), "upper": 1.0})
    # slopes without intercept on id: integrated out (compound-symmetry whitening)
    m2 = hb.Model("y ~ x + (0 + x | id)", data, correlation=CS)
    assert m2.backend == "marginal"
    assert "CompSymm is not in it" in bridge.unsupported(m2.design, m2.priors, "marginal")
    # random effects of another factor only: the correlation's group has none, latent
    m3 = hb.Model("y ~ x + (1 | school)", data, correlation=CS)
    assert m3.backend == "latent"
    assert "has no random effects" in backend.marginal_unavailable(m3.design)
    with pytest.raises(ValueError, match="Use backend='latent'"):
        hb.Model("y ~ x + (1 | school)", data, correlation=CS, backend="marginal")


def test_simulate_draws_the_exchangeable_covariance():
    df = pd.DataFrame({"id": np.repeat(np.arange(4000), 3), "x": 0.0})
    for key in ("rho", "phi"):
        sim = hb.simulate("y ~ 1", df, {"beta": [0.0], "sigma": 2.0, key: -0.3},
                          correlation=CS, seed=1)
        Y = sim.y.to_numpy().reshape(-1, 3)
        C = np.cov(Y.T)
        assert np.allclose(np.diag(C), 4.0, rtol=0.06)
        assert np.allclose(C[np.triu_indices(3, 1)], -1.2, atol=0.15)
    with pytest.raises(ValueError, match=r"phi must lie in \(-0.5, 1\)"):
        hb.simulate("y ~ 1", df, {"beta": [0.0], "sigma": 1.0, "rho": -0.6}, correlation=CS)


def test_fit_recovers_rho(fit):
    post = fit.idata.posterior
    rho = post["phi"].values.ravel()
    assert abs(rho.mean() - TRUE["rho"]) < 3 * rho.std() + 0.05
    sig = post["sigma"].values.ravel()
    assert abs(sig.mean() - TRUE["sigma"]) < 3 * sig.std() + 0.05
    assert "rho (compound symmetry correlation)" in fit.summary().table.index


def test_loglik_per_cluster_matches_dense(fit):
    ll = log_likelihood(fit)["y"]
    assert ll.dims == ("chain", "draw", "id")
    d, post, df = fit.design, fit.idata.posterior, fit.design.source
    beta, sigma, rho = (post[v].isel(chain=0, draw=7).values for v in ("beta", "sigma", "phi"))
    X = np.column_stack([np.ones(len(df)), df.x])
    for lab in ("s00", "s05", "s11"):
        rows = np.flatnonzero(df.id.to_numpy() == lab)
        n = rows.size
        cov = sigma**2 * ((1 - rho) * np.eye(n) + rho * np.ones((n, n)))
        ref = stats.multivariate_normal(X[rows] @ beta, cov).logpdf(df.y.to_numpy()[rows])
        assert float(ll.isel(chain=0, draw=7).sel(id=lab)) == pytest.approx(ref, abs=1e-8)


def test_prediction_conditions_on_the_cluster_residuals(fit):
    df = fit.design.source
    lab = df.id.value_counts().index[0]  # the largest cluster
    obs = df[df.id == lab]
    new = pd.DataFrame({"id": [lab, "new"], "x": [0.3, 0.3]})
    pred = fit.predict(new, n_draws=40)
    post = fit.idata.posterior.sel(chain=pred.draws.chain, draw=pred.draws.draw)
    beta = post["beta"].values  # (chain, draw, p)
    rho = post["phi"].values
    X_obs = np.column_stack([np.ones(len(obs)), obs.x])
    e = obs.y.to_numpy() - beta @ X_obs.T  # (chain, draw, n)
    n = len(obs)
    # E[e_new | e_obs] = S_no S_oo^-1 e_obs = rho sum(e) / (1 + (n - 1) rho)
    cond = rho * e.sum(axis=-1) / (1 + (n - 1) * rho)
    fixed = beta @ np.array([1.0, 0.3])
    got = pred.draws.transpose("chain", "draw", ...).values
    np.testing.assert_allclose(got[..., 0], fixed + cond, atol=1e-10)
    np.testing.assert_allclose(got[..., 1], fixed, atol=1e-10)
    assert pred.table["ar_conditioned"].tolist() == [True, False]


def test_posterior_predictive_and_persistence(fit, tmp_path):
    yrep = fit.posterior_predictive(n_draws=20, seed=1)
    assert np.shape(yrep)[-1] == fit.design.n_input_rows and np.isfinite(yrep).all()
    path = tmp_path / "cs.nc"
    fit.save(path)
    back = hb.load(path)
    assert back.design.correlation == CS
    np.testing.assert_allclose(log_likelihood(back)["y"].values, log_likelihood(fit)["y"].values)


def test_model_file(tmp_path, data):
    data.to_csv(tmp_path / "d.csv", index=False)
    f = tmp_path / "m.toml"
    f.write_text('formula = "y ~ x"\ndata = "d.csv"\n[correlation]\ntype = "compsymm"\ngroup = "id"\n')
    mf = modelfile.read(f)
    assert mf.correlation == CS
    f.write_text('formula = "y ~ x"\ndata = "d.csv"\n[correlation]\ntype = "compsymm"\n'
                 'group = "id"\ntime = "x"\n')
    with pytest.raises(ValueError, match="takes no"):
        modelfile.read(f)


@pytest.mark.slow
def test_sbc_compsymm_calibrated():
    df = _layout(25, seed=3)
    df["y"] = np.random.default_rng(1).normal(size=len(df))  # replaced by each simulation
    priors = {"sigma": hb.Prior("HalfNormal", sigma=1.0)}
    model = hb.Model("y ~ x", df, correlation=CS, priors=priors)
    res = hb.sbc(model, 40, seed=5, n_ranks=49, draws=250, tune=400, max_workers=2)
    assert res.fits.error.isna().all()
    test = res.uniformity(bins=5)
    assert (test["p_value"] > 0.001).all(), test


def test_prior_predictive_and_log_prior(fit, data):
    from hierbayes.criticism.logprior import log_prior
    from hierbayes.predict.prior_predictive import sample_prior_predictive

    m = hb.Model("y ~ x", data, correlation=CS)
    pp = sample_prior_predictive(m.design, m.priors, draws=30, seed=1)
    assert pp.y.shape == (30, len(data)) and np.isfinite(pp.y).all()
    lo, hi = m.design.phi_bounds
    lp = log_prior(fit.idata, fit.design, fit.priors)
    assert np.allclose(lp["phi"].values, -np.log(hi - lo))


def test_sbc_mechanics():
    from concurrent.futures import ThreadPoolExecutor

    df = _layout(20, seed=3)
    df["y"] = np.random.default_rng(1).normal(size=len(df))
    model = hb.Model("y ~ x", df, correlation=CS, priors={"sigma": hb.Prior("HalfNormal", sigma=1.0)})
    with ThreadPoolExecutor(1) as ex:
        res = hb.sbc(model, 2, executor=ex, seed=3, n_ranks=49, draws=100, tune=150)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert "rho (compound symmetry correlation)" in res.ranks.columns
    lo, hi = model.design.phi_bounds
    assert ((res.truth["rho (compound symmetry correlation)"] > lo)
            & (res.truth["rho (compound symmetry correlation)"] < hi)).all()


def test_marginal_backend_with_slopes_recovers_and_matches_dense():
    true = {"beta": [0.5, 1.0], "sigma": 1.2, "rho": 0.6, "sd_id": [0.8]}
    data = hb.simulate("y ~ x + (0 + x | id)", _layout(120), true, correlation=CS, seed=4)
    fit = hb.Model("y ~ x + (0 + x | id)", data, correlation=CS).fit(
        draws=300, tune=300, chains=2, seed=2)
    assert fit.backend == "marginal"
    post = fit.idata.posterior
    for v, t in (("phi", 0.6), ("sigma", 1.2)):
        x = post[v].values.ravel()
        assert abs(x.mean() - t) < 3 * x.std() + 0.05, (v, x.mean(), x.std())
    assert post["b_id"].shape[2:] == (120, 1)  # recovered effects
    # the per-cluster collapsed density against the dense covariance
    ll = log_likelihood(fit)["y"].isel(chain=0, draw=4)
    df = fit.design.source
    beta, sigma, rho, sd = (post[v].isel(chain=0, draw=4).values
                            for v in ("beta", "sigma", "phi", "sd_id"))
    for lab in ("s00", "s07", "s33"):
        r = df[df.id == lab]
        n = len(r)
        cov = (sigma**2 * ((1 - rho) * np.eye(n) + rho * np.ones((n, n)))
               + sd[0] ** 2 * np.outer(r.x, r.x))
        ref = stats.multivariate_normal(beta[0] + beta[1] * r.x, cov).logpdf(r.y)
        assert float(ll.sel(id=lab)) == pytest.approx(ref, abs=1e-8)
