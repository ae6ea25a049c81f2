"""log_prior, the sensitivity table and prior predictive draws for non-Gaussian families and
independent (``||``) random effects: the top-level priors are the family's own."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from scipy import stats

import hierbayes as hb
from fake_fits import frame
from hierbayes.criticism.logprior import log_prior
from hierbayes.criticism.sensitivity import hyperparameters


def _counts():
    df = frame(3, n_ids=8)
    df["y"] = np.random.default_rng(3).poisson(np.exp(0.2 + 0.5 * df["x"]))
    return df


def _posterior(model, rng, extra):
    d, g = model.design, model.design.groups[0]
    post = {"beta": rng.normal(size=(2, 5, d.p)), f"sd_{g.name}": rng.uniform(0.2, 1, size=(2, 5, g.q)),
            f"b_{g.name}": rng.normal(size=(2, 5, g.n_levels, g.q)), **extra}
    tdim = f"{g.name}__term"
    return az.from_dict(posterior=post, dims={"beta": ["coef"], f"sd_{g.name}": [tdim],
                                              f"b_{g.name}": [g.name, tdim]},
                        coords={"coef": list(d.fixed_names), tdim: list(g.terms), g.name: list(g.levels)})


def test_poisson_with_independent_slopes_has_no_sigma_and_no_lkj():
    model = hb.Model("y ~ x + (1 + x || id)", _counts(), family="poisson")
    idata = _posterior(model, np.random.default_rng(0), {})
    lp = log_prior(idata, model.design, model.priors)
    assert sorted(lp.data_vars) == ["beta", "sd_id"]
    sd = idata.posterior["sd_id"].values
    p = model.priors["sd_id"]
    assert p.dist == "HalfStudentT"
    scale = np.asarray(p.params["sigma"], dtype=float)
    want = np.log(2) + stats.t.logpdf(sd, p.params["nu"], scale=scale)  # per term
    np.testing.assert_allclose(lp["sd_id"].values, want, rtol=1e-7)
    assert list(hyperparameters(idata, model.design)) == ["Intercept", "x", "sd(Intercept | id)", "sd(x | id)"]
    pp = model.sample_prior_predictive(draws=20, seed=1)
    assert np.all(pp.y >= 0) and np.all(pp.y == np.round(pp.y))
    assert "sigma" not in pp.prior and "corr_id" not in pp.prior


def test_student_t_log_prior_includes_nu():
    df = frame(4, n_ids=8)
    model = hb.Model("y ~ x + (1 | id)", df, family="student")
    rng = np.random.default_rng(1)
    nu = rng.uniform(2, 30, size=(2, 5))
    sigma = rng.uniform(0.5, 2, size=(2, 5))
    idata = _posterior(model, rng, {"nu": nu, "sigma": sigma})
    lp = log_prior(idata, model.design, model.priors)
    assert {"nu", "sigma"} <= set(lp.data_vars)
    p = model.priors["nu"]
    assert p.dist == "Gamma"
    np.testing.assert_allclose(
        lp["nu"].values, stats.gamma.logpdf(nu, p.params["alpha"], scale=1 / p.params["beta"]), rtol=1e-10
    )
    assert "nu (degrees of freedom)" in hyperparameters(idata, model.design)
