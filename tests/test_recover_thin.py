"""``Model.fit(recover_thin=k)``: the random effects of a marginal fit recovered at every
k-th draw, in the ``random_effects`` group, and every reader of ``b_<g>`` still working
(cluster coefficients, shrinkage, residuals, posterior predictive, predictions, LOO,
save/load)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes import names
from hierbayes.likelihood import recover
from hierbayes.predict.predictive import effects_posterior

FORMULA = "y ~ t + (1 + t | id)"
CAR = hb.CAR1(time="t", group="id")
TRUE = {"beta": {"Intercept": 0.2, "t": 0.5}, "sigma": 1.0, "sd_id": [0.6, 0.3],
        "corr_id": [[1.0, 0.2], [0.2, 1.0]], "phi": 0.5}
KW = dict(draws=60, tune=100, chains=2, seed=5, progressbar=False)
THIN = 4


@pytest.fixture(scope="module")
def ragged():
    """A panel of 40 ids with 1-6 visits at irregular times (the native kernel's direct,
    cluster-by-cluster layout)."""
    rng = np.random.default_rng(2)
    n = rng.integers(1, 7, size=40)
    ids = np.repeat(np.arange(40), n)
    t = np.concatenate([np.cumsum(rng.exponential(0.6, size=k)) for k in n])
    return hb.simulate(FORMULA, pd.DataFrame({"id": ids, "t": t}), TRUE, correlation=CAR, seed=3)


@pytest.fixture(scope="module")
def fits(ragged):
    model = hb.Model(FORMULA, ragged, correlation=CAR)
    return model.fit(**KW), model.fit(recover_thin=THIN, **KW)


def test_thinned_effects_are_in_their_own_group_at_every_kth_draw(fits):
    full, thin = fits
    assert "b_id" in full.posterior and names.EFFECTS_GROUP not in full.idata.groups()
    assert "b_id" not in thin.posterior
    b = thin.idata[names.EFFECTS_GROUP]["b_id"]
    assert b.dims == ("chain", "draw", "id", "id__term")
    np.testing.assert_array_equal(b["draw"].values, full.posterior["draw"].values[::THIN])
    # sampling is untouched: the same draws of every parameter
    for v in ("beta", "sigma", "phi", "sd_id", "corr_id"):
        np.testing.assert_array_equal(thin.posterior[v].values, full.posterior[v].values)
    assert thin.timing["recover_thin"] == THIN


def test_each_thinned_draw_is_drawn_from_its_own_parameters(fits):
    """The effects at draw label k are the exact conditional draws given the parameters of
    draw k: redrawing from effects_posterior's parameters, same generator, gives them."""
    _, thin = fits
    post = effects_posterior(thin.idata)
    D = post.sizes["chain"] * post.sizes["draw"]

    def flat(v):
        return post[v].values.reshape((D,) + post[v].shape[2:])

    L = recover.covariance_cholesky(flat("sd_id"), flat("corr_id"))
    b = recover.draw_random_effects(thin.design, flat("beta"), flat("sigma"), flat("phi"), L,
                                    np.random.default_rng([KW["seed"], 1]))
    np.testing.assert_allclose(flat("b_id"), b, rtol=1e-12, atol=1e-12)


@pytest.mark.filterwarnings("ignore:cluster_ols")
def test_readers_of_the_effects_use_the_thinned_draws(fits):
    full, thin = fits
    n_kept = thin.idata[names.EFFECTS_GROUP].sizes["draw"] * KW["chains"]
    coefs = thin.cluster_coefficients()
    assert np.isfinite(coefs.select_dtypes("number").to_numpy()).all()
    assert len(coefs) == len(full.cluster_coefficients())
    shrink = thin.shrinkage()
    assert np.isfinite(shrink["shrinkage"]).any()
    assert np.isfinite(thin.residuals().to_numpy(dtype=float)).all()
    y_rep = thin.posterior_predictive()
    assert y_rep.shape == (n_kept, thin.design.n_input_rows)
    new = pd.DataFrame({"id": [0, 1, 999], "t": [5.0, 6.0, 0.0]})
    pred = thin.predict(new, kind="response")
    assert np.isfinite(pred.table.select_dtypes("number").to_numpy()).all()
    assert thin.loo().elpd_loo == pytest.approx(full.loo().elpd_loo)  # every draw, no b


def test_thinned_effects_survive_save_and_load(fits, tmp_path):
    _, thin = fits
    again = hb.load(thin.save(tmp_path / "thin.nc"))
    np.testing.assert_array_equal(again.idata[names.EFFECTS_GROUP]["b_id"].values,
                                  thin.idata[names.EFFECTS_GROUP]["b_id"].values)
    np.testing.assert_allclose(again.cluster_coefficients().select_dtypes("number").to_numpy(),
                               thin.cluster_coefficients().select_dtypes("number").to_numpy())


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_recover_thin_must_be_a_whole_number(ragged, bad):
    with pytest.raises(ValueError, match="recover_thin must be a whole number"):
        hb.Model(FORMULA, ragged, correlation=CAR).fit(recover_thin=bad, **KW)
