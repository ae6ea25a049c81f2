"""Posterior predictive draws of the fitted data (every family, AR(1)/CAR(1) correlation)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hierbayes.design.build import Design
from hierbayes import names
from hierbayes.likelihood import arprocess, structured


def linear_predictor(
    design: Design, beta: np.ndarray, b: dict[str, np.ndarray], groups=None
) -> np.ndarray:
    """``X beta + sum_g Z_g b_g[index]`` for D draws: returns (D, N) in design row order.

    ``beta`` is (D, p), or (D, 0) to leave out the fixed part; ``b[g]`` is (D, levels, q)
    for every grouping factor ``g`` of ``groups`` (default: all of the design's).
    """
    mu = beta @ design.X.T if beta.shape[1] else np.zeros((beta.shape[0], design.n))
    for g in design.groups if groups is None else groups:
        mu = mu + np.einsum("nq,dnq->dn", g.Z, b[g.name][:, g.index, :])
    return mu


def residual_draws(design: Design, sigma: np.ndarray, phi: np.ndarray | None, rng) -> np.ndarray:
    """Residuals ``e`` (D, N) with the fitted within-cluster correlation; ``sigma`` (D,),
    or (D, N) for a residual sd per row (a sigma formula).

    AR(1)/CAR(1): ``e_k = a_k e_{k-1} + sqrt(1 - a_k^2) sigma eps_k`` along each cluster's
    time-sorted rows, ``a_k = phi^(t_k - t_{k-1})``. Compound symmetry and unstructured:
    ``sigma L z`` per cluster (:func:`hierbayes.likelihood.structured.draw_rows`), ``phi``
    the correlation draws (``rho`` (D,), or ``corr_resid`` (D, K, K)).
    """
    D = sigma.shape[0]
    if sigma.ndim == 2:  # a residual sd per row: e_i = sigma_i u_i, u the unit-variance process
        return residual_draws(design, np.ones(D), phi, rng) * sigma
    if design.correlation is not None and design.correlation.dense:
        return structured.draw_rows(rng, design, phi) * sigma[:, None]
    eps = rng.standard_normal((D, design.n)) * sigma[:, None]
    if design.correlation is None:
        return eps
    lay = design.layout
    pos = np.where(lay.mask, lay.pos, 0)
    innov = eps[:, pos] * lay.mask
    a = np.where(lay.mask, arprocess.lag_power(phi[:, None, None], lay.lag[None]), 0.0)
    e = arprocess.recursion(innov, a)
    out = np.empty((D, design.n))
    out[:, lay.pos[lay.mask]] = e[:, lay.mask]
    return out


@dataclass(frozen=True)
class ParameterDraws:
    """Posterior draws flattened over (chain, draw) into D rows, as numpy arrays.

    ``beta`` (D, p); ``sigma`` (D,); ``phi`` (D,) or None (for hb.Unstructured the
    correlation matrices ``corr_resid`` (D, K, K)); ``b[g]`` (D, levels, q) for every
    grouping factor whose random effects are in the posterior (levels in the design's
    order); ``chol[g]`` (D, q, q) Cholesky factors of the random-effect covariance.
    ``chains`` and ``draws`` are the coordinates of the flattened draws. With a formula
    for a family parameter (``sigma="~ Sex"``), ``dpar_coefs[name]`` holds its coefficient
    draws (D, k) and ``sigma`` / ``extra[name]`` its value per design row (D, N).
    """

    beta: np.ndarray
    sigma: np.ndarray | None
    phi: np.ndarray | None
    b: dict
    chol: dict
    chains: np.ndarray
    draws: np.ndarray
    extra: dict = field(default_factory=dict)
    dpar_coefs: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return self.chains.shape[0]


def thin(posterior, n_draws: int | None):
    """The posterior restricted to about ``n_draws`` draws in all, evenly spaced within
    every chain (chain and draw coordinates kept, so ArviZ groups stay aligned).

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> post = az.from_dict(posterior={"sigma": np.ones((2, 100))}).posterior
    >>> thin(post, 10)["draw"].values.tolist()
    [0, 25, 50, 74, 99]
    """
    if n_draws is None:
        return posterior
    if n_draws < 1:
        raise ValueError(f"n_draws must be a positive number of draws, got {n_draws}.")
    nc, nd = posterior.sizes["chain"], posterior.sizes["draw"]
    per_chain = min(nd, -(-int(n_draws) // nc))
    idx = np.unique(np.linspace(0, nd - 1, per_chain).round().astype(int))
    return posterior.isel(draw=idx)


def effects_posterior(idata):
    """The posterior together with the random-effect draws ``b_<g>``, on common draws.

    ``idata.posterior`` itself when the effects are in it (a fit recovers them at every
    draw by default); for a fit with ``recover_thin=k`` (k > 1), whose effects are in the
    group ``random_effects`` at every k-th draw of each chain, the posterior at those draws
    with them merged in. Everything that combines ``b_<g>`` with the other parameters draw
    by draw (cluster coefficients, shrinkage, residuals, posterior predictive draws,
    predictions) reads this.

    Examples
    --------
    >>> import arviz as az, numpy as np, xarray as xr
    >>> idata = az.from_dict(posterior={"sigma": np.ones((2, 10))})
    >>> effects_posterior(idata) is idata.posterior
    True
    >>> b = xr.Dataset({"b_id": (("chain", "draw", "id"), np.zeros((2, 5, 3)))},
    ...                coords={"chain": [0, 1], "draw": [0, 2, 4, 6, 8]})
    >>> idata.add_groups(random_effects=b)
    >>> post = effects_posterior(idata)
    >>> post["draw"].values.tolist(), sorted(post.data_vars)
    ([0, 2, 4, 6, 8], ['b_id', 'sigma'])
    """
    post = idata.posterior
    if names.EFFECTS_GROUP not in idata.groups():
        return post
    effects = idata[names.EFFECTS_GROUP]
    return post.sel(draw=effects["draw"].values).assign(**effects.data_vars)


def correlation_parameter(post, design: Design, draws):
    """The residual correlation's parameter draws from ``post`` (a posterior or prior
    dataset) through ``draws(name, *dims)``: ``phi`` (D,) of AR(1)/CAR(1)/compound symmetry,
    ``corr_resid`` (D, K, K) of an unstructured correlation, the packed partial
    autocorrelations (D, 6) of an ARMA one; None without a correlation."""
    if names.RESID_CORR in post:
        return draws(names.RESID_CORR, names.OCCASION_DIM, names.bis(names.OCCASION_DIM))
    corr = design.correlation
    if corr is not None and corr.kind == "arma":  # packed partial autocorrelations (D, 6)
        from hierbayes.likelihood import arma

        return arma.theta_draws(draws, corr.p, corr.q)
    return draws("phi") if "phi" in post else None


def parameter_draws(posterior, design: Design) -> ParameterDraws:
    """Flatten the posterior variables a prediction needs (see :class:`ParameterDraws`).

    Examples
    --------
    >>> draws = parameter_draws(fit.idata.posterior, fit.design)
    >>> draws.beta.shape, draws.chol["id"].shape                    # doctest: +SKIP
    ((4000, 3), (4000, 2, 2))
    """
    return _flat_draws(posterior.stack(sample=("chain", "draw")), design)


def _flat_draws(post, design: Design) -> ParameterDraws:
    """:func:`parameter_draws` of a posterior already stacked into a ``sample`` dim."""
    from hierbayes.likelihood.recover import covariance_cholesky

    def draws(name, *dims):
        return post[name].transpose("sample", *dims).values

    D = post.sizes["sample"]
    beta = draws("beta", "coef") if "beta" in post else np.zeros((D, 0))
    b, chol = {}, {}
    for g in design.groups:
        tdim = names.term_dim(g.name)
        if names.effects(g.name) in post:
            b[g.name] = post[names.effects(g.name)].sel({g.name: list(g.levels)}).transpose("sample", g.name, tdim).values
        sd = draws(names.sd(g.name), tdim)
        corr = draws(names.corr(g.name), tdim, names.bis(tdim)) if names.corr(g.name) in post else None
        chol[g.name] = covariance_cholesky(sd, corr)
    # scalars (D,), or (D, K - 1) for an ordinal family's cut-points
    extra = {k: post[k].transpose("sample", ...).values
             for k in (*design.spec.family.extra_params, "sd_ar") if k in post}
    coefs = {k: draws(names.dpar_coef(k), names.dpar_dim(k)) for k in design.dpars
             if names.dpar_coef(k) in post}
    extra.update({k: design.dpars[k].rows(c) for k, c in coefs.items()})
    if names.SIGMA_OCC in post:  # hb.Unstructured(sd_by_occasion=True): an sd per row
        extra[names.SIGMA_OCC] = draws(names.SIGMA_OCC, names.OCCASION_DIM)
        extra["sigma"] = extra[names.SIGMA_OCC][:, design.occasion_index]
    return ParameterDraws(
        beta=beta,
        sigma=extra.get("sigma"),
        phi=correlation_parameter(post, design, draws),
        b=b,
        chol=chol,
        chains=post["chain"].values,
        draws=post["draw"].values,
        extra=extra,
        dpar_coefs=coefs,
    )


def family_param_rows(pd_: ParameterDraws, design: Design, X_new: dict | None = None) -> dict:
    """The family's parameters ready to broadcast against (D, rows): a scalar parameter as
    (D, 1), one with a formula as (D, rows), on the design's rows or, with ``X_new``
    (``{name: X}``, e.g. :attr:`~hierbayes.design.newdata.NewRows.dpars`), on new rows."""
    out = {}
    for k in design.spec.family.extra_params:
        if k in pd_.dpar_coefs:
            out[k] = pd_.extra[k] if X_new is None else design.dpars[k].rows(pd_.dpar_coefs[k], X_new[k])
        else:
            out[k] = pd_.extra[k][:, None]
    return out


def fitted_draws(pd_: ParameterDraws, design: Design, rng) -> np.ndarray:
    """Replicated responses (D, N) of the design's rows, in design row order, given
    parameter draws: Gaussian residuals with the fitted correlation, or the family's draws
    at the linear predictor (plus a fresh latent AR process for non-Gaussian families)."""
    missing = [g.name for g in design.groups if g.name not in pd_.b]
    if missing:
        raise KeyError(
            f"{names.effects(missing[0])} is not in the posterior; fit with recover_random_effects=True."
        )
    mu = linear_predictor(design, pd_.beta, pd_.b)
    fam = design.spec.family
    if fam.collapsible:
        return mu + residual_draws(design, pd_.sigma, pd_.phi, rng)
    if pd_.phi is not None:
        # a fresh draw of the latent AR(1) process of the linear predictor (new occasions
        # of the same clusters)
        mu = mu + residual_draws(design, pd_.extra["sd_ar"], pd_.phi, rng)
    params = family_param_rows(pd_, design)
    trials = None if design.trials is None else design.trials[None, :]
    return fam.draw(rng, mu, params, trials)


def censored_replicates(y_rep: np.ndarray, design: Design) -> np.ndarray:
    """Replicates (..., N) of a censored model's rows censored as the data are
    (:func:`hierbayes.design.censoring.censor_like`: a replicate beyond a censored row's
    bound is reported at the bound); ``y_rep`` itself for an uncensored model.

    Examples
    --------
    >>> y_rep = posterior_predictive(fit.idata, fit.design, n_draws=10, censored=False)
    >>> bool((censored_replicates(y_rep, fit.design) == y_rep).all())  # uncensored model
    True
    """
    if design.censoring is None:
        return y_rep
    from hierbayes.design.censoring import censor_like

    return censor_like(y_rep, design.y, design.censoring)


def posterior_predictive(idata, design: Design, n_draws: int | None = None, seed: int = 0,
                         censored: bool = True) -> np.ndarray:
    """Replicated data ``y_rep`` (D, N) in design row order from posterior draws.

    Uses the random effects of the fitted clusters (``b_<g>``), so it replicates new
    observations of the same clusters; draws come from the model's family (counts for
    Poisson, 0/1 for Bernoulli, level indices 0 .. K-1 into ``design.response_levels``
    for an ordinal family, as ``design.y`` codes them, ...). For a non-Gaussian family with an AR(1) correlation
    the latent process is drawn afresh from its fitted ``phi`` and ``sd_ar``. A censored
    model's replicates are censored row by row as the data are (``censored=True``,
    :func:`censored_replicates`), so that they compare with the data in a predictive check;
    ``censored=False`` gives the uncensored draws.

    Examples
    --------
    >>> y_rep = posterior_predictive(fit.idata, fit.design, n_draws=100)
    """
    post = effects_posterior(idata).stack(sample=("chain", "draw"))
    total = post.sizes["sample"]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(total, size=min(n_draws or total, total), replace=False))
    y_rep = fitted_draws(_flat_draws(post.isel(sample=idx), design), design, rng)
    return censored_replicates(y_rep, design) if censored else y_rep


def posterior_predictive_dataset(idata, design: Design, n_draws: int | None = None, seed: int = 0,
                                 censored: bool = True):
    """Replicated data of the fitted rows as an ArviZ ``posterior_predictive`` group
    (censored as the data are for a censored model, unless ``censored=False``).

    Returns an :class:`xarray.Dataset` with variable ``y``, dims ``(chain, draw, obs)``, the
    ``obs`` coordinate equal to ``observed_data``'s (the user's row positions), so that
    ``idata.add_groups(posterior_predictive=...)`` makes ``az.plot_ppc`` work. With
    ``n_draws`` the draws are thinned evenly within each chain.

    Examples
    --------
    >>> ds = posterior_predictive_dataset(fit.idata, fit.design, n_draws=200)
    >>> fit.idata.add_groups(posterior_predictive=ds)  # doctest: +ELLIPSIS
    ...
    """
    import xarray as xr

    post = thin(effects_posterior(idata), n_draws)
    pd_ = parameter_draws(post, design)
    y_rep = fitted_draws(pd_, design, np.random.default_rng(seed))
    if censored:
        y_rep = censored_replicates(y_rep, design)
    order = np.argsort(design.rows)
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    y = xr.DataArray(
        y_rep[:, order].reshape(nc, nd, design.n),
        dims=("chain", "draw", "obs"),
        coords={"chain": post["chain"].values, "draw": post["draw"].values, "obs": design.rows[order]},
    )
    return xr.Dataset({"y": y})
