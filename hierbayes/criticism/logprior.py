"""The ``log_prior`` group: log densities of the top-level priors at the posterior draws.

Power-scaling sensitivity (Kallioinen et al. 2024) perturbs the prior as ``p(theta)^alpha``
and reweights the posterior draws; for a hierarchical model it recommends scaling only the
top-level priors, not the conditional prior of the random effects. This module evaluates,
for every posterior draw, the log density of each top-level prior at the *natural*
parameters: fixed effects, residual sd ``sigma``, the family's own parameters (``nu``,
``alpha``), random-effect sds ``sd_<g>``, the correlation matrix ``corr_<g>`` (LKJ density;
none for ``||`` terms), the latent AR process sd ``sd_ar`` and ``phi``. The marginal backend may
sample in ridge-aligned coordinates (:mod:`hierbayes.backend.reparam`); the prior is the
same, so the natural parameters' densities are what is scaled.

Layout (as :func:`arviz_stats.psense` reads it): one variable per parameter with the
posterior's sample dims, ``beta`` (dims ``coef``), ``sigma``, ``sd_<g>`` (dims
``<g>__term``), ``corr_<g>`` (one value per draw: the density of the whole matrix),
``phi``. arviz-stats sums all of them.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hierbayes.design.build import Design
from hierbayes.spec.priors import Prior, lkj_eta, lkj_log_normaliser
from hierbayes import names


def prior_logpdf(prior: Prior, values: np.ndarray, name: str = "x") -> np.ndarray:
    """Elementwise log density of ``prior`` at ``values`` (PyMC's own density, so it is the
    density the sampler used).

    Parameters
    ----------
    prior : Prior
        A prior without hyperpriors; per-element parameters broadcast against the last
        axis of ``values``.
    values : ndarray
    name : str
        Parameter name, for error messages.

    Returns
    -------
    ndarray
        Same shape as ``values``.

    Examples
    --------
    >>> import numpy as np, hierbayes as hb
    >>> from hierbayes.criticism.logprior import prior_logpdf
    >>> float(prior_logpdf(hb.Prior("Normal", mu=0, sigma=1), np.array(0.0)).round(4))
    -0.9189
    """
    import pymc as pm
    import pytensor
    from pytensor.compile.mode import Mode

    from hierbayes.backend.params import make_dist

    if prior.hyperpriors:
        raise ValueError(
            f"the prior of {name!r} has hyperpriors ({', '.join(prior.hyperpriors)}); the "
            "log_prior group (power-scaling sensitivity) needs top-level priors with fixed "
            "parameters. Replace it with a prior whose parameters are numbers."
        )
    values = np.asarray(values, dtype=float)
    dist = make_dist(name, prior)
    # Python linker, light rewrites: compiling a tiny elementwise graph to C costs seconds
    fn = pytensor.function([], pm.logp(dist, values), mode=Mode(linker="py", optimizer="fast_run"))
    return np.broadcast_to(np.asarray(fn(), dtype=float), values.shape).copy()


def lkj_logpdf(corr: np.ndarray, eta: float) -> np.ndarray:
    """Log density of the LKJ(eta) distribution at correlation matrices ``corr`` (..., q, q).

    Notes
    -----
    ``log p(C) = log c(eta, q) + (eta - 1) log det C``, with the normalising constant of
    Lewandowski, Kurowicka & Joe (2009, section 3.2)
    (:func:`~hierbayes.spec.priors.lkj_log_normaliser`). The density is with respect to the
    q(q-1)/2 off-diagonal elements; for q = 2, ``(r + 1) / 2 ~ Beta(eta, eta)``.
    """
    corr = np.asarray(corr, dtype=float)
    log_c = -lkj_log_normaliser(float(eta), corr.shape[-1])
    sign, logdet = np.linalg.slogdet(corr)
    out = log_c + (eta - 1.0) * logdet
    return np.where(sign > 0, out, -np.inf)


def _like(template: xr.DataArray, values: np.ndarray) -> xr.DataArray:
    return xr.DataArray(values, dims=template.dims, coords=template.coords)


def log_prior(idata, design: Design, priors: dict[str, Prior]) -> xr.Dataset:
    """Log densities of the top-level priors at every posterior draw.

    Parameters
    ----------
    idata : arviz.InferenceData
        A fit's InferenceData (posterior with ``beta``, ``sigma``, ``sd_<g>``,
        ``corr_<g>``, ``phi`` as present).
    design : Design
    priors : dict of str to Prior
        The fit's priors (``fit.priors``).

    Returns
    -------
    xarray.Dataset
        One variable per parameter (see the module docstring); the random effects
        ``b_<g>`` are left out.

    Examples
    --------
    >>> lp = log_prior(fit.idata, fit.design, fit.priors)
    >>> lp["sigma"].dims                                     # doctest: +SKIP
    ('chain', 'draw')
    """
    post = idata.posterior
    out: dict[str, xr.DataArray] = {}
    coef_names = list(design.fixed_names)
    if coef_names:
        beta = post["beta"].transpose("chain", "draw", "coef")
        lp = np.stack(
            [prior_logpdf(priors[n], beta.sel(coef=n).values, n) for n in coef_names], axis=-1
        )
        out["beta"] = _like(beta, lp)
    for k, blk in design.dpars.items():  # a parameter formula's coefficients (beta_sigma)
        var, dim = names.dpar_coef(k), names.dpar_dim(k)
        coefs = post[var].transpose("chain", "draw", dim)
        lp = np.stack([prior_logpdf(priors[names.dpar_prior_key(k, c)], coefs.sel({dim: c}).values,
                                    names.dpar_prior_key(k, c)) for c in blk.names], axis=-1)
        out[var] = _like(coefs, lp)
    for g in design.groups:
        tdim = names.term_dim(g.name)
        sd = post[names.sd(g.name)].transpose("chain", "draw", tdim)
        out[names.sd(g.name)] = _like(sd, prior_logpdf(priors[names.sd(g.name)], sd.values, names.sd(g.name)))
        if g.q > 1 and g.correlated:
            key = names.corr(g.name)
            corr = post[key].transpose("chain", "draw", tdim, names.bis(tdim))
            eta = lkj_eta(priors, g.name)
            out[key] = xr.DataArray(
                lkj_logpdf(corr.values, eta), dims=("chain", "draw"),
                coords={"chain": post.chain, "draw": post.draw},
            )
    if names.SIGMA_OCC in post:  # hb.Unstructured(sd_by_occasion=True): sigma's prior each
        so = post[names.SIGMA_OCC]
        out[names.SIGMA_OCC] = _like(so, prior_logpdf(priors["sigma"], so.values, names.SIGMA_OCC))
    for key in (names.ARMA_AR_PACF, names.ARMA_MA_PACF):  # hb.ARMA: a prior on each pacf
        if key in post:
            out[key] = _like(post[key], prior_logpdf(priors[key], post[key].values, key))
    if names.RESID_CORR in post:  # hb.Unstructured: LKJ on the residual correlation matrix
        odim = names.OCCASION_DIM
        corr = post[names.RESID_CORR].transpose("chain", "draw", odim, names.bis(odim))
        eta = float(priors.get(names.RESID_CORR, Prior("LKJ", eta=2.0)).params.get("eta", 2.0))
        out[names.RESID_CORR] = xr.DataArray(
            lkj_logpdf(corr.values, eta), dims=("chain", "draw"),
            coords={"chain": post.chain, "draw": post.draw},
        )
    # scalar top-level parameters: the residual sd, the family's own (Student-t nu, negative
    # binomial alpha), the latent AR process sd of non-Gaussian families, phi
    for key in ("sigma", *design.spec.family.extra_params, "sd_ar", "phi"):
        if key in priors and key in post and key not in out:
            out[key] = _like(post[key], prior_logpdf(priors[key], post[key].values, key))
    return xr.Dataset(out)
