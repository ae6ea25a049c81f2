"""Recovery of the random effects of a marginal fit from their exact conditional Gaussian.

Given one posterior draw of (beta, sigma, S, phi), the random effects of cluster c are

    b_c | y ~ N(M_c^-1 Z*_c^T r_c, sigma^2 M_c^-1),   M_c = sigma^2 S^-1 + Z*_c^T Z*_c,

with ``*`` the AR-whitened data and ``r = y* - X* beta`` (DESIGN.md, step 4). Drawing one
``b`` per posterior draw makes the joint draws exact samples of p(b, theta | y), so a
marginal fit holds the same ``b_<g>`` variable as a latent fit.
"""

from __future__ import annotations

import numpy as np

from hierbayes.likelihood import smallmat
from hierbayes.likelihood.arprocess import coefficients as ar_coefficients, whiten
from hierbayes.likelihood.collapsed import padded_arrays, collapsed_group
from hierbayes.design.build import Design
from hierbayes.likelihood.patterns import cluster_patterns
from hierbayes.likelihood.structured import compsymm_whiten


def covariance_cholesky(sd: np.ndarray, corr: np.ndarray | None) -> np.ndarray:
    """Cholesky factors of ``diag(sd) corr diag(sd)`` for stacked draws (..., q)."""
    if corr is None:
        return sd[..., :, None] * np.eye(sd.shape[-1])
    cov = sd[..., :, None] * corr * sd[..., None, :]
    return np.linalg.cholesky(cov)


#: numbers per (draw, cluster, occasion) array that one chunk of :func:`draw_random_effects`
#: holds at most (a few such arrays are alive at once: about 32 MB each)
CHUNK_CELLS = 4_000_000


def draw_chunk(design: Design, cells: int = CHUNK_CELLS) -> int:
    """Posterior draws per chunk of :func:`draw_random_effects`: at most 250, and at most
    ``cells`` numbers per padded (draws x clusters x occasions) array, so that memory
    stays bounded on unbalanced data (a few clusters of many rows widen the padded layout).

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.likelihood.recover import draw_chunk
    >>> draw_chunk(hb.Model("y ~ time + (1 | id)", hb.datasets.load("clark_ar1")).design)
    250
    """
    C, T = design.layout.pos.shape
    return int(max(1, min(250, cells // max(1, C * T))))


def draw_random_effects(
    design: Design,
    beta: np.ndarray,
    sigma: np.ndarray,
    phi: np.ndarray | None,
    L_S: np.ndarray,
    rng: np.random.Generator,
    chunk: int | None = None,
    offset: np.ndarray | None = None,
    row_sigma: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``b`` (D, C, q) given D flattened posterior draws.

    Parameters
    ----------
    design : Design
        Its :func:`~hierbayes.likelihood.collapsed.collapsed_group` is the factor drawn.
    beta : (D, p) array
    sigma : (D,) array
    phi : (D,) array or None
    L_S : (D, q, q) array
        Cholesky factors of the random-effect covariance.
    rng : numpy Generator
    chunk : int, optional
        Draws processed at once (default :func:`draw_chunk`; memory is a few chunk x
        clusters x occasions arrays).
    offset : (D, N) array, optional
        Per-draw offset in design row order, subtracted from the response: the other
        factors' ``Z b`` of a hybrid model, so the collapsed factor's effects are drawn
        conditionally on the latent ones.
    row_sigma : (D, N) array, optional
        A residual sd per row and draw, in design row order (a sigma formula; ``sigma`` is
        then ignored): ``e`` and ``Z`` are divided by it before the whitening, and the
        conditional is computed at unit residual variance (``R = D R(phi) D``).

    Examples
    --------
    See ``tests/test_recover.py``: the recovered draws match a latent fit's posterior.
    """
    lay, g = design.layout, collapsed_group(design)
    pad = padded_arrays(design, g)
    Y, X, Z = pad["Y"], pad["X"], pad["Z"]
    corr = design.correlation.kind if design.correlation is not None else None
    D, q = beta.shape[0], g.q
    C = lay.n_clusters
    chunk = draw_chunk(design) if chunk is None else int(chunk)
    out = np.empty((D, C, q))
    S_inv_all = np.linalg.inv(L_S @ np.swapaxes(L_S, -1, -2))  # (D, q, q)
    for s in range(0, D, chunk):
        sl = slice(s, min(s + chunk, D))
        n = sl.stop - sl.start
        e = Y[None] - np.einsum("ctp,dp->dct", X, beta[sl])  # (n, C, T)
        if offset is not None:
            off = np.zeros(e.shape)
            off[:, lay.mask] = offset[sl][:, lay.pos[lay.mask]]
            e = e - off
        Zcols = [np.broadcast_to(Z[None, :, :, k], e.shape) for k in range(q)]
        if row_sigma is not None:
            rs = np.ones(e.shape)
            rs[:, lay.mask] = row_sigma[sl][:, lay.pos[lay.mask]]
            e = e / rs
            Zcols = [zc / rs for zc in Zcols]
        if corr == "compsymm":  # R^-1/2 per cluster (structured.compsymm_whiten)
            ph = phi[sl][:, None]
            e = compsymm_whiten(np, e, pad["mask"], pad["nobs"], ph)[0]
            Zcols = [compsymm_whiten(np, zc, pad["mask"], pad["nobs"], ph)[0] for zc in Zcols]
        elif corr is not None:
            ph = phi[sl][:, None, None]
            a, inv_s2 = ar_coefficients(np, corr, ph, lay.lag[None], pad["inner"][None],
                                        pad["odd"][None])
            e = _whiten_batched(e, a, inv_s2)
            Zcols = [_whiten_batched(zc, a, inv_s2) for zc in Zcols]
        # per-cluster q x q algebra, unrolled over (draw, cluster) arrays
        s2 = (sigma[sl] ** 2)[:, None] if row_sigma is None else np.ones((n, 1))
        v = [(zc * e).sum(axis=-1) for zc in Zcols]
        M = [
            [s2 * S_inv_all[sl, i, j][:, None] + (Zcols[i] * Zcols[j]).sum(axis=-1) for j in range(i + 1)]
            for i in range(q)
        ]
        L = smallmat.cholesky(M, np.sqrt)
        mean = smallmat.back_solve_t(L, smallmat.forward_solve(L, v))
        z = rng.standard_normal((q, n, C))
        # sigma L^-T z has covariance sigma^2 M^-1
        noise = smallmat.back_solve_t(L, list(z))
        sd = np.sqrt(s2)
        for k in range(q):
            out[sl, :, k] = mean[k] + sd * noise[k]
    return out


def draw_random_effects_by_pattern(
    design: Design,
    beta: np.ndarray,
    sigma: np.ndarray,
    phi: np.ndarray | None,
    L_S: np.ndarray,
    rng: np.random.Generator,
    chunk: int = 250,
) -> np.ndarray:
    """As :func:`draw_random_effects`, for designs whose clusters share few time/design
    patterns (balanced longitudinal data): ``M`` and the whitening matrix are computed
    once per pattern and draw, and the per-cluster work is small matrix products."""
    g = design.groups[0]
    pad = padded_arrays(design, g)
    first, inverse = cluster_patterns(design, g)
    corr = design.correlation.kind if design.correlation is not None else None
    D, q = beta.shape[0], g.q
    out = np.empty((D, design.layout.n_clusters, q))
    S_inv = np.linalg.inv(L_S @ np.swapaxes(L_S, -1, -2))
    for pat, c0 in enumerate(first):
        members = np.flatnonzero(inverse == pat)
        T = int(pad["nobs"][c0])
        Zg = pad["Z"][c0, :T]  # (T, q), shared by the pattern
        Yg, Xg = pad["Y"][members, :T], pad["X"][members, :T]
        for s in range(0, D, chunk):
            sl = slice(s, min(s + chunk, D))
            n = sl.stop - sl.start
            W = np.broadcast_to(np.eye(T), (n, T, T)).copy()
            if corr is not None:
                a, inv_s2 = ar_coefficients(
                    np, corr, phi[sl][:, None], pad["lag"][c0, :T][None],
                    pad["inner"][c0, :T][None], pad["odd"][c0, :T][None],
                )
                r = np.sqrt(inv_s2)
                W = W * r[:, :, None]
                k = np.arange(1, T)
                W[:, k, k - 1] = -(a * r)[:, 1:]
            Zw = W @ Zg  # (n, T, q)
            s2 = sigma[sl] ** 2
            M = s2[:, None, None] * S_inv[sl] + np.swapaxes(Zw, 1, 2) @ Zw
            Minv = np.linalg.inv(M)
            L_M = np.linalg.cholesky(M)
            e = Yg[None] - np.moveaxis(Xg @ beta[sl].T, -1, 0)  # (n, C_g, T)
            v = e @ (np.swapaxes(W, 1, 2) @ Zw)  # rows: (Z*^T W e_c)^T, (n, C_g, q)
            mean = v @ Minv
            z = rng.standard_normal((n, members.size, q))
            # rows z L_M^-1: covariance L_M^-T L_M^-1 = M^-1
            noise = z @ np.linalg.inv(L_M)
            out[sl, members] = mean + np.sqrt(s2)[:, None, None] * noise
    return out


def _whiten_batched(v: np.ndarray, a: np.ndarray, inv_s2: np.ndarray) -> np.ndarray:
    """``whiten`` over a leading draw axis: (D, C, T, ...) arrays."""
    D = v.shape[0]
    flat = v.reshape((D * v.shape[1],) + v.shape[2:])
    af = np.broadcast_to(a, v.shape[:3]).reshape(flat.shape[:2])
    sf = np.broadcast_to(inv_s2, v.shape[:3]).reshape(flat.shape[:2])
    return whiten(np, flat, af, sf).reshape(v.shape)
