"""bambi interoperation: bambi.Prior wherever hb.Prior is, and hb.Model.from_bambi.

No bambi fits (slow): bambi models are only built; one tiny hierbayes fit of a converted
model.
"""

import warnings

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.io.bambi import formula as bambi_formula
from hierbayes.spec.priors import as_prior

bmb = pytest.importorskip("bambi")


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(12), 6)
    x = rng.normal(size=g.size)
    eta = 0.3 + 0.8 * x + rng.normal(0, 0.5, 12)[g]
    return pd.DataFrame({
        "g": g.astype(str), "x": x, "s": rng.choice(["a", "b"], g.size),
        "y": eta + rng.normal(0, 0.7, g.size),
        "yb": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int),
        "k": rng.binomial(5, 0.4, g.size), "n": 5, "c": rng.poisson(2.0, g.size),
    })


def test_as_prior_converts_a_bambi_prior():
    p = as_prior(bmb.Prior("HalfNormal", sigma=2.5), "sigma")
    assert p == hb.Prior("HalfNormal", sigma=2.5)
    assert isinstance(p.params["sigma"], float)
    q = as_prior(bmb.Prior("Normal", mu=0, sigma=np.array([1.0, 2.0])))
    assert q == hb.Prior("Normal", mu=0, sigma=[1.0, 2.0])
    same = hb.Prior("Gamma", alpha=2, beta=0.1)
    assert as_prior(same) is same


def test_as_prior_refuses_hierarchical_and_other_objects():
    with pytest.raises(ValueError, match="hierarchical.*sd_<g>"):
        as_prior(bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1)), "x")
    with pytest.raises(TypeError, match="prior for 'x' must be an hb.Prior"):
        as_prior({"dist": "Normal"}, "x")


def test_bambi_prior_accepted_by_model_and_prior_sweep_check(small):
    m = hb.Model("y ~ x + (1 | g)", small, priors={"x": bmb.Prior("Normal", mu=0, sigma=2),
                                                   "sd_g": bmb.Prior("HalfNormal", sigma=1)})
    assert m.priors["x"] == hb.Prior("Normal", mu=0, sigma=2)
    assert m.priors["sd_g"] == hb.Prior("HalfNormal", sigma=1)
    with pytest.raises(ValueError, match="hierarchical"):
        hb.Model("y ~ x + (1 | g)", small,
                 priors={"x": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1))})
    # prior_sweep converts its settings before checking the keys (no fit runs here)
    with pytest.raises(KeyError, match="no parameter named 'nope' to sweep"):
        hb.prior_sweep(m, {"nope": [bmb.Prior("HalfNormal", sigma=1)]})
    with pytest.raises(TypeError, match="prior for 'sd_g' must be an hb.Prior"):
        hb.prior_sweep(m, {"sd_g": ["HalfNormal"]})


def test_formula_rewrite():
    assert bambi_formula("y ~ x + (1 + x | g)") == "y ~ x + (1 + x || g)"
    assert bambi_formula("y ~ x + (1 | g) + (0 + x | h)") == "y ~ x + (1 | g) + (0 + x | h)"
    assert bambi_formula("y ~ (np.log(x) | g)") == "y ~ (np.log(x) || g)"
    assert bambi_formula("p(k, n) ~ x", "binomial") == "k | trials(n) ~ x"
    with pytest.raises(ValueError, match="transformation"):
        bambi_formula("weighted(y, w) ~ x")
    with pytest.raises(ValueError, match="0/1 column"):
        bambi_formula("y['yes'] ~ x", "bernoulli")


def test_from_bambi_gaussian_same_formula_family_priors(small):
    b = bmb.Model("y ~ x + s + (1 + x | g)", small, priors={
        "x": bmb.Prior("Normal", mu=0, sigma=3),
        "s": bmb.Prior("Normal", mu=0, sigma=0.5),
        "sigma": bmb.Prior("HalfNormal", sigma=2),
        "1|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1.5)),
        "x|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=0.5)),
    })
    m = hb.Model.from_bambi(b)
    assert m.spec.formula == "y ~ x + s + (1 + x || g)"
    assert not m.design.groups[0].correlated and "corr_g" not in m.priors
    assert m.spec.family.name == "gaussian"
    assert m.priors["x"] == hb.Prior("Normal", mu=0, sigma=3)
    assert m.priors["s[b]"] == hb.Prior("Normal", mu=0, sigma=0.5)
    assert m.priors["sigma"] == hb.Prior("HalfNormal", sigma=2)
    assert m.priors["sd_g"] == hb.Prior("HalfNormal", sigma=[1.5, 0.5])
    # bambi's own (auto-scaled) priors are not carried: hierbayes' defaults
    default = hb.Model("y ~ x + s + (1 + x || g)", small)
    assert m.priors["Intercept"] == default.priors["Intercept"]
    assert m.design.n == len(small) and m.inputs["na_action"] == "raise"


def test_from_bambi_bernoulli_probit_and_fit(small):
    b = bmb.Model("yb ~ x + (1 | g)", small, family="bernoulli", link="probit",
                  priors={"x": bmb.Prior("Normal", mu=0, sigma=1)})
    m = hb.Model.from_bambi(b)
    assert m.spec.formula == "yb ~ x + (1 | g)"
    assert m.spec.family == hb.families.Bernoulli(link="probit")
    assert m.priors["x"] == hb.Prior("Normal", mu=0, sigma=1)
    assert m.priors["Intercept"] == hb.Model("yb ~ x + (1 | g)", small,
                                             family=hb.families.Bernoulli(link="probit")).priors["Intercept"]
    fit = m.fit(draws=100, tune=100, chains=2, seed=1, progressbar=False)
    assert fit.posterior["beta"].sizes["draw"] == 100


def test_from_bambi_categorical_group_slope(small):
    hs = lambda s: bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=s))
    b = bmb.Model("y ~ s + (1 + s | g)", small, priors={"1|g": hs(1.0), "s|g": hs(0.25)})
    m = hb.Model.from_bambi(b)
    assert m.design.groups[0].terms == ("Intercept", "s[b]")
    assert m.priors["sd_g"] == hb.Prior("HalfNormal", sigma=[1.0, 0.25])


def test_from_bambi_other_families_and_sigma_formula(small):
    assert hb.Model.from_bambi(bmb.Model("p(k, n) ~ x + (1 | g)", small, family="binomial")
                               ).spec.formula == "k | trials(n) ~ x + (1 | g)"
    assert hb.Model.from_bambi(bmb.Model("c ~ x + (1 | g)", small, family="negativebinomial")
                               ).spec.family.name == "negbinomial"
    t = hb.Model.from_bambi(bmb.Model("y ~ x", small, family="t",
                                      priors={"nu": bmb.Prior("Gamma", alpha=2, beta=0.2)}))
    assert t.spec.family.name == "student" and t.priors["nu"] == hb.Prior("Gamma", alpha=2, beta=0.2)
    b = bmb.Model(bmb.Formula("y ~ x", "sigma ~ s"), small,
                  priors={"sigma": {"s": bmb.Prior("Normal", mu=0, sigma=0.3)}})
    m = hb.Model.from_bambi(b)
    assert m.inputs["sigma"] == "~ s"
    assert m.priors["sigma_s[b]"] == hb.Prior("Normal", mu=0, sigma=0.3)


def test_from_bambi_correlation_and_kwargs(small):
    data = small.assign(t=np.tile(np.arange(6), 12))
    b = bmb.Model("y ~ x + (1 | g)", data, priors={
        "Intercept": bmb.Prior("Normal", mu=0, sigma=10)})
    with pytest.raises(ValueError, match="center_predictors"):
        hb.Model.from_bambi(b)
    m = hb.Model.from_bambi(b, correlation=hb.AR1(time="t", group="g"), backend="latent",
                            priors={"Intercept": hb.Prior("Normal", mu=0, sigma=5)})
    assert m.backend == "latent" and "phi" in m.priors
    assert m.priors["Intercept"] == hb.Prior("Normal", mu=0, sigma=5)
    b = bmb.Model("y ~ x + (1 | g)", data, center_predictors=False,
                  priors={"Intercept": bmb.Prior("Normal", mu=0, sigma=10)})
    assert hb.Model.from_bambi(b).priors["Intercept"] == hb.Prior("Normal", mu=0, sigma=10)


@pytest.mark.parametrize("build, match", [
    (lambda d: bmb.Model("y ~ x", d, family="gamma"), "family 'gamma'"),
    (lambda d: bmb.Model("c ~ x", d, family="poisson", link="identity"), "link 'identity'"),
    (lambda d: bmb.Model("y ~ x + (1 | g)", d, priors={
        "1|g": bmb.Prior("StudentT", nu=3, mu=0, sigma=bmb.Prior("HalfNormal", sigma=1))}),
     "group term '1\\|g'"),
    (lambda d: bmb.Model("y ~ x + (1 + x | g)", d, priors={
        "1|g": bmb.Prior("Normal", mu=0, sigma=bmb.Prior("HalfNormal", sigma=1))}),
     "set a prior on every term of 'g'"),
    (lambda d: bmb.Model("y ~ x", d, priors={"sigma": 1.0}), "fixes 'sigma'"),
    (lambda d: bmb.Model("y ~ x", d, auto_scale=False), "auto_scale=False"),
])
def test_from_bambi_refuses_what_it_cannot_map(small, build, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = build(small)
    with pytest.raises(ValueError, match=match):
        hb.Model.from_bambi(b)
