"""Pointwise log-likelihood of a fit, in the unit that LOO and power-scaling need.

- Conditionally independent observations (latent backend, no residual correlation): one
  value per observation, ``log N(y_i; x_i beta + z_i b, sigma)`` or the family's density
  (Poisson, Bernoulli, ...), dim ``obs`` (the user's row positions, as in ``observed_data``).
- Residuals correlated within clusters (AR(1)/CAR(1)), or random effects integrated out
  (marginal backend): one value per cluster of the factor that carries the correlation or
  was integrated out (with several factors, conditional on the latent ones' draws), dim named after that factor (its levels as coordinates). For the
  marginal backend this is the collapsed density ``log p(y_c | beta, sigma, S, phi)``; for
  the latent backend the whitened conditional density ``log p(y_c | beta, b, sigma, phi)``.

Observations of one cluster are not exchangeable units when residuals are correlated or
share an integrated-out random effect, so leave-one-out over them would not be a valid
predictive check; leaving out whole clusters is.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from hierbayes.likelihood import collapsed
from hierbayes.design import censoring
from hierbayes.design.build import Design
from hierbayes.predict.predictive import linear_predictor
from hierbayes.likelihood.recover import covariance_cholesky
from hierbayes import names
from hierbayes.likelihood import arprocess, structured

LOG_2PI = collapsed.LOG_2PI


def unit(design: Design, backend: str) -> str:
    """The name of the log-likelihood's unit dimension: ``"obs"`` or a grouping factor.

    Examples
    --------
    >>> import hierbayes as hb
    >>> m = hb.Model("y ~ time + (1 | id)", hb.datasets.load("clark_ar1"))
    >>> unit(m.design, m.backend)
    'id'
    >>> unit(m.design, "latent")
    'obs'
    """
    if design.correlation is not None:
        return design.correlation.group
    if backend == "marginal":
        return collapsed.collapsed_group(design).name
    if backend == "quadrature":
        from hierbayes.backend import glmm

        return glmm.integrated_group(design).name
    return "obs"


def _quadrature(design: Design, post, nagq: int | None = None) -> np.ndarray:
    """Per-cluster marginal log-likelihoods of a quadrature fit, (D, C): the kernel's
    ``per_cluster`` values at every draw (the effects integrated out, as in the sampled
    density; in a hybrid model given each draw's sampled effects of the other factors: LOO
    leaves out one cluster of the integrated factor)."""
    from hierbayes.backend import glmm
    from hierbayes.likelihood import quadrature

    g = glmm.integrated_group(design)
    mg, order = glmm.likelihood_and_order(design, nagq)  # the fit's own node count
    offset = glmm.sampled_offsets(design, post, order)
    beta = _flat(post, "beta") if design.p else None
    L = glmm.kernel_factors(g, _flat(post, names.sd(g.name)), _flat(post, names.corr(g.name)))
    fp = quadrature.family_param(design.spec.family)
    alpha = None if fp is None else _flat(post, fp)
    D = L.shape[0]
    out = np.empty((D, g.n_levels))
    for d in range(D):
        b = np.zeros(0) if beta is None else beta[d]
        a = None if alpha is None else float(alpha[d])
        off = None if offset is None else offset(np.array([d]))[0]
        out[d] = mg.value_and_grad(b, L[d], a, offset=off, grad=False)["per_cluster"]
    return out


def _flat(post, name: str) -> np.ndarray | None:
    if name not in post:
        return None
    v = post[name].values
    return v.reshape((v.shape[0] * v.shape[1],) + v.shape[2:])


def _marginal(design: Design, post) -> np.ndarray:
    """Collapsed per-cluster log-densities, (D, C); for a hybrid model, conditional on the
    latent factors' draws (their ``Z b`` is the likelihood's offset)."""
    g = collapsed.collapsed_group(design)
    others = [h for h in design.groups if h.name != g.name]
    cd = collapsed.prepare(design, layout="padded")
    beta, sigma = _flat(post, "beta"), _flat(post, "sigma")
    phi = correlation_draws(design, post)  # phi, or a dense structure's parameters
    L = covariance_cholesky(_flat(post, names.sd(g.name)), _flat(post, names.corr(g.name)))
    S = L @ np.swapaxes(L, -1, -2)
    bs = _flat(post, names.dpar_coef("sigma"))  # a sigma formula: an sd per row
    so = _flat(post, names.SIGMA_OCC)
    out = np.empty((L.shape[0], cd.n_clusters))
    for d in range(L.shape[0]):
        offset = None
        if others:
            b = {h.name: _flat(post, names.effects(h.name))[d : d + 1] for h in others}
            rows = linear_predictor(design, np.zeros((1, 0)), b, groups=others)[0]
            offset = design.layout.pad(rows)
        rs = None if bs is None else collapsed.row_sigma(np, cd.arrays, bs[d])
        if design.sd_by_occasion:  # an sd per occasion: per padded slot, 1 past the end
            rs = np.where(cd.arrays["mask"] > 0, so[d][cd.arrays["occ"]], 1.0)
        out[d] = collapsed.loglik_padded(
            np, cd.arrays, cd.corr, beta[d], None if sigma is None else sigma[d],
            None if phi is None else phi[d], S[d], cd.q, offset=offset, row_sigma=rs,
            dense=cd.dense,
        )
    return out


def _conditional_mean(design: Design, post, sl: slice) -> np.ndarray:
    D = post.sizes["chain"] * post.sizes["draw"]
    beta = _flat(post, "beta")
    beta = beta[sl] if beta is not None else np.zeros((D, 0))[sl]
    b = {g.name: _flat(post, names.effects(g.name))[sl] for g in design.groups}
    return linear_predictor(design, beta, b)


def _latent(design: Design, post, chunk: int = 256) -> np.ndarray:
    """Conditional log-densities given the random effects: (D, N) pointwise in design row
    order, or (D, C) per cluster with AR(1)/CAR(1) residuals."""
    fam = design.spec.family
    if not fam.collapsible or design.censoring is not None:
        return _latent_family(design, post, chunk)
    sigma, phi = _flat(post, "sigma"), _flat(post, "phi")
    bs = _flat(post, names.dpar_coef("sigma"))
    if bs is not None:  # a sigma formula: the sd of every row and draw, (D, N)
        sigma = design.dpars["sigma"].rows(bs)
    if design.sd_by_occasion:  # an sd per occasion: per row, (D, N)
        sigma = _flat(post, names.SIGMA_OCC)[:, design.occasion_index]
    D = sigma.shape[0]
    corr = design.correlation
    if corr is not None and corr.dense:
        return _latent_dense(design, post, sigma, bs is not None or design.sd_by_occasion, chunk)
    if corr is None:
        out = np.empty((D, design.n))
    else:
        lay = design.layout
        ar = arprocess.layout_arrays(lay)
        mask = lay.mask.astype(float)
        out = np.empty((D, lay.n_clusters))
    for s in range(0, D, chunk):
        sl = slice(s, min(s + chunk, D))
        e = design.y[None] - _conditional_mean(design, post, sl)  # (n, N)
        sd = sigma[sl][:, None] if bs is None else sigma[sl]
        if corr is None:
            out[sl] = -0.5 * LOG_2PI - np.log(sd) - 0.5 * (e / sd) ** 2
            continue
        for k, d in enumerate(range(sl.start, sl.stop)):
            if bs is not None:  # e_i = sigma_i u_i: whiten u, and log|diag(sigma)| per cluster
                u = lay.pad(e[k] / sigma[d])
                a, inv_s2 = arprocess.coefficients(
                    np, corr.kind, phi[d], ar["lag"], ar["inner"], ar["odd"]
                )
                w = arprocess.whiten(np, u, a, inv_s2)
                out[d] = (-0.5 * LOG_2PI * lay.sizes - lay.pad(np.log(sigma[d])).sum(axis=1)
                          - 0.5 * (w * w).sum(axis=1) + 0.5 * (np.log(inv_s2) * mask).sum(axis=1))
                continue
            ep = lay.pad(e[k])
            a, inv_s2 = arprocess.coefficients(
                np, corr.kind, phi[d], ar["lag"], ar["inner"], ar["odd"]
            )
            w = arprocess.whiten(np, ep, a, inv_s2)
            out[d] = (
                (-0.5 * LOG_2PI - np.log(sigma[d])) * lay.sizes
                - 0.5 * (w * w).sum(axis=1) / sigma[d] ** 2
                + 0.5 * (np.log(inv_s2) * mask).sum(axis=1)
            )
    return out


def correlation_draws(design: Design, post) -> np.ndarray | None:
    """Draws of the residual correlation's parameter, flattened over (chain, draw):
    ``phi`` (D,) (compound symmetry's ``rho``), ``corr_resid`` (D, K, K) of an
    unstructured correlation, the packed partial autocorrelations (D, 6) of an ARMA one
    (:mod:`hierbayes.likelihood.arma`); None without one."""
    if design.correlation is None:
        return None
    corr = design.correlation
    if corr.kind == "arma":  # the packed partial autocorrelations (D, 6)
        from hierbayes.likelihood import arma

        return arma.theta_draws(lambda n, _dim: _flat(post, n), corr.p, corr.q)
    return _flat(post, names.RESID_CORR if corr.kind == "unstructured" else names.PHI)


def _latent_dense(design: Design, post, sigma: np.ndarray, rowwise: bool, chunk: int) -> np.ndarray:
    """Per-cluster conditional log-densities (D, C) under compound-symmetry or
    unstructured residuals: ``e_i = sigma_i u_i``, ``u`` correlated within cluster."""
    lay = design.layout
    arrays = structured.layout_arrays(design)
    theta = correlation_draws(design, post)
    D = sigma.shape[0]
    out = np.empty((D, lay.n_clusters))
    for s in range(0, D, chunk):
        sl = slice(s, min(s + chunk, D))
        e = design.y[None] - _conditional_mean(design, post, sl)
        for k, d in enumerate(range(sl.start, sl.stop)):
            sd = sigma[d] if rowwise else np.full(design.n, sigma[d])
            u = lay.pad(e[k] / sd)
            out[d] = (structured.cluster_logpdf(np, design.correlation.kind, u, arrays, theta[d])
                      - lay.pad(np.log(sd)).sum(axis=1))
    return out


def _latent_family(design: Design, post, chunk: int = 256) -> np.ndarray:
    """Pointwise conditional log-densities of a non-Gaussian family (or of a censored
    response) given the random effects, (D, N) in design row order (the family's own
    ``logpdf``; :func:`hierbayes.design.censoring.logpdf` for a censored response)."""
    fam = design.spec.family
    if design.correlation is not None:
        raise ValueError(
            f"the pointwise log-likelihood of a {fam.name} model with a latent "
            f"{type(design.correlation).__name__} process is not available: the process's "
            "draws are not kept in the posterior."
        )
    D = post.sizes["chain"] * post.sizes["draw"]
    params = {k: _flat(post, k) for k in fam.extra_params}
    for k, blk in design.dpars.items():  # a formula: the parameter per row and draw, (D, N)
        params[k] = blk.rows(_flat(post, names.dpar_coef(k)))
    trials = None if design.trials is None else design.trials[None]
    out = np.empty((D, design.n))
    for s in range(0, D, chunk):
        sl = slice(s, min(s + chunk, D))
        eta = _conditional_mean(design, post, sl)
        rows = {k: v[sl] if k in design.dpars else v[sl][:, None] for k, v in params.items()}
        if design.censoring is None:
            out[sl] = fam.logpdf(design.y[None], eta, rows, trials)
        else:
            out[sl] = censoring.logpdf(fam, design.y[None], design.censoring, eta, rows)
    return out


def log_likelihood(fit) -> xr.Dataset:
    """Pointwise (or per-cluster) log-likelihood of the fitted data at every posterior draw.

    Parameters
    ----------
    fit : Fit

    Returns
    -------
    xarray.Dataset
        Variable ``y`` with dims ``(chain, draw, unit)``; ``unit`` is ``"obs"`` (the user's
        row positions, as in ``observed_data``) or the clustering factor (see
        :func:`unit`). Summing over ``unit`` gives the model's log-likelihood at each draw.

    Examples
    --------
    >>> ll = log_likelihood(fit)
    >>> ll["y"].dims                        # doctest: +SKIP
    ('chain', 'draw', 'id')
    """
    nagq = (getattr(fit, "timing", None) or {}).get("nagq")
    return xr.Dataset({"y": unit_log_likelihood(fit.design, fit.backend, fit.idata.posterior, nagq)})


def unit_log_likelihood(design: Design, backend: str, post, nagq: int | None = None) -> xr.DataArray:
    """The log-likelihood of ``design``'s data per unit (see :func:`unit`) at every draw of
    ``post``, as the ``backend`` of a fit defines it.

    ``post`` may come from another fit of the same model (cross-validation refits): it needs
    the variables the unit's density reads (for a latent fit, ``b_<g>`` on ``design``'s levels).

    Parameters
    ----------
    design : Design
    backend : {"marginal", "quadrature", "latent"}
    post : xarray.Dataset
        Posterior draws (dims ``chain``, ``draw``).
    nagq : int, optional
        The quadrature nodes of a quadrature fit (default: the backend's default).

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, unit)``.

    Examples
    --------
    >>> da = unit_log_likelihood(fit.design, fit.backend, fit.idata.posterior)
    >>> da.dims
    ('chain', 'draw', 'id')
    """
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    name = unit(design, backend)
    if name == "obs":
        values = _latent(design, post)
        order = np.argsort(design.rows)
        values, coords = values[:, order], design.rows[order]
    else:
        if backend == "quadrature":
            from hierbayes.backend import glmm

            values, coords = _quadrature(design, post, nagq), list(glmm.integrated_group(design).levels)
        else:
            values = _marginal(design, post) if backend == "marginal" else _latent(design, post)
            coords = list(design.cluster_levels)
    return xr.DataArray(
        values.reshape(nc, nd, -1),
        dims=["chain", "draw", name],
        coords={"chain": post.chain, "draw": post.draw, name: coords},
    )
