"""The latent backend: non-centred random effects, every family and grouping structure."""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from hierbayes.design.build import Design
from hierbayes.spec.priors import Prior
from hierbayes.backend import censored, densities, params
from hierbayes import names
from hierbayes.likelihood import arprocess, structured


def _data(name: str, value: np.ndarray):
    """``pm.Data`` with a static shape (JAX needs concrete shapes; values stay replaceable)."""
    return pm.Data(name, value, shape=value.shape)


def random_part(design: Design, priors: dict[str, Prior], groups=None, centering=None):
    """``sum_g Z_g b_g[index]`` over ``groups`` (default: all). Returns a length-N tensor.

    Each factor non-centred, ``b_<g> = z_<g> F^T`` (``F F^T = S``, ``z ~ N(0, 1)``), or
    centred, ``b_<g> ~ N(0, S)``, as ``centering[name].centered`` says
    (:func:`hierbayes.backend.centring.choose`; default: non-centred).
    """
    out = pt.zeros(design.n)
    for g in design.groups if groups is None else groups:
        F, S = params.re_covariance(g, priors)
        tdim = names.term_dim(g.name)
        dims = (g.name, tdim)
        if centering is not None and centering[g.name].centered:
            if g.q == 1 or not g.correlated:
                b = pm.Normal(names.effects(g.name), 0.0, pt.diag(F), dims=dims)
            else:
                b = pm.MvNormal(names.effects(g.name), mu=pt.zeros(g.q), cov=S, dims=dims)
        else:
            z = pm.Normal(names.offsets(g.name), 0.0, 1.0, dims=dims)
            b = pm.Deterministic(names.effects(g.name), pt.dot(z, F.T), dims=dims)
        idx = _data(f"idx_{g.name}", g.index)
        Z = _data(f"Z_{g.name}", g.Z)
        out = out + (Z * b[idx]).sum(axis=1)
    return out


def _ar_coefficients(design: Design, phi):
    lay = design.layout
    ar = {k: _data(k, v) for k, v in arprocess.layout_arrays(lay).items()}
    return arprocess.coefficients(
        pt, design.correlation.kind, phi, ar["lag"], ar["inner"], ar["odd"]
    )


def latent_ar_process(design: Design, phi, sd_ar):
    """A stationary AR(1)/CAR(1) process within cluster (marginal sd ``sd_ar``), one value
    per row, non-centred: ``u_k = a_k u_{k-1} + sqrt(1 - a_k^2) sd_ar z_k`` with
    ``z ~ N(0, 1)`` (variable ``z_ar``, dims ``obs``) and ``a_k = phi^(t_k - t_{k-1})``.

    This is brms' latent-residual AR for non-Gaussian families: the process is added to
    the linear predictor.
    """
    lay = design.layout
    a, inv_s2 = _ar_coefficients(design, phi)
    z = pm.Normal("z_ar", 0.0, 1.0, dims="obs")
    pos = _data("pos", np.where(lay.mask, lay.pos, 0))
    mask = _data("mask", lay.mask.astype(float))
    innov = z[pos] * mask * sd_ar / pt.sqrt(inv_s2)
    # a[:, 0] = 0, so the recursion starts each cluster at its stationary draw
    U_t, _ = pytensor.scan(
        lambda a_k, e_k, prev: a_k * prev + e_k,
        sequences=[a.T, innov.T],
        outputs_info=[pt.zeros(lay.n_clusters)],
    )
    U = U_t.T
    # rows are sorted by (cluster, time): the row-major order of the mask is the row order
    cc, kk = np.nonzero(lay.mask)
    return U[_data("ar_c", cc), _data("ar_k", kk)]


def _dense_loglik(design: Design, y, mu, sigma, theta):
    """The Gaussian log-likelihood under a compound-symmetry or unstructured residual
    correlation: ``e_i = sigma_i u_i`` with ``u`` correlated within cluster
    (:func:`hierbayes.likelihood.structured.cluster_logpdf`), on the padded layout."""
    lay = design.layout
    pos = _data("pos", np.where(lay.mask, lay.pos, 0))
    mask = _data("mask", lay.mask.astype(float))
    e = (_data("y_obs", y) - mu)[pos] * mask
    arrays = structured.layout_arrays(design)
    arrays["sizes"] = _data("sizes", arrays["sizes"])
    if "sigma" in design.dpars or design.sd_by_occasion:  # a residual sd per row
        rs = sigma[pos] * mask + (1.0 - mask)
        log_sd = pt.log(sigma).sum()
    else:
        rs, log_sd = sigma, float(design.n) * pt.log(sigma)
    ll = structured.cluster_logpdf(pt, design.correlation.kind, e / rs, arrays, theta, total=True)
    return ll - log_sd


def build(design: Design, priors: dict[str, Prior], centering=None) -> pm.Model:
    """PyMC model with sampled random effects for every group factor (centred or
    non-centred per ``centering``, :func:`random_part`) and the family's likelihood.

    Gaussian with AR(1)/CAR(1) residuals: the whitened Gaussian likelihood (DESIGN.md
    step 1) on the padded (cluster x occasion) layout; with compound-symmetry or
    unstructured residuals, :func:`_dense_loglik`. Other families with a correlation:
    a latent AR(1)/CAR(1) process on the linear-predictor scale (:func:`latent_ar_process`).
    """
    fam = design.spec.family
    coords = params.coords_for(design)
    coords["obs"] = list(range(design.n))
    with pm.Model(coords=coords) as model:
        beta = params.fixed_effects(design, priors)
        fp = params.family_params(design, priors)
        phi = params.ar_phi(design, priors)
        X = _data("X", design.X)
        mu = pt.dot(X, beta) if design.p else pt.zeros(design.n)
        mu = mu + random_part(design, priors, centering=centering)
        y = design.y
        if design.correlation is not None and design.correlation.dense:
            pm.Potential("loglik", _dense_loglik(design, y, mu, fp["sigma"], phi))
            return model
        if design.correlation is not None and fam.collapsible:
            sigma = fp["sigma"]
            lay = design.layout
            pos = _data("pos", np.where(lay.mask, lay.pos, 0))
            mask = _data("mask", lay.mask.astype(float))
            e = (_data("y_obs", y) - mu)[pos] * mask
            a, inv_s2 = _ar_coefficients(design, phi)
            n = float(design.n)
            if "sigma" in design.dpars:
                # nlme's weights with a correlation: e_i = sigma_i u_i, u the unit-variance
                # AR process, so u = e / sigma is whitened and log|diag(sigma)| enters
                rs = sigma[pos] * mask + (1.0 - mask)
                w = arprocess.whiten(pt, e / rs, a, inv_s2)
                ll = (-0.5 * n * np.log(2 * np.pi) - pt.log(sigma).sum() - 0.5 * (w * w).sum()
                      + 0.5 * (pt.log(inv_s2) * mask).sum())
            else:
                w = arprocess.whiten(pt, e, a, inv_s2)
                ll = (
                    -0.5 * n * np.log(2 * np.pi)
                    - n * pt.log(sigma)
                    - 0.5 * (w * w).sum() / sigma**2
                    + 0.5 * (pt.log(inv_s2) * mask).sum()
                )
            pm.Potential("loglik", ll)
            return model
        if design.correlation is not None:
            sd_ar = params.make_rv("sd_ar", priors["sd_ar"])
            mu = mu + latent_ar_process(design, phi, sd_ar)
        trials = None if design.trials is None else _data("trials", design.trials.astype(np.int64))
        dist = densities.likelihood(fam.dist)  # pm.<dist>, or the hurdle densities
        if design.censoring is not None:
            censored.add_likelihood(model, design, dist, fam.dist_kwargs(mu, fp, trials, xp=pt), _data)
            return model
        # the response as data: a cached compiled model refitted to new values must see them
        dist("y", **fam.dist_kwargs(mu, fp, trials, xp=pt), observed=_data("y_obs", y), dims="obs")
    return model
