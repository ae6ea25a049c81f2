"""ARMA(p, q) residual correlation: the map from partial autocorrelations to coefficients
and the exact autocorrelation function.

A stationary, invertible ARMA(p, q) process ``x_t = sum_i ar_i x_(t-i) + e_t + sum_j ma_j
e_(t-j)`` (nlme's ``corARMA`` and brms' ``arma`` sign convention) is parameterised by
partial autocorrelations in (-1, 1) (Jones 1980, Monahan 1984): the AR coefficients are
the Durbin-Levinson step-up of the AR partial autocorrelations ``kappa`` (every
``|kappa_k| < 1`` gives a stationary AR polynomial and every stationary one has such
``kappa``); the MA coefficients are the step-up of the MA partial autocorrelations with
alternating signs, ``ma_j = (-1)^(j+1) a_j`` (the polynomial ``1 + sum ma_j z^j`` has
the roots of ``1 - sum a_j z^j`` negated: invertible; ``ma_1 = kappa_1`` for q = 1).

The autocorrelation is exact (no truncated psi-weights): the ARMA process is the MA
filter applied to the AR(p) process ``w`` (``x_t = sum_j m_j w_(t-j)``, ``m_0 = 1``), so
``gamma_x(k) = sum_(i,j) m_i m_j gamma_w(k + j - i)``, with the AR(p) autocorrelations
``rho_w`` from the same Durbin-Levinson recursion (lags 0..p) and the AR recursion after.

Packed parameters ``theta`` (last axis :data:`WIDTH`): the AR partial autocorrelations
padded with zeros to :data:`MAX_ORDER`, then the MA ones (a zero partial autocorrelation
adds nothing: the same process). Functions taking lists of "scalars" run on numpy arrays
(any common shape, e.g. (D,) draws) and PyTensor scalars alike.

Examples
--------
>>> import numpy as np
>>> [float(np.round(r, 6)) for r in acf([np.array(0.5)], [], 3)]   # AR(1): 0.5 ** k
[1.0, 0.5, 0.25, 0.125]
>>> [float(np.round(r, 6)) for r in acf([], [np.array(0.5)], 2)]   # MA(1): 0.5 / 1.25
[1.0, 0.4, 0.0]
"""

from __future__ import annotations

import numpy as np

#: the largest AR or MA order
MAX_ORDER = 3
#: the packed parameter width: AR partial autocorrelations, then MA ones
WIDTH = 2 * MAX_ORDER


def step_up(kappa: list) -> tuple[list, list]:
    """Durbin-Levinson step-up: the AR(p) coefficients ``a_1..a_p`` of partial
    autocorrelations ``kappa_1..kappa_p``, and the AR(p) autocorrelations at lags 0..p.

    Examples
    --------
    >>> a, rho = step_up([0.5, 0.2])
    >>> [round(v, 6) for v in a], [round(v, 6) for v in rho]
    ([0.4, 0.2], [1.0, 0.5, 0.4])
    """
    a: list = []
    rho: list = [1.0]
    for k, kap in enumerate(kappa, start=1):
        # rho_k from kappa_k = (rho_k - sum a_j rho_(k-j)) / (1 - sum a_j rho_j)
        pred = sum(a[j] * rho[k - 1 - j] for j in range(k - 1))
        resid = 1.0 - sum(a[j] * rho[j + 1] for j in range(k - 1))
        rho.append(pred + kap * resid)
        a = [a[j] - kap * a[k - 2 - j] for j in range(k - 1)] + [kap]
    return a, rho


def coefficients(ar_pacf: list, ma_pacf: list) -> tuple[list, list]:
    """The AR and MA coefficients of the partial autocorrelations (see the module).

    Examples
    --------
    >>> ar, ma = coefficients([0.5], [0.3, 0.4])
    >>> [round(v, 6) for v in ar], [round(v, 6) for v in ma]
    ([0.5], [0.18, -0.4])
    """
    ma = [a if j % 2 == 0 else -a for j, a in enumerate(step_up(ma_pacf)[0])]
    return step_up(ar_pacf)[0], ma


def acf(ar_pacf: list, ma_pacf: list, max_lag: int) -> list:
    """The exact autocorrelations of ARMA(p, q) at lags 0..``max_lag`` (a list; see the
    module for the method)."""
    a, rho = step_up(ar_pacf)
    p = len(a)
    _, m = coefficients([], ma_pacf)
    m = [1.0] + m
    q = len(m) - 1
    top = max_lag + q
    for k in range(p + 1, top + 1):  # the AR recursion past lag p
        rho.append(sum(a[j] * rho[k - 1 - j] for j in range(p)))
    while len(rho) <= top:  # p = 0: white noise
        rho.append(0.0 * rho[0])

    def rw(k):
        return rho[abs(k)]

    gam = [sum(m[i] * m[j] * rw(k + j - i) for i in range(q + 1) for j in range(q + 1))
           for k in range(max_lag + 1)]
    return [g / gam[0] for g in gam]


def split(theta) -> tuple[list, list]:
    """The AR and MA partial autocorrelations (lists of (...)-shaped entries) of packed
    ``theta`` (..., :data:`WIDTH`)."""
    th = np.asarray(theta, dtype=float)
    return ([th[..., k] for k in range(MAX_ORDER)],
            [th[..., MAX_ORDER + k] for k in range(MAX_ORDER)])


def pack(ar_pacf, ma_pacf) -> np.ndarray:
    """Packed ``theta`` (D, :data:`WIDTH`) of partial autocorrelations (D, p) and (D, q)
    (None for an order 0).

    Examples
    --------
    >>> pack(np.array([[0.5]]), None).tolist()
    [[0.5, 0.0, 0.0, 0.0, 0.0, 0.0]]
    """
    parts = [x for x in (ar_pacf, ma_pacf) if x is not None]
    D = np.asarray(parts[0]).shape[0]
    out = np.zeros((D, WIDTH))
    for off, x in ((0, ar_pacf), (MAX_ORDER, ma_pacf)):
        if x is not None:
            x = np.asarray(x, dtype=float).reshape(D, -1)
            out[:, off:off + x.shape[1]] = x
    return out


def acf_packed(theta, max_lag: int) -> np.ndarray:
    """Autocorrelations (D, max_lag + 1) of D packed parameter draws (D, :data:`WIDTH`)."""
    ar, ma = split(np.atleast_2d(theta))
    return np.stack(acf(ar, ma, int(max_lag)), axis=-1)


def step_down(a) -> np.ndarray:
    """The partial autocorrelations of AR coefficients ``a`` (the inverse of
    :func:`step_up`); a stationary polynomial gives every ``|kappa| < 1``.

    Examples
    --------
    >>> step_down([0.4, 0.2]).round(6).tolist()
    [0.5, 0.2]
    """
    a = [float(v) for v in np.atleast_1d(np.asarray(a, dtype=float))]
    kappa = [0.0] * len(a)
    for k in range(len(a), 0, -1):
        kap = a[k - 1]
        kappa[k - 1] = kap
        if abs(kap) >= 1.0:
            return np.array(kappa)
        a = [(a[j] + kap * a[k - 2 - j]) / (1.0 - kap * kap) for j in range(k - 1)]
    return np.array(kappa)


def pacf_of(ar, ma, p: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """The partial autocorrelations of AR and MA coefficients given by the user (order
    ``p`` and ``q``), checked: stationary and invertible, else an error naming them.

    Examples
    --------
    >>> [v.round(6).tolist() for v in pacf_of([0.4, 0.2], [0.3], 2, 1)]
    [[0.5, 0.2], [0.3]]
    """
    out = []
    for name, v, k, sign in (("ar", ar, p, False), ("ma", ma, q, True)):
        v = np.atleast_1d(np.asarray([] if v is None else v, dtype=float))
        if v.shape != (k,):
            raise ValueError(f"{name} needs {k} coefficient(s) for this ARMA({p}, {q}), got {v.tolist()}.")
        a = np.array([x if j % 2 == 0 else -x for j, x in enumerate(v)]) if sign else v
        kap = step_down(a)
        if np.any(np.abs(kap) >= 1.0):
            what = "stationary (AR)" if name == "ar" else "invertible (MA)"
            raise ValueError(f"{name}={v.tolist()} is not {what}: the roots of its polynomial "
                             "must lie outside the unit circle.")
        out.append(kap)
    return out[0], out[1]


def theta_draws(get, p: int, q: int) -> np.ndarray:
    """Packed ``theta`` (D, :data:`WIDTH`) from a posterior: ``get(name, dim)`` returns
    the draws (D, k) of ``arma_ar_pacf`` / ``arma_ma_pacf`` (:mod:`hierbayes.names`)."""
    from hierbayes import names

    return pack(get(names.ARMA_AR_PACF, names.AR_LAG_DIM) if p else None,
                get(names.ARMA_MA_PACF, names.MA_LAG_DIM) if q else None)
