"""Posterior predictive draws of the fitted data (every family, AR(1)/CAR(1) correlation)."""

from __future__ import annotations

import numpy as np

from .design import Design


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
    """Residuals ``e`` (D, N) with the fitted within-cluster correlation.

    AR(1)/CAR(1): ``e_k = a_k e_{k-1} + sqrt(1 - a_k^2) sigma eps_k`` along each cluster's
    time-sorted rows, ``a_k = phi^(t_k - t_{k-1})``.
    """
    D = sigma.shape[0]
    eps = rng.standard_normal((D, design.n)) * sigma[:, None]
    if design.correlation is None:
        return eps
    lay = design.layout
    e = np.zeros((D,) + lay.pos.shape)
    pos = np.where(lay.mask, lay.pos, 0)
    innov = eps[:, pos] * lay.mask
    for k in range(lay.width):
        if k == 0:
            e[:, :, 0] = innov[:, :, 0]
            continue
        lag = lay.lag[:, k]
        a = np.where(lay.mask[:, k], np.sign(phi)[:, None] ** lag * np.abs(phi)[:, None] ** lag, 0.0)
        e[:, :, k] = a * e[:, :, k - 1] + np.sqrt(1 - a**2) * innov[:, :, k]
    out = np.empty((D, design.n))
    out[:, lay.pos[lay.mask]] = e[:, lay.mask]
    return out


def posterior_predictive(idata, design: Design, n_draws: int | None = None, seed: int = 0) -> np.ndarray:
    """Replicated data ``y_rep`` (D, N) in design row order from posterior draws.

    Uses the random effects of the fitted clusters (``b_<g>``), so it replicates new
    observations of the same clusters; draws come from the model's family (counts for
    Poisson, 0/1 for Bernoulli, ...). For a non-Gaussian family with an AR(1) correlation
    the latent process is drawn afresh from its fitted ``phi`` and ``sd_ar``.

    Examples
    --------
    >>> y_rep = posterior_predictive(fit.idata, fit.design, n_draws=100)   # doctest: +SKIP
    """
    post = idata.posterior.stack(sample=("chain", "draw"))
    total = post.sizes["sample"]
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(total, size=min(n_draws or total, total), replace=False))
    post = post.isel(sample=idx)

    def draws(name, *dims):
        return post[name].transpose("sample", *dims).values

    beta = draws("beta", "coef") if "beta" in post else np.zeros((idx.size, 0))
    b = {}
    for g in design.groups:
        name = f"b_{g.name}"
        if name not in post:
            raise KeyError(f"{name} is not in the posterior; fit with recover_random_effects=True.")
        b[g.name] = post[name].sel({g.name: list(g.levels)}).transpose("sample", g.name, f"{g.name}__term").values
    mu = linear_predictor(design, beta, b)
    phi = draws("phi") if "phi" in post else None
    fam = design.spec.family
    if fam.collapsible:
        return mu + residual_draws(design, draws("sigma"), phi, rng)
    if phi is not None:
        # a fresh draw of the latent AR(1) process of the linear predictor (new occasions
        # of the same clusters)
        mu = mu + residual_draws(design, draws("sd_ar"), phi, rng)
    fp = {k: draws(k)[:, None] for k in fam.extra_params}
    trials = None if design.trials is None else design.trials[None, :]
    return fam.draw(rng, mu, fp, trials)
