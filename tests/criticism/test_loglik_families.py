"""Pointwise log-likelihood for the non-Gaussian families and for hybrid (several factor)
models, against scipy at hand-written posterior draws (no sampling)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import hierbayes as hb
from hierbayes.fit import Fit

NC, ND = 2, 3


def _posterior(design, rng, extra):
    cd = {"chain": np.arange(NC), "draw": np.arange(ND)}
    post = {"beta": xr.DataArray(rng.normal(0, 0.5, (NC, ND, design.p)), dims=["chain", "draw", "coef"],
                                 coords={**cd, "coef": list(design.fixed_names)})}
    for g in design.groups:
        tdim = f"{g.name}__term"
        post[f"sd_{g.name}"] = xr.DataArray(rng.uniform(0.3, 1.5, (NC, ND, g.q)), dims=["chain", "draw", tdim],
                                            coords={**cd, tdim: list(g.terms)})
        post[f"b_{g.name}"] = xr.DataArray(rng.normal(0, 0.5, (NC, ND, g.n_levels, g.q)),
                                           dims=["chain", "draw", g.name, tdim],
                                           coords={**cd, g.name: list(g.levels), tdim: list(g.terms)})
    for k in extra:
        post[k] = xr.DataArray(rng.uniform(0.5, 3.0, (NC, ND)), dims=["chain", "draw"], coords=cd)
    return az.InferenceData(posterior=xr.Dataset(post))


def _frame(seed, n=40):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g": rng.choice(list("abcde"), n), "h": rng.choice(list("uvw"), n),
                       "x": rng.normal(size=n)})
    return df, rng


def _eta(fit, df, c, d, groups=("g",)):
    post = fit.idata.posterior
    beta = post["beta"].values[c, d]
    eta = beta[0] + beta[1] * df["x"].to_numpy()
    for g in groups:
        b = post[f"b_{g}"].sel(chain=c, draw=d).to_pandas()["Intercept"]
        eta = eta + b.loc[df[g]].to_numpy()
    return eta


@pytest.mark.parametrize("family", ["poisson", "negbinomial", "bernoulli", "binomial", "student"])
def test_pointwise_family_density_equals_scipy(family):
    df, rng = _frame(1)
    df["n"] = rng.integers(1, 6, len(df))
    df["y"] = {"poisson": rng.poisson(2, len(df)), "negbinomial": rng.poisson(2, len(df)),
               "bernoulli": rng.integers(0, 2, len(df)), "binomial": rng.binomial(df["n"], 0.5),
               "student": rng.normal(size=len(df))}[family]
    lhs = "y | trials(n)" if family == "binomial" else "y"
    m = hb.Model(f"{lhs} ~ x + (1 | g)", df, family=family, backend="latent")
    fit = Fit(_posterior(m.design, rng, m.spec.family.extra_params), m.design, m.priors,
              m.backend, m.layout, None)
    ll = fit.log_likelihood()["y"]
    assert ll.dims == ("chain", "draw", "obs")
    post = fit.idata.posterior
    for c, d in [(0, 0), (1, 2)]:
        eta, y = _eta(fit, df, c, d), df["y"].to_numpy()
        p = {k: float(post[k].values[c, d]) for k in m.spec.family.extra_params}
        want = {
            "poisson": lambda: stats.poisson.logpmf(y, np.exp(eta)),
            "negbinomial": lambda: stats.nbinom.logpmf(y, p["alpha"], p["alpha"] / (p["alpha"] + np.exp(eta))),
            "bernoulli": lambda: stats.bernoulli.logpmf(y, 1 / (1 + np.exp(-eta))),
            "binomial": lambda: stats.binom.logpmf(y, df["n"], 1 / (1 + np.exp(-eta))),
            "student": lambda: stats.t.logpdf(y, p["nu"], eta, p["sigma"]),
        }[family]()
        np.testing.assert_allclose(ll.sel(chain=c, draw=d).values, want, rtol=1e-10, atol=1e-12)


def test_hybrid_per_cluster_is_collapsed_density_given_latent_factor(ref):
    df, rng = _frame(2, n=45)
    df["y"] = rng.normal(size=len(df))
    m = hb.Model("y ~ x + (1 | g) + (1 | h)", df)
    assert m.backend == "marginal"
    fit = Fit(_posterior(m.design, rng, ["sigma"]), m.design, m.priors, m.backend, m.layout, None)
    ll = fit.log_likelihood()["y"]
    assert ll.dims == ("chain", "draw", "g")
    post = fit.idata.posterior
    for c, d in [(0, 1), (1, 0)]:
        b_h = post["b_h"].sel(chain=c, draw=d).to_pandas()["Intercept"]
        beta, sigma = post["beta"].values[c, d], float(post["sigma"].values[c, d])
        S = np.array([[post["sd_g"].values[c, d, 0] ** 2]])
        for lab, part in df.groupby("g"):
            X = np.column_stack([np.ones(len(part)), part["x"]])
            r = part["y"].to_numpy() - b_h.loc[part["h"]].to_numpy()
            want = stats.multivariate_normal.logpdf(
                r, X @ beta, np.ones((len(part), len(part))) * S[0, 0] + sigma**2 * np.eye(len(part))
            )
            assert float(ll.sel(chain=c, draw=d, g=lab)) == pytest.approx(want, abs=1e-9)


def test_latent_ar_non_gaussian_loglik_is_a_clear_error():
    df, rng = _frame(3)
    df["t"] = df.groupby("g").cumcount()
    df["y"] = rng.poisson(2, len(df))
    m = hb.Model("y ~ x + (1 | g)", df, family="poisson", correlation=hb.AR1("t", "g"))
    fit = Fit(_posterior(m.design, rng, ["phi", "sd_ar"]), m.design, m.priors, m.backend, m.layout, None)
    with pytest.raises(ValueError, match="poisson model with a latent AR1 process is not available"):
        fit.log_likelihood()
