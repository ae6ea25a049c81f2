"""The AR(1) / continuous-time AR(1) residual process within clusters: the one owner.

Along a cluster's time-sorted rows the residuals follow ``e_k = a_k e_(k-1) + sqrt(1 - a_k^2)
sigma eps_k`` with ``a_k = phi^(t_k - t_(k-1))`` (``a = 0`` for a cluster's first row) and
``eps ~ N(0, 1)``: a stationary process with ``corr(e_s, e_t) = phi^|t - s|``
(``nlme::corAR1`` on integer times, ``corCAR1`` on real ones). Everything that uses the
process calls this module: the collapsed likelihood and the latent backend (whitening),
the recovery of random effects, the log-likelihood, posterior predictive draws and
:func:`hierbayes.simulate` (the recursion), and predictions for new rows (the correlation
between new and observed rows).

Notes
-----
The whitening map ``w_k = (e_k - a_k e_(k-1)) / sqrt(1 - a_k^2)`` turns the residuals into
independent ``N(0, sigma^2)`` values: ``R^(-1/2) e`` for the correlation matrix ``R``, with
``log |R| = -sum_k log(1 / (1 - a_k^2))``. The functions taking ``xp`` run on numpy or
pytensor.tensor arrays alike.

Examples
--------
>>> import numpy as np
>>> a = np.array([[0.0, 0.5, 0.25]])          # phi = 0.5, times 0, 1, 3
>>> e = recursion(np.array([[1.0, 0.0, 0.0]]), a)
>>> e.round(4).tolist()                        # the first innovation decays as phi^t
[[1.0, 0.5, 0.125]]
"""

from __future__ import annotations

import numpy as np


def layout_arrays(lay) -> dict[str, np.ndarray]:
    """Lags, the mask of rows that have a predecessor (``inner``) and odd-lag flags of a
    padded layout: what the AR(1)/CAR(1) whitening needs."""
    inner = lay.mask.copy()
    inner[:, 0] = False
    return {
        "lag": lay.lag,
        "inner": inner.astype(float),
        "odd": (np.mod(lay.lag, 2) == 1).astype(float),
    }


def coefficients(xp, corr: str | None, phi, lag, inner, odd):
    """Whitening coefficients ``a = phi^lag`` (0 for a cluster's first row) and ``1/s^2``."""
    if corr is None:
        return None, None
    if corr == "ar1":
        # phi may be negative: phi^lag = |phi|^lag, times sign(phi) for odd lags. Lag-1
        # slots use phi itself, and the power is taken at lag >= 2 only, so the gradient
        # is finite at phi = 0 (the initial point of Uniform(-1, 1)); |phi|^0 would give
        # 0 * inf there.
        one = inner * (lag < 1.5)
        mag = xp.abs(phi) ** xp.maximum(lag, 2.0)
        a = inner * (one * phi + (1 - one) * mag * (odd * xp.sign(phi) + (1 - odd)))
    else:
        a = inner * phi**lag
    inv_s2 = 1.0 / (1.0 - a * a)
    return a, inv_s2


def shift(xp, v):
    """``v[:, k-1]`` along axis 1 (zero for k = 0)."""
    return xp.concatenate([xp.zeros_like(v[:, :1]), v[:, :-1]], axis=1)


def whiten(xp, v, a, inv_s2):
    """Apply the AR whitening map along axis 1 of a (C, T, ...) array."""
    if a is None:
        return v
    extra = (slice(None), slice(None)) + (None,) * (v.ndim - 2)
    return (v - a[extra] * shift(xp, v)) * xp.sqrt(inv_s2)[extra]


def lag_power(phi, lag):
    """``phi^lag`` for whole-number or real lags; a negative AR(1) ``phi`` keeps its sign
    on odd lags (``sign(phi)^lag |phi|^lag``). Broadcasts ``phi`` against ``lag``.

    Examples
    --------
    >>> lag_power(np.array([-0.5]), np.array([1.0, 2.0, 3.0])).tolist()
    [-0.5, 0.25, -0.125]
    """
    return np.sign(phi) ** lag * np.abs(phi) ** lag


def correlation_matrix(t1: np.ndarray, t2: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """``phi^|t1_i - t2_j|`` for D draws of ``phi``: (D, len(t1), len(t2)).

    Integer lags keep the sign of a negative AR(1) ``phi`` (:func:`lag_power`).

    Examples
    --------
    >>> correlation_matrix(np.array([0.0, 2.0]), np.array([3.0]), np.array([-0.5])).round(3).tolist()
    [[[-0.125], [-0.5]]]
    """
    lag = np.abs(t1[:, None] - t2[None, :])
    return lag_power(phi[:, None, None], lag)


def recursion(innovations: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The process from its scaled innovations along the last axis (a cluster's rows):
    ``e_0 = x_0``, ``e_k = a_k e_(k-1) + sqrt(1 - a_k^2) x_k``, for innovations ``x`` and
    coefficients ``a`` of the same shape (padding: ``a = 0``, ``x = 0``)."""
    e = np.zeros(np.broadcast_shapes(innovations.shape, a.shape))
    for k in range(e.shape[-1]):
        if k == 0:
            e[..., 0] = innovations[..., 0]
            continue
        e[..., k] = a[..., k] * e[..., k - 1] + np.sqrt(1 - a[..., k] ** 2) * innovations[..., k]
    return e
