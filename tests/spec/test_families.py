"""Response families: support checks, the binomial log density against scipy, and
parameter recovery from simulated data for every family (latent backend)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

import hierbayes as hb
from hierbayes.spec import families

FIT = dict(draws=150, tune=200, chains=2, progressbar=False)


def _clustered(rng, n_groups=30, size=8, sd_g=0.5, intercept=0.3, slope=0.7):
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=g.size)
    eta = intercept + slope * x + rng.normal(0, sd_g, n_groups)[g]
    df = pd.DataFrame({"g": [f"g{k:02d}" for k in g], "x": x})
    return df, eta


def _inside(fit, name, true, lo=0.005, hi=0.995):
    draws = fit.posterior[name].values.reshape(-1, *fit.posterior[name].shape[2:])
    q = np.quantile(draws, [lo, hi], axis=0)
    assert np.all((q[0] <= true) & (true <= q[1])), f"{name}: true {true} outside {q.tolist()}"


# ----------------------------------------------------------------------- support


@pytest.mark.parametrize(
    "family, values, match",
    [
        ("bernoulli", [0, 1, 2, 1], "outside the support of the bernoulli family \\(0 or 1\\).*e.g. 2"),
        ("poisson", [0, 1, -1, 3], "'y' has values outside the support of the poisson family"),
        ("poisson", [0, 1.5, 2, 3], "poisson family \\(non-negative integers\\).*1.5"),
        ("negbinomial", [0, 1, 2, -3], "negbinomial family"),
    ],
)
def test_response_outside_support_names_column_and_family(family, values, match):
    df = pd.DataFrame({"y": values, "x": [0.1, 0.5, 0.2, 0.9], "g": ["a", "a", "b", "b"]})
    with pytest.raises(ValueError, match=match):
        hb.Model("y ~ x + (1 | g)", df, family=family)


def test_binomial_support_and_trials_column():
    df = pd.DataFrame({"k": [0, 3, 2, 5], "n": [4, 4, 4, 4], "x": [0.1, 0.5, 0.2, 0.9],
                       "g": ["a", "a", "b", "b"]})
    with pytest.raises(ValueError, match="'k' has values outside the support of the binomial"):
        hb.Model("k | trials(n) ~ x + (1 | g)", df, family="binomial")
    df["k"] = [0, 3, 2, 4]
    df["n"] = [4, 4, 0, 4]
    with pytest.raises(ValueError, match="trials column of the binomial family must hold positive"):
        hb.Model("k | trials(n) ~ x + (1 | g)", df, family="binomial")
    df["n"] = ["4"] * 4
    with pytest.raises(ValueError, match="trials column 'n' is not numeric"):
        hb.Model("k | trials(n) ~ x + (1 | g)", df, family="binomial")


def test_non_numeric_response_names_the_family():
    df = pd.DataFrame({"y": ["a", "b", "a", "b"], "x": [0.1, 0.5, 0.2, 0.9], "g": list("aabb")})
    with pytest.raises(ValueError, match="'y' is not numeric.*poisson family needs non-negative"):
        hb.Model("y ~ x + (1 | g)", df, family="poisson")


def test_boolean_response_is_accepted_by_bernoulli_only():
    df = pd.DataFrame({"y": [True, False, True, False], "x": [0.1, 0.5, 0.2, 0.9], "g": list("aabb")})
    m = hb.Model("y ~ x + (1 | g)", df, family="bernoulli")
    np.testing.assert_array_equal(m.design.y, df["y"].to_numpy(dtype=float)[m.design.rows])
    with pytest.raises(ValueError, match="not numeric"):
        hb.Model("y ~ x + (1 | g)", df, family="poisson")


def test_family_objects_links_and_defaults():
    assert families.get("bernoulli").link == "logit"
    assert families.get(families.Bernoulli(link="probit")).link == "probit"
    with pytest.raises(ValueError, match="bernoulli family takes link 'logit' or 'probit'"):
        families.Bernoulli(link="log")
    df, eta = _clustered(np.random.default_rng(0))
    df["y"] = np.random.default_rng(1).poisson(np.exp(eta))
    m = hb.Model("y ~ x + (1 | g)", df, family="negbinomial")
    assert m.backend == "quadrature"  # one grouping factor: integrated out by quadrature
    assert m.priors["alpha"] == hb.Prior("Gamma", alpha=0.01, beta=0.01)
    assert "sigma" not in m.priors and m.priors["Intercept"].params["mu"] == 0
    df["y"] = eta
    m = hb.Model("y ~ x + (1 | g)", df, family="student")
    assert m.priors["nu"] == hb.Prior("Gamma", alpha=2.0, beta=0.1) and "sigma" in m.priors
    with pytest.raises(ValueError, match="family has no marginal backend"):
        hb.Model("y ~ x + (1 | g)", df, family="student", backend="marginal")


def test_compiled_model_cache_serves_each_family_and_link_its_own_model():
    """The session cache must not hand a logit model's compiled graph to a probit or Poisson
    model of the same shapes (a stale graph would sample the wrong likelihood silently),
    and must hand it to a refit of the same model with new data values."""
    df, eta = _clustered(np.random.default_rng(0), n_groups=10, size=4)
    df["y"] = (eta > 0).astype(float)
    kw = dict(draws=20, tune=20, chains=1, seed=1, progressbar=False)
    hb.clear_cache()
    first = hb.Model("y ~ x + (1 | g)", df, family=families.Bernoulli(link="logit"), backend="latent").fit(**kw)
    assert first.timing["cache_hit"] is False
    probit = hb.Model("y ~ x + (1 | g)", df, family=families.Bernoulli(link="probit"), backend="latent").fit(**kw)
    poisson = hb.Model("y ~ x + (1 | g)", df, family="poisson", backend="latent").fit(**kw)
    assert probit.timing["cache_hit"] is False and poisson.timing["cache_hit"] is False
    # the same structure with other response values and the same default priors: reused
    flipped = df.assign(y=1.0 - df["y"])
    again = hb.Model("y ~ x + (1 | g)", flipped, family=families.Bernoulli(link="logit"), backend="latent").fit(**kw)
    assert again.timing["cache_hit"] is True
    # and the reused graph samples the new data: the intercept flips sign with the response
    assert float(again.posterior["beta"].sel(coef="Intercept").mean()) * float(
        first.posterior["beta"].sel(coef="Intercept").mean()) < 0


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_binomial_log_density_matches_scipy(link, fast_mode):
    rng = np.random.default_rng(3)
    df, _ = _clustered(rng, n_groups=4, size=5)
    df["n"] = rng.integers(1, 12, len(df))
    df["k"] = rng.binomial(df["n"], 0.4)
    m = hb.Model("k | trials(n) ~ x + (1 | g)", df, family=families.Binomial(link=link), backend="latent")
    pm_model = m.build()
    beta, sd, z = np.array([0.2, -0.6]), 0.8, rng.normal(size=(4, 1))
    point = {"beta": beta, "sd_g_log__": np.log([sd]), "z_g": z}
    logp = pm_model.compile_logp(vars=[pm_model["y"]], mode=fast_mode)(point)
    d = m.design
    eta = d.X @ beta + (z[:, 0] * sd)[d.groups[0].index]
    p = stats.norm.cdf(eta) if link == "probit" else 1 / (1 + np.exp(-eta))
    expected = stats.binom.logpmf(d.y, d.trials, p).sum()
    assert logp == pytest.approx(expected, rel=1e-10)
    np.testing.assert_array_equal(d.trials, df["n"].to_numpy()[d.rows])
    # the family's numpy density is the same function
    fam_ll = m.spec.family.logpdf(d.y, eta, {}, d.trials).sum()
    assert fam_ll == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------- recovery


def test_recovery_poisson_and_reports(tmp_path):
    rng = np.random.default_rng(11)
    df, eta = _clustered(rng)
    df["y"] = rng.poisson(np.exp(eta))
    fit = hb.Model("y ~ x + (1 | g)", df, family="poisson").fit(seed=1, **FIT)
    _inside(fit, "beta", [0.3, 0.7])
    _inside(fit, "sd_g", [0.5])
    rep = fit.posterior_predictive(n_draws=20)
    assert rep.shape == (20, len(df)) and np.all(rep == np.round(rep)) and rep.min() >= 0
    text = str(fit.summary())
    assert "Family: poisson (log link)" in text and "generalized linear" in text
    # Pearson residuals at the posterior means: roughly unit scale
    res = fit.residuals()
    assert 0.2 < res["Q3"] - res["Q1"] < 3.0
    # shrinkage against per-cluster Poisson GLMs of y ~ x (lmList-like, fitted by IRLS)
    ols = fit.cluster_ols()
    d = fit.design
    c0 = d.groups[0].index == 0
    X0 = np.column_stack([np.ones(c0.sum()), d.X[c0, list(d.fixed_names).index("x")]])
    ref = optimize.minimize(lambda b: np.sum(np.exp(X0 @ b) - d.y[c0] * (X0 @ b)), np.zeros(2),
                            method="BFGS", options={"gtol": 1e-10}).x
    assert ols.attrs["method"] == "IRLS (log link)" and ols.attrs["adjusted_for"] == ["x"]
    assert ols["status"].iloc[0] == "ok"
    assert ols["Intercept"].iloc[0] == pytest.approx(ref[0], abs=1e-5)
    assert fit.shrinkage().loc["Intercept", "var_ratio"] < 1
    html = fit.report(tmp_path).read_text()
    assert "poisson" in html and "Standardized within-group residuals" in html


# probit's likelihood is checked exactly by the binomial log-density test; its recovery
# run is in the slow set
@pytest.mark.parametrize("link", ["logit", pytest.param("probit", marks=pytest.mark.slow)])
def test_recovery_bernoulli(link):
    rng = np.random.default_rng(12)
    df, eta = _clustered(rng, n_groups=40, size=10, intercept=-0.2, slope=1.0, sd_g=0.8)
    fam = families.Bernoulli(link=link)
    df["y"] = rng.random(len(df)) < fam.mean(eta)
    fit = hb.Model("y ~ x + (1 | g)", df, family=fam).fit(seed=2, **FIT)
    _inside(fit, "beta", [-0.2, 1.0])
    _inside(fit, "sd_g", [0.8])
    rep = fit.posterior_predictive(n_draws=10)
    assert set(np.unique(rep)) <= {0.0, 1.0}


def test_recovery_binomial():
    rng = np.random.default_rng(13)
    df, eta = _clustered(rng, intercept=-0.5, slope=0.6)
    df["n"] = rng.integers(5, 15, len(df))
    df["k"] = rng.binomial(df["n"], 1 / (1 + np.exp(-eta)))
    fit = hb.Model("k | trials(n) ~ x + (1 | g)", df, family="binomial").fit(seed=3, **FIT)
    _inside(fit, "beta", [-0.5, 0.6])
    _inside(fit, "sd_g", [0.5])
    rep = fit.posterior_predictive(n_draws=10)
    assert np.all(rep <= df["n"].to_numpy()[None, :])


def test_recovery_negative_binomial():
    rng = np.random.default_rng(14)
    df, eta = _clustered(rng, intercept=1.0, slope=0.5)
    mu, alpha = np.exp(eta), 3.0
    df["y"] = rng.poisson(rng.gamma(alpha, mu / alpha))
    fit = hb.Model("y ~ x + (1 | g)", df, family="negbinomial").fit(seed=4, **FIT)
    _inside(fit, "beta", [1.0, 0.5])
    _inside(fit, "alpha", 3.0)
    from hierbayes.report.diagnostics import hyper_posterior

    assert "alpha" in hyper_posterior(fit.idata).data_vars
    s = fit.summary().table
    assert "alpha (negative binomial shape)" in s.index


def test_recovery_student_t():
    rng = np.random.default_rng(15)
    df, eta = _clustered(rng, n_groups=30, size=10, intercept=2.0, slope=-1.0)
    df["y"] = eta + 0.5 * rng.standard_t(4, len(df))
    fit = hb.Model("y ~ x + (1 | g)", df, family="student").fit(seed=5, **FIT)
    _inside(fit, "beta", [2.0, -1.0])
    _inside(fit, "sigma", 0.5)
    _inside(fit, "nu", 4.0)
    assert {"sigma (residual sd)", "nu (degrees of freedom)"} <= set(fit.summary().table.index)


@pytest.mark.parametrize(
    "y, family_hint",
    [
        (np.array([0, 1, 1, 0, 1, 0] * 4, dtype=float), "family='bernoulli'"),
        (np.array([0, 3, 1, 0, 7, 2] * 4, dtype=float), "family='poisson' or family='negbinomial'"),
    ],
)
def test_gaussian_on_binary_or_counts_warns_and_names_the_family(y, family_hint):
    from hierbayes.spec.families import FamilyWarning, Gaussian, StudentT

    for fam in (Gaussian(), StudentT()):
        with pytest.warns(FamilyWarning, match=rf"response column 'resp' .*{fam.name}.*{family_hint}"):
            fam.validate(y, "resp")


@pytest.mark.parametrize(
    "y",
    [np.linspace(-1, 2, 24),                            # continuous
     np.arange(1, 25, dtype=float),                     # integer scores without zeros
     np.r_[0.0, np.arange(1, 100, dtype=float)]],       # one zero in 100 (1 %)
)
def test_gaussian_on_continuous_or_score_data_is_quiet(y):
    import warnings

    from hierbayes.spec.families import Gaussian

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Gaussian().validate(y, "resp")


def test_family_warning_reaches_the_user_at_model():
    from hierbayes.spec.families import FamilyWarning

    df = pd.DataFrame({"g": np.repeat(np.arange(6), 4), "y": np.tile([0.0, 1.0], 12)})
    with pytest.warns(FamilyWarning, match="bernoulli") as rec:
        hb.Model("y ~ 1 + (1 | g)", df)
    assert rec[0].filename == __file__  # points at the caller's line, not hierbayes' internals
