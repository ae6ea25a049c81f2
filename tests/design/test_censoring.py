"""Censored responses: the censored log density against scipy's cdf and survival function,
the PyTensor likelihood against the numpy one, the parsing and its errors, and a fit with
30% right-censoring that recovers the slope better than taking the bounds as observed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.design import censoring
from hierbayes.design.censoring import Censoring
from hierbayes.spec import families as F

FAMS = {
    "gaussian": (F.Gaussian(), {"sigma": 1.3}, lambda eta: stats.norm(eta, 1.3), False),
    "student": (F.StudentT(), {"sigma": 0.9, "nu": 4.5}, lambda eta: stats.t(4.5, eta, 0.9), False),
    "lognormal": (F.LogNormal(), {"sigma": 0.7}, lambda eta: stats.lognorm(0.7, scale=np.exp(eta)), True),
}


def _rows(seed, positive, n=400):
    rng = np.random.default_rng(seed)
    eta = rng.normal(0, 1, n)
    y = rng.normal(0, 3, n)
    y2 = y + rng.exponential(1.5, n)
    if positive:
        y, y2 = np.exp(y), np.exp(y2)
    code = rng.choice([-1, 0, 1, 2], n)
    return eta, y, y2, code


@pytest.mark.parametrize("name", sorted(FAMS))
def test_censored_logpdf_equals_scipy(name):
    fam, params, dist, positive = FAMS[name]
    eta, y, y2, code = _rows(1, positive)
    cens = Censoring(code, np.where(code == 2, y2, np.nan))
    got = censoring.logpdf(fam, y, cens, eta, params)
    d = dist(eta)
    with np.errstate(divide="ignore"):
        interval = np.where(d.cdf(y) < 0.5, np.log(d.cdf(y2) - d.cdf(y)), np.log(d.sf(y) - d.sf(y2)))
    want = np.select([code == 0, code == -1, code == 1, code == 2],
                     [d.logpdf(y), d.logcdf(y), d.logsf(y), interval])
    ok = np.isfinite(want)  # differences of cdfs that underflow in double precision
    assert ok.mean() > 0.95
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-9, atol=1e-10)


def test_interval_far_in_a_tail_is_finite_and_accurate():
    fam = F.Gaussian()
    lo, hi = np.array([9.0, -10.0]), np.array([10.0, -9.0])
    got = censoring.log_interval(fam, lo, hi, 0.0, {"sigma": 1.0})
    # log(Phi(-9) - Phi(-10)) both ways (the Gaussian is symmetric)
    want = stats.norm.logcdf(-9) + np.log1p(-np.exp(stats.norm.logcdf(-10) - stats.norm.logcdf(-9)))
    np.testing.assert_allclose(got, [want, want], rtol=1e-12)


def test_codes_take_brms_strings_and_numbers():
    assert censoring.codes(pd.Series(["none", "LEFT", " right", "interval"]), "c").tolist() == [0, -1, 1, 2]
    assert censoring.codes(np.array([0.0, -1, 1, 2]), "c").tolist() == [0, -1, 1, 2]
    with pytest.raises(ValueError, match="'c'.*'up'"):
        censoring.codes(["none", "up"], "c")
    with pytest.raises(ValueError, match="'c'.*3"):
        censoring.codes([0, 3], "c")


def _frame(seed=0, n_ids=40, n_per=6, cut=None):
    rng = np.random.default_rng(seed)
    n = n_ids * n_per
    df = pd.DataFrame({"g": np.repeat(np.arange(n_ids), n_per), "x": rng.normal(size=n)})
    y = 1.0 + 1.0 * df.x.to_numpy() + rng.normal(0, 0.5, n_ids)[df.g] + rng.normal(0, 1.0, n)
    cut = np.quantile(y, 0.7) if cut is None else cut
    df["c"] = np.where(y > cut, "right", "none")
    df["y"] = np.minimum(y, cut)
    return df


def test_formula_and_keyword_give_the_same_model():
    df = _frame()
    a = hb.Model("y | cens(c) ~ x + (1 | g)", df)
    b = hb.Model("y ~ x + (1 | g)", df, censored="c")
    assert a.spec.censored == b.spec.censored == "c"
    np.testing.assert_array_equal(a.design.censoring.code, b.design.censoring.code)
    assert a.backend == b.backend == "latent"
    assert a.design.censoring.counts()["right"] == int((df.c == "right").sum())


def test_errors_name_what_to_do():
    df = _frame()
    df["k"] = 1
    with pytest.raises(ValueError, match="not poisson"):
        hb.Model("k | cens(c) ~ x + (1 | g)", df, family="poisson")
    with pytest.raises(ValueError, match="differs from the formula"):
        hb.Model("y | cens(c) ~ x + (1 | g)", df, censored="d")
    df2 = df.copy()
    df2.loc[0, "c"] = "interval"
    with pytest.raises(ValueError, match="no upper bound"):
        hb.Model("y | cens(c) ~ x + (1 | g)", df2)
    df2["y2"] = df2.y - 1.0
    with pytest.raises(ValueError, match="'y2' must be finite and above 'y'"):
        hb.Model("y | cens(c, y2) ~ x + (1 | g)", df2)
    with pytest.raises(ValueError, match="censored response has no marginal backend"):
        hb.Model("y | cens(c) ~ x + (1 | g)", df, backend="marginal")
    df["t"] = df.groupby("g").cumcount()
    with pytest.raises(ValueError, match="residual correlation"):
        hb.Model("y | cens(c) ~ x + (1 | g)", df, correlation=hb.AR1(time="t", group="g"))
    with pytest.raises(ValueError, match="not understood"):
        hb.Model("y | censored(c) ~ x + (1 | g)", df)


@pytest.mark.parametrize("name", sorted(FAMS))
def test_graph_likelihood_equals_numpy(name):
    """The backend's Potential at a point equals the numpy censored density there."""
    fam, params, _, positive = FAMS[name]
    rng = np.random.default_rng(2)
    n = 60
    eta0, y, y2, code = _rows(3, positive, n)
    df = pd.DataFrame({"x": rng.normal(size=n), "y": y, "y2": np.where(code == 2, y2, 0.0),
                       "c": code})
    m = hb.Model("y | cens(c, y2) ~ x", df, family=name)
    model = m.build()
    point = {"beta": np.array([0.2, -0.4]), **params}
    values = {}
    for v in model.value_vars:
        base = v.name.split("_log__")[0]
        values[v.name] = np.log(point[base]) if v.name.endswith("_log__") else point[base]
    pot = model.replace_rvs_by_values([model["loglik"]])[0]
    fn = model.compile_fn(pot, inputs=model.value_vars, on_unused_input="ignore")
    got = float(fn(values))
    eta = m.design.X @ point["beta"]
    want = censoring.logpdf(fam, m.design.y, m.design.censoring, eta, params).sum()
    assert got == pytest.approx(want, rel=1e-11)


def test_right_censored_fit_recovers_the_slope_and_loo(tmp_path):
    df = _frame(4)
    assert 0.25 < (df.c == "right").mean() < 0.35
    cens = hb.Model("y | cens(c) ~ x + (1 | g)", df).fit(draws=200, tune=200, chains=2, seed=3,
                                                          progressbar=False)
    naive = hb.Model("y ~ x + (1 | g)", df).fit(draws=200, tune=200, chains=2, seed=3,
                                                progressbar=False)
    slope = {k: f.idata.posterior["beta"].sel(coef="x").values.ravel() for k, f in
             (("cens", cens), ("naive", naive))}
    err = {k: abs(v.mean() - 1.0) for k, v in slope.items()}
    assert err["cens"] < 3 * slope["cens"].std() + 0.05
    assert err["naive"] > 2 * err["cens"], err
    # the pointwise log-likelihood is the censored density
    post = cens.idata.posterior
    ll = cens.log_likelihood()["y"].values
    c, d = 0, 5
    eta = (cens.design.X @ post["beta"].values[c, d]
           + post["b_g"].values[c, d, :, 0][cens.design.groups[0].index])
    want = censoring.logpdf(F.Gaussian(), cens.design.y, cens.design.censoring, eta,
                            {"sigma": float(post["sigma"].values[c, d])})
    np.testing.assert_allclose(ll[c, d][np.argsort(np.argsort(cens.design.rows))], want, atol=1e-8)
    loo = cens.loo()
    assert np.isfinite(loo.elpd_loo)
    # predictive draws are censored as the data: a right-censored row's replicate above its
    # bound is reported at the bound, so none exceeds it; the uncensored draws do
    right = (df.c == "right").to_numpy()
    raw = cens.posterior_predictive(n_draws=50, censored=False)
    y_rep = cens.posterior_predictive(n_draws=50)  # stored in idata, replacing the raw draws
    assert np.all(y_rep[:, right] <= df.y.to_numpy()[right])
    assert (raw[:, right] > df.y.to_numpy()[right]).mean() > 0.3
    np.testing.assert_array_equal(y_rep[:, ~right], raw[:, ~right])  # exact rows as drawn
    np.testing.assert_array_equal(y_rep, np.minimum(raw, np.where(right, df.y, np.inf)))
    assert np.all(cens.idata.posterior_predictive["y"].values[..., right] <= df.y.to_numpy()[right])
    pp = hb.Model("y | cens(c) ~ x + (1 | g)", df).sample_prior_predictive(draws=20, seed=1)
    assert np.all(np.isfinite(pp.y)) and np.all(pp.y[:, right] <= df.y.to_numpy()[right])
    # residuals of the exact rows only; the censored ones counted
    r = hb.report.within_group_residuals(cens.idata, cens.design)
    assert np.isnan(r).sum() == right.sum() and np.isfinite(r[cens.design.censoring.code == 0]).all()
    summary = cens.residuals()
    assert f"{right.sum()} censored row(s) left out ({right.sum()} right)" in summary.name
    assert summary["Max"] == pytest.approx(np.nanmax(r))
    assert "censored: " in "\n".join(cens.header()) and "right" in "\n".join(cens.header())
    back = hb.load(cens.save(tmp_path / "fit.nc"))
    assert back.spec.censored == "c"
    np.testing.assert_allclose(back.loo().elpd_loo, loo.elpd_loo)


def test_interval_censored_lognormal_fit_runs():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"g": np.repeat(np.arange(15), 6), "x": rng.normal(size=90)})
    y = np.exp(0.5 + 0.5 * df.x + rng.normal(0, 0.3, 15)[df.g] + rng.normal(0, 0.5, 90))
    lo, hi = np.floor(y * 2) / 2, np.floor(y * 2) / 2 + 0.5  # rounded down to halves
    df["c"] = np.where(lo > 0, "interval", "left")
    df["y"] = np.where(lo > 0, lo, hi)
    df["y2"] = hi
    fit = hb.Model("y | cens(c, y2) ~ x + (1 | g)", df, family="lognormal").fit(
        draws=200, tune=200, chains=2, seed=1, progressbar=False)
    b = fit.idata.posterior["beta"].sel(coef="x").values
    assert abs(b.mean() - 0.5) < 4 * b.std() + 0.05


def test_simulate_draws_uncensored_and_sbc_refuses():
    df = _frame(6).drop(columns="c")
    sim = hb.simulate("y | cens(c) ~ x + (1 | g)", df, {"beta": [1.0, 1.0], "sd_g": [0.5],
                                                          "sigma": 1.0}, seed=2)
    assert sim.y.max() > df.y.max() + 0.5  # above the censoring point: not censored
    df["c"] = "none"
    with pytest.raises(ValueError, match="censored model needs censor="):
        hb.sbc(hb.Model("y | cens(c) ~ x + (1 | g)", df), 2)


def test_censor_like_reports_replicates_beyond_each_bound_at_the_bound():
    code = np.array([0, -1, -1, 1, 1, 2, 2, 2])
    y = np.array([5.0, 1.0, 1.0, 4.0, 4.0, 2.0, 2.0, 2.0])
    cens = Censoring(code, np.where(code == 2, 3.0, np.nan))
    y_rep = np.array([[-9.0, 0.5, 1.5, 4.5, 3.0, 2.5, 3.5, 1.0],
                      [9.0, 1.0, 7.0, 4.0, 8.0, 3.0, 2.0, -1.0]])
    got = censoring.censor_like(y_rep, y, cens)
    np.testing.assert_array_equal(got, [[-9.0, 1.0, 1.5, 4.0, 3.0, 2.0, 3.5, 1.0],
                                        [9.0, 1.0, 7.0, 4.0, 4.0, 2.0, 2.0, -1.0]])


def test_detection_limit_censors_at_numbers_and_columns():
    df = pd.DataFrame({"y": [-2.0, 0.0, 5.0, 1.0], "lod": [-1.0, np.nan, 1.0, 2.0]})
    out = hb.DetectionLimit(lower="lod", upper=4.0, response="y", indicator="c")(df)
    assert out.y.tolist() == [-1.0, 0.0, 4.0, 2.0]
    assert out.c.tolist() == ["left", "none", "right", "left"]
    assert df.y.tolist() == [-2.0, 0.0, 5.0, 1.0]  # a copy: the input is untouched
    spec = hb.spec.formula.parse("y | cens(c) ~ x")
    assert hb.DetectionLimit(upper=1.0).for_model(spec) == hb.DetectionLimit(upper=1.0, response="y", indicator="c")
    with pytest.raises(ValueError, match="lower=, upper= or both"):
        hb.DetectionLimit()
    with pytest.raises(ValueError, match="lower < upper"):
        hb.DetectionLimit(lower=2.0, upper=1.0)
    with pytest.raises(ValueError, match="finite number or a column name"):
        hb.DetectionLimit(lower=np.inf)
    with pytest.raises(ValueError, match="response= and indicator="):
        hb.DetectionLimit(lower=0.0)(df)
    with pytest.raises(ValueError, match="no censoring column"):
        hb.DetectionLimit(lower=0.0).for_model(hb.spec.formula.parse("y ~ x"))
    with pytest.raises(KeyError, match="'lod2'"):
        hb.DetectionLimit(lower="lod2", response="y", indicator="c")(df)


@pytest.mark.slow  # numba compiles the t cdf's gradient: ~150 s on two shared cores
def test_right_censored_student_fit_samples_through_numba():
    df = _frame(7, n_ids=20, n_per=5)
    m = hb.Model("y | cens(c) ~ x + (1 | g)", df, family="student")
    fit = m.fit(draws=150, tune=150, chains=2, seed=2, progressbar=False)
    assert fit.timing["compiler"] == "numba"
    b = fit.idata.posterior["beta"].sel(coef="x").values
    assert abs(b.mean() - 1.0) < 4 * b.std() + 0.1


def test_graph_likelihood_with_a_sigma_formula_equals_numpy():
    """A residual sd per row (sigma="~ s") enters every censored term."""
    rng = np.random.default_rng(8)
    n = 50
    _, y, y2, code = _rows(9, False, n)
    df = pd.DataFrame({"x": rng.normal(size=n), "s": rng.normal(size=n), "y": y,
                       "y2": np.where(code == 2, y2, 0.0), "c": code})
    m = hb.Model("y | cens(c, y2) ~ x", df, sigma="~ s")
    model = m.build()
    beta, bs = np.array([0.2, -0.4]), np.array([0.1, 0.3])
    values = {"beta": beta, "beta_sigma_Intercept": bs[0], "beta_sigma_s": bs[1]}
    assert set(values) == {v.name for v in model.value_vars}
    fn = model.compile_fn(model.replace_rvs_by_values([model["loglik"]])[0], inputs=model.value_vars,
                          on_unused_input="ignore")
    sigma = np.exp(m.design.dpars["sigma"].X @ bs)
    want = censoring.logpdf(F.Gaussian(), m.design.y, m.design.censoring, m.design.X @ beta,
                            {"sigma": sigma}).sum()
    assert float(fn(values)) == pytest.approx(want, rel=1e-11)


def test_structure_key_tells_censored_models_apart():
    """The compile cache must not hand a censored model an uncensored graph, nor one whose
    terms have other row counts; the same counts on other rows share the graph."""
    df = _frame(12)
    plain = hb.Model("y ~ x + (1 | g)", df, backend="latent").structure_key()
    cens = hb.Model("y | cens(c) ~ x + (1 | g)", df).structure_key()
    assert cens != plain
    other = df.copy()
    other.loc[other.index[other.c == "none"][0], "c"] = "left"
    assert hb.Model("y | cens(c) ~ x + (1 | g)", other).structure_key() != cens
    shuffled = df.copy()
    shuffled["c"] = shuffled.c.sample(frac=1, random_state=1).to_numpy()
    assert hb.Model("y | cens(c) ~ x + (1 | g)", shuffled).structure_key() == cens
