"""Unstructured residual correlation (hb.Unstructured): refusals, a fit recovering the
correlation matrix, per-cluster log-likelihood against scipy, conditional prediction,
simulate, posterior predictive, save/load and model files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.criticism.loglik import log_likelihood
from hierbayes.io import modelfile

UN = hb.Unstructured(time="occ", group="id")
CT = np.array([[1.0, 0.6, 0.3], [0.6, 1.0, 0.5], [0.3, 0.5, 1.0]])
TRUE = {"beta": [0.5, 1.0], "sigma": 1.0, "corr_resid": CT}


def _layout(n_ids=150, K=3, seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_ids):  # every fourth cluster misses occasions (gaps, size-1 clusters)
        occ = np.arange(K) if c % 4 else np.sort(rng.choice(K, rng.integers(1, K + 1), replace=False))
        rows += [(f"s{c:03d}", int(o)) for o in occ]
    df = pd.DataFrame(rows, columns=["id", "occ"])
    df["x"] = rng.standard_normal(len(df))
    return df.sample(frac=1.0, random_state=2).reset_index(drop=True)


@pytest.fixture(scope="module")
def data():
    return hb.simulate("y ~ x", _layout(), TRUE, correlation=UN, seed=2)


@pytest.fixture(scope="module")
def fit(data):
    return hb.Model("y ~ x", data, correlation=UN).fit(draws=300, tune=300, chains=2, seed=1)


def test_refusals(data):
    with pytest.raises(ValueError, match=r"drop the \(1 \| id\) term, or the correlation"):
        hb.Model("y ~ x + (1 | id)", data, correlation=UN)
    many = pd.DataFrame({"id": np.repeat(np.arange(3), 11), "occ": np.tile(np.arange(11), 3),
                         "y": np.random.default_rng(0).normal(size=33)})
    with pytest.raises(ValueError, match="at most 10 occasions"):
        hb.Model("y ~ 1", many, correlation=hb.Unstructured(time="occ", group="id"))
    dup = data.copy()
    dup.loc[1, ["id", "occ"]] = dup.loc[0, ["id", "occ"]].to_numpy()
    with pytest.raises(ValueError, match="duplicated occasion"):
        hb.Model("y ~ x", dup, correlation=UN)
    with pytest.raises(ValueError, match="drop sigma=... or pass sd_by_occasion=False"):
        hb.Model("y ~ x", data, correlation=hb.Unstructured("occ", "id", sd_by_occasion=True),
                 sigma="~ x")
    with pytest.raises(ValueError, match="positive definite correlation matrix"):
        hb.simulate("y ~ x", data, {**TRUE, "corr_resid": np.eye(2)}, correlation=UN)


def test_simulate_draws_the_covariance():
    df = pd.DataFrame({"id": np.repeat(np.arange(5000), 3), "occ": np.tile([0, 1, 2], 5000)})
    sim = hb.simulate("y ~ 1", df, {"beta": [0.0], "sigma": 2.0, "corr_resid": CT},
                      correlation=UN, seed=1)
    Y = sim.y.to_numpy().reshape(-1, 3)
    np.testing.assert_allclose(np.corrcoef(Y.T), CT, atol=0.04)
    np.testing.assert_allclose(Y.std(axis=0), 2.0, rtol=0.05)


def test_fit_recovers_the_correlation_matrix(fit):
    post = fit.idata.posterior["corr_resid"]
    assert post.dims[2:] == ("occasion", "occasion_bis")
    m, s = post.mean(("chain", "draw")).values, post.std(("chain", "draw")).values
    iu = np.triu_indices(3, 1)
    assert np.all(np.abs(m[iu] - CT[iu]) < 3 * s[iu] + 0.03), (m, s)
    rows = fit.summary().table.index
    assert {"corr(resid at 0, 1)", "corr(resid at 0, 2)", "corr(resid at 1, 2)"} <= set(rows)
    assert int(fit.idata.sample_stats["diverging"].sum()) <= 3


def test_loglik_per_cluster_matches_dense(fit):
    ll = log_likelihood(fit)["y"]
    assert ll.dims == ("chain", "draw", "id")
    df, post = fit.design.source, fit.idata.posterior
    beta, sigma, C = (post[v].isel(chain=1, draw=11).values for v in ("beta", "sigma", "corr_resid"))
    X = np.column_stack([np.ones(len(df)), df.x])
    gappy = [lab for lab, g in df.groupby("id") if len(g) < 3][:3]
    for lab in ["s001"] + gappy:
        rows = np.flatnonzero(df.id.to_numpy() == lab)
        o = df.occ.to_numpy()[rows]
        ref = stats.multivariate_normal(X[rows] @ beta, sigma**2 * C[np.ix_(o, o)]).logpdf(
            df.y.to_numpy()[rows])
        assert float(ll.isel(chain=1, draw=11).sel(id=lab)) == pytest.approx(ref, abs=1e-8)


def test_prediction_conditions_on_observed_occasions(fit):
    df = fit.design.source
    lab = next(lab for lab, g in df.groupby("id") if sorted(g.occ) == [0, 2])
    obs = df[df.id == lab].sort_values("occ")
    new = pd.DataFrame({"id": [lab], "occ": [1], "x": [0.2]})
    pred = fit.predict(new, n_draws=30)
    post = fit.idata.posterior.sel(chain=pred.draws.chain, draw=pred.draws.draw)
    beta, C = post["beta"].values, post["corr_resid"].values
    X_obs = np.column_stack([np.ones(2), obs.x])
    e = obs.y.to_numpy() - beta @ X_obs.T  # (chain, draw, 2)
    S_oo = C[..., [0, 2], :][..., :, [0, 2]]
    S_no = C[..., 1, [0, 2]]
    cond = np.einsum("cdo,cdo->cd", S_no, np.linalg.solve(S_oo, e[..., None])[..., 0])
    want = beta @ np.array([1.0, 0.2]) + cond
    np.testing.assert_allclose(pred.draws.transpose("chain", "draw", ...).values[..., 0], want,
                               atol=1e-10)
    with pytest.raises(ValueError, match="not in the fitted data"):
        fit.predict(pd.DataFrame({"id": [lab], "occ": [7], "x": [0.0]}))


def test_posterior_predictive_persistence_and_model_file(fit, tmp_path, data):
    yrep = fit.posterior_predictive(n_draws=20, seed=1)
    assert np.shape(yrep)[-1] == fit.design.n_input_rows and np.isfinite(yrep).all()
    path = tmp_path / "un.nc"
    fit.save(path)
    back = hb.load(path)
    assert back.design.correlation == UN and back.design.occasions == ("0", "1", "2")
    np.testing.assert_allclose(log_likelihood(back)["y"].values, log_likelihood(fit)["y"].values)
    data.to_csv(tmp_path / "d.csv", index=False)
    f = tmp_path / "m.toml"
    f.write_text('formula = "y ~ x"\ndata = "d.csv"\n[correlation]\ntype = "unstructured"\n'
                 'time = "occ"\ngroup = "id"\n')
    assert modelfile.read(f).correlation == UN


def test_prior_predictive_and_log_prior(fit, data):
    from hierbayes.criticism.logprior import lkj_logpdf, log_prior
    from hierbayes.predict.prior_predictive import sample_prior_predictive

    m = hb.Model("y ~ x", data, correlation=UN)
    pp = sample_prior_predictive(m.design, m.priors, draws=30, seed=1)
    assert pp.y.shape == (30, len(data)) and np.isfinite(pp.y).all()
    c = pp.prior["corr_resid"].values
    assert np.allclose(np.diagonal(c, axis1=1, axis2=2), 1.0)
    lp = log_prior(fit.idata, fit.design, fit.priors)
    C = fit.idata.posterior["corr_resid"].isel(chain=0, draw=3).values
    assert float(lp["corr_resid"].isel(chain=0, draw=3)) == pytest.approx(float(lkj_logpdf(C, 2.0)))


UN_SD = hb.Unstructured(time="occ", group="id", sd_by_occasion=True)
SDS = np.array([0.5, 1.0, 2.0])


def test_sd_by_occasion_fit_loglik_simulate_and_prediction():
    df = pd.DataFrame({"id": np.repeat(np.arange(4000), 3), "occ": np.tile([0, 1, 2], 4000)})
    sim = hb.simulate("y ~ 1", df, {"beta": [0.0], "sigma_occasion": SDS, "corr_resid": CT},
                      correlation=UN_SD, seed=1)
    Y = sim.y.to_numpy().reshape(-1, 3)
    np.testing.assert_allclose(np.cov(Y.T), SDS[:, None] * CT * SDS[None, :], rtol=0.08, atol=0.03)
    with pytest.raises(ValueError, match="sigma_occasion needs 3 positive values"):
        hb.simulate("y ~ 1", df, {"beta": [0.0], "sigma_occasion": [1.0, 2.0], "corr_resid": CT},
                    correlation=UN_SD)

    data = hb.simulate("y ~ x", _layout(), {"beta": [0.5, 1.0], "sigma_occasion": SDS,
                                             "corr_resid": CT}, correlation=UN_SD, seed=3)
    fit = hb.Model("y ~ x", data, correlation=UN_SD).fit(draws=300, tune=300, chains=2, seed=1)
    post = fit.idata.posterior
    assert "sigma" not in post and post["sigma_occasion"].dims[2:] == ("occasion",)
    m = post["sigma_occasion"].mean(("chain", "draw")).values
    s = post["sigma_occasion"].std(("chain", "draw")).values
    assert np.all(np.abs(m - SDS) < 3 * s + 0.03), (m, s)
    assert {"sigma at 0 (residual sd)", "sigma at 2 (residual sd)"} <= set(fit.summary().table.index)
    # per-cluster log-likelihood against the dense D R D
    ll = log_likelihood(fit)["y"].isel(chain=0, draw=5)
    src = fit.design.source
    beta, so, C = (post[v].isel(chain=0, draw=5).values for v in ("beta", "sigma_occasion", "corr_resid"))
    X = np.column_stack([np.ones(len(src)), src.x])
    for lab in ("s001", next(lab for lab, g in src.groupby("id") if len(g) == 2)):
        rows = np.flatnonzero(src.id.to_numpy() == lab)
        o = src.occ.to_numpy()[rows]
        cov = so[o][:, None] * C[np.ix_(o, o)] * so[o][None, :]
        ref = stats.multivariate_normal(X[rows] @ beta, cov).logpdf(src.y.to_numpy()[rows])
        assert float(ll.sel(id=lab)) == pytest.approx(ref, abs=1e-8)
    # a new cluster's response at occasion k has sd about sigma_k
    new = pd.DataFrame({"id": ["zz", "zz"], "occ": [0, 2], "x": [0.0, 0.0]})
    pred = fit.predict(new, kind="response", seed=2)
    np.testing.assert_allclose(pred.table["sd"].to_numpy(), SDS[[0, 2]], rtol=0.15)
    assert np.isfinite(fit.posterior_predictive(n_draws=10)).all()


def test_sbc_mechanics_with_an_sd_per_occasion():
    from concurrent.futures import ThreadPoolExecutor

    df = _layout(30, seed=4)
    df["y"] = np.random.default_rng(1).normal(size=len(df))  # replaced by each simulation
    model = hb.Model("y ~ x", df, correlation=UN_SD,
                     priors={"sigma": hb.Prior("HalfNormal", sigma=1.0)})
    with ThreadPoolExecutor(1) as ex:
        res = hb.sbc(model, 2, executor=ex, seed=3, n_ranks=49, draws=100, tune=150)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert {"sigma at 1 (residual sd)", "corr(resid at 0, 2)"} <= set(res.ranks.columns)
