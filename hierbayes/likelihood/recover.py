"""Recovery of the random effects of a marginal fit from their exact conditional Gaussian.

Given one posterior draw of (beta, sigma, S, phi), the random effects of cluster c are

    b_c | y ~ N(M_c^-1 Z*_c^T r_c, sigma^2 M_c^-1),   M_c = sigma^2 S^-1 + Z*_c^T Z*_c,

with ``*`` the AR-whitened data and ``r = y* - X* beta`` (DESIGN.md, step 4). Drawing one
``b`` per posterior draw makes the joint draws exact samples of p(b, theta | y), so a
marginal fit holds the same ``b_<g>`` variable as a latent fit.
"""

from __future__ import annotations

import numpy as np

from hierbayes.likelihood import recover_kernel, smallmat
from hierbayes.likelihood.arprocess import coefficients as ar_coefficients, whiten
from hierbayes.likelihood.collapsed import padded_arrays, collapsed_group
from hierbayes.design.build import Design
from hierbayes.likelihood.patterns import cluster_patterns
from hierbayes.likelihood.structured import compsymm_whiten, correlation_matrix, layout_arrays


def covariance_cholesky(sd: np.ndarray, corr: np.ndarray | None) -> np.ndarray:
    """Cholesky factors of ``diag(sd) corr diag(sd)`` for stacked draws (..., q)."""
    if corr is None:
        return sd[..., :, None] * np.eye(sd.shape[-1])
    cov = sd[..., :, None] * corr * sd[..., None, :]
    return np.linalg.cholesky(cov)


def whiten_dense(design: Design, corr: str, theta: np.ndarray, e: np.ndarray, Zcols: list):
    """Whiten padded residuals ``e`` (D, C, T) and random-effect columns (each (D, C, T))
    within cluster by ``L^-1``, ``L`` the Cholesky factor of an unstructured or ARMA
    residual correlation at the cluster's occasion pattern, for D draws ``theta``.

    Examples
    --------
    >>> import hierbayes as hb, pandas as pd
    >>> df = pd.DataFrame({"g": [0, 0, 1], "t": [0, 1, 0], "y": [1.0, 2.0, 0.5], "x": [0.1, 0.2, 0.3]})
    >>> d = hb.Model("y ~ x + (0 + x | g)", df, correlation=hb.Unstructured(time="t", group="g")).design
    >>> C = np.array([[[1.0, 0.6], [0.6, 1.0]]])
    >>> w, _ = whiten_dense(d, "unstructured", C, np.array([[[1.0, 2.0], [0.5, 0.0]]]), [])
    >>> w.round(4).tolist()   # [1, (2 - 0.6) / 0.8] and the one-row cluster unchanged
    [[[1.0, 1.75], [0.5, 0.0]]]
    """
    e = e.copy()
    Zcols = [zc.copy() for zc in Zcols]
    for p in layout_arrays(design)["patterns"]:
        n = p.occasions.size
        L = np.linalg.cholesky(correlation_matrix(corr, p.occasions, p.occasions, theta))  # (D, n, n)
        for arr in [e, *Zcols]:
            sub = arr[:, p.clusters, :n]  # (D, m, n)
            arr[:, p.clusters, :n] = np.linalg.solve(L[:, None], sub[..., None])[..., 0]
    return e, Zcols


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
    """Draw ``b`` (D, C, q) given D flattened posterior draws, cluster by cluster.

    The numba kernel :func:`hierbayes.likelihood.recover_kernel.draw_chunk` (one pass per
    draw over each cluster's rows, memory linear in the rows) for no correlation, AR(1) and
    CAR(1); :func:`draw_random_effects_numpy` (the reference, on the padded layout) for the
    other correlations. Both take the same random numbers in the same order, so they give
    the same draws for the same ``rng``.

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
        Draws processed at once; default: at most 250, fewer for many clusters, so the
        chunk's random numbers stay near 2^24.
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
    >>> import numpy as np, hierbayes as hb
    >>> m = hb.Model("y ~ time + (1 | id)", hb.datasets.load("clark_ar1"),
    ...              correlation=hb.AR1(time="time", group="id"))
    >>> D = 3
    >>> b = draw_random_effects(m.design, np.zeros((D, 2)), np.ones(D), np.full(D, 0.5),
    ...                         np.ones((D, 1, 1)), np.random.default_rng(0))
    >>> b.shape == (D, m.design.groups[0].n_levels, 1)
    True
    """
    corr = design.correlation.kind if design.correlation is not None else None
    if corr not in recover_kernel.CODES:
        return draw_random_effects_numpy(design, beta, sigma, phi, L_S, rng, chunk or draw_chunk(design),
                                         offset=offset, row_sigma=row_sigma)
    g = collapsed_group(design)
    D, q, C = beta.shape[0], g.q, design.layout.n_clusters
    order, starts, lag = recover_kernel.row_layout(design.layout)
    chunk = chunk or int(min(250, max(1, 2**24 // (C * q))))
    X = np.asarray(design.X, dtype=float).reshape(design.n, -1)[order]  # cluster order
    Zg = np.asarray(g.Z, dtype=float)[order]
    y = np.asarray(design.y, dtype=float)[order]
    S_inv = np.linalg.inv(L_S @ np.swapaxes(L_S, -1, -2))
    s2 = sigma**2 if row_sigma is None else np.ones(D)
    ph = np.zeros(D) if phi is None else np.asarray(phi, dtype=float)
    none = np.zeros((0, 0))
    out = np.empty((D, C, q))
    for s in range(0, D, chunk):
        sl = slice(s, min(s + chunk, D))
        z = rng.standard_normal((q, sl.stop - sl.start, C))
        recover_kernel.draw_chunk(
            y, X, Zg, order, starts, lag, recover_kernel.CODES[corr],
            np.ascontiguousarray(beta[sl], dtype=float).reshape(sl.stop - sl.start, -1),
            np.ascontiguousarray(s2[sl], dtype=float), np.ascontiguousarray(ph[sl]),
            np.ascontiguousarray(S_inv[sl]), z,
            none if offset is None else np.ascontiguousarray(offset[sl], dtype=float),
            none if row_sigma is None else np.ascontiguousarray(row_sigma[sl], dtype=float),
            out[sl],
        )
    return out


def draw_random_effects_numpy(
    design: Design,
    beta: np.ndarray,
    sigma: np.ndarray,
    phi: np.ndarray | None,
    L_S: np.ndarray,
    rng: np.random.Generator,
    chunk: int = 250,
    offset: np.ndarray | None = None,
    row_sigma: np.ndarray | None = None,
) -> np.ndarray:
    """As :func:`draw_random_effects`, in numpy on the padded (cluster x occasion) layout,
    vectorised over (draw, cluster): the reference of the numba kernel, and the sampler of
    the correlations it does not cover (compound symmetry). Parameters as
    :func:`draw_random_effects`; ``chunk`` bounds memory at chunk x N x q numbers.

    Examples
    --------
    >>> import numpy as np, hierbayes as hb
    >>> m = hb.Model("y ~ time + (0 + time | id)", hb.datasets.load("clark_ar1"),
    ...              correlation=hb.CompSymm(group="id"))
    >>> b = draw_random_effects_numpy(m.design, np.zeros((2, 2)), np.ones(2), np.full(2, 0.3),
    ...                               np.ones((2, 1, 1)), np.random.default_rng(0))
    >>> b.shape[0], b.shape[2]
    (2, 1)
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
        elif corr in ("unstructured", "arma"):  # L^-1 per occasion pattern and draw
            e, Zcols = whiten_dense(design, corr, phi[sl], e, Zcols)
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
