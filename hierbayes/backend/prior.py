"""Forward draws from the priors of the hyperparameters (prior predictive checks, SBC).

The sampling models cannot be forward-sampled in general: the marginal backend's
likelihood is a potential, and in ridge-aligned coordinates the prior itself is a
potential on flat variables. This model holds the same top-level priors built by the
same helpers (:mod:`hierbayes.backend.params`), in their natural parameterisation, and
nothing else.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import pymc as pm
import xarray as xr
from pytensor.compile.mode import Mode

from hierbayes.design.build import Design
from hierbayes.spec.priors import Prior
from hierbayes.backend import params
from hierbayes import names


def prior_model(design: Design, priors: dict[str, Prior]) -> pm.Model:
    """A PyMC model with only the hyperparameters' priors (``beta``, the family's parameters
    such as ``sigma``, ``phi``, ``sd_ar``, ``sd_<g>``, ``corr_<g>``)."""
    with pm.Model(coords=params.coords_for(design)) as model:
        params.fixed_effects(design, priors)
        params.family_params(design, priors)
        params.ar_phi(design, priors)
        if "sd_ar" in priors and design.correlation is not None:
            params.make_rv("sd_ar", priors["sd_ar"])
        for g in design.groups:
            params.re_covariance(g, priors)
    return model


def draw_hyperparameters(
    design: Design, priors: dict[str, Prior], draws: int, seed: int | None
) -> xr.Dataset:
    """``draws`` joint draws of the hyperparameters from their priors.

    Returns
    -------
    xarray.Dataset
        Variables ``beta`` (draw, coef), ``sigma``, ``phi`` (if any), ``sd_<g>``
        (draw, <g>__term) and ``corr_<g>`` (q > 1), with dims ``(draw, ...)``.
    """
    model = prior_model(design, priors)
    var_names = ["beta", *design.spec.family.extra_params, "sd_ar", "phi", names.RESID_CORR, names.SIGMA_OCC,
                 names.ARMA_AR_PACF, names.ARMA_MA_PACF, names.AR_COEF, names.MA_COEF,
                 *[names.dpar_coef(k) for k in design.dpars]]
    for g in design.groups:
        var_names.append(names.sd(g.name))
        if g.q > 1 and g.correlated:
            var_names.append(names.corr(g.name))
    var_names = [n for n in var_names if n in model.named_vars]
    # Python linker: compiling this small forward graph to C costs more than running it
    with _quiet(logging.getLogger("pymc.sampling.forward")):  # its "Sampling: [...]" line
        idata = pm.sample_prior_predictive(
            draws=draws, model=model, var_names=var_names, random_seed=seed,
            return_inferencedata=True,
            compile_kwargs={"mode": Mode(linker="py", optimizer="fast_run")},
        )
    ds = idata.prior.isel(chain=0, drop=True)
    if names.CUTPOINTS in ds:
        # forward draws ignore the ordered transform: the ordered prior of iid cut-points
        # is the law of their sorted draws (the order statistics)
        c = ds[names.CUTPOINTS].transpose(..., names.CUTPOINT_DIM)
        ds[names.CUTPOINTS] = c.copy(data=np.sort(c.values, axis=-1))
    if "beta" not in ds:  # a model without fixed effects
        ds["beta"] = xr.DataArray(np.zeros((draws, 0)), dims=("draw", "coef"))
    return ds


@contextlib.contextmanager
def _quiet(logger: logging.Logger):
    """Hold ``logger`` at WARNING for the block (PyMC logs each forward draw at INFO)."""
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)
