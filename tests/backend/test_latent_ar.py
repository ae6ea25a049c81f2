"""AR(1) for non-Gaussian families: a latent AR(1) process on the linear-predictor scale."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb


def _poisson_ar(rng, C=40, T=10, phi=0.7, sd_ar=0.6):
    times = np.arange(T, dtype=float)
    u = np.zeros((C, T))
    u[:, 0] = rng.normal(0, sd_ar, C)
    for k in range(1, T):
        u[:, k] = phi * u[:, k - 1] + np.sqrt(1 - phi**2) * sd_ar * rng.normal(size=C)
    x = rng.normal(size=(C, T))
    eta = 0.8 + 0.4 * x + rng.normal(0, 0.3, C)[:, None] + u
    df = pd.DataFrame({"id": np.repeat(np.arange(C), T), "time": np.tile(times, C),
                       "x": x.ravel(), "y": rng.poisson(np.exp(eta)).ravel()})
    return df.sample(frac=1.0, random_state=1)


def test_latent_ar_process_matches_its_covariance(fast_mode):
    """The non-centred recursion has the AR(1) covariance sd^2 phi^|t_i - t_j| within
    clusters, with gaps in time: check u = A z exactly through the graph's Jacobian."""
    df = pd.DataFrame({"id": [0, 0, 0, 0, 1, 1], "time": [0, 1, 3, 4, 2, 5],
                       "x": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "y": [1, 0, 2, 3, 1, 0]})
    m = hb.Model("y ~ x + (1 | id)", df, family="poisson", correlation=hb.AR1("time", "id"))
    model = m.build()
    assert m.priors["sd_ar"].dist == "HalfStudentT" and "z_ar" in model.named_vars
    # the latent process enters the Poisson rate: d log(rate) / d z_ar is its factor A
    import pytensor
    import pytensor.tensor as pt

    rate = model["y"].owner.inputs[-1]
    (log_rate,) = model.replace_rvs_by_values([pt.log(rate)])
    z_ar = model.rvs_to_values[model["z_ar"]]
    f = pytensor.function(model.value_vars, log_rate, mode=fast_mode)
    phi, sd = 0.6, 0.8
    point = model.initial_point()
    point["phi_interval__"] = np.log((1 + phi) / (1 - phi))
    point["sd_ar_log__"] = np.log(sd)

    def at(z):
        return f(*[z if v is z_ar else point[v.name] for v in model.value_vars])

    base = at(np.zeros(len(df)))
    A = np.column_stack([at(np.eye(len(df))[j]) - base for j in range(len(df))])
    t = m.design.time
    same = m.design.cluster[:, None] == m.design.cluster[None, :]
    expected = np.where(same, sd**2 * phi ** np.abs(t[:, None] - t[None, :]), 0.0)
    np.testing.assert_allclose(A @ A.T, expected, atol=1e-12)


def test_poisson_ar1_recovers_phi():
    df = _poisson_ar(np.random.default_rng(7))
    m = hb.Model("y ~ x + (1 | id)", df, family="poisson", correlation=hb.AR1("time", "id"))
    assert m.backend == "latent"
    fit = m.fit(draws=250, tune=400, chains=2, seed=1, progressbar=False)
    for name, true in [("phi", 0.7), ("sd_ar", 0.6)]:
        lo, hi = np.quantile(fit.posterior[name].values, [0.005, 0.995])
        assert lo < true < hi, (name, lo, hi)
    assert float(fit.posterior["phi"].mean()) > 0.4  # the data shows the correlation
    table = fit.summary().table
    assert {"phi (AR(1) correlation)", "sd of the latent AR process"} <= set(table.index)
    rep = fit.posterior_predictive(n_draws=10)
    assert rep.shape == (10, len(df)) and rep.min() >= 0 and np.all(rep == np.round(rep))
