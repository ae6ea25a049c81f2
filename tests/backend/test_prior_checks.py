"""Priors are checked against PyMC when the model is built (issue 15 item 12).

``HalfNormal(scale=1)`` used to fail at fit time inside PyMC ("got multiple values for
argument 'scale'"); now hb.Model() refuses it, naming the prior's key, the distribution,
the parameter and the valid ones (read off PyMC's ``dist()`` signatures), and the same for
every hyperprior.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.backend import params
from hierbayes.backend.native import bridge


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"g": np.repeat([f"c{k}" for k in range(6)], 4),
                       "x": rng.normal(size=24)})
    df["y"] = rng.normal(size=24)
    return df


def _model(data, priors, formula="y ~ x + (1 + x | g)"):
    return hb.Model(formula, data, priors=priors)


BAD = {  # the priors, then what the error must say, in order
    "unknown parameter": ({"sd_g": hb.Prior("HalfNormal", scale=1)},
                          ["the prior of 'sd_g'", "HalfNormal", "'scale'", "sigma, tau"]),
    "misspelt parameter": ({"x": hb.Prior("Normal", mu=0, sigm=1)},
                           ["the prior of 'x'", "'sigm'", "did you mean 'sigma'", "mu, sigma, tau"]),
    "unknown distribution": ({"sigma": hb.Prior("HalfNormall", sigma=1)},
                             ["the prior of 'sigma'", "'HalfNormall'", "did you mean 'HalfNormal'"]),
    "discrete distribution": ({"x": hb.Prior("Poisson", mu=1)}, ["'x'", "'Poisson'", "continuous"]),
    "multivariate distribution": ({"x": hb.Prior("MvNormal", mu=[0], cov=[[1]])},
                                  ["'x'", "'MvNormal'", "univariate"]),
    "not a distribution": ({"x": hb.Prior("sample")}, ["'x'", "'sample'", "not a univariate"]),
    "missing required parameter": ({"x": hb.Prior("Cauchy", beta=1)},
                                   ["the prior of 'x'", "Cauchy needs 'alpha'", "alpha, beta"]),
    "hyperprior": ({"Intercept": hb.Prior("Normal", mu=0, sigma=hb.Prior("HalfNormal", scale=1))},
                   ["the hyperprior of 'Intercept''s 'sigma'", "'scale'", "sigma, tau"]),
    "hyperprior of a hyperprior": (
        {"x": hb.Prior("Normal", mu=hb.Prior("Normal", mu=hb.Prior("Nrmal", mu=0)), sigma=1)},
        ["hyperprior of 'x''s 'mu'", "'Nrmal'", "did you mean 'Normal'"]),
    "correlation prior not LKJ": ({"corr_g": hb.Prior("HalfNormal", sigma=1)},
                                  ["the prior of 'corr_g'", "hb.Prior('LKJ'"]),
    "LKJ parameter": ({"corr_g": hb.Prior("LKJ", eta=2, n=2)}, ["'corr_g'", "'n'", "parameters are eta"]),
    "LKJ elsewhere": ({"sd_g": hb.Prior("LKJ", eta=2)}, ["'sd_g'", "corr_<g>"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_priors_fail_at_model_naming_what_to_fix(data, case):
    priors, says = BAD[case]
    with pytest.raises(ValueError) as err:
        _model(data, priors)
    msg = str(err.value)
    pos = [msg.find(s) for s in says]
    assert all(p >= 0 for p in pos), (msg, says)
    assert pos == sorted(pos), msg


def test_the_issues_example_no_longer_reaches_pymc(data):
    """The issue's case fails at hb.Model(), before any graph exists."""
    with pytest.raises(ValueError, match=r"'sd_g'.*HalfNormal takes no parameter 'scale'.*sigma, tau"):
        _model(data, {"sd_g": hb.Prior("HalfNormal", scale=1)}, "y ~ x + (1 | g)")


GOOD = [
    hb.Prior("Normal", mu=0, sigma=1), hb.Prior("Normal", mu=0, tau=2), hb.Prior("Flat"),
    hb.Prior("StudentT", nu=3, mu=0, sigma=2), hb.Prior("Cauchy", alpha=0, beta=1),
    hb.Prior("Laplace", mu=0, b=1), hb.Prior("Logistic", mu=0, s=1),
    hb.Prior("Normal", mu=hb.Prior("Normal", mu=0, sigma=1), sigma=hb.Prior("HalfNormal", sigma=1)),
]
GOOD_POSITIVE = [
    hb.Prior("HalfNormal", sigma=[1, 0.5]), hb.Prior("HalfStudentT", nu=3, sigma=1),
    hb.Prior("HalfCauchy", beta=1), hb.Prior("Exponential", lam=1), hb.Prior("Exponential", scale=2),
    hb.Prior("Gamma", alpha=2, beta=1), hb.Prior("Gamma", mu=1, sigma=0.5),
    hb.Prior("InverseGamma", alpha=3, beta=2), hb.Prior("LogNormal", mu=0, sigma=1),
    hb.Prior("Weibull", alpha=1.5, beta=2), hb.Prior("TruncatedNormal", mu=0, sigma=1, lower=0),
    hb.Prior("ChiSquared", nu=3), hb.Prior("HalfFlat"),
]


@pytest.mark.parametrize("prior", GOOD)
def test_good_coefficient_priors_pass(data, prior):
    assert _model(data, {"x": prior}).priors["x"] == prior


@pytest.mark.parametrize("prior", GOOD_POSITIVE)
def test_good_sd_priors_pass(data, prior):
    assert _model(data, {"sd_g": prior}).priors["sd_g"] == prior


def test_every_distribution_the_kernel_knows_is_a_pymc_prior():
    for name in bridge.PRIOR_PARAMETERS:
        cls = params.prior_distribution(name)
        assert cls is not None, name
        valid, _ = params.parameter_names(cls)
        assert {n for n in bridge.PRIOR_PARAMETERS[name] if n} <= set(valid), name
