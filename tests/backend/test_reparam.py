"""Ridge coordinates (hierbayes.backend.reparam) keep the prior exactly.

The prior part of a model built with :func:`ridge_parameters` (its log-density as a
function of the unconstrained coordinates x) must equal the original prior density of
theta = (sigma, phi, sd, corr upper triangle) at the implied values plus
log|d theta / d x|, the Jacobian taken by central finite differences.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytest
from scipy import stats

from hierbayes.config import RidgeSettings
from hierbayes.backend import params, reparam
from hierbayes.spec.correlation import AR1, CAR1
from hierbayes.design.build import build_design
from hierbayes.spec.priors import Prior, resolve_priors
from hierbayes.spec.formula import parse


def _data(seed: int = 0, n_ids: int = 12, n_obs: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "id": np.repeat([f"g{i}" for i in range(n_ids)], n_obs),
            "time": np.tile(np.arange(n_obs, dtype=float), n_ids),
            "x": rng.normal(size=n_ids * n_obs),
        }
    )
    df["y"] = 1.0 + 0.3 * df["time"] + rng.normal(size=len(df))
    return df


def _design(formula: str, corr, perm=None):
    spec = parse(formula, family="gaussian", correlation=corr, priors=None)
    design = build_design(spec, _data())
    if perm is not None:  # reorder the group terms (intercept not first)
        g = design.groups[0]
        g = dataclasses.replace(g, Z=g.Z[:, perm], terms=tuple(g.terms[k] for k in perm))
        design = dataclasses.replace(design, groups=(g,))
    return design


def _half_t(x, nu, scale):
    return np.log(2.0) + stats.t.logpdf(x, nu, scale=scale)


def _reference_logp(design, priors, sigma, phi, sd, corr):
    """Original prior: sigma, phi, sd per term, LKJ on the correlation matrix.

    Returns the log-density and whether it includes every normalising constant."""
    g = design.groups[0]
    lo = design.correlation.phi_bounds[0]
    ps = priors["sigma"]
    if ps.dist == "HalfStudentT":
        out = _half_t(sigma, ps.params["nu"], ps.params["sigma"])
    else:
        assert ps.dist == "HalfNormal"
        out = np.log(2.0) + stats.norm.logpdf(sigma, scale=ps.params["sigma"])
    out += -np.log(1.0 - lo)  # Uniform(lo, 1)
    psd = priors[f"sd_{g.name}"]
    scales = np.broadcast_to(np.asarray(psd.params["sigma"], dtype=float), (g.q,))
    out += sum(_half_t(sd[k], psd.params["nu"], scales[k]) for k in range(g.q))
    exact = True
    if g.q > 1:
        eta = float(priors[f"corr_{g.name}"].params["eta"])
        out += (eta - 1.0) * np.linalg.slogdet(corr)[1]
        # normalising constants differ from PyMC's LKJCholeskyCov; only differences count
        exact = False
    return out, exact


def _case(formula, corr, perm, overrides, **kw):
    design = _design(formula, corr, perm)
    priors = resolve_priors(design, None)
    g = design.groups[0]
    for k, v in overrides.items():
        priors[k.format(g=g.name)] = v(g.q) if callable(v) else v
    with pm.Model(coords=params.coords_for(design)) as model:
        reparam.ridge_parameters(design, priors, RidgeSettings(**kw))
    return design, priors, model


def _compile(model, outs):
    """A numpy function of a point (dict of value variables) returning ``outs``."""
    fn = pytensor.function(model.value_vars, model.replace_rvs_by_values(outs))
    return lambda point: fn(*[point[v.name] for v in model.value_vars])


CASES = [
    ("y ~ time + (1 | id)", AR1("time", "id"), None, {}),
    ("y ~ time + (1 | id)", CAR1("time", "id"), None,
     {"sigma": Prior("HalfNormal", sigma=2.0)}),
    ("y ~ time + (1 + time | id)", AR1("time", "id"), None, {}),
    ("y ~ time + (1 + time | id)", CAR1("time", "id"), [1, 0],
     {"corr_{g}": Prior("LKJ", eta=2.5)}),
    ("y ~ time + (1 + time | id)", AR1("time", "id"), [1, 0],
     {"sd_{g}": Prior("HalfStudentT", nu=4, sigma=[0.7, 2.0])}),
    ("y ~ time + x + (1 + time + x | id)", AR1("time", "id"), [1, 0, 2],
     {"corr_{g}": Prior("LKJ", eta=1.7)}),
    ("y ~ time + x + (1 + time + x | id)", CAR1("time", "id"), [2, 1, 0], {}),
]


KW = [
    {},  # the defaults: rho_first, conditional, share_power 3
    {"variant": "rho_first", "ridge": "conditional", "share_power": 1.0},
    {"variant": "share_first", "ridge": "conditional"},
    {"variant": "rho_first", "ridge": "total"},
    {"variant": "rho_first", "ridge": "total", "share_power": 2.0},
]


@pytest.mark.parametrize("kw", KW, ids=lambda k: "-".join(str(v) for v in k.values()) or "default")
@pytest.mark.parametrize("formula,corr,perm,overrides", CASES)
def test_prior_density_is_unchanged(fast_mode, formula, corr, perm, overrides, kw):
    design, priors, model = _case(formula, corr, perm, overrides, **kw)
    g = design.groups[0]
    q = g.q
    # the ridge coordinates are free; the hyperparameters are deterministics of them
    wanted = {"sigma", "phi", f"sd_{g.name}"} | ({f"corr_{g.name}"} if q > 1 else set())
    assert wanted <= {d.name for d in model.deterministics}
    assert model.named_vars_to_dims[f"sd_{g.name}"] == (f"{g.name}__term",)
    if q > 1:
        assert model.named_vars_to_dims[f"corr_{g.name}"] == (
            f"{g.name}__term", f"{g.name}__term_bis")
    # every free variable is flat and untransformed: the model logp is the prior potential
    assert all(model.rvs_to_transforms[v] is None for v in model.free_RVs)
    names = [v.name for v in model.value_vars]
    sizes = [int(np.prod(model.initial_point()[n].shape)) for n in names]
    logp_fn = model.compile_logp(mode=fast_mode)
    out_fn = _compile(
        model,
        [model["sigma"], model["phi"], model[f"sd_{g.name}"]]
        + ([model[f"corr_{g.name}"]] if q > 1 else []),
    )
    iu = np.triu_indices(q, 1)

    def split(x):
        point, i = {}, 0
        for n, s in zip(names, sizes):
            point[n] = x[i:i + s]
            i += s
        return point

    def theta(x):
        out = out_fn(split(x))
        parts = [np.atleast_1d(out[0]), np.atleast_1d(out[1]), out[2]]
        if q > 1:
            parts.append(out[3][iu])
        return np.concatenate(parts)

    dim = sum(sizes)
    assert dim == 2 + q + q * (q - 1) // 2
    rng = np.random.default_rng(42)
    gaps = []
    for _ in range(6):
        x = rng.normal(scale=1.0, size=dim)
        th = theta(x)
        h = 1e-5
        J = np.empty((dim, dim))
        for j in range(dim):
            e = np.zeros(dim)
            e[j] = h
            J[:, j] = (theta(x + e) - theta(x - e)) / (2 * h)
        logjac = np.linalg.slogdet(J)[1]
        sigma, phi, sd = th[0], th[1], th[2:2 + q]
        corr_m = np.eye(q)
        if q > 1:
            corr_m[iu] = th[2 + q:]
            corr_m.T[iu] = th[2 + q:]
        ref, exact = _reference_logp(design, priors, sigma, phi, sd, corr_m)
        assert -1 < phi < 1 and sigma > 0 and np.all(sd > 0)
        gaps.append(logp_fn(split(x)) - (ref + logjac))
    gaps = np.array(gaps)
    # the same constant at every point (exactly zero where all normalisers are included)
    np.testing.assert_allclose(gaps - gaps[0], 0.0, atol=1e-6)
    if exact:
        np.testing.assert_allclose(gaps, 0.0, atol=1e-6)


@pytest.mark.parametrize("formula,corr,perm,overrides", CASES[2:4] + CASES[5:])
def test_covariance_matches_deterministics(formula, corr, perm, overrides):
    design = _design(formula, corr, perm)
    priors = resolve_priors(design, None)
    g = design.groups[0]
    with pm.Model(coords=params.coords_for(design)) as model:
        _, _, F, S = reparam.ridge_parameters(design, priors)
    rng = np.random.default_rng(3)
    point = {v.name: rng.normal(size=model.initial_point()[v.name].shape)
             for v in model.value_vars}
    F_, S_, sd, corr_m = _compile(model, [F, S, model[f"sd_{g.name}"], model[f"corr_{g.name}"]])(point)
    np.testing.assert_allclose(F_ @ F_.T, S_, atol=1e-12)
    np.testing.assert_allclose(np.sqrt(np.diag(S_)), sd, atol=1e-12)
    np.testing.assert_allclose(S_ / np.outer(sd, sd), corr_m, atol=1e-12)
    np.testing.assert_allclose(np.diag(corr_m), 1.0, atol=1e-12)


def test_applies():
    assert reparam.applies(_design("y ~ time + (1 + time | id)", AR1("time", "id")))
    assert reparam.applies(_design("y ~ time + (1 | id)", CAR1("time", "id")))
    assert not reparam.applies(_design("y ~ time + (1 + time | id)", None))
    assert not reparam.applies(_design("y ~ time + (0 + time | id)", AR1("time", "id")))
    d = _design("y ~ time + (1 | id)", AR1("time", "id"))
    pri = resolve_priors(d, None)
    assert reparam.applies(d, pri)
    pri["sigma"] = Prior("HalfNormal", sigma=Prior("HalfNormal", sigma=1.0))
    assert not reparam.applies(d, pri)


def test_phi_prior_support_narrows_the_ridge():
    """A phi prior narrower than the correlation's bounds: the ridge maps onto its lower end
    (the sampler never leaves the support), or, when its upper end is below 1, the ridge
    coordinates step aside for PyMC's interval transform."""
    d = _design("y ~ time + (1 + time | id)", AR1("time", "id"))
    pri = resolve_priors(d, None)
    assert reparam.phi_support(d, pri) == (-1.0, 1.0)
    pri["phi"] = Prior("Beta", alpha=2.0, beta=2.0)
    assert reparam.phi_support(d, pri) == (0.0, 1.0) and reparam.applies(d, pri)
    pri["phi"] = Prior("Uniform", lower=0.0, upper=0.9)
    assert reparam.phi_support(d, pri) == (0.0, 0.9) and not reparam.applies(d, pri)
    pri["phi"] = Prior("Uniform", lower=-0.5, upper=1.0)
    assert reparam.applies(d, pri)
    with pm.Model(coords=params.coords_for(d)) as model:
        reparam.ridge_parameters(d, pri)
    logp = _compile(model, [model.logp(), model["phi"]])
    rng = np.random.default_rng(3)
    for _ in range(50):
        point = {v.name: rng.normal(scale=3.0, size=v.type.shape or ()) for v in model.value_vars}
        lp, phi = logp(point)
        assert np.isfinite(lp) and -0.5 < phi < 1.0
