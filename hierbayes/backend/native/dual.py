"""Forward-mode dual numbers and scalar prior densities for the numba kernel.

A dual is a float array ``d`` of length ``1 + n``: ``d[0]`` the value, ``d[1:]`` its gradient
with respect to the ``n`` sampled coordinates. The kernel (:mod:`hierbayes.backend.native.kernel`)
unpacks parameters, log-Jacobians and priors with these operations, so their gradients come
out exact without hand-derived chain rules. :func:`prior_logp` gives a prior's log density
and its derivative in PyMC's parameterisations.
"""

from __future__ import annotations

import math

import numba
import numpy as np

LOG_2PI = math.log(2.0 * math.pi)

# numpy's error model: a division by zero at an extreme point gives inf/NaN (the sampler
# rejects the point) instead of raising inside a C callback
jit = numba.njit(cache=True, error_model="numpy")

#: prior codes (Prior.dist -> code); each prior is (code, a, b, c)
PRIOR_CODES = {
    "Flat": 0, "HalfFlat": 0, "Normal": 1, "StudentT": 2, "Cauchy": 3, "HalfNormal": 4,
    "HalfStudentT": 5, "HalfCauchy": 6, "Exponential": 7, "Gamma": 8, "InverseGamma": 9,
    "LogNormal": 10, "Uniform": 11, "Beta": 12, "Weibull": 13,
}


@jit
def const(v, n):
    out = np.zeros(n + 1)
    out[0] = v
    return out


@jit
def var(x, i):
    out = np.zeros(x.size + 1)
    out[0] = x[i]
    out[1 + i] = 1.0
    return out


@jit
def chain(a, f, df):
    out = a * df
    out[0] = f
    return out


@jit
def add(a, b):
    return a + b


@jit
def mul(a, b):
    out = a[0] * b + b[0] * a
    out[0] = a[0] * b[0]
    return out


@jit
def div(a, b):
    v = a[0] / b[0]
    out = (a - v * b) / b[0]
    out[0] = v
    return out


@jit
def scale(a, k):
    return a * k


@jit
def shift(a, k):
    out = a.copy()
    out[0] += k
    return out


@jit
def exp(a):
    e = math.exp(a[0])
    return chain(a, e, e)


@jit
def log(a):
    return chain(a, math.log(a[0]), 1.0 / a[0])


@jit
def log1p(a):
    return chain(a, math.log1p(a[0]), 1.0 / (1.0 + a[0]))


@jit
def sqrt(a):
    s = math.sqrt(a[0])
    return chain(a, s, 0.5 / s)


@jit
def sigmoid(a):
    v = a[0]
    if v >= 0:
        s = 1.0 / (1.0 + math.exp(-v))
    else:
        e = math.exp(v)
        s = e / (1.0 + e)
    return chain(a, s, s * (1.0 - s))


@jit
def log_sigmoid(a):
    """log(sigmoid(a)) = -softplus(-a)."""
    v = a[0]
    if v >= 0:
        e = math.exp(-v)
        f = -math.log1p(e)
        s = 1.0 / (1.0 + e)
    else:
        e = math.exp(v)
        f = v - math.log1p(e)
        s = e / (1.0 + e)
    return chain(a, f, 1.0 - s)


@jit
def tanh(a):
    t = math.tanh(a[0])
    return chain(a, t, 1.0 - t * t)


# ------------------------------------------------------------------------------- priors


@jit
def prior_logp(code, a, b, c, v):
    """Log density of a prior at ``v`` and its derivative (PyMC's parameterisations)."""
    if code == 0:
        return 0.0, 0.0
    if code == 1:  # Normal(mu=a, sigma=b)
        z = (v - a) / b
        return -0.5 * z * z - math.log(b) - 0.5 * LOG_2PI, -z / b
    if code == 2 or code == 5:  # StudentT(nu=a, mu=b, sigma=c) / HalfStudentT(nu=a, sigma=c)
        if code == 5 and v < 0:
            return -np.inf, 0.0
        mu = b if code == 2 else 0.0
        z = (v - mu) / c
        lp = (math.lgamma(0.5 * (a + 1.0)) - math.lgamma(0.5 * a) - 0.5 * math.log(a * math.pi)
              - math.log(c) - 0.5 * (a + 1.0) * math.log1p(z * z / a))
        if code == 5:
            lp += math.log(2.0)
        return lp, -(a + 1.0) * z / (c * a * (1.0 + z * z / a))
    if code == 3 or code == 6:  # Cauchy(alpha=a, beta=b) / HalfCauchy(beta=b)
        if code == 6 and v < 0:
            return -np.inf, 0.0
        loc = a if code == 3 else 0.0
        z = (v - loc) / b
        lp = -math.log(math.pi * b) - math.log1p(z * z)
        if code == 6:
            lp += math.log(2.0)
        return lp, -2.0 * z / (b * (1.0 + z * z))
    if code == 4:  # HalfNormal(sigma=a)
        if v < 0:
            return -np.inf, 0.0
        return 0.5 * math.log(2.0 / math.pi) - math.log(a) - 0.5 * (v / a) ** 2, -v / (a * a)
    if v <= 0 and code in (7, 8, 9, 10, 13):
        return -np.inf, 0.0
    if code == 7:  # Exponential(lam=a)
        return math.log(a) - a * v, -a
    if code == 8:  # Gamma(alpha=a, beta=b)
        return (a * math.log(b) - math.lgamma(a) + (a - 1.0) * math.log(v) - b * v,
                (a - 1.0) / v - b)
    if code == 9:  # InverseGamma(alpha=a, beta=b)
        return (a * math.log(b) - math.lgamma(a) - (a + 1.0) * math.log(v) - b / v,
                -(a + 1.0) / v + b / (v * v))
    if code == 10:  # LogNormal(mu=a, sigma=b)
        z = (math.log(v) - a) / b
        return (-math.log(v) - math.log(b) - 0.5 * LOG_2PI - 0.5 * z * z,
                -1.0 / v - z / (b * v))
    if code == 11:  # Uniform(lower=a, upper=b)
        if v < a or v > b:
            return -np.inf, 0.0
        return -math.log(b - a), 0.0
    if code == 12:  # Beta(alpha=a, beta=b)
        if v <= 0 or v >= 1:
            return -np.inf, 0.0
        lb = math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
        return ((a - 1.0) * math.log(v) + (b - 1.0) * math.log1p(-v) - lb,
                (a - 1.0) / v - (b - 1.0) / (1.0 - v))
    if code == 13:  # Weibull(alpha=a, beta=b)
        r = (v / b) ** a
        return (math.log(a) - a * math.log(b) + (a - 1.0) * math.log(v) - r,
                (a - 1.0) / v - a * r / v)
    return np.nan, np.nan
