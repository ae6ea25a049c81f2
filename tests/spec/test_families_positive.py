"""Gamma and lognormal families: densities against scipy, support errors, derivatives
against central differences, the numpy quadrature reference against a numerical integral,
and a small latent fit of each (recovery, prediction, LOO, save/load); slow SBC of each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

import hierbayes as hb
from hierbayes.likelihood import quadrature
from hierbayes.spec import families as F

H = 1e-5


def _random(seed=0, n=200):
    rng = np.random.default_rng(seed)
    return rng, np.exp(rng.normal(0, 1.5, n)), rng.normal(0, 2, n)


@pytest.mark.parametrize("shape", [0.05, 0.7, 3.0, 250.0])
def test_gamma_logpdf_equals_scipy(shape):
    _, y, eta = _random(1)
    mu = np.exp(eta)
    want = stats.gamma.logpdf(y, shape, scale=mu / shape)
    got = F.Gamma().logpdf(y, eta, {"shape": shape})
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)
    l = F.Gamma().eta_derivatives(y, eta, {"shape": shape})[0]
    np.testing.assert_allclose(l, want, rtol=1e-12, atol=1e-10)


@pytest.mark.parametrize("sigma", [0.05, 0.8, 4.0])
def test_lognormal_logpdf_equals_scipy(sigma):
    _, y, eta = _random(2)
    want = stats.lognorm.logpdf(y, sigma, scale=np.exp(eta))
    np.testing.assert_allclose(F.LogNormal().logpdf(y, eta, {"sigma": sigma}), want, rtol=0, atol=1e-10)
    l = F.LogNormal().eta_derivatives(y, eta, {"sigma": sigma})[0]
    np.testing.assert_allclose(l, want, rtol=1e-12, atol=1e-10)
    # the log density of y is the Gaussian one of log y minus log y
    g = stats.norm.logpdf(np.log(y), eta, sigma) - np.log(y)
    np.testing.assert_allclose(want, g, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name, params", [("gamma", {"shape": 2.5}), ("lognormal", {"sigma": 0.6})])
def test_mean_and_variance_of_draws(name, params):
    fam = F.get(name)
    eta = np.full(400_000, 0.4)
    y = fam.draw(np.random.default_rng(3), eta, params)
    assert np.all(y > 0)
    mean, var = fam.fitted(eta, params)[0], fam.variance(eta, params)[0]
    assert abs(y.mean() - mean) < 4 * np.sqrt(var / y.size)
    assert y.var() == pytest.approx(var, rel=0.03)
    dist = (stats.gamma(params.get("shape", 1), scale=np.exp(0.4) / params.get("shape", 1))
            if name == "gamma" else stats.lognorm(params["sigma"], scale=np.exp(0.4)))
    assert mean == pytest.approx(dist.mean(), rel=1e-12)
    assert var == pytest.approx(dist.var(), rel=1e-10)


@pytest.mark.parametrize("name", ["gamma", "lognormal"])
@pytest.mark.parametrize("bad, what", [([1.0, 0.0, 2.0], "outside the support"),
                                       ([1.0, -2.0], "outside the support"),
                                       ([1.0, np.inf], "infinite values"),
                                       (["a", "b"], "not numeric")])
def test_support_errors_name_column_and_family(name, bad, what):
    with pytest.raises(ValueError, match=f"'resp'.*{what}") as err:
        F.get(name).validate(np.array(bad), "resp")
    assert name in str(err.value)


@pytest.mark.parametrize("name", ["gamma", "lognormal"])
def test_model_refuses_a_zero_response(name):
    df = pd.DataFrame({"y": [1.0, 2.0, 0.0, 3.0], "x": [0.0, 1, 2, 3], "g": list("aabb")})
    with pytest.raises(ValueError, match=f"'y'.*{name}"):
        hb.Model("y ~ x + (1 | g)", df, family=name)


def test_check_params_names_the_parameter():
    with pytest.raises(ValueError, match="shape must be positive"):
        F.Gamma().check_params({"shape": 0.0})
    with pytest.raises(ValueError, match="sigma must be finite"):
        F.LogNormal().check_params({"sigma": np.nan})


def test_default_priors_are_scaled_to_the_data():
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"g": np.repeat(np.arange(10), 5), "x": rng.normal(size=50)})
    df["y"] = np.exp(5.0 + 0.3 * rng.normal(size=50))
    ln = hb.Model("y ~ x + (1 | g)", df, family="lognormal").priors
    s = np.std(np.log(df.y))
    assert ln["sigma"].params["sigma"] == pytest.approx(2.5 * s)
    assert ln["Intercept"].params["mu"] == pytest.approx(np.mean(np.log(df.y)))
    ga = hb.Model("y ~ x + (1 | g)", df, family="gamma").priors
    assert ga["shape"].dist == "Gamma" and ga["shape"].params == {"alpha": 0.01, "beta": 0.01}
    assert ga["Intercept"].params["mu"] == pytest.approx(np.log(df.y.mean()))


CASES = {"gamma": (F.Gamma(), "shape", [0.3, 2.0, 40.0]),
         "lognormal": (F.LogNormal(), "sigma", [0.2, 1.0, 3.0])}


@pytest.mark.parametrize("name", sorted(CASES))
def test_eta_and_parameter_derivatives_match_central_differences(name):
    fam, pname, values = CASES[name]
    _, y, eta = _random(5, 60)
    for v in values:
        p = {pname: v}
        out = fam.eta_derivatives(y, eta, p)
        up, down = fam.eta_derivatives(y, eta + H, p), fam.eta_derivatives(y, eta - H, p)
        for k in range(3):
            fd = (up[k] - down[k]) / (2 * H)
            assert np.max(np.abs(fd - out[k + 1]) / np.maximum(1, np.abs(out[k]))) < 1e-5, (v, k)
        h = 1e-6 * v
        d = fam.param_derivatives(y, eta, p)[pname]
        hi, lo = fam.eta_derivatives(y, eta, {pname: v + h}), fam.eta_derivatives(y, eta, {pname: v - h})
        for k in range(3):
            fd = (hi[k] - lo[k]) / (2 * h)
            assert np.max(np.abs(fd - d[k]) / np.maximum(1, np.abs(d[k]))) < 1e-5, (v, k)


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_quadrature_reference_takes_the_family(name):
    """The numpy reference of the marginal GLMM likelihood needs only the family's
    derivatives: one cluster's value against a numerical integral over the effect."""
    fam, pname, values = CASES[name]
    rng = np.random.default_rng(6)
    n = 5
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    beta, sd, p = np.array([0.3, 0.5]), 0.7, values[1]
    y = fam.draw(rng, X @ beta + 0.4, {pname: p})
    rows, _ = quadrature.cluster_rows(y, X, np.ones((n, 1)), np.zeros(n, dtype=int))
    ll, _ = quadrature.loglik_reference(fam, rows, beta, [[sd]], p, nagq=25)

    def f(b):
        return np.exp(fam.logpdf(y, X @ beta + b, {pname: p}).sum()) * stats.norm.pdf(b, 0, sd)

    want = np.log(integrate.quad(f, -8, 8, epsabs=0, epsrel=1e-12, limit=200)[0])
    assert float(ll[0]) == pytest.approx(want, abs=1e-8)


def _data(name, seed=0, n_ids=30, n_per=8):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"id": np.repeat(np.arange(n_ids), n_per), "x": rng.normal(size=n_ids * n_per)})
    params = {"beta": [1.0, 0.5], "sd_id": [0.4], **({"shape": 4.0} if name == "gamma" else {"sigma": 0.5})}
    m = hb.spec.formula.parse("y ~ x + (1 | id)", family=name)
    return hb.simulate(m, df, params, seed=seed), params


@pytest.mark.parametrize("name", ["gamma", "lognormal"])
def test_auto_picks_quadrature_for_one_intercept(name):
    """One grouping factor with one effect: ``auto`` integrates it out by quadrature, as for
    the count families (tests/backend/test_glmm_positive.py tests that backend)."""
    df, _ = _data(name)
    assert hb.Model("y ~ x + (1 | id)", df, family=name).backend == "quadrature"
    assert hb.Model("y ~ x + (1 | id)", df, family=name, backend="latent").backend == "latent"


@pytest.mark.parametrize("name", ["gamma", "lognormal"])
def test_latent_fit_recovers_predicts_loo_and_saves(name, tmp_path):
    df, truth = _data(name)
    m = hb.Model("y ~ x + (1 | id)", df, family=name, backend="latent")
    fit = m.fit(draws=300, tune=300, chains=2, seed=1, progressbar=False)
    post = fit.idata.posterior
    beta = post["beta"].values.reshape(-1, 2)
    assert np.all(np.abs(beta.mean(0) - truth["beta"]) < 4 * beta.std(0) + 0.05), beta.mean(0)
    pname = "shape" if name == "gamma" else "sigma"
    p = post[pname].values.ravel()
    assert abs(p.mean() - truth[pname]) < 4 * p.std() + 0.05 * truth[pname]
    assert names_in_summary(fit, pname)
    # prediction of the response-scale mean for new rows, population level
    new = pd.DataFrame({"id": [0, 10_000], "x": [0.0, 1.0]})
    pred = fit.predict(new, kind="mean", groups="none")
    eta = beta[:, 0][:, None] + beta[:, 1][:, None] * new.x.to_numpy()[None]
    want = F.get(name).fitted(eta, {pname: p[:, None]}).mean(0)
    np.testing.assert_allclose(pred.table["mean"].to_numpy(), want, rtol=1e-10)
    resp = fit.predict(new, kind="response", groups="existing", seed=2)
    assert np.all(resp.draws.values > 0)
    y_rep = fit.posterior_predictive(n_draws=50)
    assert y_rep.shape[1] == len(df) and np.all(y_rep > 0)
    pp = m.sample_prior_predictive(draws=20, seed=1)
    # Gamma(0.01, 0.01) puts shapes near 0 in the prior, whose draws underflow to 0.0
    assert np.all(np.asarray(pp.y) >= 0) and np.all(np.isfinite(pp.y) | (np.asarray(pp.y) == np.inf))
    # LOO: pointwise log-likelihood is the family's density
    ll = fit.log_likelihood()["y"]
    c, d = 1, 7
    b = post["b_id"].values[c, d, :, 0]
    eta1 = beta.reshape(2, -1, 2)[c, d] @ np.vstack([np.ones(len(df)), df.x]) + b[fit.design.groups[0].index]
    want_ll = F.get(name).logpdf(fit.design.y, eta1, {pname: float(post[pname].values[c, d])})
    np.testing.assert_allclose(ll.values[c, d], want_ll, atol=1e-8)
    loo = fit.loo()
    assert np.isfinite(loo.elpd_loo)
    path = fit.save(tmp_path / "fit.nc")
    back = hb.load(path)
    assert back.spec.family.name == name
    np.testing.assert_allclose(back.loo().elpd_loo, loo.elpd_loo)


def names_in_summary(fit, pname) -> bool:
    text = str(fit.summary())
    return pname in text


@pytest.mark.slow
@pytest.mark.parametrize("family, prior, seed", [
    ("gamma", {"shape": hb.Prior("Gamma", alpha=4.0, beta=1.0)}, 5),
    ("lognormal", {"sigma": hb.Prior("HalfNormal", sigma=1.0)}, 6),
])
def test_sbc_positive_random_intercept_calibrated(family, prior, seed):
    rng = np.random.default_rng(8)
    df = pd.DataFrame({"id": np.repeat(np.arange(20), 6), "x": rng.normal(size=120)})
    df["y"] = np.exp(rng.normal(size=120))
    priors = {"Intercept": hb.Prior("Normal", mu=0, sigma=1), "x": hb.Prior("Normal", mu=0, sigma=1),
              "sd_id": hb.Prior("HalfNormal", sigma=0.5), **prior}
    model = hb.Model("y ~ x + (1 | id)", df, family=family, priors=priors)
    res = hb.sbc(model, 40, seed=seed, n_ranks=49, draws=250, tune=400, max_workers=2)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert (res.uniformity(bins=5).p_value > 0.001).all(), res.uniformity(bins=5)


def test_sbc_mechanics_of_a_lognormal_model():
    rng = np.random.default_rng(9)
    df = pd.DataFrame({"id": np.repeat(np.arange(10), 4), "x": rng.normal(size=40)})
    df["y"] = np.exp(rng.normal(size=40))
    model = hb.Model("y ~ x + (1 | id)", df, family="lognormal")
    with ThreadPoolExecutor(1) as ex:
        res = hb.sbc(model, 1, executor=ex, seed=3, n_ranks=19, draws=100, tune=150)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert "sigma (residual sd)" in res.ranks.columns or any("sigma" in c for c in res.ranks.columns)


def test_lognormal_takes_a_sigma_formula():
    rng = np.random.default_rng(10)
    n = 300
    df = pd.DataFrame({"id": np.repeat(np.arange(30), 10), "x": rng.normal(size=n),
                       "s": rng.choice(["a", "b"], n)})
    spec = hb.spec.formula.parse("y ~ x + (1 | id)", family="lognormal", sigma="~ s")
    df = hb.simulate(spec, df, {"beta": [1.0, 0.5], "sd_id": [0.3],
                                "beta_sigma": {"Intercept": np.log(0.3), "s[b]": np.log(3.0)}}, seed=1)
    fit = hb.Model("y ~ x + (1 | id)", df, family="lognormal", sigma="~ s").fit(
        draws=200, tune=200, chains=2, seed=1, progressbar=False)
    bs = fit.idata.posterior["beta_sigma"].values.reshape(-1, 2)
    assert np.all(np.abs(bs.mean(0) - [np.log(0.3), np.log(3.0)]) < 4 * bs.std(0) + 0.05), bs.mean(0)
    new = pd.DataFrame({"id": [0, 0], "x": [0.0, 0.0], "s": ["a", "b"]})
    pred = fit.predict(new, kind="mean", groups="none")
    assert pred.table["mean"].iloc[1] > pred.table["mean"].iloc[0]  # exp(sigma^2 / 2) grows
    assert np.isfinite(fit.loo().elpd_loo)


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_quadrature_gradient_in_the_family_parameter(name):
    """The reference gradient (grad_reference) takes the family's parameter derivatives:
    its derivative in shape / sigma against central differences of the value."""
    fam, pname, values = CASES[name]
    rng = np.random.default_rng(11)
    n = 12
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    idx = np.repeat([0, 1, 2], 4)
    y = fam.draw(rng, X @ [0.3, 0.5] + rng.normal(0, 0.5, 3)[idx], {pname: values[1]})
    rows, _ = quadrature.cluster_rows(y, X, np.ones((n, 1)), idx)
    p, h = values[1], 1e-5 * values[1]
    g = quadrature.grad_reference(fam, rows, [0.3, 0.5], [[0.6]], p, nagq=9)
    up = quadrature.loglik_reference(fam, rows, [0.3, 0.5], [[0.6]], p + h, nagq=9)[0].sum()
    down = quadrature.loglik_reference(fam, rows, [0.3, 0.5], [[0.6]], p - h, nagq=9)[0].sum()
    assert g["param"] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-7)
