"""The pointwise / per-cluster log-likelihood against dense scipy references at fixed draws
(no sampling: a posterior is written by hand, so every value is known exactly)."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import hierbayes as hb
from hierbayes.criticism import loglik
from hierbayes.fit import Fit

CORR = {"ar1": hb.AR1("t", "g"), "car1": hb.CAR1("t", "g"), None: None}
NC, ND = 2, 3


def _posterior(model, rng, corr):
    """Random draws of every parameter, with the names and dims a fit would have."""
    d = model.design
    g = d.groups[0]
    q = g.q
    tdim = f"{g.name}__term"
    cd = {"chain": np.arange(NC), "draw": np.arange(ND)}
    post = {
        "beta": xr.DataArray(rng.normal(size=(NC, ND, d.p)), dims=["chain", "draw", "coef"],
                             coords={**cd, "coef": list(d.fixed_names)}),
        "sigma": xr.DataArray(rng.uniform(0.5, 2.0, size=(NC, ND)), dims=["chain", "draw"], coords=cd),
        f"sd_{g.name}": xr.DataArray(rng.uniform(0.3, 1.5, size=(NC, ND, q)),
                                      dims=["chain", "draw", tdim], coords={**cd, tdim: list(g.terms)}),
        f"b_{g.name}": xr.DataArray(rng.normal(size=(NC, ND, g.n_levels, q)),
                                     dims=["chain", "draw", g.name, tdim],
                                     coords={**cd, g.name: list(g.levels), tdim: list(g.terms)}),
    }
    if q > 1:
        R = np.empty((NC, ND, q, q))
        for i in np.ndindex(NC, ND):
            A = rng.normal(size=(q, q))
            C = A @ A.T + q * np.eye(q)
            s = np.sqrt(np.diag(C))
            R[i] = C / s[:, None] / s[None, :]
        post[f"corr_{g.name}"] = xr.DataArray(
            R, dims=["chain", "draw", tdim, tdim + "_bis"],
            coords={**cd, tdim: list(g.terms), tdim + "_bis": list(g.terms)})
    if corr is not None:
        lo = -0.9 if corr == "ar1" else 0.05
        post["phi"] = xr.DataArray(rng.uniform(lo, 0.9, size=(NC, ND)), dims=["chain", "draw"], coords=cd)
    return az.InferenceData(posterior=xr.Dataset(post))


def _fit(df, formula, corr, backend, seed):
    model = hb.Model(formula, df, correlation=CORR[corr], backend=backend)
    idata = _posterior(model, np.random.default_rng(seed), corr)
    return Fit(idata, model.design, model.priors, model.backend, model.layout, None)


def _draw(fit, name, c, d):
    return fit.idata.posterior[name].values[c, d]


def _S(fit, c, d):
    post = fit.idata.posterior
    sd = post["sd_g"].values[c, d]
    R = post["corr_g"].values[c, d] if "corr_g" in post else np.eye(sd.size)
    return sd[:, None] * R * sd[None, :]


def _mu(fit, df, fixed, re, c, d):
    """x_i beta + z_i b_{g_i} for every user row, computed from the DataFrame."""
    from tests.conftest import columns

    b = fit.idata.posterior["b_g"].sel(chain=c, draw=d).to_pandas()
    X, Z = columns(df, fixed), columns(df, re)
    return pd.Series(X @ _draw(fit, "beta", c, d) + (Z * b.loc[df["g"].astype(str)].to_numpy()).sum(1),
                     index=df.index)


CASES = [
    ("y ~ x + w + (1 | g)", ["1", "x", "w"], ["1"]),
    ("y ~ x + (1 + x | g)", ["1", "x"], ["1", "x"]),
    ("y ~ 0 + x + (1 + x + w | g)", ["x"], ["1", "x", "w"]),
]


@pytest.mark.parametrize("corr", [None, "ar1", "car1"])
@pytest.mark.parametrize("case", range(3))
def test_marginal_per_cluster_equals_dense_mvn(ref, corr, case):
    formula, fixed, re = CASES[case]
    rng = np.random.default_rng(10 * case + len(str(corr)))
    df = ref.random_frame(rng, n_clusters=6, max_size=5, times=corr or "ar1")
    fit = _fit(df, formula, corr, "marginal", seed=case)
    ll = fit.log_likelihood()["y"]
    assert ll.dims == ("chain", "draw", "g")
    assert "log_likelihood" in fit.idata.groups()
    for c, d in [(0, 0), (1, 2)]:
        phi = _draw(fit, "phi", c, d) if corr else None
        for lab, part in ref.clusters(df):
            want = ref.dense_marginal_loglik(part, fixed, re, _draw(fit, "beta", c, d),
                                             _draw(fit, "sigma", c, d), phi, _S(fit, c, d), corr)
            got = float(ll.sel(chain=c, draw=d, g=lab))
            assert got == pytest.approx(want, abs=1e-8 * max(1, abs(want)))


@pytest.mark.parametrize("corr", ["ar1", "car1"])
def test_latent_correlated_residuals_per_cluster(ref, corr):
    formula, fixed, re = CASES[1]
    df = ref.random_frame(np.random.default_rng(7), n_clusters=5, max_size=6, times=corr)
    fit = _fit(df, formula, corr, "latent", seed=3)
    ll = fit.log_likelihood()["y"]
    assert ll.dims == ("chain", "draw", "g")
    for c, d in [(0, 1), (1, 0)]:
        mu = _mu(fit, df, fixed, re, c, d)
        for lab, part in ref.clusters(df):
            want = ref.dense_conditional_loglik(part, mu, _draw(fit, "sigma", c, d),
                                                _draw(fit, "phi", c, d), corr)
            assert float(ll.sel(chain=c, draw=d, g=lab)) == pytest.approx(want, abs=1e-9)


def test_latent_independent_residuals_pointwise_in_user_row_order(ref):
    formula, fixed, re = CASES[1]
    df = ref.random_frame(np.random.default_rng(11), n_clusters=5, max_size=4)
    df.loc[df.index[2], "x"] = np.nan  # a dropped row: obs coordinates skip it
    with pytest.warns(UserWarning, match="dropped 1 of"):
        fit = _fit(df, formula, None, "latent", seed=5)
    ll = fit.log_likelihood()["y"]
    assert ll.dims == ("chain", "draw", "obs")
    kept = df.dropna()
    positions = [df.index.get_loc(i) for i in kept.index]
    np.testing.assert_array_equal(ll["obs"].values, positions)
    for c, d in [(0, 0), (1, 2)]:
        mu = _mu(fit, kept, fixed, re, c, d)
        want = stats.norm.logpdf(kept["y"], mu, _draw(fit, "sigma", c, d))
        np.testing.assert_allclose(ll.sel(chain=c, draw=d).values, want, rtol=0, atol=1e-10)


def test_unit_names():
    data = hb.datasets.load("clark_ar1")
    m = hb.Model("y ~ time + (1 | id)", data)
    assert loglik.unit(m.design, "marginal") == "id"
    assert loglik.unit(m.design, "latent") == "obs"
    m = hb.Model("y ~ time + (1 | id)", data, correlation=hb.AR1("time", "id"), backend="latent")
    assert loglik.unit(m.design, m.backend) == "id"
