"""Exact cross-validation by refits (hb.reloo, hb.loo_kfold) through arviz-stats."""

from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.special import logsumexp

import hierbayes as hb
from hierbayes.studies import crossval


@pytest.fixture(scope="module")
def fit():
    data = hb.datasets.load("clark_ar1")
    ids = data["id"].unique()
    data = data[data["id"].isin([*ids[:15], *ids[-15:]])].reset_index(drop=True)
    m = hb.Model("y ~ time + treatment + (1 + time | id)", data,
                 correlation=hb.AR1(time="time", group="id"))
    return m.fit(draws=200, tune=200, chains=2, seed=1, progressbar=False)


def test_the_full_posterior_gives_the_fits_own_log_likelihood(fit):
    post = crossval.transfer_posterior(fit.idata.posterior, fit.design, np.random.default_rng(0))
    ll = crossval.heldout_log_likelihood(fit, post, "id")
    np.testing.assert_allclose(ll.values, fit.log_likelihood()["y"].values, rtol=1e-12)


def test_a_latent_fits_held_out_cluster_is_integrated_exactly(fit):
    """The held-out density of a cluster of a latent Gaussian fit is the dense marginal
    N(X beta, Z S Z' + sigma^2 R(phi)), whatever b the refit has."""
    latent_like = SimpleNamespace(design=fit.design, backend="latent", timing={})
    post = fit.idata.posterior.isel(chain=[0], draw=[5])
    ll = crossval.heldout_log_likelihood(latent_like, post, "id")
    d, g = fit.design, fit.design.groups[0]
    lab = d.cluster_levels[3]
    idx = np.where(d.cluster == 3)[0]
    idx = idx[np.argsort(d.time[idx])]
    draw = {k: post[k].values.reshape(post[k].shape[2:]) for k in ("beta", "sigma", "phi", "sd_id", "corr_id")}
    assert list(post["beta"]["coef"].values) == list(d.fixed_names)
    assert list(post["sd_id"][post["sd_id"].dims[-1]].values) == list(g.terms)
    S = np.diag(draw["sd_id"]) @ draw["corr_id"] @ np.diag(draw["sd_id"])
    t, Z = d.time[idx], g.Z[idx]
    V = Z @ S @ Z.T + draw["sigma"] ** 2 * draw["phi"] ** np.abs(t[:, None] - t[None, :])
    ref = stats.multivariate_normal(d.X[idx] @ draw["beta"], V).logpdf(d.y[idx])
    assert ll.sel(id=lab).item() == pytest.approx(ref, rel=1e-9)


def test_levels_the_refit_never_saw_are_drawn_from_their_prior(fit):
    post = fit.idata.posterior
    dropped = post.isel(id=slice(1, None))  # the refit never saw the first cluster
    out = crossval.transfer_posterior(dropped, fit.design, np.random.default_rng(1))
    first = fit.design.groups[0].levels[0]
    np.testing.assert_array_equal(out["b_id"].sel(id=list(fit.design.groups[0].levels[1:])).values,
                                  post["b_id"].isel(id=slice(1, None)).values)
    b = out["b_id"].sel(id=first).values.reshape(-1, 2)
    sd = post["sd_id"].values.reshape(-1, 2)
    z = b / sd  # standard normal marginally, whatever the correlation
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1


def test_reloo_refits_exactly_the_units_above_the_threshold(fit):
    k = fit.loo().pareto_k.sort_values(ascending=False)
    threshold = float(k.iloc[2])  # the two largest k are refitted
    res = hb.reloo(fit, k_threshold=threshold, draws=150, tune=150)
    assert set(res.refitted) == {str(v) for v in k.index[:2]}
    assert (res.pareto_k.loc[list(k.index[:2])] == 0).all()
    loo_i = res.elpd["loo_i"].to_series()
    assert res.elpd_loo == pytest.approx(loo_i.sum())
    untouched = fit.loo().elpd["loo_i"].to_series().drop(k.index[:2])
    np.testing.assert_allclose(loo_i.drop(k.index[:2]), untouched, atol=0.05)
    assert "2 of them refitted exactly" in repr(res)


def test_kfold_leaves_every_cluster_out_once(fit):
    cv = hb.loo_kfold(fit, k=3, seed=4, draws=150, tune=150)
    assert cv.k == 3 and sorted(cv.folds.value_counts()) == [10, 10, 10]
    assert list(cv.elpd_i.index) == [str(v) for v in fit.log_likelihood()["y"]["id"].values]
    assert cv.elpd == pytest.approx(cv.elpd_i.sum())
    psis = fit.loo()
    assert abs(cv.elpd - psis.elpd_loo) < psis.se  # the same predictive task, two estimators
    assert "3-fold cross-validation over 30 clusters of 'id'" in repr(cv)


def test_refits_need_the_model_and_say_what_to_pass(fit, tmp_path):
    fit.save(tmp_path / "f.nc")
    loaded = hb.load(tmp_path / "f.nc")
    with pytest.raises(ValueError, match="model_inputs=hb.Model"):
        hb.loo_kfold(loaded, k=3)
    with pytest.raises(ValueError, match="more than max_refits=0.*hb.loo_kfold"):
        hb.reloo(fit, k_threshold=-1.0, max_refits=0)
    with pytest.raises(ValueError, match="one fold per unit \\(30\\)"):
        hb.loo_kfold(fit, folds=[1, 2, 3])
    with pytest.raises(ValueError, match="k must be between 2 and the number of units"):
        hb.loo_kfold(fit, k=31)


def test_a_refit_that_lost_a_predictor_level_is_refused():
    coef = {"chain": [0], "draw": [0]}
    full = xr.Dataset({"beta": xr.DataArray(np.zeros((1, 1, 2)), dims=("chain", "draw", "coef"),
                                            coords={**coef, "coef": ["Intercept", "site[b]"]})})
    refit = full.isel(coef=[0])
    with pytest.raises(ValueError, match="'beta'.*appears only in the held-out rows"):
        crossval.check_same_parameters(full, refit)


def test_thin_keeps_every_kth_draw_of_every_group(fit):
    fit.log_likelihood()
    thin = fit.thin(4)
    for group in ("posterior", "sample_stats", "log_likelihood"):
        np.testing.assert_array_equal(thin.idata[group]["draw"].values, fit.idata[group]["draw"].values[::4])
    np.testing.assert_array_equal(thin.idata.posterior["b_id"].values, fit.idata.posterior["b_id"].values[:, ::4])
    assert thin.timing["thin"] == 4 and "thin" not in fit.timing
    auto = fit.thin()  # arviz-stats' factor from the hyperparameters' bulk and tail ESS
    assert auto.timing["thin"] >= 1
    assert auto.idata.posterior.sizes["draw"] == len(range(0, 200, auto.timing["thin"]))
    with pytest.raises(ValueError, match="whole number >= 1 or 'auto'"):
        fit.thin(0)
