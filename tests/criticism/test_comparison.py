"""PSIS-LOO in the right unit and the validity checks of hb.compare, on fake posteriors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fake_fits import fake_fit, frame

import hierbayes as hb
from hierbayes.criticism.comparison import aggregate


def _model(df, corr=False, **kw):
    return hb.Model("y ~ x + (1 | id)", df, correlation=hb.AR1("time", "id") if corr else None, **kw)


def test_loo_units_are_clusters_for_correlated_residuals():
    df = frame(n_ids=8)
    for backend in ("marginal", "latent"):
        res = hb.loo(fake_fit(_model(df, corr=True, backend=backend)))
        assert res.unit == "id" and res.n_units == 8
        assert sorted(res.pareto_k.index) == [f"s{k}" for k in range(8)]
    # random effects integrated out: clusters too; latent and independent: observations
    assert hb.loo(fake_fit(_model(df))).unit == "id"
    lat = fake_fit(_model(df, backend="latent")).loo()
    assert lat.unit == "obs" and lat.n_units == len(df)
    counts = lat.k_counts()
    assert counts.sum() == len(df)
    assert "PSIS-LOO, leave-one-observation-out" in repr(lat)


def test_pointwise_loglik_summed_within_cluster_is_leave_one_cluster_out():
    df = frame(n_ids=8)
    fit = fake_fit(_model(df, backend="latent"))
    ll = fit.log_likelihood()["y"]
    agg = aggregate(ll, fit.design, "id")
    assert agg.dims == ("chain", "draw", "id")
    # by hand from the user's rows: obs coordinates are row positions of df
    for lab in ("s0", "s5"):
        rows = np.flatnonzero(df["id"].to_numpy() == lab)
        np.testing.assert_allclose(agg.sel(id=lab).values, ll.sel(obs=rows).sum("obs").values)
    res = hb.loo(fit, unit="id")
    assert res.unit == "id" and res.n_units == 8
    with pytest.raises(ValueError, match="not a grouping factor"):
        hb.loo(fit, unit="school")
    with pytest.raises(ValueError, match="per cluster of 'id' only"):
        hb.loo(fake_fit(_model(df, corr=True)), unit="obs")


def test_compare_refuses_different_units_and_explains():
    df = frame(n_ids=8)
    ar = fake_fit(_model(df, corr=True), seed=1)
    lat = fake_fit(_model(df, backend="latent"), seed=2)
    with pytest.raises(ValueError, match=r"LOO units differ.*unit='id'"):
        hb.compare({"ar": ar, "iid": lat})
    cmp = hb.compare({"ar": ar, "iid": lat}, unit="id")
    assert set(cmp.table.index) == {"ar", "iid"}
    assert (cmp.table["unit"] == "id").all() and (cmp.table["n_units"] == 8).all()
    assert any("Same unit" in n and "'id'" in n for n in cmp.notes)
    assert any("Same data" in n for n in cmp.notes)


def test_compare_refuses_different_rows_or_response():
    df = frame(n_ids=8)
    a = fake_fit(_model(df))
    short = df.copy()
    short.loc[0, "x"] = np.nan
    with pytest.warns(UserWarning, match="dropped 1"):
        b = fake_fit(_model(short))
    with pytest.raises(ValueError, match="different rows"):
        hb.compare({"a": a, "b": b})
    logged = df.assign(y=np.exp(df["y"]))
    with pytest.raises(ValueError, match="different response values"):
        hb.compare({"a": a, "log": fake_fit(_model(logged))})
    with pytest.raises(ValueError, match="at least two"):
        hb.compare({"a": a})


def test_compare_ranks_the_model_that_predicts_better():
    """Posterior draws concentrated at the data-generating values beat draws at a wrong slope."""
    rng = np.random.default_rng(0)
    n_ids, n_t = 30, 4
    df = pd.DataFrame({"id": np.repeat([f"i{k}" for k in range(n_ids)], n_t),
                       "time": np.tile(np.arange(n_t), n_ids).astype(float),
                       "x": rng.normal(size=n_ids * n_t)})
    u = rng.normal(scale=0.5, size=n_ids)
    df["y"] = 0.3 + 1.0 * df["x"] + np.repeat(u, n_t) + rng.normal(size=len(df))
    model = _model(df)

    def near(beta):
        """Draws within 0.02 of (beta, sigma = 1, sd_id = 0.5)."""
        fit = fake_fit(model, chains=2, draws=200, seed=4)
        post = fit.idata.posterior
        post["beta"].values[:] = np.asarray(beta) + 0.02 * rng.normal(size=post["beta"].shape)
        post["sigma"].values[:] = 1.0 + 0.02 * rng.normal(size=post["sigma"].shape)
        post["sd_id"].values[:] = 0.5 + 0.02 * rng.normal(size=post["sd_id"].shape)
        return fit

    cmp = hb.compare({"true slope": near([0.3, 1.0]), "no slope": near([0.3, 0.0])})
    assert cmp.table.index[0] == "true slope"
    assert cmp.table.loc["no slope", "elpd_diff"] > 10
    assert "'true slope' ranks first" in cmp.notes[-1] and "clearly better" in cmp.notes[-1]
