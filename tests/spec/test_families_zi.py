"""Zero-inflated and hurdle count families: densities against scipy-built references, the
PyMC graph against the numpy density, support and parameter errors, draws against the
fitted mean, the zi/hu formula through parse, models, model files and simulate; small
latent fits (recovery, a zi formula, a hurdle negative binomial), LOO, prediction on new
rows, predictive checks, residuals, save/load; SBC mechanics (fast) and calibration
(slow)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import hierbayes as hb
from hierbayes import names
from hierbayes.spec import families

ZI = ["zero_inflated_poisson", "zero_inflated_negbinomial"]
HU = ["hurdle_poisson", "hurdle_negbinomial"]


def _count(name, mu, a):
    """The count part from scipy: (pmf, logpmf) at value k."""
    if name.endswith("negbinomial"):
        p = a / (a + mu)
        return stats.nbinom(a, p)
    return stats.poisson(mu)


def _reference(name, y, eta, zi, a):
    """log P(y) built from scipy's pmf, cdf and sf (another route than the family's)."""
    f = _count(name, np.exp(eta), a)
    if name in ZI:
        return np.where(y == 0, np.log(zi + (1 - zi) * f.pmf(0)), np.log(1 - zi) + f.logpmf(y))
    return np.where(y == 0, np.log(zi), np.log(1 - zi) + f.logpmf(y) - np.log(f.sf(0)))


def _params(name, zi, a):
    part = families.get(name).extra_params[-1]
    return {part: zi, **({"alpha": a} if name.endswith("negbinomial") else {})}


@pytest.mark.parametrize("name", ZI + HU)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_logpdf_matches_scipy_reference(name, seed):
    rng = np.random.default_rng(seed)
    n = 400
    eta = rng.normal(0.5, 1.5, n)  # mu from ~0.01 to ~50
    zi = rng.uniform(0.01, 0.95, n)
    a = rng.uniform(0.3, 20.0, n)
    y = np.where(rng.random(n) < 0.3, 0.0, rng.poisson(np.exp(eta) + 0.5)).astype(float)
    fam = families.get(name)
    got = fam.logpdf(y, eta, _params(name, zi, a))
    np.testing.assert_allclose(got, _reference(name, y, eta, zi, a), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ZI + HU)
def test_probabilities_sum_to_one_and_small_means_stay_exact(name):
    fam = families.get(name)
    y = np.arange(0, 20_000.0)  # the negative binomial at mu = 60 has a long tail
    for mu in (1e-6, 0.3, 4.0, 60.0):
        p = np.exp(fam.logpdf(y, np.log(mu), _params(name, 0.2, 1.7)))
        assert abs(p.sum() - 1.0) < 1e-10, mu
    # hurdle at tiny mu: P(1) -> 1 - hu (the zero-truncated count is 1), no cancellation
    if name in HU:
        lp1 = fam.logpdf(np.array(1.0), np.log(1e-12), _params(name, 0.2, 1.7))
        assert abs(float(lp1) - np.log(0.8)) < 1e-10


@pytest.mark.parametrize("name", ZI + HU)
def test_pymc_graph_matches_the_familys_logpdf(name):
    """The latent backend's likelihood (PyMC's zero-inflated mixtures, our closed-form
    hurdle densities) against the numpy density, pointwise."""
    import pymc as pm
    import pytensor.tensor as pt

    from hierbayes.backend import densities

    rng = np.random.default_rng(4)
    n = 300
    eta = rng.normal(0.3, 1.5, n)
    zi = rng.uniform(0.05, 0.9, n)
    y = np.where(rng.random(n) < 0.3, 0, rng.poisson(np.exp(eta) + 0.5))
    fam = families.get(name)
    params = _params(name, zi, 2.3)
    with pm.Model() as m:
        e = pt.as_tensor_variable(eta)
        densities.likelihood(fam.dist)("y", **fam.dist_kwargs(e, params, xp=pt), observed=y)
    got = m.compile_logp(sum=False)({})[0]
    np.testing.assert_allclose(got, fam.logpdf(y.astype(float), eta, params), rtol=1e-9, atol=1e-9)


def test_hurdle_density_gradients_are_finite_differences():
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    from hierbayes.backend import densities

    y = np.array([0, 1, 3, 0, 7, 2])
    psi, mu, a = pt.dscalar("psi"), pt.dvector("mu"), pt.dscalar("a")
    with pm.Model() as m:
        densities.hurdle_negbinomial("y", psi, mu, a, observed=y)
    lp = m.logp()
    f = pytensor.function([psi, mu, a], lp)
    g = pytensor.function([psi, mu, a], pt.grad(lp, [psi, mu, a]))
    x0 = [0.6, np.array([0.2, 1.0, 3.0, 0.01, 8.0, 2.0]), 1.3]
    grads = g(*x0)
    h = 1e-6
    for i, step in ((0, h), (2, h), *((1, h * e) for e in np.eye(6))):
        hi, lo = list(x0), list(x0)
        hi[i], lo[i] = x0[i] + step, x0[i] - step
        fd = (f(*hi) - f(*lo)) / (2 * h)
        got = grads[i] if i != 1 else grads[1] @ (step / h)
        np.testing.assert_allclose(got, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ZI + HU)
def test_draws_mean_and_variance_match_fitted_and_variance(name):
    fam = families.get(name)
    rng = np.random.default_rng(7)
    n = 200_000
    for mu, zi in ((1e-3, 0.3), (0.5, 0.6), (12.0, 0.2)):
        params = _params(name, zi, 2.0)
        eta = np.full(n, np.log(mu))
        y = fam.draw(rng, eta, params)
        fam.validate(y, "y")
        m, v = float(fam.fitted(eta[:1], params)[0]), float(fam.variance(eta[:1], params)[0])
        assert abs(y.mean() - m) < 5 * np.sqrt(v / n), (mu, zi)
        se_var = np.std((y - y.mean()) ** 2) / np.sqrt(n)  # Monte Carlo sd of the variance
        assert abs(y.var() - v) < 5 * se_var, (mu, zi)
        if name in HU:
            assert abs((y == 0).mean() - zi) < 5 * np.sqrt(zi * (1 - zi) / n)
    # a probability per row (a zi formula) broadcasts against eta
    zi_rows = np.where(np.arange(n) % 2 == 0, 0.1, 0.8)
    y = fam.draw(rng, np.zeros(n), _params(name, zi_rows, 2.0))
    assert (y[1::2] == 0).mean() > (y[::2] == 0).mean() + 0.3


@pytest.mark.parametrize("family, last, msg", [
    ("zip", -1.0, "'y'.*zero_inflated_poisson.*non-negative integers.*-1"),
    ("hurdle_negbinomial", 2.5, "'y'.*hurdle_negbinomial.*2.5"),
    ("zinb", "a", "'y' is not numeric.*zero_inflated_negbinomial"),
])
def test_support_errors_name_the_column_and_family(family, last, msg):
    y = [*range(19), last]
    df = pd.DataFrame({"g": np.repeat(np.arange(5), 4), "y": y if last != "a" else ["a"] * 20})
    with pytest.raises(ValueError, match=msg):
        hb.Model("y ~ 1 + (1 | g)", df, family=family)


def test_names_aliases_parameters_and_priors():
    assert families.get("zip") == families.get("zero_inflated_poisson")
    assert families.get("zinb").name == "zero_inflated_negbinomial"
    assert families.get("hurdle_negbinomial").extra_params == ("alpha", "hu")
    df = _data(0, 30, 6)
    m = hb.Model("y ~ x + (1 | g)", df, family="zinb")
    assert m.priors["zi"] == hb.Prior("Beta", alpha=1.0, beta=1.0)
    assert m.priors["alpha"] == hb.Prior("Gamma", alpha=0.01, beta=0.01)
    m = hb.Model("y ~ x + (1 | g)", df, family="hurdle_poisson", hu="~ x")
    assert {"hu_Intercept", "hu_x"} <= set(m.priors) and "hu" not in m.priors
    assert m.spec.dpars == {"hu": "x"}
    assert "hu: ~ x (logit link, coefficients beta_hu)" in repr(m)


@pytest.mark.parametrize("name, bad, msg", [
    ("zip", {"zi": 1.0}, r"zi must lie in \[0, 1\)"),
    ("hurdle_poisson", {"hu": -0.1}, r"hu must lie in \[0, 1\)"),
    ("zinb", {"zi": 0.2, "alpha": 0.0}, "alpha must be positive"),
    ("zinb", {"alpha": 1.0}, r"params lack \['zi'\]"),
])
def test_simulate_checks_the_zero_probability(name, bad, msg):
    df = _data(0, 10, 4)
    spec = hb.spec.formula.parse("y ~ x + (1 | g)", family=name)
    with pytest.raises((KeyError, ValueError), match=msg):
        hb.simulate(spec, df, {"beta": [0.0, 0.0], "sd_g": [0.5], **bad}, seed=1)


def test_formula_keywords_are_checked():
    df = _data(0, 10, 4)
    with pytest.raises(ValueError, match="poisson family has no parameter 'zi'.*zero_inflated"):
        hb.Model("y ~ x + (1 | g)", df, family="poisson", zi="~ x")
    with pytest.raises(ValueError, match="no parameter 'hu'.*hurdle_negbinomial and hurdle_poisson"):
        hb.Model("y ~ x + (1 | g)", df, family="zip", hu="~ x")
    with pytest.raises(ValueError, match="group terms"):
        hb.Model("y ~ x + (1 | g)", df, family="zip", zi="~ x + (1 | g)")


def test_backends_auto_is_latent_and_quadrature_says_why():
    df = _data(0, 10, 4)
    assert hb.Model("y ~ x + (1 | g)", df, family="zip").backend == "latent"
    with pytest.raises(ValueError, match="zero_inflated_poisson family has no marginal backend: "
                                         "its likelihood is a two-part mixture"):
        hb.Model("y ~ x + (1 | g)", df, family="zip", backend="quadrature")
    with pytest.raises(ValueError, match="hurdle_poisson family has no marginal backend"):
        hb.Model("y ~ x + (1 | g)", df, family="hurdle_poisson", backend="marginal")


def test_simulate_takes_beta_zi():
    df = _data(0, 400, 10)
    sim = hb.simulate("y ~ x + (1 | g)", df, {"beta": [2.0, 0.0], "sd_g": [0.0],
                                              "beta_zi": {"Intercept": 0.0, "x": 3.0}},
                      family="zip", zi="~ x", seed=2)
    zeros_high = (sim.y[df.x > 1] == 0).mean()
    zeros_low = (sim.y[df.x < -1] == 0).mean()
    assert zeros_high > 0.9 and zeros_low < 0.15
    with pytest.raises(KeyError, match="beta_zi"):
        hb.simulate("y ~ x + (1 | g)", df, {"beta": [2.0, 0.0], "sd_g": [0.0], "zi": 0.5},
                    family="zip", zi="~ x", seed=2)


def test_model_file_zi_key(tmp_path):
    from hierbayes.io.modelfile import read

    _data(0, 20, 5).to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "m.toml").write_text('formula = "y ~ x + (1 | g)"\ndata = "d.csv"\n'
                                     'family = "zip"\nzi = "~ x"\n')
    mf = read(tmp_path / "m.toml")
    m = mf.model()
    assert mf.zi == "~ x" and m.spec.dpars == {"zi": "x"} and m.inputs["zi"] == "~ x"
    (tmp_path / "h.toml").write_text('formula = "y ~ x + (1 | g)"\ndata = "d.csv"\n'
                                     'family = "hurdle_poisson"\nhu = "~ 1"\n')
    assert read(tmp_path / "h.toml").model().spec.dpars == {"hu": "1"}


# ------------------------------------------------------------------------------ fits

def _data(seed: int, n_g: int = 60, n_per: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_g * n_per
    return pd.DataFrame({"g": np.repeat(np.arange(n_g), n_per), "x": rng.normal(size=n),
                         "y": rng.poisson(1.0, n).astype(float)})


TRUE = {"beta": [0.8, 0.5], "sd_g": [0.4]}
FIT = dict(draws=300, tune=300, chains=2, seed=1, progressbar=False)


@pytest.fixture(scope="module")
def zip_fit():
    df = hb.simulate("y ~ x + (1 | g)", _data(1), {**TRUE, "zi": 0.35}, family="zip", seed=11)
    m = hb.Model("y ~ x + (1 | g)", df, family="zip")
    return m, m.fit(**FIT)


@pytest.fixture(scope="module")
def zi_formula_fit():
    df = hb.simulate("y ~ x + (1 | g)", _data(2), {**TRUE, "beta_zi": [-0.5, 1.2]},
                     family="zip", zi="~ x", seed=12)
    m = hb.Model("y ~ x + (1 | g)", df, family="zip", zi="~ x")
    return m, m.fit(**FIT)


def _within(draws, truth, k=3.0):
    return abs(float(draws.mean()) - truth) < k * float(draws.std()) + 0.05


def test_latent_fit_recovers_zi_and_beta(zip_fit):
    m, fit = zip_fit
    assert m.backend == "latent"
    post = fit.idata.posterior
    assert _within(post["zi"], 0.35)
    assert _within(post["beta"].sel(coef="Intercept"), 0.8)
    assert _within(post["beta"].sel(coef="x"), 0.5)
    table = fit.summary().table
    assert "zi (zero-inflation probability)" in table.index
    assert fit.n_divergences() == 0


def test_zi_formula_fit_recovers_its_coefficients_and_reports_them(zi_formula_fit):
    m, fit = zi_formula_fit
    post = fit.idata.posterior
    bz = post[names.dpar_coef("zi")]
    assert list(bz[names.dpar_dim("zi")].values) == ["Intercept", "x"]
    assert _within(bz.sel({names.dpar_dim("zi"): "Intercept"}), -0.5)
    assert _within(bz.sel({names.dpar_dim("zi"): "x"}), 1.2)
    assert _within(post["beta"].sel(coef="x"), 0.5)
    table = fit.summary().table
    assert {"zi_Intercept", "zi_x"} <= set(table.index)
    assert "zi (zero-inflation probability)" not in table.index


def test_loo_and_log_likelihood(zip_fit, zi_formula_fit):
    for _, fit in (zip_fit, zi_formula_fit):
        ll = fit.log_likelihood()["y"]
        assert ll.dims[-1] == "obs" and np.all(np.isfinite(ll.values))
        loo = fit.loo()
        assert np.isfinite(loo.elpd_loo)
    # the pointwise values are the family's density at the draws
    m, fit = zip_fit
    post = fit.idata.posterior.isel(chain=0, draw=5)
    eta = (fit.design.X @ post["beta"].values
           + post[names.effects("g")].values[fit.design.groups[0].index, 0])
    lp = m.spec.family.logpdf(fit.design.y, eta, {"zi": float(post["zi"])})
    ll = fit.log_likelihood()["y"].isel(chain=0, draw=5).values
    np.testing.assert_allclose(ll, lp[np.argsort(fit.design.rows)], rtol=1e-10)
    # power-scaling sensitivity reads the Beta prior of zi and the pointwise likelihood
    sens = fit.prior_sensitivity()
    assert "zi (zero-inflation probability)" in sens.index


def test_predict_new_rows_evaluates_the_zi_formula(zi_formula_fit):
    m, fit = zi_formula_fit
    new = pd.DataFrame({"x": [-2.0, 0.0, 2.0], "g": [0, 0, 9999]})
    pred = fit.predict(new, kind="mean", groups="none")
    post = fit.idata.posterior
    b = post["beta"].transpose("chain", "draw", "coef").values
    bz = post[names.dpar_coef("zi")].transpose("chain", "draw", names.dpar_dim("zi")).values
    X = np.c_[np.ones(3), new.x]
    expect = ((1 - special.expit(bz @ X.T)) * np.exp(b @ X.T)).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(pred.table["mean"].values, expect, rtol=1e-10)
    assert pred.table["mean"].iloc[0] > pred.table["mean"].iloc[2]  # more zeros at x = 2
    resp = fit.predict(new, kind="response", groups="existing", seed=1)
    y = resp.draws.values.reshape(-1, 3)
    assert np.all(y >= 0) and np.all(y == np.round(y))
    assert (y[:, 2] == 0).mean() > (y[:, 0] == 0).mean()


def test_predictive_checks_and_residuals(zi_formula_fit):
    from hierbayes.report.residuals import within_group_residuals

    m, fit = zi_formula_fit
    y_rep = fit.posterior_predictive(n_draws=100)
    y = fit.design.y
    assert y_rep.shape[1] == y.size and np.all(y_rep >= 0)
    assert abs((y_rep == 0).mean() - (y == 0).mean()) < 0.05  # the zeros are reproduced
    from hierbayes.report.plots import DISCRETE

    assert DISCRETE[fit.spec.family.name] == "rootogram"
    assert fit.plot_ppc(n_draws=50).axes
    pp = m.sample_prior_predictive(draws=30, seed=1)
    assert np.all(np.isfinite(pp.y)) and np.all(pp.y >= 0)
    r = within_group_residuals(fit.idata, fit.design)
    assert np.all(np.isfinite(r)) and abs(np.mean(r)) < 0.3 and 0.6 < np.std(r) < 1.5


def test_report_says_what_the_per_cluster_fits_estimate(zip_fit, tmp_path):
    _, fit = zip_fit
    html = fit.report(tmp_path).read_text()
    assert "log E[y] = eta + log(1 - zi)" in html


def test_save_load_round_trip(zi_formula_fit, tmp_path):
    m, fit = zi_formula_fit
    path = tmp_path / "fit.nc"
    fit.save(path)
    back = hb.load(path)
    assert back.spec.family == fit.spec.family and back.design.spec.dpars == {"zi": "x"}
    pd.testing.assert_frame_equal(back.summary().table, fit.summary().table)
    np.testing.assert_allclose(back.log_likelihood()["y"].values, fit.log_likelihood()["y"].values)


def test_hurdle_negbinomial_fit_with_a_hu_formula():
    df = hb.simulate("y ~ x + (1 | g)", _data(3), {**TRUE, "alpha": 3.0, "beta_hu": [-0.3, -1.0]},
                     family="hurdle_negbinomial", hu="~ x", seed=13)
    m = hb.Model("y ~ x + (1 | g)", df, family="hurdle_negbinomial", hu="~ x")
    fit = m.fit(**FIT)
    bh = fit.idata.posterior[names.dpar_coef("hu")]
    assert _within(bh.sel({names.dpar_dim("hu"): "x"}), -1.0)
    assert _within(fit.idata.posterior["beta"].sel(coef="x"), 0.5)
    assert np.isfinite(fit.loo().elpd_loo)


# ------------------------------------------------------------------------------- SBC

def _sbc_model(n_g=20, n_per=8, family="zip", **kw):
    priors = {"Intercept": hb.Prior("Normal", mu=0.5, sigma=0.5), "x": hb.Prior("Normal", mu=0, sigma=0.5),
              "sd_g": hb.Prior("HalfNormal", sigma=0.5)}
    if family.endswith("negbinomial"):  # overdispersion from mild (alpha ~ 8) to strong (~ 1)
        priors["alpha"] = hb.Prior("Gamma", alpha=4.0, beta=1.0)
    if family.startswith("hurdle"):
        priors["hu"] = hb.Prior("Beta", alpha=2.0, beta=2.0)
    return hb.Model("y ~ x + (1 | g)", _data(4, n_g, n_per), family=family, priors=priors, **kw)


def test_sbc_mechanics_with_a_zi_formula():
    with ThreadPoolExecutor(1) as ex:
        res = hb.sbc(_sbc_model(zi="~ x"), 2, executor=ex, seed=5, n_ranks=19, draws=30, tune=100)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert {"zi_Intercept", "zi_x", "Intercept", "x"} <= set(res.ranks.columns)


@pytest.mark.slow
def test_sbc_zero_inflated_poisson_calibrated():
    res = hb.sbc(_sbc_model(30, 8), 40, seed=21, n_ranks=49, draws=250, tune=400, max_workers=2)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert "zi (zero-inflation probability)" in res.ranks.columns
    assert (res.uniformity(bins=5).p_value > 0.001).all()


@pytest.mark.slow
@pytest.mark.parametrize("family, part", [("zero_inflated_negbinomial", "zi (zero-inflation probability)"),
                                          ("hurdle_poisson", "hu (hurdle probability)"),
                                          ("hurdle_negbinomial", "hu (hurdle probability)")])
def test_sbc_count_family_calibrated(family, part):
    res = hb.sbc(_sbc_model(30, 8, family=family), 40, seed=22, n_ranks=49, draws=250, tune=400,
                 max_workers=2)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert part in res.ranks.columns
    assert (res.uniformity(bins=5).p_value > 0.001).all(), res.uniformity(bins=5)


def test_a_probability_takes_a_prior_on_the_unit_interval():
    df = _data(0, 10, 4)
    m = hb.Model("y ~ x + (1 | g)", df, family="zip", priors={"zi": hb.Prior("Beta", alpha=2, beta=5)})
    assert m.priors["zi"] == hb.Prior("Beta", alpha=2, beta=5)
    hb.Model("y ~ x + (1 | g)", df, family="hurdle_poisson",
             priors={"hu": hb.Prior("Uniform", lower=0.1, upper=0.9)})
    with pytest.raises(ValueError, match="'hu'.*is a probability.*hu='~ 1'"):
        hb.Model("y ~ x + (1 | g)", df, family="hurdle_poisson", priors={"hu": hb.Prior("Normal", mu=0, sigma=1)})
    # with a formula the logit-scale coefficients take priors on the whole line
    m = hb.Model("y ~ x + (1 | g)", df, family="zip", zi="~ 1",
                 priors={"zi_Intercept": hb.Prior("Normal", mu=-1, sigma=1)})
    assert m.priors["zi_Intercept"] == hb.Prior("Normal", mu=-1, sigma=1)
