"""Prior sensitivity: the log_prior group (exact, against scipy), prior predictive draws,
and power-scaling diagnostics on small real fits."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.criticism.logprior import lkj_logpdf, log_prior

FORMULA = "y ~ time + treatment + (1 + time | id)"
AR = hb.AR1(time="time", group="id")
TRUE = {
    "beta": {"Intercept": 0.2, "time": 0.5, "treatment[treatment]": -0.5},
    "sigma": 1.0,
    "sd_id": [0.5, 0.25],
    "phi": 0.6,
}


def _layout(n_ids: int, n_times: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), n_times)
    trt = np.where(rng.random(n_ids) < 0.5, "control", "treatment")[ids]
    df = pd.DataFrame({"id": ids, "time": np.tile(np.arange(n_times), n_ids), "treatment": trt})
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.fixture(scope="module")
def small():
    return hb.simulate(FORMULA, _layout(40, 5), TRUE, correlation=AR, seed=5)


def _fake_posterior(design, rng, chains=2, draws=50):
    """Random hyperparameter draws in the posterior's layout (no MCMC)."""
    q = design.groups[0].q
    r = rng.uniform(-0.9, 0.9, size=(chains, draws))
    corr = np.broadcast_to(np.eye(q), (chains, draws, q, q)).copy()
    corr[..., 0, 1] = corr[..., 1, 0] = r
    return az.from_dict(
        posterior={
            "beta": rng.normal(size=(chains, draws, design.p)),
            "sigma": rng.gamma(2.0, 0.5, size=(chains, draws)),
            "sd_id": rng.gamma(2.0, 0.3, size=(chains, draws, q)),
            "corr_id": corr,
            "phi": rng.uniform(-0.95, 0.95, size=(chains, draws)),
        },
        coords={"coef": list(design.fixed_names), "id__term": list(design.groups[0].terms),
                "id__term_bis": list(design.groups[0].terms)},
        dims={"beta": ["coef"], "sd_id": ["id__term"], "corr_id": ["id__term", "id__term_bis"]},
    )


@pytest.mark.parametrize("overrides", [None, "custom"])
def test_log_prior_equals_scipy_densities(small, overrides):
    priors = None
    if overrides == "custom":
        priors = {
            "time": hb.Prior("StudentT", nu=4, mu=0.3, sigma=0.7),
            "sd_id": hb.Prior("HalfNormal", sigma=[1.5, 0.4]),
            "corr_id": hb.Prior("LKJ", eta=2.5),
            "sigma": hb.Prior("Exponential", lam=1.3),
        }
    model = hb.Model(FORMULA, small, correlation=AR, priors=priors)
    d, pr = model.design, model.priors
    idata = _fake_posterior(d, np.random.default_rng(1))
    lp = log_prior(idata, d, pr)
    post = idata.posterior

    def ref(prior, x):
        p = prior.params
        if prior.dist == "Normal":
            return stats.norm.logpdf(x, p["mu"], p["sigma"])
        if prior.dist == "StudentT":
            return stats.t.logpdf(x, p["nu"], p["mu"], p["sigma"])
        if prior.dist == "HalfStudentT":
            return stats.t.logpdf(x, p["nu"], 0, p["sigma"]) + np.log(2)
        if prior.dist == "HalfNormal":
            return stats.halfnorm.logpdf(x, 0, p["sigma"])
        if prior.dist == "Exponential":
            return stats.expon.logpdf(x, 0, 1 / p["lam"])
        if prior.dist == "Uniform":
            return stats.uniform.logpdf(x, p["lower"], p["upper"] - p["lower"])
        raise AssertionError(prior.dist)

    total = np.zeros((2, 50))
    for j, n in enumerate(d.fixed_names):
        total += ref(pr[n], post["beta"].values[..., j])
    total += ref(pr["sigma"], post["sigma"].values)
    sd_prior = pr["sd_id"]
    scales = np.asarray(sd_prior.params["sigma"])
    for k in range(2):
        pk = hb.Prior(sd_prior.dist, **{**sd_prior.params, "sigma": float(scales[k])})
        total += ref(pk, post["sd_id"].values[..., k])
    eta = pr["corr_id"].params["eta"]
    r = post["corr_id"].values[..., 0, 1]
    total += stats.beta.logpdf((r + 1) / 2, eta, eta) - np.log(2)  # LKJ for q = 2
    total += ref(pr["phi"], post["phi"].values)

    got = sum(lp[v].sum([dd for dd in lp[v].dims if dd not in ("chain", "draw")]) for v in lp.data_vars)
    # PyMC's HalfStudentT constant differs from scipy's by ~2e-9 (its log-gamma evaluation)
    np.testing.assert_allclose(got.values, total, rtol=0, atol=1e-7)
    assert set(lp.data_vars) == {"beta", "sigma", "sd_id", "corr_id", "phi"}  # no b_id


def test_lkj_density_normalised_in_three_dimensions():
    # the volume of 3 x 3 correlation matrices is pi^2 / 2 (LKJ(1) is uniform on it)
    assert lkj_logpdf(np.eye(3), 1.0) == pytest.approx(-np.log(np.pi**2 / 2))
    # eta: log p(C) - log p(I) = (eta - 1) log det C
    C = np.array([[1, 0.3, -0.2], [0.3, 1, 0.1], [-0.2, 0.1, 1]])
    diff = lkj_logpdf(C, 3.0) - lkj_logpdf(np.eye(3), 3.0)
    assert diff == pytest.approx(2.0 * np.log(np.linalg.det(C)))


def test_log_prior_rejects_hyperpriors(small):
    model = hb.Model("y ~ time + (1 | id)", small,
                     priors={"sigma": hb.Prior("HalfNormal", sigma=hb.Prior("HalfNormal", sigma=1))})
    idata = az.from_dict(posterior={"beta": np.zeros((1, 3, 2)), "sigma": np.ones((1, 3)),
                                    "sd_id": np.ones((1, 3, 1))},
                         coords={"coef": ["Intercept", "time"], "id__term": ["Intercept"]},
                         dims={"beta": ["coef"], "sd_id": ["id__term"]})
    with pytest.raises(ValueError, match="'sigma' has hyperpriors"):
        log_prior(idata, model.design, model.priors)


# ----------------------------------------------------------------------- prior predictive


def test_prior_predictive_draws_and_statistics(small):
    model = hb.Model(FORMULA, small, correlation=AR)
    pp = model.sample_prior_predictive(draws=400, seed=3)
    assert pp.y.shape == (400, len(small))
    assert np.array_equal(pp.y, model.sample_prior_predictive(draws=400, seed=3).y)
    assert not np.array_equal(pp.y, model.sample_prior_predictive(draws=400, seed=4).y)
    # hyperparameters follow their priors (KS test against scipy)
    s = model.priors["sigma"].params
    half_t = lambda x: 2 * stats.t(s["nu"], 0, s["sigma"]).cdf(x) - 1  # noqa: E731
    assert stats.kstest(pp.prior["sigma"].values, half_t).pvalue > 1e-3
    assert stats.kstest(pp.prior["phi"].values, stats.uniform(-1, 2).cdf).pvalue > 1e-3
    # statistics of the observed data, recomputed from the user's frame with pandas
    obs = pp.observed_statistics()
    df = small.sort_values(["id", "time"])
    assert obs["mean"] == pytest.approx(df.y.mean())
    assert obs["sd"] == pytest.approx(df.y.std(ddof=0))
    prev = df.groupby("id").y.shift(1)
    ok = prev.notna()
    assert obs["lag1_autocorr"] == pytest.approx(np.corrcoef(prev[ok], df.y[ok])[0, 1])
    assert obs["between_sd"] == pytest.approx(df.groupby("id").y.mean().std(ddof=0))
    # simulated data sets: the same statistics, row by row
    sim = pp.statistics()
    assert sim.shape == (400, 4)
    assert sim["mean"].to_numpy() == pytest.approx(pp.y.mean(axis=1))
    table = pp.compare()
    assert list(table.index) == ["mean", "sd", "lag1_autocorr", "between_sd"]
    assert ((table.p_below >= 0) & (table.p_below <= 1)).all()
    fig = pp.plot()
    assert len(fig.axes) == 5


def test_prior_predictive_follows_a_tight_prior(small):
    # with near-degenerate priors the simulated data must match hb.simulate's process
    tight = {"Intercept": hb.Prior("Normal", mu=2.0, sigma=1e-6),
             "beta": hb.Prior("Normal", mu=0.0, sigma=1e-6),
             "sigma": hb.Prior("Uniform", lower=0.999, upper=1.001),
             "sd_id": hb.Prior("Uniform", lower=1e-6, upper=2e-6),
             "phi": hb.Prior("Uniform", lower=0.899, upper=0.901)}
    model = hb.Model(FORMULA, small, correlation=AR, priors=tight)
    st = model.sample_prior_predictive(draws=300, seed=1).statistics()
    assert st["mean"].mean() == pytest.approx(2.0, abs=0.05)
    assert st["lag1_autocorr"].mean() == pytest.approx(0.9, abs=0.03)
    assert st["sd"].mean() == pytest.approx(1.0, abs=0.05)


# ----------------------------------------------------------------------- power-scaling


@pytest.fixture(scope="module")
def fit_default(small):
    return hb.Model(FORMULA, small, correlation=AR).fit(
        draws=250, tune=250, chains=2, seed=2, progressbar=False
    )


def test_log_prior_group_on_a_real_fit(fit_default):
    lp = fit_default.log_prior()
    assert "log_prior" in fit_default.idata.groups()
    sig = fit_default.priors["sigma"].params
    ref = stats.t.logpdf(fit_default.posterior["sigma"].values, sig["nu"], 0, sig["sigma"]) + np.log(2)
    np.testing.assert_allclose(lp["sigma"].values, ref, rtol=0, atol=1e-7)


def test_default_priors_not_flagged(fit_default):
    table = fit_default.prior_sensitivity()
    assert list(table.columns) == ["prior", "likelihood", "diagnosis"]
    assert len(table) == 8 and "phi (AR(1) correlation)" in table.index
    assert (table["diagnosis"] == "✓").all(), table
    assert (table["prior"] < 0.05).all()
    fig = fit_default.plot_prior_sensitivity()
    assert len([a for a in fig.axes if a.get_visible()]) == 8


def test_strong_conflicting_prior_flagged(small):
    # time's slope is 0.5 in the data; a prior at -1 with sd 0.02 contradicts it
    fit = hb.Model(FORMULA, small, correlation=AR,
                   priors={"time": hb.Prior("Normal", mu=-1.0, sigma=0.02)}).fit(
        draws=250, tune=250, chains=2, seed=2, progressbar=False
    )
    table = fit.prior_sensitivity()
    assert table.loc["time", "prior"] > 0.05
    assert table.loc["time", "diagnosis"] == "potential prior-data conflict"


@pytest.mark.slow
def test_default_priors_not_flagged_on_acceptance_data():
    data = hb.datasets.load("clark_ar1")
    fit = hb.Model(FORMULA, data, correlation=AR).fit(seed=1, progressbar=False)
    table = fit.prior_sensitivity()
    assert (table["diagnosis"] == "✓").all(), table


def test_summary_header_shows_the_priors(fit_default):
    text = str(fit_default.summary())
    assert "  Priors:" in text
    flat = " ".join(text.split())
    for name, prior in fit_default.priors.items():
        assert f"{name} ~ {prior}" in flat
    assert "sd_id ~ HalfStudentT(nu=3, sigma=[" in flat and "corr_id ~ LKJ(eta=1)" in flat
