"""The numba kernel behind :func:`hierbayes.likelihood.recover.draw_random_effects`.

One pass per posterior draw over the clusters, each cluster's rows read once: whiten the
residual ``e = y - X beta`` and ``Z`` on the fly (AR(1)/CAR(1): ``a_k = phi^(t_k -
t_(k-1))``), accumulate ``Q = Z*^T Z*`` and ``h = Z*^T e*``, then the q x q algebra of the
conditional ``N(M^-1 h, sigma^2 M^-1)``, ``M = sigma^2 S^-1 + Q``: a Cholesky ``M = L L^T``,
the mean by two triangular solves and the noise ``sigma L^-T z``. Nothing of size
rows x draws is made: the data are held once in cluster-and-time order (:func:`row_layout`)
and the work per draw is linear in the rows. The maths are those of the numpy reference
:func:`hierbayes.likelihood.recover.draw_random_effects_numpy`, which it is tested equal to
on the same random numbers.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: correlation codes of the kernel
NONE, AR1, CAR1 = 0, 1, 2
CODES = {None: NONE, "ar1": AR1, "car1": CAR1}


def row_layout(lay) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of a cluster layout in cluster-and-time order.

    Returns ``order`` (the design row of each, cluster by cluster in time order),
    ``starts`` (C + 1 offsets into ``order``) and ``lag`` (each row's time since the
    previous row of its cluster; 0 for a cluster's first row).

    Examples
    --------
    >>> import hierbayes as hb
    >>> m = hb.Model("y ~ time + (1 | id)", hb.datasets.load("clark_ar1"),
    ...              correlation=hb.AR1(time="time", group="id"))
    >>> order, starts, lag = row_layout(m.design.layout)
    >>> int(starts[-1]) == m.design.n, int(starts[1]), lag[:3].tolist()
    (True, 4, [0.0, 1.0, 1.0])
    """
    order = lay.pos[lay.mask].astype(np.int64)
    starts = np.zeros(lay.n_clusters + 1, dtype=np.int64)
    np.cumsum(lay.sizes, out=starts[1:])
    return order, starts, np.ascontiguousarray(lay.lag[lay.mask], dtype=float)


@numba.njit(cache=True, error_model="numpy", inline="always")
def lag_coefficient(code, phi, lag):
    """``a = phi^lag`` of a row with a predecessor: AR(1) keeps the sign of a negative
    ``phi`` on odd whole lags, as :func:`hierbayes.likelihood.arprocess.coefficients`.

    Examples
    --------
    >>> lag_coefficient(AR1, -0.5, 3.0), lag_coefficient(CAR1, 0.25, 0.5)
    (-0.125, 0.5)
    """
    if code == AR1:
        if lag < 1.5:
            return phi
        a = math.pow(abs(phi), lag)
        return -a if (phi < 0.0 and lag % 2.0 == 1.0) else a
    return math.pow(phi, lag)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def draw_chunk(y, X, Z, order, starts, lag, code, beta, s2, phi, S_inv, z, offset, row_sd, out):
    """Draw the random effects of every cluster for a chunk of n posterior draws.

    Parameters
    ----------
    y, X, Z : (N,), (N, p), (N, q) arrays
        The design in cluster-and-time order (``order`` applied).
    order, starts, lag : arrays
        :func:`row_layout`: ``order`` maps to the design row of ``offset`` and ``row_sd``.
    code : int
        The correlation (:data:`CODES`).
    beta, s2, phi, S_inv : (n, p), (n,), (n,), (n, q, q) arrays
        Per draw: fixed effects, residual variance (1 with ``row_sd``), correlation
        parameter (ignored without a correlation) and the inverse random-effect covariance.
    z : (q, n, C) array
        Standard normal numbers: the noise of draw d and cluster c is ``L^-T z[:, d, c]``.
    offset, row_sd : (n, N) arrays or (0, 0) arrays
        Per-draw offset subtracted from ``y`` and per-row residual sd dividing ``e`` and
        ``Z`` (both in design row order); a (0, 0) array for none.
    out : (n, C, q) array
        Written with the draws.

    Examples
    --------
    Called by :func:`hierbayes.likelihood.recover.draw_random_effects` (whose example runs
    it); ``tests/likelihood/test_recover.py`` checks it against the numpy reference.
    """
    n, C, q, p = beta.shape[0], starts.size - 1, Z.shape[1], X.shape[1]
    has_off, has_sd = offset.shape[0] > 0, row_sd.shape[0] > 0
    for d in numba.prange(n):
        zc = np.empty(q)
        zp = np.empty(q)
        zt = np.empty(q)
        Q = np.empty((q, q))
        L = np.empty((q, q))
        h = np.empty(q)
        w = np.empty(q)
        ph = phi[d]
        sd = math.sqrt(s2[d])
        for c in range(C):
            for i in range(q):
                h[i] = 0.0
                for j in range(q):
                    Q[i, j] = 0.0
            e_prev = 0.0
            for k in range(starts[c], starts[c + 1]):
                e = y[k]
                for i in range(p):
                    e -= X[k, i] * beta[d, i]
                if has_off:
                    e -= offset[d, order[k]]
                for i in range(q):
                    zc[i] = Z[k, i]
                if has_sd:
                    r = order[k]
                    e /= row_sd[d, r]
                    for i in range(q):
                        zc[i] /= row_sd[d, r]
                if code != NONE and k > starts[c]:
                    a = lag_coefficient(code, ph, lag[k])
                    f = 1.0 / math.sqrt(1.0 - a * a)
                    et = (e - a * e_prev) * f
                    for i in range(q):
                        zt[i] = (zc[i] - a * zp[i]) * f
                else:
                    et = e
                    for i in range(q):
                        zt[i] = zc[i]
                e_prev = e
                for i in range(q):
                    zp[i] = zc[i]
                    h[i] += zt[i] * et
                    for j in range(i + 1):
                        Q[i, j] += zt[i] * zt[j]
            for i in range(q):  # L L^T = M = s2 S^-1 + Q
                for j in range(i + 1):
                    v = s2[d] * S_inv[d, i, j] + Q[i, j]
                    for m in range(j):
                        v -= L[i, m] * L[j, m]
                    L[i, j] = math.sqrt(v) if i == j else v / L[j, j]
            for i in range(q):  # forward: L w = h
                v = h[i]
                for m in range(i):
                    v -= L[i, m] * w[m]
                w[i] = v / L[i, i]
            for i in range(q - 1, -1, -1):  # back: L^T mean = w, and L^T x = z
                v = w[i]
                t = z[i, d, c]
                for m in range(i + 1, q):
                    v -= L[m, i] * out[d, c, m]
                    t -= L[m, i] * zt[m]
                mean = v / L[i, i]
                zt[i] = t / L[i, i]  # the noise (zt is free here)
                out[d, c, i] = mean
            for i in range(q):
                out[d, c, i] += sd * zt[i]
