"""The families' derivatives in the linear predictor and in their own parameter (what the
marginal GLMM likelihood needs), checked over grids of each family's domain: the log
density against scipy's ``logpdf``, each derivative against central differences of the one
below, at moderate and at extreme linear predictors."""

from __future__ import annotations

import numpy as np
import pytest

from hierbayes.spec import families as F

H = 1e-5
ETA = {"moderate": np.linspace(-3, 3, 25), "extreme": np.linspace(-35, 35, 29)}


def _cases():
    rng = np.random.default_rng(0)
    binary = rng.integers(0, 2, 29).astype(float)
    counts = rng.poisson(3, 29).astype(float)
    trials = rng.integers(1, 31, 29).astype(float)
    successes = np.floor(rng.random(29) * (trials + 1))
    return {
        "bernoulli logit": (F.Bernoulli(), binary, None, {}),
        "bernoulli probit": (F.Bernoulli(link="probit"), binary, None, {}),
        "binomial logit": (F.Binomial(), successes, trials, {}),
        "binomial probit": (F.Binomial(link="probit"), successes, trials, {}),
        "poisson": (F.Poisson(), counts, None, {}),
        "negbinomial": (F.NegativeBinomial(), counts, None, {"alpha": 2.3}),
    }


CASES = _cases()


def _grid(name, which):
    eta = ETA[which]
    if name in ("poisson", "negbinomial") and which == "extreme":
        eta = np.linspace(-30, 20, 29)
    return eta


@pytest.mark.parametrize("name", sorted(CASES))
def test_log_density_equals_logpdf(name):
    family, y, trials, params = CASES[name]
    eta = _grid(name, "moderate")
    n = eta.size
    tr = None if trials is None else trials[:n]
    l = family.eta_derivatives(y[:n], eta, params, tr)[0]
    np.testing.assert_allclose(l, family.logpdf(y[:n], eta, params, tr), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("which", sorted(ETA))
@pytest.mark.parametrize("name", sorted(CASES))
def test_eta_derivatives_match_central_differences(name, which):
    family, y, trials, params = CASES[name]
    eta = _grid(name, which)
    n = eta.size
    y, tr = y[:n], None if trials is None else trials[:n]
    out = family.eta_derivatives(y, eta, params, tr)
    assert all(np.all(np.isfinite(v)) for v in out)
    up = family.eta_derivatives(y, eta + H, params, tr)
    down = family.eta_derivatives(y, eta - H, params, tr)
    for k in range(3):
        fd = (up[k] - down[k]) / (2 * H)
        scale = np.maximum(1.0, np.abs(out[k]))
        # central differences of a value near |l| ~ 1e3 carry ~1e-8 rounding
        assert np.max(np.abs(fd - out[k + 1]) / scale) < (1e-6 if which == "moderate" else 1e-4), k


@pytest.mark.parametrize("alpha", [0.3, 2.3, 40.0])
@pytest.mark.parametrize("which", sorted(ETA))
def test_negbinomial_alpha_derivatives_match_central_differences(alpha, which):
    family, y, _, _ = CASES["negbinomial"]
    eta = _grid("negbinomial", which)
    y = y[: eta.size]
    d = family.param_derivatives(y, eta, {"alpha": alpha})["alpha"]
    h = 1e-6 * alpha
    up = family.eta_derivatives(y, eta, {"alpha": alpha + h})
    down = family.eta_derivatives(y, eta, {"alpha": alpha - h})
    for k in range(3):
        fd = (up[k] - down[k]) / (2 * h)
        assert np.max(np.abs(fd - d[k]) / np.maximum(1.0, np.abs(d[k]))) < 1e-5, k


def test_families_without_a_parameter_have_no_parameter_derivatives():
    for name in ("bernoulli logit", "binomial probit", "poisson"):
        family, y, trials, params = CASES[name]
        assert family.param_derivatives(y, np.zeros(y.size), params, trials) == {}


def test_bernoulli_is_binomial_with_one_trial():
    y = np.array([0.0, 1.0, 1.0])
    eta = np.array([-2.0, 0.1, 4.0])
    for link in ("logit", "probit"):
        a = F.Bernoulli(link=link).eta_derivatives(y, eta, {})
        b = F.Binomial(link=link).eta_derivatives(y, eta, {}, np.ones(3))
        for u, v in zip(a, b):
            np.testing.assert_allclose(u, v, rtol=1e-14)


def test_gaussian_family_says_it_has_no_eta_derivatives():
    with pytest.raises(NotImplementedError, match="marginal GLMM likelihood covers bernoulli"):
        F.Gaussian().eta_derivatives(np.zeros(2), np.zeros(2), {"sigma": 1.0})
