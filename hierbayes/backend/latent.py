"""The latent backend: non-centred random effects, every family and grouping structure."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .. import collapsed
from ..design import Design
from ..priors import Prior
from . import params


def _data(name: str, value: np.ndarray):
    """``pm.Data`` with a static shape (JAX needs concrete shapes; values stay replaceable)."""
    return pm.Data(name, value, shape=value.shape)


def build(design: Design, priors: dict[str, Prior]) -> pm.Model:
    """PyMC model with ``b_<g> = z_<g> F^T`` (``F F^T = S``), ``z ~ N(0, 1)`` for every group factor.

    With AR(1)/CAR(1) residuals the likelihood is the whitened Gaussian (DESIGN.md step 1)
    on the padded (cluster x occasion) layout.
    """
    coords = params.coords_for(design)
    coords["obs"] = list(range(design.n))
    with pm.Model(coords=coords) as model:
        beta = params.fixed_effects(design, priors)
        sigma = params.residual_sd(priors)
        phi = params.ar_phi(design, priors)
        X = _data("X", design.X)
        mu = pt.dot(X, beta) if design.p else pt.zeros(design.n)
        for g in design.groups:
            F, _ = params.re_covariance(g, priors)
            tdim = params.term_dim(g)
            z = pm.Normal(f"z_{g.name}", 0.0, 1.0, dims=(g.name, tdim))
            b = pm.Deterministic(f"b_{g.name}", pt.dot(z, F.T), dims=(g.name, tdim))
            idx = _data(f"idx_{g.name}", g.index)
            Z = _data(f"Z_{g.name}", g.Z)
            mu = mu + (Z * b[idx]).sum(axis=1)
        y = design.y
        if design.correlation is None:
            pm.Normal("y", mu=mu, sigma=sigma, observed=y, dims="obs")
        else:
            lay = design.layout
            pos = _data("pos", np.where(lay.mask, lay.pos, 0))
            mask = _data("mask", lay.mask.astype(float))
            e = (_data("y_obs", y) - mu)[pos] * mask
            ar = {k: _data(k, v) for k, v in collapsed.ar_layout_arrays(lay).items()}
            a, inv_s2 = collapsed.ar_coefficients(
                pt, design.correlation.kind, phi, ar["lag"], ar["inner"], ar["odd"]
            )
            w = collapsed.whiten(pt, e, a, inv_s2)
            n = float(design.n)
            ll = (
                -0.5 * n * np.log(2 * np.pi)
                - n * pt.log(sigma)
                - 0.5 * (w * w).sum() / sigma**2
                + 0.5 * (pt.log(inv_s2) * mask).sum()
            )
            pm.Potential("loglik", ll)
    return model
