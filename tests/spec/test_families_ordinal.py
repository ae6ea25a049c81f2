"""The cumulative (ordinal) family: its log density against scipy, the response's order,
the design without an intercept, and a small latent fit with its downstream uses
(recovery, prediction of level probabilities, LOO, save/load, simulate, prior predictive,
the posterior predictive plot); one slow SBC run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.spec import families
from hierbayes.spec.families import Cumulative

CUTS = np.array([-1.0, 0.3, 1.6])
SLOPE = 1.2


def _reference(y, eta, c, link):
    """``log(F(c_k - eta) - F(c_{k-1} - eta))`` with scipy's distribution functions (in the
    upper tail as the difference of survival functions, ``S(lo) - S(hi)``, where the
    difference of two values near 1 would lose every digit)."""
    dist = stats.logistic if link == "logit" else stats.norm
    ext = np.concatenate([[-np.inf], c, [np.inf]])
    hi, lo = ext[y + 1] - eta, ext[y] - eta
    with np.errstate(invalid="ignore"):
        p = np.where(lo > 0, dist.sf(lo) - dist.sf(hi), dist.cdf(hi) - dist.cdf(lo))
    return np.log(p)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_logpdf_matches_scipy(link):
    rng = np.random.default_rng(0)
    fam = Cumulative(link=link)
    for K in (2, 3, 6):
        c = np.sort(rng.normal(0, 2, K - 1)) + np.arange(K - 1) * 0.1
        eta = rng.normal(0, 2, 500)
        y = rng.integers(0, K, 500)
        got = fam.logpdf(y.astype(float), eta, {"cutpoints": c})
        np.testing.assert_allclose(got, _reference(y, eta, c, link), rtol=1e-10, atol=1e-10)
        p = fam.probabilities(eta, c)
        np.testing.assert_allclose(p.sum(axis=-1), 1.0, atol=1e-12)
        np.testing.assert_allclose(np.exp(got), p[np.arange(500), y], rtol=1e-10)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_logpdf_is_finite_in_the_tails_and_broadcasts_draws(link):
    fam = Cumulative(link=link)
    c = np.array([-1.0, 1.0])
    eta = np.array([-40.0, 40.0, 0.0])
    lp = fam.logpdf(np.array([2.0, 0.0, 1.0]), eta, {"cutpoints": c})
    assert np.all(np.isfinite(lp)) and np.all(lp[:2] < -30)  # far tails: tiny but finite
    # (D, 1, K-1) cut-points against (D, N) linear predictors, as the log-likelihood passes them
    cd = np.stack([c, c + 0.5])[:, None, :]
    eta2 = np.array([[0.1, -0.3, 2.0], [0.4, 0.0, -1.0]])
    y = np.array([0.0, 1.0, 2.0])
    lp2 = fam.logpdf(y[None], eta2, {"cutpoints": cd})
    for d in range(2):
        np.testing.assert_allclose(lp2[d], _reference(y.astype(int), eta2[d], cd[d, 0], link),
                                   rtol=1e-10)


def test_registry_names_and_links():
    assert families.get("cumulative") == families.get("ordinal") == Cumulative()
    assert Cumulative().dist == "OrderedLogistic"
    # probit: a Categorical on erfc-built probabilities (OrderedProbit's erfcx has no JAX op)
    assert Cumulative(link="probit").dist == "Categorical"
    with pytest.raises(ValueError, match="takes link"):
        Cumulative(link="log")


def test_draws_have_the_probabilities():
    fam = Cumulative()
    rng = np.random.default_rng(1)
    eta = np.full(200_000, 0.4)
    y = fam.draw(rng, eta, {"cutpoints": CUTS})
    share = np.bincount(y.astype(int), minlength=4) / y.size
    np.testing.assert_allclose(share, fam.probabilities(0.4, CUTS), atol=4e-3)
    assert abs(y.mean() - fam.fitted(np.array([0.4]), {"cutpoints": CUTS})[0]) < 0.01


def test_check_params_needs_increasing_cutpoints():
    fam = Cumulative()
    fam.check_params({"cutpoints": [-1.0, 0.5]})
    with pytest.raises(ValueError, match="strictly increasing"):
        fam.check_params({"cutpoints": [0.5, -1.0]})
    with pytest.raises(ValueError, match="needs 2 values"):
        Cumulative(levels=["a", "b", "c"]).check_params({"cutpoints": [0.0]})


# ----------------------------------------------------------------------------- response


def _frame(y, n_groups=4, seed=0):
    rng = np.random.default_rng(seed)
    n = len(y)
    return pd.DataFrame({"y": y, "x": rng.normal(size=n), "g": np.arange(n) % n_groups,
                         "arm": np.where(np.arange(n) % 3 == 0, "a", "b")})


def test_integer_response_is_coded_in_sorted_order():
    m = hb.Model("y ~ x + (1 | g)", _frame([3, 1, 2, 3, 5, 1, 2, 5]), family="cumulative")
    d = m.design
    assert d.response_levels == ("1", "2", "3", "5")
    assert set(np.unique(d.y)) == {0.0, 1.0, 2.0, 3.0}
    assert d.fixed_names == ("x",)  # no intercept: the cut-points take its place
    assert "cutpoints" in m.priors and "Intercept" not in m.priors


def test_ordered_categorical_keeps_its_order_and_unordered_is_refused():
    y = pd.Categorical(["hi", "lo", "mid", "lo", "hi", "mid"], categories=["lo", "mid", "hi"],
                       ordered=True)
    d = hb.Model("y ~ x + (1 | g)", _frame(y, 3), family="ordinal").design
    assert d.response_levels == ("lo", "mid", "hi")
    rows = np.argsort(d.rows)
    assert d.y[rows].tolist() == [2.0, 0.0, 1.0, 0.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="unordered Categorical.*ordered=True"):
        hb.Model("y ~ x + (1 | g)", _frame(pd.Categorical(np.asarray(y)), 3), family="cumulative")


def test_strings_need_an_explicit_order():
    y = ["hi", "lo", "mid", "lo", "hi", "mid"]
    with pytest.raises(ValueError, match="strings, whose order .* cannot guess"):
        hb.Model("y ~ x + (1 | g)", _frame(y, 3), family="cumulative")
    fam = Cumulative(levels=["lo", "mid", "hi"])
    d = hb.Model("y ~ x + (1 | g)", _frame(y, 3), family=fam).design
    assert d.response_levels == ("lo", "mid", "hi")
    with pytest.raises(ValueError, match=r"value\(s\) \['top'\].*not among the levels"):
        hb.Model("y ~ x + (1 | g)", _frame(y[:-1] + ["top"], 3), family=fam)


@pytest.mark.parametrize("y, match", [
    ([0.5, 1, 2, 1], "non-integer"),
    ([True, False, True, False], "booleans"),
    ([2, 2, 2, 2], "single level"),
])
def test_responses_without_ordered_levels_are_refused(y, match):
    with pytest.raises(ValueError, match=match):
        hb.Model("y ~ x + (1 | g)", _frame(y, 2), family="cumulative")


def test_zero_plus_formula_is_the_same_model_and_full_dummies_are_refused():
    df = _frame([1, 2, 3, 1, 2, 3, 1, 2, 3])
    a = hb.Model("y ~ x + arm + (1 | g)", df, family="cumulative").design
    assert a.fixed_names == ("x", "arm[b]")
    b = hb.Model("y ~ 0 + x + (1 | g)", df, family="cumulative").design
    c = hb.Model("y ~ x - 1 + (1 | g)", df, family="cumulative").design
    assert b.fixed_names == c.fixed_names == ("x",)
    np.testing.assert_array_equal(a.X[:, 0], b.X[:, 0])
    # formulae codes every level of a categorical without an intercept: collinear
    with pytest.raises(ValueError, match="cut-points take the intercept's place"):
        hb.Model("y ~ 0 + x + arm + (1 | g)", df, family="cumulative")


def test_quadrature_backend_refuses_it():
    m = hb.Model("y ~ x + (1 | g)", _frame([1, 2, 3, 1, 2, 3, 1, 2]), family="cumulative")
    assert m.backend == "latent"
    with pytest.raises(ValueError, match="cumulative family has no marginal backend"):
        hb.Model("y ~ x + (1 | g)", _frame([1, 2, 3, 1, 2, 3, 1, 2]), family="cumulative",
                 backend="quadrature")


# ----------------------------------------------------------------------------- simulate


def _layout(n_groups=40, per=12, seed=0):
    rng = np.random.default_rng(seed)
    n = n_groups * per
    return pd.DataFrame({"g": np.repeat(np.arange(n_groups), per), "x": rng.normal(size=n)})


PARAMS = {"beta": {"x": SLOPE}, "cutpoints": CUTS, "sd_g": [0.5]}


def test_simulate_writes_levels_one_to_k_or_the_familys_labels():
    sim = hb.simulate("y ~ x + (1 | g)", _layout(), PARAMS, family="cumulative", seed=1)
    assert set(sim.y.unique()) == {1.0, 2.0, 3.0, 4.0}
    fam = Cumulative(levels=["a", "b", "c", "d"])
    lab = hb.simulate("y ~ x + (1 | g)", _layout(), PARAMS, family=fam, seed=1)
    np.testing.assert_array_equal(lab.y.map({"a": 1, "b": 2, "c": 3, "d": 4}), sim.y)
    with pytest.raises(ValueError, match="strictly increasing"):
        hb.simulate("y ~ x + (1 | g)", _layout(), {**PARAMS, "cutpoints": [1.0, 0.0, 2.0]},
                    family="cumulative")


# ----------------------------------------------------------------------------- a latent fit


@pytest.fixture(scope="module")
def fit():
    sim = hb.simulate("y ~ x + (1 | g)", _layout(), PARAMS, family="cumulative", seed=2)
    model = hb.Model("y ~ x + (1 | g)", sim, family="cumulative")
    return model.fit(draws=300, tune=300, chains=2, seed=5, progressbar=False)


def test_fit_recovers_cutpoints_and_slope(fit):
    post = fit.idata.posterior
    assert list(post["cutpoints"].coords["cutpoint"].values) == ["1|2", "2|3", "3|4"]
    c = post["cutpoints"].mean(("chain", "draw")).values
    sd = post["cutpoints"].std(("chain", "draw")).values
    assert np.all(np.abs(c - CUTS) < 3 * sd + 0.1), (c, sd)
    assert np.all(np.diff(post["cutpoints"].values, axis=-1) > 0)
    slope = post["beta"].sel(coef="x")
    assert abs(float(slope.mean()) - SLOPE) < 3 * float(slope.std()) + 0.1
    text = str(fit.summary())
    assert "cutpoint[1|2]" in text and "cutpoints ~ StudentT" in text


def test_predict_gives_level_probabilities_on_new_rows(fit):
    new = pd.DataFrame({"x": [-2.0, 0.0, 2.0], "g": [0, 1, 999]})
    pred = fit.predict(new, kind="probabilities", n_draws=100)
    assert pred.draws.dims == ("chain", "draw", "row", "category")
    assert list(pred.draws.coords["category"].values) == ["1", "2", "3", "4"]
    np.testing.assert_allclose(pred.draws.sum("category").values, 1.0, atol=1e-12)
    assert list(pred.table.columns[:4]) == ["P(1)", "P(2)", "P(3)", "P(4)"]
    # a larger x moves mass to the top level
    assert pred.table["P(4)"].iloc[2] > pred.table["P(4)"].iloc[0]
    mean = fit.predict(new, kind="mean", n_draws=100)
    k = np.arange(4.0)
    np.testing.assert_allclose(mean.draws.values, (pred.draws.values * k).sum(-1), rtol=1e-12)
    resp = fit.predict(new, kind="response", n_draws=100)
    assert set(np.unique(resp.draws.values)) <= {0.0, 1.0, 2.0, 3.0}
    from types import SimpleNamespace

    from hierbayes.predict.prediction import predict

    bernoulli_fit = SimpleNamespace(spec=SimpleNamespace(family=families.get("bernoulli")))
    with pytest.raises(ValueError, match="kind='probabilities' gives the level probabilities"):
        predict(bernoulli_fit, new, kind="probabilities")


def test_loo_and_pointwise_loglik(fit):
    ll = fit.log_likelihood()["y"]
    assert ll.dims == ("chain", "draw", "obs")
    # the pointwise values are the family's log density at each draw
    post = fit.idata.posterior
    d = fit.design
    beta = post["beta"].values[0, 0]
    b = post["b_g"].values[0, 0][d.groups[0].index, 0]
    eta = d.X @ beta + b
    ref = Cumulative().logpdf(d.y, eta, {"cutpoints": post["cutpoints"].values[0, 0]})
    np.testing.assert_allclose(ll.values[0, 0][np.argsort(np.argsort(d.rows))], ref, rtol=1e-10)
    loo = fit.loo()
    assert np.isfinite(float(loo.elpd_loo if hasattr(loo, "elpd_loo") else loo.loo.elpd_loo))


def test_save_load_round_trip(fit, tmp_path):
    path = fit.save(tmp_path / "ord.nc")
    again = hb.load(path)
    assert again.design.response_levels == fit.design.response_levels
    assert again.spec.family == fit.spec.family
    np.testing.assert_array_equal(again.design.y, fit.design.y)
    new = pd.DataFrame({"x": [0.5], "g": [3]})
    a = fit.predict(new, kind="probabilities", n_draws=20).draws.values
    b = again.predict(new, kind="probabilities", n_draws=20).draws.values
    np.testing.assert_allclose(a, b)


def test_posterior_and_prior_predictive_and_plot(fit):
    y_rep = fit.posterior_predictive(n_draws=20)
    assert set(np.unique(y_rep)) <= {0.0, 1.0, 2.0, 3.0}
    fig = fit.plot_ppc(n_draws=20)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]
    assert len(ax.patches) == 4
    model = hb.Model("y ~ x + (1 | g)", fit.design.source, family="cumulative")
    pp = model.sample_prior_predictive(draws=30, seed=1)
    assert np.all(np.diff(pp.prior["cutpoints"].values, axis=-1) > 0)
    assert set(np.unique(pp.y)) <= {0.0, 1.0, 2.0, 3.0}


def test_probit_fit_recovers_its_cutpoints():
    sim = hb.simulate("y ~ x + (1 | g)", _layout(30, 10, seed=3),
                      {"beta": {"x": 0.8}, "cutpoints": [-0.6, 0.7], "sd_g": [0.3]},
                      family=Cumulative(link="probit"), seed=4)
    fit = hb.Model("y ~ x + (1 | g)", sim, family=Cumulative(link="probit")).fit(
        draws=200, tune=200, chains=2, seed=2, progressbar=False)
    post = fit.idata.posterior
    c = post["cutpoints"].mean(("chain", "draw")).values
    sd = post["cutpoints"].std(("chain", "draw")).values
    assert np.all(np.abs(c - [-0.6, 0.7]) < 3 * sd + 0.1), (c, sd)
    slope = post["beta"].sel(coef="x")
    assert abs(float(slope.mean()) - 0.8) < 3 * float(slope.std()) + 0.1


@pytest.mark.slow
def test_sbc_of_an_ordinal_random_intercept_model():
    lay = _layout(20, 8, seed=6)
    lay["y"] = np.arange(len(lay)) % 3 + 1  # replaced by each simulation
    priors = {"x": hb.Prior("Normal", mu=0, sigma=1), "sd_g": hb.Prior("HalfNormal", sigma=1.0),
              "cutpoints": hb.Prior("Normal", mu=0, sigma=1.5)}
    # hb.sbc fixes the levels on the family: a simulated data set without some level keeps
    # all three
    model = hb.Model("y ~ x + (1 | g)", lay, family="cumulative", priors=priors)
    res = hb.sbc(model, 30, seed=11, n_ranks=49, draws=250, tune=400, max_workers=2)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert list(res.ranks.columns) == ["cutpoint[1|2]", "cutpoint[2|3]", "x", "sd(Intercept | g)"]
    assert (res.uniformity(bins=5).p_value > 0.001).all()


def test_sbc_fixes_the_levels_of_an_ordinal_family():
    from hierbayes.studies.sbc import simulation_inputs

    lay = _layout(4, 3)
    lay["y"] = np.arange(len(lay)) % 3 + 1
    model = hb.Model("y ~ x + (1 | g)", lay, family="cumulative")
    fam = simulation_inputs(model)["family"]
    assert fam == Cumulative(levels=("1", "2", "3"))
    # a data set drawn without its top level keeps all three levels and both cut-points
    lay["y"] = np.arange(len(lay)) % 2 + 1
    assert hb.Model("y ~ x + (1 | g)", lay, family=fam).design.response_levels == ("1", "2", "3")


def test_model_file_takes_a_family_table(tmp_path):
    df = _frame(["lo", "mid", "hi", "lo", "hi", "mid", "mid", "lo"], 2)
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "m.toml").write_text(
        'formula = "y ~ x + (1 | g)"\ndata = "d.csv"\n'
        '[family]\nname = "cumulative"\nlink = "probit"\nlevels = ["lo", "mid", "hi"]\n')
    from hierbayes.io import modelfile

    model = modelfile.read(tmp_path / "m.toml").model()
    assert model.spec.family == Cumulative(link="probit", levels=("lo", "mid", "hi"))
    assert model.design.response_levels == ("lo", "mid", "hi")
    (tmp_path / "bad.toml").write_text(
        'formula = "y ~ x + (1 | g)"\ndata = "d.csv"\n[family]\nname = "cumulative"\nlevel = 1\n')
    with pytest.raises(ValueError, match="level"):
        modelfile.read(tmp_path / "bad.toml")


def test_cutpoint_prior_is_overridable_and_starts_ordered():
    df = _frame([1, 2, 3, 1, 2, 3, 1, 1, 2, 3, 3, 3])
    prior = hb.Prior("Normal", mu=0, sigma=5)
    m = hb.Model("y ~ x + (1 | g)", df, family="cumulative", priors={"cutpoints": prior})
    assert m.priors["cutpoints"] == prior
    model = m.build()
    rv = model["cutpoints"]
    assert model.rvs_to_transforms[rv].name == "ordered"
    start = model.initial_point()
    c = model.rvs_to_values[rv]
    # the ordered transform's value: first cut-point, then log gaps; the start is the
    # logistic quantiles of the observed cumulative shares (4/12, 7/12)
    first, log_gap = start[c.name]
    np.testing.assert_allclose([first, first + np.exp(log_gap)], [-np.log(2), np.log(7 / 5)])


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_pymc_likelihood_equals_the_familys_logpdf(link, fast_mode):
    import pytensor

    sim = hb.simulate("y ~ x + (1 | g)", _layout(8, 6, seed=7), PARAMS, family="cumulative", seed=8)
    fam = Cumulative(link=link)
    m = hb.Model("y ~ x + (1 | g)", sim, family=fam, backend="latent")
    model = m.build()
    rng = np.random.default_rng(9)
    point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in model.initial_point().items()}
    outs = model.replace_rvs_by_values([model["cutpoints"], model["beta"], model["b_g"]])
    c, beta, b = pytensor.function(model.value_vars, outs, on_unused_input="ignore", mode=fast_mode)(
        **{v.name: point[v.name] for v in model.value_vars})
    d = m.design
    eta = d.X @ beta + b[d.groups[0].index, 0]
    want = fam.logpdf(d.y, eta, {"cutpoints": c}).sum()
    got = model.compile_logp(vars=[model["y"]], jacobian=False, mode=fast_mode)(point)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_report_says_why_there_is_no_shrinkage_section(fit, tmp_path):
    with pytest.raises(NotImplementedError, match="misses a level"):
        fit.cluster_ols()
    html = fit.report(tmp_path).read_text()
    assert "Shrinkage report left out" in html and "misses a level" in html
    assert "Shrinkage towards the population" not in html
