"""A formula for the residual sd (``sigma="~ Sex"``, nlme's varIdent / varExp / varPower):
spelling and errors, the collapsed and latent log-densities against the dense multivariate
normal (with and without AR(1)), recovery of the effects, and downstream uses."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hierbayes as hb
from hierbayes import names
from hierbayes.likelihood import collapsed
from hierbayes.spec.correlation import PhiSignWarning


def _data(seed=0, n_clusters=9, unbalanced=True):
    """Random unbalanced clusters with gaps in time, a two-level factor and a slope."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_clusters):
        k = int(rng.integers(1, 6)) if unbalanced else 4
        times = np.sort(rng.choice(8, size=k, replace=False))
        for t in times:
            rows.append({"g": f"c{c}", "t": float(t), "x": rng.normal(),
                         "sex": "F" if c % 2 else "M"})
    df = pd.DataFrame(rows)
    df["y"] = rng.normal(size=len(df)) * np.where(df.sex == "M", 2.0, 0.7) + df.x
    return df


def _dense_loglik(m, beta, beta_sigma, S, phi):
    """log N(y; X beta, Z S Z^T (block) + D R(phi) D) on the dense covariance."""
    d = m.design
    g = d.groups[0]
    sd = d.dpars["sigma"].rows(beta_sigma)[0]
    V = np.zeros((d.n, d.n))
    same = g.index[:, None] == g.index[None, :]
    V += same * (g.Z @ S @ g.Z.T)
    if phi is None:
        R = np.eye(d.n)
    else:
        R = same * phi ** np.abs(d.time[:, None] - d.time[None, :])
    V += sd[:, None] * R * sd[None, :]
    return stats.multivariate_normal(d.X @ beta, V).logpdf(d.y)


@pytest.mark.parametrize("ar", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collapsed_row_sigma_matches_dense_normal(ar, seed):
    df = _data(seed)
    corr = hb.AR1(time="t", group="g") if ar else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhiSignWarning)
        m = hb.Model("y ~ x + (1 + x | g)", df, sigma="~ sex + x", correlation=corr)
    assert m.backend == "marginal" and m.layout == "padded"
    rng = np.random.default_rng(seed + 10)
    cd = collapsed.prepare(m.design)
    for _ in range(3):
        beta = rng.normal(size=m.design.p)
        bs = rng.normal(scale=0.5, size=len(m.design.dpars["sigma"].names))
        A = rng.normal(size=(2, 2))
        S = A @ A.T + 0.3 * np.eye(2)
        phi = float(rng.uniform(-0.9, 0.9)) if ar else None
        got = collapsed.loglik(np, cd, beta, None, phi, S, beta_sigma=bs)
        want = _dense_loglik(m, beta, bs, S, phi)
        assert abs(got - want) < 1e-8


def _compiled(model, outputs):
    pm_model = model.build()
    outs = pm_model.replace_rvs_by_values(outputs(pm_model))  # at the given values, no draws
    fn = pm_model.compile_fn(outs, inputs=pm_model.value_vars, on_unused_input="ignore")
    return pm_model, fn


def _random_point(pm_model, rng):
    return {v.name: rng.normal(scale=0.5, size=pm_model.initial_point()[v.name].shape)
            for v in pm_model.value_vars}


@pytest.mark.parametrize("backend", ["marginal", "latent"])
def test_backend_graph_matches_dense_normal(backend):
    """The PyMC graphs (the marginal potential; the latent whitened potential given b) are
    the dense normal density at random points."""
    df = _data(3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhiSignWarning)
        m = hb.Model("y ~ x + (1 | g)", df, sigma="~ sex", backend=backend,
                     correlation=hb.AR1(time="t", group="g"))
    def outputs(pmm):
        return [pmm["loglik"], pmm["beta"], pmm[names.dpar_coef("sigma")], pmm["phi"],
                pmm[names.sd("g")]] + ([pmm[names.effects("g")]] if backend == "latent" else [])
    pmm, fn = _compiled(m, outputs)
    rng = np.random.default_rng(4)
    d = m.design
    for _ in range(3):
        out = fn(_random_point(pmm, rng))
        ll, beta, bs, phi, sd = out[:5]
        if backend == "marginal":
            want = _dense_loglik(m, beta, bs, np.diag(sd**2), float(phi))
        else:
            b = out[5]
            mu = d.X @ beta + (d.groups[0].Z * b[d.groups[0].index]).sum(axis=1)
            s = d.dpars["sigma"].rows(bs)[0]
            same = d.cluster[:, None] == d.cluster[None, :]
            V = s[:, None] * (same * float(phi) ** np.abs(d.time[:, None] - d.time[None, :])) * s[None, :]
            want = stats.multivariate_normal(mu, V).logpdf(d.y)
        assert abs(float(ll) - want) < 1e-8


def test_latent_student_row_sigma():
    df = _data(5)
    m = hb.Model("y ~ x + (1 | g)", df, family="student", sigma="~ sex")
    pmm, fn = _compiled(m, lambda p: [p.logp(vars=[p["y"]], sum=True), p["beta"],
                                      p[names.dpar_coef("sigma")], p["nu"], p[names.effects("g")]])
    d = m.design
    out = fn(_random_point(pmm, np.random.default_rng(0)))
    ll, beta, bs, nu, b = out
    mu = d.X @ beta + b[d.groups[0].index, 0]
    want = stats.t.logpdf(d.y, nu, mu, d.dpars["sigma"].rows(bs)[0]).sum()
    assert abs(float(ll) - want) < 1e-8


# ------------------------------------------------------------------- spelling and errors


def test_spelling_priors_and_errors():
    df = _data(0)
    m = hb.Model("y ~ x + (1 | g)", df, sigma="~ sex")
    key = names.dpar_prior_key("sigma", "sex[M]")
    assert m.spec.dpars == {"sigma": "sex"}
    assert "sigma" not in m.priors and key in m.priors and "sigma_Intercept" in m.priors
    assert m.priors["sigma_Intercept"].params["mu"] == pytest.approx(np.log(np.std(df.y)))
    m2 = hb.Model("y ~ x + (1 | g)", df, sigma="~ sex",
                  priors={"beta_sigma": hb.Prior("Normal", mu=0, sigma=0.5)})
    assert m2.priors[key] == hb.Prior("Normal", mu=0, sigma=0.5)
    with pytest.raises(ValueError, match="group terms"):
        hb.Model("y ~ x + (1 | g)", df, sigma="~ sex + (1 | g)")
    df["k"] = (df.y > 0).astype(int)
    with pytest.raises(ValueError, match="bernoulli family has no parameter 'sigma'"):
        hb.Model("k ~ x + (1 | g)", df, family="bernoulli", sigma="~ sex")
    with pytest.raises(TypeError):
        hb.Model("y ~ x + (1 | g)", df, sigmaa="~ sex")
    # no formula: the scalar model, with the same key as before
    a = hb.Model("y ~ x + (1 | g)", df)
    assert "sigma" in a.priors and a.design.dpars == {}
    assert a.structure_key() != m.structure_key()


def test_missing_values_in_sigma_columns_are_dropped_and_counted():
    df = _data(0)
    df.loc[[0, 3], "sex"] = None
    with pytest.warns(UserWarning, match="dropped 2 of"):
        m = hb.Model("y ~ x + (1 | g)", df, sigma="~ sex")
    assert m.design.n == len(df) - 2 and m.design.dpars["sigma"].X.shape[0] == m.design.n


def test_varpower_spelling():
    df = _data(0)
    df["w"] = np.abs(df.x) + 0.1
    m = hb.Model("y ~ x + (1 | g)", df, sigma="~ np.log(np.abs(w))")
    blk = m.design.dpars["sigma"]
    assert blk.names == ("Intercept", "np.log(np.abs(w))")
    order = m.design.rows
    np.testing.assert_allclose(blk.X[:, 1], np.log(df.w.to_numpy()[order]))
    df.loc[0, "w"] = 0.0
    with pytest.raises(ValueError, match="not finite in 1 row"):
        hb.Model("y ~ x + (1 | g)", df, sigma="~ np.log(np.abs(w))")


def test_native_declines_with_reason():
    from hierbayes.sampling import nuts

    m = hb.Model("y ~ x + (1 | g)", _data(0), sigma="~ sex")
    dec = nuts.decide_native(m.design, m.priors, m.backend, nuts.SamplerOptions())
    assert not dec.use and "sigma" in dec.reason


# ------------------------------------------------------------- a fit, end to end


def _orthodont_like(seed=0, sd_m=2.0, sd_f=0.7):
    """27 subjects x 4 ages, 16 boys, 11 girls; the residual sd differs by sex."""
    rng = np.random.default_rng(seed)
    sub = np.repeat(np.arange(27), 4)
    df = pd.DataFrame({"Subject": [f"S{i:02d}" for i in sub], "age": np.tile([8.0, 10, 12, 14], 27)})
    df["Sex"] = pd.Categorical(np.where(sub < 16, "Male", "Female"), categories=["Male", "Female"])
    fam = hb.families.get("gaussian")
    sd = np.where(df.Sex == "Male", sd_m, sd_f)
    eta = 17.0 + 0.66 * df.age.to_numpy() - 1.0 * (df.Sex == "Female") + rng.normal(0, 1.8, 27)[sub]
    df["distance"] = fam.draw(rng, eta, {"sigma": sd})
    return df


@pytest.fixture(scope="module")
def sigma_fit():
    df = _orthodont_like(0)
    m = hb.Model("distance ~ age + Sex + (1 | Subject)", df, sigma="~ Sex")
    return m, m.fit(draws=300, tune=300, chains=2, seed=1, progressbar=False)


def test_fit_recovers_sd_ratio_and_reports_it(sigma_fit):
    m, fit = sigma_fit
    assert m.backend == "marginal"
    assert "sigma" in fit.timing["native_reason"]
    post = fit.idata.posterior
    bs = post[names.dpar_coef("sigma")]
    assert list(bs[names.dpar_dim("sigma")].values) == ["Intercept", "Sex[Female]"]
    log_ratio = float(bs.sel({names.dpar_dim("sigma"): "Sex[Female]"}).mean())
    assert abs(log_ratio - np.log(0.7 / 2.0)) < 0.5  # true -1.05; posterior sd ~0.2
    table = fit.summary().table
    print(fit.summary())
    assert "sigma_Intercept" in table.index and "sigma_Sex[Female]" in table.index
    assert "sigma (residual sd)" not in table.index
    assert names.effects("Subject") in post  # recovered with the row sds


def test_downstream_uses_row_sigma(sigma_fit, tmp_path):
    m, fit = sigma_fit
    from hierbayes.criticism.loglik import log_likelihood
    from hierbayes.predict.predictive import posterior_predictive

    ll = log_likelihood(fit)["y"]
    assert ll.dims[-1] == "Subject" and np.all(np.isfinite(ll.values))
    y_rep = posterior_predictive(fit.idata, fit.design, n_draws=200)
    male = np.asarray(fit.design.dpars["sigma"].X[:, 1] == 0)
    mu = y_rep.mean(axis=0)
    assert (y_rep - mu)[:, male].std() > 1.8 * (y_rep - mu)[:, ~male].std()
    new = pd.DataFrame({"age": [16.0, 16.0], "Sex": pd.Categorical(["Male", "Female"], categories=["Male", "Female"])})
    pred = fit.predict(new, groups="none", kind="response", seed=0)
    assert pred.table["sd"].iloc[0] > pred.table["sd"].iloc[1]
    pp = m.sample_prior_predictive(draws=50, seed=1)
    assert np.all(np.isfinite(pp.y))
    from hierbayes.report.residuals import within_group_residuals

    r = within_group_residuals(fit.idata, fit.design)
    assert abs(r[male].std() - r[~male].std()) < 0.4  # each row by its own sd
    path = tmp_path / "fit.nc"
    fit.save(path)
    back = hb.load(path)
    assert back.design.spec.dpars == {"sigma": "Sex"}
    assert back.design.dpars["sigma"].names == fit.design.dpars["sigma"].names


def test_simulate_takes_beta_sigma():
    df = _orthodont_like(1)
    m = hb.Model("distance ~ age + (1 | Subject)", df, sigma="~ Sex")
    sim = hb.simulate(m, df, {"beta": {"Intercept": 17, "age": 0.6}, "sd_Subject": [1e-9],
                              "beta_sigma": {"Intercept": np.log(2.0), "Sex[Female]": np.log(0.25)}},
                      seed=3)
    resid = sim.distance - 17 - 0.6 * df.age
    assert resid[df.Sex == "Male"].std() == pytest.approx(2.0, rel=0.25)
    assert resid[df.Sex == "Female"].std() == pytest.approx(0.5, rel=0.25)
    with pytest.raises(KeyError, match="beta_sigma"):
        hb.simulate(m, df, {"beta": {}, "sd_Subject": [1.0], "sigma": 1.0})


def _varident_model():
    df = _orthodont_like(2)
    priors = {"Intercept": hb.Prior("Normal", mu=20, sigma=3), "beta": hb.Prior("Normal", mu=0, sigma=1),
              "sigma_Intercept": hb.Prior("Normal", mu=0.3, sigma=0.4),
              "beta_sigma": hb.Prior("Normal", mu=0, sigma=0.5),
              "sd_Subject": hb.Prior("HalfNormal", sigma=2.0)}
    return hb.Model("distance ~ age + Sex + (1 | Subject)", df, sigma="~ Sex", priors=priors)


def test_sbc_mechanics_with_sigma_formula():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        res = hb.sbc(_varident_model(), 2, executor=ex, seed=5, n_ranks=19, draws=20, tune=100)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert {"sigma_Intercept", "sigma_Sex[Female]"} <= set(res.ranks.columns)


@pytest.mark.slow
def test_sbc_varident_calibrated():
    res = hb.sbc(_varident_model(), 40, seed=11, n_ranks=49, draws=250, tune=400, max_workers=2)
    assert res.fits.error.isna().all()
    test = res.uniformity(bins=5)
    assert (test.p_value > 0.001).all(), test


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["marginal", "latent"])
def test_recovery_orthodont_like_over_seeds(backend):
    """The female/male sd ratio (true 0.35) is recovered: the truth within 2.5 posterior sds."""
    for seed in range(4):
        df = _orthodont_like(10 + seed)
        fit = hb.Model("distance ~ age + Sex + (1 | Subject)", df, sigma="~ Sex",
                       backend=backend).fit(draws=500, tune=500, chains=2, seed=seed, progressbar=False)
        d = fit.idata.posterior[names.dpar_coef("sigma")].sel({names.dpar_dim("sigma"): "Sex[Female]"})
        assert abs(float(d.mean()) - np.log(0.35)) < 2.5 * float(d.std())


def test_model_file_sigma_key_and_repr(tmp_path):
    from hierbayes.io.modelfile import read

    df = _data(0)
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "m.toml").write_text('formula = "y ~ x + (1 | g)"\ndata = "d.csv"\nsigma = "~ sex"\n')
    m = read(tmp_path / "m.toml").model()
    assert m.spec.dpars == {"sigma": "sex"} and m.inputs["sigma"] == "~ sex"
    assert "sigma: ~ sex (log link, coefficients beta_sigma)" in repr(m)


def test_latent_ar_fit_loglik_and_forecast():
    """Latent AR(1) fit with a sigma formula: the per-cluster log-lik equals the dense
    conditional normal at a draw, and forecasts of fitted clusters use u = e / sigma."""
    from hierbayes.criticism.loglik import log_likelihood

    df = _data(7, n_clusters=8, unbalanced=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PhiSignWarning)
        m = hb.Model("y ~ x + (1 | g)", df, sigma="~ sex", backend="latent",
                     correlation=hb.CAR1(time="t", group="g"))
    fit = m.fit(draws=60, tune=150, chains=1, seed=2, progressbar=False)
    ll = log_likelihood(fit)["y"].values.reshape(-1, len(m.design.cluster_levels))
    post = fit.idata.posterior.isel(chain=0, draw=5)
    d = m.design
    mu = d.X @ post["beta"].values + post[names.effects("g")].values[d.groups[0].index, 0]
    s = d.dpars["sigma"].rows(post[names.dpar_coef("sigma")].values)[0]
    phi = float(post["phi"])
    for c in range(3):
        rows = np.flatnonzero(d.cluster == c)
        R = phi ** np.abs(d.time[rows][:, None] - d.time[rows][None, :])
        want = stats.multivariate_normal(mu[rows], s[rows, None] * R * s[None, rows]).logpdf(d.y[rows])
        assert abs(ll[5, c] - want) < 1e-8
    new = pd.DataFrame({"g": ["c0", "c1"], "t": [8.0, 8.0], "x": [0.0, 0.0], "sex": ["M", "F"]})
    pred = fit.predict(new, kind="response", seed=0)
    assert np.all(np.isfinite(pred.table["mean"])) and pred.table["sd"].iloc[0] > pred.table["sd"].iloc[1]
