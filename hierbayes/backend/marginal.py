"""The marginal (collapsed) backend: random effects integrated out analytically.

NUTS explores only the fixed effects, the residual sd, phi and the random-effect
covariance; the random effects are drawn back afterwards (:mod:`hierbayes.likelihood.recover`).
"""

from __future__ import annotations

import pymc as pm
import pytensor.tensor as pt

from hierbayes.likelihood import collapsed
from hierbayes.design.build import Design
from hierbayes.spec.priors import Prior
from hierbayes.backend import params, reparam


def build(design: Design, priors: dict[str, Prior], cdata: collapsed.CollapsedData,
          centering=None) -> pm.Model:
    """PyMC model with the collapsed log-likelihood as a potential.

    With several grouping factors (crossed or nested), the factor of
    :func:`~hierbayes.likelihood.collapsed.collapsed_group` is integrated out and the others are
    sampled effects (centred or not per ``centering``) whose ``Z b`` is an offset of the collapsed likelihood.

    The precomputed arrays are ``pm.Data`` (named ``cd_<key>``) so a compiled model can be
    reused with new data of the same shape.
    """
    with pm.Model(coords=params.coords_for(design)) as model:
        beta = params.fixed_effects(design, priors)
        cg = collapsed.collapsed_group(design)
        if reparam.applies(design, priors):
            # ridge-aligned coordinates of the same prior (random intercept vs AR(1))
            sigma, phi, _, S = reparam.ridge_parameters(design, priors)
        else:
            # a sigma formula or an sd per occasion: no scalar sigma (rows below)
            per_row = "sigma" in design.dpars or design.sd_by_occasion
            sigma = None if per_row else params.residual_sd(priors)
            phi = params.ar_phi(design, priors)
            _, S = params.re_covariance(cg, priors)
        shared = {k: pm.Data(f"cd_{k}", v, shape=v.shape) for k, v in cdata.arrays.items()}
        q = cdata.q
        if cdata.layout == "pooled":
            T = cdata.arrays["Z"].shape[1]
            ll = collapsed.loglik_pooled(pt, shared, cdata.corr, beta, sigma, phi, S, q, T)
        else:
            offset = None
            others = [g for g in design.groups if g.name != cg.name]
            if others:  # hybrid: the other factors sampled, as an offset
                from hierbayes.backend.latent import random_part

                r = random_part(design, priors, others, centering)
                offset = r[shared["pos"]] * shared["mask"]
            rs = None
            if "sigma" in design.dpars:
                rs = collapsed.row_sigma(pt, shared, params.dpar_coefficients(design, priors, "sigma"))
            elif design.sd_by_occasion:  # hb.Unstructured(sd_by_occasion=True)
                rows = params.occasion_sd_rows(design, priors)
                rs = rows[shared["pos"]] * shared["mask"] + (1.0 - shared["mask"])
            ll = collapsed.loglik_padded(
                pt, shared, cdata.corr, beta, sigma, phi, S, q, offset=offset, row_sigma=rs,
                dense=cdata.dense, total=True,
            )
        pm.Potential("loglik", ll.sum())
    return model
