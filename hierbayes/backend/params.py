"""Hyperparameters from priors: fixed effects, residual sd, phi, random-effect covariances.

Shared by both backends, so a latent and a marginal fit of one model carry the same
prior and the same variable names.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierbayes.design.build import Design, GroupBlock
from hierbayes.spec.priors import Prior, half_form, lkj_eta
from hierbayes import names


def coords_for(design: Design) -> dict[str, list]:
    """dims and coords of every variable: fixed-effect labels, group levels and terms."""
    coords: dict[str, list] = {"coef": list(design.fixed_names)}
    for g in design.groups:
        coords[g.name] = list(g.levels)
        coords[names.term_dim(g.name)] = list(g.terms)
        coords[names.bis(names.term_dim(g.name))] = list(g.terms)
    return coords


def _dist_kwargs(name: str, prior: Prior) -> dict:
    kwargs = {}
    for k, v in prior.params.items():
        if isinstance(v, Prior):
            kwargs[k] = make_rv(f"{name}_{k}", v)
        else:
            kwargs[k] = np.asarray(v, dtype=float) if not isinstance(v, str) else v
    return kwargs


def _dist_class(prior: Prior):
    cls = getattr(pm, prior.dist, None)
    if cls is None or not hasattr(cls, "dist"):
        raise ValueError(
            f"prior distribution {prior.dist!r} is not a PyMC distribution; use a name such as "
            "'Normal', 'StudentT', 'HalfNormal', 'HalfStudentT', 'Exponential', 'Uniform'."
        )
    return cls


def _built_form(prior: Prior) -> Prior:
    """The prior as it is built: a truncated whole-line prior centred at 0 as PyMC's
    half-distribution (``HalfNormal`` for ``Normal(0, s)`` truncated at 0)."""
    return half_form(prior) or prior


def make_rv(name: str, prior: Prior, **kw):
    """A named PyMC random variable for ``prior`` (hyperpriors become their own variables);
    a truncated prior is PyMC's half-distribution where one equals it, else ``pm.Truncated``."""
    prior = _built_form(prior)
    if prior.truncated_at is not None:
        base = _dist_class(prior).dist(**_dist_kwargs(name, prior))
        return pm.Truncated(name, base, lower=prior.truncated_at, **kw)
    return _dist_class(prior)(name, **_dist_kwargs(name, prior), **kw)


def make_dist(name: str, prior: Prior, **kw):
    """An unnamed distribution (``.dist``) for ``prior``, e.g. LKJ's ``sd_dist``."""
    prior = _built_form(prior)
    if prior.truncated_at is not None:
        base = _dist_class(prior).dist(**_dist_kwargs(name, prior))
        return pm.Truncated.dist(base, lower=prior.truncated_at, **kw)
    return _dist_class(prior).dist(**_dist_kwargs(name, prior), **kw)


def fixed_effects(design: Design, priors: dict[str, Prior]):
    """``beta`` with dims ``coef``: one vector variable when the priors share a family."""
    coef_names = list(design.fixed_names)
    if not coef_names:
        return pt.zeros(0)
    ps = [priors[n] for n in coef_names]
    same = all(p.dist == ps[0].dist and set(p.params) == set(ps[0].params)
               and p.truncated_at is None for p in ps)
    if same and not any(p.hyperpriors for p in ps):
        params = {
            k: np.array([float(np.asarray(p.params[k])) for p in ps]) for k in ps[0].params
        }
        return _dist_class(ps[0])("beta", **params, dims="coef")
    parts = [make_rv(f"beta_{n}", priors[n]) for n in coef_names]
    return pm.Deterministic("beta", pt.stack(parts), dims="coef")


def residual_sd(priors: dict[str, Prior]):
    return make_rv("sigma", priors["sigma"])


def family_params(design: Design, priors: dict[str, Prior]) -> dict:
    """The family's own parameters (``sigma``, ``nu``, ``alpha``), by name."""
    return {k: make_rv(k, priors[k]) for k in design.spec.family.extra_params}


def ar_phi(design: Design, priors: dict[str, Prior]):
    if design.correlation is None:
        return None
    return make_rv("phi", priors["phi"])


def re_covariance(group: GroupBlock, priors: dict[str, Prior]):
    """Random-effect covariance of one group: a factor ``F`` (q x q, ``S = F F^T``) and ``S``.

    Registers ``sd_<g>`` (dims term) and, for q > 1, ``corr_<g>`` (dims term x term).

    The sampler works on the Cholesky factor of the covariance with the terms in *reverse*
    order (slopes first, intercept last). The prior is the same -- LKJ is invariant to
    permuting the terms and the sds keep their own priors -- but the geometry is not: with
    few occasions the intercept variance trades off against the residual sd and phi along
    a ridge down to zero, and in the usual intercept-first factor the intercept-slope
    correlation then becomes unidentified (a funnel). Intercept-last, the identified
    slope variance and intercept-slope covariance are their own coordinates and only the
    intercept's conditional sd moves along the ridge.
    """
    g, q, tdim = group.name, group.q, names.term_dim(group.name)
    sd_prior = priors[names.sd(g)]
    if q == 1:
        sd = make_rv(names.sd(g), sd_prior, dims=tdim)
        F = sd.reshape((1, 1))
        return F, F * F
    if not group.correlated:  # (1 + x || g): independent terms, a diagonal covariance
        sd = make_rv(names.sd(g), sd_prior, dims=tdim)
        return pt.diag(sd), pt.diag(sd * sd)
    corr_prior = priors.get(names.corr(g), Prior("LKJ", eta=1.0))
    if corr_prior.dist != "LKJ":
        raise ValueError(f"{names.corr(g)} takes an hb.Prior('LKJ', eta=...) prior, got {corr_prior.dist}.")
    eta = lkj_eta(priors, g)
    rev = _reverse_params(sd_prior, q)
    sd_dist = make_dist(names.sd(g), rev, shape=q)
    chol_rev, corr_rev, sds_rev = pm.LKJCholeskyCov(
        names.chol(g), n=q, eta=eta, sd_dist=sd_dist, compute_corr=True
    )
    pm.Deterministic(names.sd(g), sds_rev[::-1], dims=tdim)
    pm.Deterministic(names.corr(g), corr_rev[::-1, ::-1], dims=(tdim, names.bis(tdim)))
    F = chol_rev[::-1, :]
    return F, pt.dot(F, F.T)


def _reverse_params(prior: Prior, q: int) -> Prior:
    """The sd prior with per-term parameters listed in reverse term order."""
    params = {}
    for k, v in prior.params.items():
        arr = np.asarray(v) if not isinstance(v, Prior) else None
        params[k] = arr[::-1].copy() if arr is not None and arr.ndim == 1 and arr.size == q else v
    return prior.with_params(**params)
