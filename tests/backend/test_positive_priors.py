"""Priors on positive parameters (issue 15 item 3): a prior on the whole line for an sd,
sigma, nu, alpha or sd_ar is truncated at 0, as brms does, on every backend.

``sd_g ~ Normal(0, 1)`` on a Gaussian model sampled sd < 0 half of the time on the
marginal backend (one chain positive, one negative, R-hat 1.83) and sd > 0 on the latent
one. Now it is ``Normal(0, 1)`` truncated at 0 (built as PyMC's ``HalfNormal(1)``;
``pm.Truncated`` where the mean is not 0) everywhere: in the marginal, latent and hybrid
models, the native kernel (tests/backend/test_native.py), the prior model and the
log-prior of the sensitivity analysis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes.backend import prior as prior_mod
from hierbayes.criticism.logprior import prior_logpdf


def _frame(seed=0, n=12, size=5):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g": np.repeat([f"c{k}" for k in range(n)], size),
                       "h": np.tile(["a", "b", "c", "d", "e"][:size], n),
                       "t": np.tile(np.arange(size), n).astype(float),
                       "x": rng.normal(size=n * size)})
    u = rng.normal(0, 0.8, n)[np.repeat(np.arange(n), size)]
    df["y"] = 1.0 + 0.5 * df["x"] + u + rng.normal(size=len(df))
    df["k"] = rng.poisson(np.exp(0.3 + 0.2 * df["x"]))
    return df


def _density(model, name, values):
    """The log density that ``model``'s graph puts on its variable ``name`` at ``values``
    (no Jacobian: the density of the natural parameter)."""
    rv = model[name]
    value = model.rvs_to_values[rv]
    fn = model.compile_fn(model.logp(vars=[rv], jacobian=False, sum=False)[0], inputs=[value],
                          on_unused_input="ignore", point_fn=False)
    shape = np.shape(model.initial_point()[value.name])
    # both PyMC transforms of a positive variable (log, one-sided interval) are x = log(v)
    return np.ravel(fn(np.log(np.reshape(values, shape))))


def _truncated_at_0(prior, values):
    """scipy's reference: the base density renormalised on [0, inf)."""
    d = {"Normal": lambda p: stats.norm(p.get("mu", 0.0), p["sigma"]),
         "StudentT": lambda p: stats.t(p["nu"], p.get("mu", 0.0), p["sigma"]),
         "Cauchy": lambda p: stats.cauchy(p["alpha"], p["beta"])}[prior.dist](prior.params)
    return d.logpdf(values) - d.logsf(0.0)


CASES = {  # (formula, model options, the positive parameter, its prior, values of it)
    "sd marginal": ("y ~ x + (1 | g)", {}, "sd_g", hb.Prior("Normal", mu=0, sigma=1), [0.3]),
    "sd latent": ("y ~ x + (1 | g)", {"backend": "latent"}, "sd_g",
                  hb.Prior("Normal", mu=0, sigma=1), [0.3]),
    "sd hybrid": ("y ~ x + (1 | g) + (1 | h)", {}, "sd_h",
                  hb.Prior("StudentT", nu=3, mu=0.5, sigma=1), [0.7]),
    "sigma marginal": ("y ~ x + (1 | g)", {}, "sigma", hb.Prior("Normal", mu=1, sigma=0.5), 1.2),
    "sigma latent": ("y ~ x + (1 | g)", {"backend": "latent"}, "sigma",
                     hb.Prior("Cauchy", alpha=0, beta=2), 1.2),
    "nu": ("y ~ x + (1 | g)", {"family": "student"}, "nu", hb.Prior("Normal", mu=5, sigma=10), 7.0),
    "alpha": ("k ~ x + (1 | g)", {"family": "negbinomial"}, "alpha",
              hb.Prior("StudentT", nu=4, mu=1, sigma=3), 2.5),
    "sd_ar": ("k ~ x + (1 | g)", {"family": "poisson", "correlation": hb.AR1("t", "g")}, "sd_ar",
              hb.Prior("Normal", mu=0, sigma=2), 0.4),
    "sd slopes": ("y ~ x + (1 + x | g)", {}, "sd_g",
                  hb.Prior("Normal", mu=[0.0, 1.0], sigma=[1.0, 0.5]), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_whole_line_priors_on_positive_parameters_are_truncated(case):
    formula, opts, name, prior, values = CASES[case]
    m = hb.Model(formula, _frame(), priors={name: prior}, **opts)
    got = m.priors[name]
    assert got == prior.truncated(0) and str(got).endswith(" truncated at 0")
    assert f"{name} ~ {prior} truncated at 0" in " ".join(repr(m).split())
    if values is None:
        return
    v = np.atleast_1d(np.asarray(values, float))
    sampled = _density(m.build(), name, v)
    # the truncated density (PyMC's normal log-cdf is an approximation good to ~1e-9) ...
    np.testing.assert_allclose(sampled, _truncated_at_0(prior, v), rtol=1e-7)
    # ... and one graph for it: the sampled model, the prior model, the sensitivity log-prior
    pm_prior = prior_mod.prior_model(m.design, m.priors)
    np.testing.assert_allclose(_density(pm_prior, name, v), sampled, rtol=1e-12)
    np.testing.assert_allclose(prior_logpdf(got, v, name), sampled, rtol=1e-12)


def test_the_issues_example_samples_positive_sds_on_every_backend():
    """The issue's example: sd ~ Normal(0, 1) on a Gaussian model. The marginal fit (native
    kernel), its JAX twin and the latent fit sample sd > 0 only, and agree."""
    df = _frame(n=20)
    priors = {"sd_g": hb.Prior("Normal", mu=0, sigma=1)}
    marginal = hb.Model("y ~ x + (1 | g)", df, priors=priors)
    latent = hb.Model("y ~ x + (1 | g)", df, priors=priors, backend="latent")
    kw = dict(draws=300, tune=400, chains=2, seed=2, progressbar=False)
    fits = {"native": marginal.fit(**kw), "jax": marginal.fit(compiler="jax", **kw),
            "latent": latent.fit(**kw)}
    assert fits["native"].timing["compiler"] == "native"
    means = {}
    for k, f in fits.items():
        sd = f.posterior["sd_g"].values
        assert np.all(sd > 0), k
        means[k] = sd.mean()
        per_chain = sd.mean(axis=(1, 2))
        assert np.ptp(per_chain) < 0.25, (k, per_chain)   # no chain at -sd
    assert max(means.values()) - min(means.values()) < 0.15, means
    summary = " ".join(str(fits["native"].summary()).split())
    assert "sd_g ~ Normal(mu=0, sigma=1) truncated at 0" in summary   # the summary says so


def test_uniform_with_a_negative_lower_bound_is_truncated_too():
    m = hb.Model("y ~ x + (1 | g)", _frame(), priors={"sigma": hb.Prior("Uniform", lower=-1, upper=4)})
    assert m.priors["sigma"] == hb.Prior("Uniform", lower=-1, upper=4).truncated(0)
    np.testing.assert_allclose(_density(m.build(), "sigma", 1.0), np.log(1 / 4), rtol=1e-12)


@pytest.mark.parametrize("prior", [hb.Prior("HalfNormal", sigma=1), hb.Prior("Gamma", alpha=2, beta=1),
                                   hb.Prior("Uniform", lower=0, upper=3)])
def test_positive_priors_are_kept_as_given(prior):
    m = hb.Model("y ~ x + (1 | g)", _frame(), priors={"sd_g": prior})
    assert m.priors["sd_g"] == prior and m.priors["sd_g"].truncated_at is None


def test_a_prior_that_cannot_be_truncated_is_refused_by_name():
    with pytest.raises(ValueError, match=r"'sd_g'.*SkewNormal.*positive.*HalfNormal"):
        hb.Model("y ~ x + (1 | g)", _frame(), priors={"sd_g": hb.Prior("SkewNormal", alpha=2, mu=0, sigma=1)})
