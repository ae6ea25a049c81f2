"""ARMA(p, q) residual correlation (hb.ARMA): refusals and backend choice, a fit recovering
the coefficients, per-cluster log-likelihood, conditional prediction, simulate, posterior
predictive, save/load and model files; a slow SBC run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes import backend
from hierbayes.criticism.loglik import log_likelihood
from hierbayes.io import modelfile
from hierbayes.likelihood import arma

A = hb.ARMA(time="time", group="id", p=1, q=1)
TRUE = {"beta": [0.5, 1.0], "sigma": 1.0, "ar": [0.6], "ma": [0.3]}


def _layout(n_ids=100, T=10, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": np.repeat([f"s{i:03d}" for i in range(n_ids)], T),
                       "time": np.tile(np.arange(T), n_ids)})
    df["x"] = rng.standard_normal(len(df))
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)  # rows in any order


def _acf(post_sel, L):
    """The ACF (L + 1,) of one draw from its ar / ma coefficients (numpy)."""
    kap_ar, kap_ma = arma.pacf_of(post_sel["ar"].values, post_sel["ma"].values, 1, 1)
    return np.array(arma.acf(list(kap_ar), list(kap_ma), L), dtype=float)


@pytest.fixture(scope="module")
def data():
    return hb.simulate("y ~ x", _layout(), TRUE, correlation=A, seed=4)


@pytest.fixture(scope="module")
def fit(data):
    return hb.Model("y ~ x", data, correlation=A).fit(draws=300, tune=300, chains=2, seed=2)


def test_spec_checks_and_backend_choice(data):
    for bad in ({"p": 4}, {"p": 0, "q": 0}, {"q": -1}, {"p": 1.5}):
        with pytest.raises(ValueError, match="hb.ARMA"):
            hb.ARMA(time="time", group="id", **{"p": 1, "q": 1, **bad})
    m = hb.Model("y ~ x + (1 | id)", data, correlation=A)  # a random intercept is identified
    assert m.backend == "latent"
    assert "hb.ARMA is fitted by the latent backend" in backend.marginal_unavailable(m.design)
    with pytest.raises(ValueError, match="use 'latent'"):
        hb.Model("y ~ x + (1 | id)", data, correlation=A, backend="marginal")
    d = data.assign(k=(data.y > 0).astype(int))
    with pytest.raises(ValueError, match="gaussian family"):
        hb.Model("k ~ x", d, correlation=A, family="bernoulli")
    with pytest.raises(ValueError, match="non-integer"):
        hb.Model("y ~ x", data.assign(time=data.time + 0.5), correlation=A)
    from hierbayes.spec.correlation import PhiSignWarning

    with pytest.warns(PhiSignWarning, match="multiple of 2"):
        hb.Model("y ~ x", data.assign(time=2 * data.time), correlation=A)
    assert m.priors["arma_ar_pacf"] == hb.Prior("Uniform", lower=-1.0, upper=1.0)
    assert m.priors["arma_ma_pacf"] == hb.Prior("Uniform", lower=-1.0, upper=1.0)
    # refused at hb.Model(), before anything is built
    with pytest.raises(ValueError, match=r"arma_ma_pacf .* takes an hb.Prior\('Uniform'"):
        hb.Model("y ~ x", data, correlation=A, priors={"arma_ma_pacf": hb.Prior("Normal", mu=0, sigma=1)})


def test_simulate_draws_the_arma_covariance():
    df = pd.DataFrame({"id": np.repeat(np.arange(6000), 4), "time": np.tile([0, 1, 2, 4], 6000)})
    sim = hb.simulate("y ~ 1", df, {"beta": [0.0], "sigma": 2.0, "ar": [0.5], "ma": [0.4]},
                      correlation=A, seed=1)
    Y = sim.y.to_numpy().reshape(-1, 4)
    kap_ar, kap_ma = arma.pacf_of([0.5], [0.4], 1, 1)
    r = np.array(arma.acf(list(kap_ar), list(kap_ma), 4), float)
    t = np.array([0, 1, 2, 4])
    np.testing.assert_allclose(np.cov(Y.T), 4.0 * r[np.abs(t[:, None] - t[None, :])], atol=0.2)
    with pytest.raises(ValueError, match="not stationary"):
        hb.simulate("y ~ 1", df, {"beta": [0.0], "sigma": 1.0, "ar": [1.1], "ma": [0.4]}, correlation=A)
    with pytest.raises(KeyError, match="lack"):
        hb.simulate("y ~ 1", df, {"beta": [0.0], "sigma": 1.0, "ar": [0.5]}, correlation=A)


def test_fit_recovers_the_coefficients(fit):
    post = fit.idata.posterior
    for v, t in (("ar", 0.6), ("ma", 0.3)):
        x = post[v].values.ravel()
        assert abs(x.mean() - t) < 3 * x.std() + 0.05, (v, x.mean(), x.std())
    sig = post["sigma"].values.ravel()
    assert abs(sig.mean() - TRUE["sigma"]) < 3 * sig.std() + 0.05
    # the deterministics are the pacf map's coefficients
    ar, ma = arma.coefficients([post["arma_ar_pacf"].values[..., 0]], [post["arma_ma_pacf"].values[..., 0]])
    np.testing.assert_allclose(post["ar"].values[..., 0], ar[0], atol=1e-12)
    np.testing.assert_allclose(post["ma"].values[..., 0], ma[0], atol=1e-12)
    table = fit.summary().table
    assert {"ar[1] (ARMA coefficient)", "ma[1] (ARMA coefficient)"} <= set(table.index)


def test_loglik_per_cluster_matches_dense(fit):
    ll = log_likelihood(fit)["y"]
    assert ll.dims == ("chain", "draw", "id")
    post, df = fit.idata.posterior.isel(chain=0, draw=7), fit.design.source
    beta, sigma = post["beta"].values, float(post["sigma"])
    r = _acf(post, 10)
    X = np.column_stack([np.ones(len(df)), df.x])
    for lab in ("s000", "s005", "s011"):
        rows = np.flatnonzero(df.id.to_numpy() == lab)
        t = df.time.to_numpy()[rows]
        cov = sigma**2 * r[np.abs(t[:, None] - t[None, :])]
        ref = stats.multivariate_normal(X[rows] @ beta, cov).logpdf(df.y.to_numpy()[rows])
        assert float(ll.isel(chain=0, draw=7).sel(id=lab)) == pytest.approx(ref, abs=1e-8)


def test_prediction_conditions_on_the_cluster_residuals(fit):
    df = fit.design.source
    lab = "s003"
    obs = df[df.id == lab].sort_values("time")
    new = pd.DataFrame({"id": [lab, lab, "new"], "time": [10, 13, 0], "x": [0.3, -0.2, 0.3]})
    pred = fit.predict(new, n_draws=10)
    got = pred.draws.transpose("chain", "draw", ...).values
    post = fit.idata.posterior.sel(chain=pred.draws.chain, draw=pred.draws.draw)
    to, tn = obs.time.to_numpy(), np.array([10, 13])
    X_obs = np.column_stack([np.ones(len(obs)), obs.x])
    for c in range(got.shape[0]):
        for k in range(got.shape[1]):
            p = post.isel(chain=c, draw=k)
            beta = p["beta"].values
            r = _acf(p, 13)
            R_oo = r[np.abs(to[:, None] - to[None, :])]
            R_no = r[np.abs(tn[:, None] - to[None, :])]
            e = obs.y.to_numpy() - X_obs @ beta
            mean = np.array([1.0, 0.3]) @ beta, np.array([1.0, -0.2]) @ beta
            np.testing.assert_allclose(got[c, k, :2], np.array(mean) + R_no @ np.linalg.solve(R_oo, e),
                                       atol=1e-10)
            assert got[c, k, 2] == pytest.approx(np.array([1.0, 0.3]) @ beta, abs=1e-10)
    assert pred.table["ar_conditioned"].tolist() == [True, True, False]


def test_posterior_predictive_and_persistence(fit, tmp_path):
    yrep = fit.posterior_predictive(n_draws=20, seed=1)
    assert np.shape(yrep)[-1] == fit.design.n_input_rows and np.isfinite(yrep).all()
    path = tmp_path / "arma.nc"
    fit.save(path)
    back = hb.load(path)
    assert back.design.correlation == A
    np.testing.assert_allclose(log_likelihood(back)["y"].values, log_likelihood(fit)["y"].values)


def test_model_file(tmp_path, data):
    data.to_csv(tmp_path / "d.csv", index=False)
    f = tmp_path / "m.toml"
    f.write_text('formula = "y ~ x"\ndata = "d.csv"\n[correlation]\ntype = "arma"\n'
                 'time = "time"\ngroup = "id"\np = 2\nq = 0\n')
    assert modelfile.read(f).correlation == hb.ARMA(time="time", group="id", p=2, q=0)
    assert hb.spec.correlation.from_dict(A.to_dict()) == A
    f.write_text('formula = "y ~ x"\ndata = "d.csv"\n[correlation]\ntype = "arma"\n'
                 'time = "time"\ngroup = "id"\nsd_by_occasion = true\n')
    with pytest.raises(ValueError, match="takes no"):
        modelfile.read(f)


def test_prior_predictive_and_log_prior(fit, data):
    from hierbayes.criticism.logprior import log_prior
    from hierbayes.predict.prior_predictive import sample_prior_predictive

    m = hb.Model("y ~ x", data, correlation=A)
    pp = sample_prior_predictive(m.design, m.priors, draws=30, seed=1)
    assert pp.y.shape == (30, len(data)) and np.isfinite(pp.y).all()
    lp = log_prior(fit.idata, fit.design, fit.priors)
    assert np.allclose(lp["arma_ar_pacf"].values, -np.log(2.0))
    assert np.allclose(lp["arma_ma_pacf"].values, -np.log(2.0))


@pytest.mark.slow
def test_sbc_arma11_calibrated():
    df = _layout(30, T=8, seed=3)
    df["y"] = np.random.default_rng(1).normal(size=len(df))  # replaced by each simulation
    priors = {"sigma": hb.Prior("HalfNormal", sigma=1.0)}
    model = hb.Model("y ~ x", df, correlation=A, priors=priors)
    res = hb.sbc(model, 40, seed=5, n_ranks=49, draws=250, tune=400, max_workers=2)
    assert res.fits.error.isna().all()
    assert "ar[1] (ARMA coefficient)" in res.ranks.columns
    test = res.uniformity(bins=5)
    assert (test["p_value"] > 0.001).all(), test


def test_sbc_mechanics():
    from concurrent.futures import ThreadPoolExecutor

    df = _layout(15, T=6, seed=3)
    df["y"] = np.random.default_rng(1).normal(size=len(df))
    model = hb.Model("y ~ x", df, correlation=A, priors={"sigma": hb.Prior("HalfNormal", sigma=1.0)})
    with ThreadPoolExecutor(1) as ex:
        res = hb.sbc(model, 2, executor=ex, seed=3, n_ranks=49, draws=100, tune=150)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    for c in ("ar[1] (ARMA coefficient)", "ma[1] (ARMA coefficient)"):
        assert c in res.ranks.columns
        assert (res.truth[c].abs() < 1).all()
