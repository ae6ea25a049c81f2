"""Advice that fits the model: no marginal backend for a family it cannot take, no
target_accept it already has, chain positions and multimodality when chains disagree,
and the sign of an AR(1) phi whose times all have even gaps."""

from __future__ import annotations

import dataclasses
import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr
from fake_fits import fake_fit, frame

import hierbayes as hb
from hierbayes.report import Context, chain_means, diagnose, hyper_posterior
from hierbayes.spec.correlation import PhiSignWarning


def _bad_sampling(fit, seed=0, stuck=("sigma",), shift=1.0):
    """Divergences in chain 0 and, for the variables in ``stuck``, draws N(1, 0.05) with
    chain 1 moved by ``shift`` (a chain stuck elsewhere)."""
    post = fit.idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    rng = np.random.default_rng(seed)
    for v in stuck:
        base = rng.normal(1.0, 0.05, (nc, nd))
        base[1] += shift
        post[v] = xr.DataArray(base, dims=("chain", "draw"), coords={"chain": post.chain, "draw": post.draw})
    div = np.zeros((nc, nd), bool)
    div[0, :5] = True
    fit.idata.add_groups(sample_stats=xr.Dataset({
        "diverging": (("chain", "draw"), div),
        "energy": (("chain", "draw"), rng.normal(size=(nc, nd))),
        "maxdepth_reached": (("chain", "draw"), np.zeros((nc, nd), bool)),
    }, coords={"chain": post.chain, "draw": post.draw}))
    return fit


def _counts():
    df = frame(n_ids=6)
    df["y"] = np.random.default_rng(0).poisson(2.0, len(df)).astype(float)
    return df


def _advice(fit):
    d = fit.diagnose().set_index("check")
    return d.loc["R-hat", "advice"] + " " + d.loc["divergences", "advice"]


def _ar1_counts_model():
    """A Poisson model with an AR(1) process within id: the quadrature backend cannot take it
    (a latent process), so it is latent."""
    return hb.Model("y ~ x + (1 | id)", _counts(), family="poisson",
                    correlation=hb.AR1(time="time", group="id"))


def test_a_model_the_marginal_backend_cannot_take_is_never_told_to_use_it():
    """No advice may suggest backend='marginal' where it would raise."""
    model = _ar1_counts_model()
    fit = _bad_sampling(fake_fit(model))
    assert fit.backend == "latent"
    text = _advice(fit)
    assert "marginal" not in text and "collapsed" not in text
    assert "target_accept from 0.8 to 0.95" in text
    assert "marginal" not in "\n".join(fit.summary().footer)


def test_a_latent_glmm_fit_the_quadrature_backend_takes_is_told_to_use_it():
    fit = _bad_sampling(fake_fit(hb.Model("y ~ x + (1 | id)", _counts(), family="poisson", backend="latent")))
    assert "backend='marginal'" in _advice(fit)
    assert hb.Model("y ~ x + (1 | id)", _counts(), family="poisson", backend="marginal").backend == "quadrature"


def test_marginal_is_advised_only_where_it_applies_and_is_not_used():
    model = hb.Model("y ~ x + (1 | id)", frame(), backend="latent")
    latent = _bad_sampling(fake_fit(model))
    assert "backend='marginal'" in _advice(latent)
    assert "backend='marginal'" in "\n".join(latent.summary().footer)
    marginal = _bad_sampling(fake_fit(hb.Model("y ~ x + (1 | id)", frame())))
    assert marginal.backend == "marginal" and "marginal" not in _advice(marginal)


@pytest.mark.parametrize("ta, says", [(0.95, "from 0.95 to 0.99"), (0.99, "already 0.99")])
def test_target_accept_advice_starts_from_the_value_used(ta, says):
    fit = _bad_sampling(fake_fit(hb.Model("y ~ x + (1 | id)", _counts(), family="poisson", backend="latent")))
    fit.options = dataclasses.replace(fit.options, target_accept=ta)
    text = _advice(fit)
    assert says in text and "(0.95, then 0.99)" not in text
    footer = "\n".join(fit.summary().footer)
    assert "e.g. 0.95" not in footer


def test_chains_that_sit_apart_are_called_multimodal():
    fit = _bad_sampling(fake_fit(hb.Model("y ~ x + (1 | id)", frame())), shift=1.0)
    diag = fit.diagnose()
    verdict = diag.set_index("check").loc["R-hat", "verdict"]
    assert "Chain means: sigma 1" in verdict and "sit apart" in verdict and "multimodal" in verdict
    assert diag.attrs["multimodal"]
    cm = diag.attrs["chain_means"]
    assert cm.index[0] == "sigma" and cm.loc["sigma", "spread"] > 10


def test_chains_that_drift_are_not_called_multimodal():
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (4, 1000)) + np.array([[0.0], [0.15], [0.3], [0.45]])
    diag = diagnose(az.from_dict(posterior={"sigma": x}))
    row = diag.set_index("check").loc["R-hat"]
    assert not row["ok"] and "Chain means: sigma" in row["verdict"]
    assert "sit apart" not in row["verdict"] and not diag.attrs["multimodal"]
    cm = chain_means(hyper_posterior(az.from_dict(posterior={"sigma": x})),
                     diag.attrs["chain_means"]["r_hat"])
    np.testing.assert_allclose(cm.loc["sigma", [f"chain {c}" for c in range(4)]].astype(float),
                               x.mean(axis=1))


def _even_times():
    df = frame(n_ids=6)
    df["time"] = 2 * df.groupby("id").cumcount().astype(float)
    return df


def test_ar1_with_even_gaps_warns_at_model_and_names_the_fix():
    with pytest.warns(PhiSignWarning, match=r"every gap in 'time' is a multiple of 2") as rec:
        model = hb.Model("y ~ x + (1 | id)", _even_times(), correlation=hb.AR1(time="time", group="id"))
    msg = str(rec[0].message)
    assert "hb.CAR1(time='time', group='id')" in msg and "time / 2" in msg
    assert model.design.time_spacing == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", PhiSignWarning)
        hb.Model("y ~ x + (1 | id)", frame(), correlation=hb.AR1(time="time", group="id"))
        odd = frame()
        odd["time"] = 3 * odd.groupby("id").cumcount().astype(float)
        hb.Model("y ~ x + (1 | id)", odd, correlation=hb.AR1(time="time", group="id"))
        hb.Model("y ~ x + (1 | id)", _even_times(), correlation=hb.CAR1(time="time", group="id"))


def test_phi_at_both_signs_is_named_in_the_verdict_and_advice():
    with pytest.warns(PhiSignWarning):
        model = hb.Model("y ~ x + (1 | id)", _even_times(), correlation=hb.AR1(time="time", group="id"))
    fit = _bad_sampling(fake_fit(model), stuck=())
    post = fit.idata.posterior
    phi = np.random.default_rng(1).normal(0.6, 0.03, (2, post.sizes["draw"]))
    phi[1] *= -1
    post["phi"] = xr.DataArray(phi, dims=("chain", "draw"), coords={"chain": post.chain, "draw": post.draw})
    diag = fit.diagnose()
    row = diag.set_index("check").loc["R-hat"]
    assert "phi's chains sit at opposite signs" in row["verdict"]
    assert row["advice"].startswith("Every gap in 'time' is a multiple of 2")
    assert diag.attrs["phi_sign_alias"]
    assert "hb.CAR1" in "\n".join(fit.summary().footer)
    # the same model with phi's chains together says nothing about the sign
    post["phi"] = xr.DataArray(np.abs(phi), dims=("chain", "draw"), coords={"chain": post.chain, "draw": post.draw})
    assert "opposite signs" not in fit.diagnose().set_index("check").loc["R-hat", "verdict"]


def test_context_of_a_fit():
    fit = fake_fit(_ar1_counts_model())
    ctx = Context.of(fit)
    assert ctx.backend == "latent" and ctx.can_collapse is False
    assert ctx.marginal_reason == "a residual correlation of a non-Gaussian family is a latent process"
    assert Context().can_collapse is None


def test_printed_diagnosis_shows_the_full_advice():
    """print(fit.diagnose()) does not cut the advice column."""
    fit = _bad_sampling(fake_fit(hb.Model("y ~ x + (1 | id)", _counts(), family="poisson", backend="latent")))
    diag = fit.diagnose()
    printed = " ".join(str(diag).split())
    failing = diag[diag["ok"] == False]  # noqa: E712
    assert len(failing) >= 2
    for text in list(failing["advice"]) + list(failing["verdict"]):
        assert " ".join(text.split()) in printed
    assert "..." not in printed
    assert "max_colwidth" not in printed and "NOT CONVERGED" in printed
    html = diag._repr_html_()
    assert failing["advice"].iloc[0][-40:] in html
