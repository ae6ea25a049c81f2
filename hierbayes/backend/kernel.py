"""A hand-written, numba-compiled log-density and gradient for collapsed Gaussian models.

nutpie calls this kernel as a C function pointer (no Python, no GIL) for each leapfrog
step. It computes exactly the log-density of the PyMC model that
:func:`hierbayes.backend.marginal.build` builds for a supported model (see
:mod:`hierbayes.backend.native`), constants included, and its gradient:

- the parameters are unpacked from the sampler's unconstrained vector as PyMC does (the
  ridge coordinates of :mod:`hierbayes.backend.reparam`, or PyMC's default transforms),
  with *forward-mode dual numbers* (value and gradient with respect to the whole vector,
  a few dozen scalar operations), together with the log-Jacobian and the priors;
- the collapsed likelihood is summed over cluster patterns (clusters sharing their
  observation times and random-effect design share the marginal covariance
  ``V = Z S Z^T + sigma^2 R(phi)``), with its gradient with respect to ``beta``,
  ``sigma^2``, ``phi`` and ``S`` in closed form:
  ``dll/dV = (Omega E Omega - c Omega) / 2`` for ``Omega = V^-1`` and
  ``E = sum_c e_c e_c^T`` (a quadratic form in ``(1, -beta)`` over precomputed cross-products),
  then chained through the dual numbers of ``sigma^2``, ``phi`` and ``S``.

Everything the kernel needs is packed into one float64 buffer
(:func:`hierbayes.backend.native.pack`), so one
compiled function (cached on disk by numba) serves every model and every data set.
"""

from __future__ import annotations

import math

import numba
import numpy as np

LOG_2PI = math.log(2.0 * math.pi)

# numpy's error model: a division by zero at an extreme point gives inf/NaN (the sampler
# rejects the point) instead of raising inside a C callback
_jit = numba.njit(cache=True, error_model="numpy")

# ----------------------------------------------------------------------------- buffer
# header slots (float64); integers are stored as floats
H_LEN, H_NDIM, H_P, H_Q, H_CORR, H_G, H_T, H_MODE = 0, 1, 2, 3, 4, 5, 6, 7
H_LO, H_HI, H_ETA, H_NORM, H_XR, H_XL, H_NEXP = 8, 9, 10, 11, 12, 13, 14
# offsets of the sections
O_BPRI, O_BIDX, O_SIGPRI, O_PHIPRI, O_SDPRI, O_ORDER = 15, 16, 17, 18, 19, 20
O_K, O_Z, O_TT, O_NOBS, O_COUNT = 21, 22, 23, 24, 25
H_DIRECT = 26  # 1: one "pattern" per cluster holding its rows W = [y, X], not K
HEADER = 27

#: parameterisations
MODE_RIDGE = 1  # reparam.ridge_parameters (random intercept + AR(1)/CAR(1))
MODE_PLAIN = 2  # PyMC's default transforms (params.residual_sd / ar_phi / re_covariance)

#: prior codes (Prior.dist -> code); each prior is (code, a, b, c)
PRIOR_CODES = {
    "Flat": 0, "HalfFlat": 0, "Normal": 1, "StudentT": 2, "Cauchy": 3, "HalfNormal": 4,
    "HalfStudentT": 5, "HalfCauchy": 6, "Exponential": 7, "Gamma": 8, "InverseGamma": 9,
    "LogNormal": 10, "Uniform": 11, "Beta": 12, "Weibull": 13,
}


# ------------------------------------------------------------------------- dual numbers
# a dual is a float array d of length 1 + n: d[0] the value, d[1:] the gradient


@_jit
def _const(v, n):
    out = np.zeros(n + 1)
    out[0] = v
    return out


@_jit
def _var(x, i):
    out = np.zeros(x.size + 1)
    out[0] = x[i]
    out[1 + i] = 1.0
    return out


@_jit
def _chain(a, f, df):
    out = a * df
    out[0] = f
    return out


@_jit
def _add(a, b):
    return a + b


@_jit
def _mul(a, b):
    out = a[0] * b + b[0] * a
    out[0] = a[0] * b[0]
    return out


@_jit
def _div(a, b):
    v = a[0] / b[0]
    out = (a - v * b) / b[0]
    out[0] = v
    return out


@_jit
def _scale(a, k):
    return a * k


@_jit
def _shift(a, k):
    out = a.copy()
    out[0] += k
    return out


@_jit
def _exp(a):
    e = math.exp(a[0])
    return _chain(a, e, e)


@_jit
def _log(a):
    return _chain(a, math.log(a[0]), 1.0 / a[0])


@_jit
def _log1p(a):
    return _chain(a, math.log1p(a[0]), 1.0 / (1.0 + a[0]))


@_jit
def _sqrt(a):
    s = math.sqrt(a[0])
    return _chain(a, s, 0.5 / s)


@_jit
def _sigmoid(a):
    v = a[0]
    if v >= 0:
        s = 1.0 / (1.0 + math.exp(-v))
    else:
        e = math.exp(v)
        s = e / (1.0 + e)
    return _chain(a, s, s * (1.0 - s))


@_jit
def _log_sigmoid(a):
    """log(sigmoid(a)) = -softplus(-a)."""
    v = a[0]
    if v >= 0:
        f = -math.log1p(math.exp(-v))
        s = 1.0 / (1.0 + math.exp(-v))
    else:
        f = v - math.log1p(math.exp(v))
        e = math.exp(v)
        s = e / (1.0 + e)
    return _chain(a, f, 1.0 - s)


@_jit
def _tanh(a):
    t = math.tanh(a[0])
    return _chain(a, t, 1.0 - t * t)


# ------------------------------------------------------------------------------- priors


@_jit
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


@_jit
def _prior_dual(buf, off, d):
    lp, dlp = prior_logp(int(buf[off]), buf[off + 1], buf[off + 2], buf[off + 3], d[0])
    return _chain(d, lp, dlp)


# -------------------------------------------------------------------- parameter unpacking


@_jit
def _lkj_chol_logp(buf, L, q, n):
    """PyMC's ``LKJCholeskyCov`` log density of a lower-triangular ``L`` (duals), with the
    sd priors of the sampled term order."""
    eta = buf[H_ETA]
    out = _const(buf[H_NORM], n)
    sdoff = int(buf[O_SDPRI])
    for i in range(q):
        var = _const(0.0, n)
        for j in range(i + 1):
            var = _add(var, _mul(L[i, j], L[i, j]))
        sd = _sqrt(var)
        out = _add(out, _prior_dual(buf, sdoff + 4 * i, sd))
        lcd = _log(_div(L[i, i], sd))
        out = _add(out, _scale(lcd, 2.0 * eta - 3.0 + q - i + 1.0))
        out = _add(out, _scale(_log(sd), -float(i)))
    return out


@_jit
def _fill_packed(x, k, rows, L, logp):
    """Rows ``0..rows-1`` of a lower-triangular ``L`` (duals) from the packed vector at
    ``x[k:]`` (row-major, diagonal on the log scale, whose log-Jacobian joins ``logp``);
    returns the next index of ``x`` and ``logp``."""
    for i in range(rows):
        for j in range(i + 1):
            v = _var(x, k)
            if i == j:
                L[i, j] = _exp(v)
                logp = _add(logp, v)
            else:
                L[i, j] = v
            k += 1
    return k, logp


@_jit
def unpack(x, buf):
    """The hyperparameters at ``x`` as duals: sigma, phi, the factor ``L`` (sampled term
    order, list of rows) and the log prior density plus log-Jacobian of the transforms."""
    n = x.size
    q = int(buf[H_Q])
    lo = buf[H_LO]
    xr = int(buf[H_XR])
    xl = int(buf[H_XL])
    mode = int(buf[H_MODE])
    logp = _const(0.0, n)
    L = np.zeros((q, q, n + 1))
    if mode == MODE_RIDGE:
        x_tau = _var(x, xr)
        x_a = _var(x, xr + 1)
        x_b = _var(x, xr + 2)
        T = _exp(_scale(x_tau, 2.0))
        logp = _add(logp, _shift(_scale(x_tau, 2.0), math.log(2.0)))
        s_r = _sigmoid(x_a)
        rho = _shift(_scale(s_r, 1.0 - lo), lo)
        lsa = _log_sigmoid(x_a)
        lsma = _log_sigmoid(_scale(x_a, -1.0))
        logp = _add(logp, _shift(_add(lsa, lsma), math.log(1.0 - lo)))
        w = _mul(s_r, _sigmoid(x_b))
        logp = _add(logp, _add(lsa, _add(_log_sigmoid(x_b), _log_sigmoid(_scale(x_b, -1.0)))))
        one_m_w = _shift(_scale(w, -1.0), 1.0)
        phi = _div(_add(rho, _scale(w, -1.0)), one_m_w)
        sigma2 = _mul(T, one_m_w)
        v0 = _mul(T, w)
        sigma = _sqrt(sigma2)
        r0 = _sqrt(v0)
        lj = _add(_log(T), _scale(_log(one_m_w), -1.0))
        lj = _add(lj, _scale(_add(_log(sigma2), _log(v0)), -0.5))
        logp = _add(logp, _shift(lj, -2.0 * math.log(2.0)))
        logp = _add(logp, _prior_dual(buf, int(buf[O_SIGPRI]), sigma))
        logp = _add(logp, _prior_dual(buf, int(buf[O_PHIPRI]), phi))
        if q == 1:
            L[0, 0] = r0
            logp = _add(logp, _prior_dual(buf, int(buf[O_SDPRI]), r0))
        else:
            m = q - 1
            k, logp = _fill_packed(x, xl, m, L, logp)  # L_o
            left = _const(1.0, n)
            for j in range(m):
                z = _tanh(_var(x, k + j))
                el = _mul(z, _sqrt(left))
                L[m, j] = _mul(r0, el)
                logp = _add(logp, _log1p(_scale(_mul(z, z), -1.0)))
                logp = _add(logp, _scale(_log(left), 0.5))
                left = _add(left, _scale(_mul(el, el), -1.0))
            last = _sqrt(left)
            L[m, m] = _mul(r0, last)
            logp = _add(logp, _add(_scale(_log(r0), float(m)), _scale(_log(last), -1.0)))
            logp = _add(logp, _lkj_chol_logp(buf, L, q, n))
    else:
        # PyMC's default transforms: log for sigma, interval for phi, log for a single
        # sd / independent sds, CholeskyCovPacked (log diagonal) for an LKJ factor
        xs = _var(x, xr)
        sigma = _exp(xs)
        logp = _add(logp, xs)
        logp = _add(logp, _prior_dual(buf, int(buf[O_SIGPRI]), sigma))
        corr = int(buf[H_CORR])
        if corr > 0:
            xp_ = _var(x, xr + 1)
            hi = buf[H_HI]
            phi = _shift(_scale(_sigmoid(xp_), hi - lo), lo)
            logp = _add(logp, _shift(_add(_log_sigmoid(xp_), _log_sigmoid(_scale(xp_, -1.0))),
                                     math.log(hi - lo)))
            logp = _add(logp, _prior_dual(buf, int(buf[O_PHIPRI]), phi))
        else:
            phi = _const(0.0, n)
        correlated = buf[H_NORM] == buf[H_NORM] and q > 1  # NaN norm marks "||" terms
        if not correlated:
            for i in range(q):
                v = _var(x, xl + i)
                L[i, i] = _exp(v)
                logp = _add(logp, v)
                logp = _add(logp, _prior_dual(buf, int(buf[O_SDPRI]) + 4 * i, L[i, i]))
        else:
            _, logp = _fill_packed(x, xl, q, L, logp)
            logp = _add(logp, _lkj_chol_logp(buf, L, q, n))
    return sigma, phi, L, logp


@_jit
def covariance(L, buf, q, n):
    """``S = F F^T`` with ``F`` the rows of ``L`` put back in design term order (duals)."""
    order = int(buf[O_ORDER])
    inv = np.empty(q, dtype=np.int64)
    for k in range(q):
        inv[int(buf[order + k])] = k
    S = np.zeros((q, q, n + 1))
    for a in range(q):
        for b in range(a + 1):
            acc = _const(0.0, n)
            for j in range(q):
                acc = _add(acc, _mul(L[inv[a], j], L[inv[b], j]))
            S[a, b] = acc
            S[b, a] = acc
    return S


# --------------------------------------------------------------------------- likelihood


@_jit
def _chol_inverse(V, nn, C, Ci, Om):
    """log|V| of a small SPD matrix, its inverse written into ``Om`` (Cholesky; ``C`` and
    ``Ci`` are work arrays); NaN if ``V`` is not positive definite."""
    logdet = 0.0
    for j in range(nn):
        s = V[j, j]
        for k in range(j):
            s -= C[j, k] * C[j, k]
        if not s > 0:
            return np.nan
        C[j, j] = math.sqrt(s)
        logdet += 2.0 * math.log(C[j, j])
        for i in range(j + 1, nn):
            t = V[i, j]
            for k in range(j):
                t -= C[i, k] * C[j, k]
            C[i, j] = t / C[j, j]
    for j in range(nn):  # inverse of the lower factor
        Ci[j, j] = 1.0 / C[j, j]
        for i in range(j + 1, nn):
            t = 0.0
            for k in range(j, i):
                t -= C[i, k] * Ci[k, j]
            Ci[i, j] = t / C[i, i]
    for i in range(nn):
        for j in range(i + 1):
            t = 0.0
            for k in range(i, nn):
                t += Ci[k, i] * Ci[k, j]
            Om[i, j] = t
            Om[j, i] = t
    return logdet


@_jit
def loglik_pooled(buf, beta, s2, phi, S):
    """Collapsed log-likelihood over all patterns and its gradient with respect to
    ``beta`` (p), ``sigma^2``, ``phi`` and ``S`` (q x q, entries treated as free).

    A pattern holds either the cross-products ``K`` of its clusters (pooled) or, with
    ``H_DIRECT``, one cluster's rows ``W`` (then ``E = e e^T`` with ``e = W u``)."""
    p = int(buf[H_P])
    q = int(buf[H_Q])
    G = int(buf[H_G])
    T = int(buf[H_T])
    corr = int(buf[H_CORR])
    direct = int(buf[H_DIRECT]) == 1
    m = p + 1
    oK, oZ, oT = int(buf[O_K]), int(buf[O_Z]), int(buf[O_TT])
    oN, oC = int(buf[O_NOBS]), int(buf[O_COUNT])
    u = np.empty(m)
    u[0] = 1.0
    for k in range(p):
        u[k + 1] = -beta[k]
    g_u = np.zeros(m)
    g_s2 = 0.0
    g_phi = 0.0
    g_S = np.zeros((q, q))
    ll = 0.0
    R = np.empty((T, T))
    dR = np.empty((T, T))
    V = np.empty((T, T))
    E = np.empty((T, T))
    e = np.empty(T)
    C = np.empty((T, T))
    Ci = np.empty((T, T))
    Om = np.empty((T, T))
    OE = np.empty((T, T))
    Gm = np.empty((T, T))
    ZG = np.empty((T, q))
    for g in range(G):
        nn = int(buf[oN + g])
        cnt = buf[oC + g]
        kg = oK + g * T * m if direct else oK + g * T * T * m * m
        zg = oZ + g * T * q
        tg = oT + g * T
        if direct:
            for s in range(nn):
                acc = 0.0
                for i in range(m):
                    acc += buf[kg + s * m + i] * u[i]
                e[s] = acc
        for s in range(nn):
            for t in range(s + 1):
                if direct:
                    E[s, t] = e[s] * e[t]
                else:
                    base = kg + (s * T + t) * m * m
                    acc = 0.0
                    for i in range(m):
                        ui = u[i]
                        for j in range(m):
                            acc += buf[base + i * m + j] * ui * u[j]
                    E[s, t] = acc
                E[t, s] = E[s, t]
                if corr == 0 or s == t:
                    R[s, t] = 1.0 if s == t else 0.0
                    dR[s, t] = 0.0
                else:
                    lag = abs(buf[tg + s] - buf[tg + t])
                    r = phi ** (lag - 1.0)
                    R[s, t] = r * phi
                    dR[s, t] = lag * r
                R[t, s] = R[s, t]
                dR[t, s] = dR[s, t]
                zs = 0.0
                for a in range(q):
                    za = buf[zg + s * q + a]
                    for b in range(q):
                        zs += za * S[a, b] * buf[zg + t * q + b]
                V[s, t] = zs + s2 * R[s, t]
                V[t, s] = V[s, t]
        logdet = _chol_inverse(V, nn, C, Ci, Om)
        if logdet != logdet:
            return np.nan, g_u[1:], g_s2, g_phi, g_S
        tr = 0.0
        for s in range(nn):
            for t in range(nn):
                acc = 0.0
                for k in range(nn):
                    acc += Om[s, k] * E[k, t]
                OE[s, t] = acc
            tr += OE[s, s]
        ll += -0.5 * cnt * (nn * LOG_2PI + logdet) - 0.5 * tr
        for s in range(nn):  # d ll / d V = (Om E Om - cnt Om) / 2
            for t in range(s + 1):
                acc = 0.0
                for k in range(nn):
                    acc += OE[s, k] * Om[k, t]
                Gm[s, t] = 0.5 * (acc - cnt * Om[s, t])
                Gm[t, s] = Gm[s, t]
        for s in range(nn):
            for b in range(q):
                acc = 0.0
                for t in range(nn):
                    acc += Gm[s, t] * buf[zg + t * q + b]
                ZG[s, b] = acc
            for t in range(nn):
                g_s2 += Gm[s, t] * R[s, t]
                g_phi += Gm[s, t] * dR[s, t]
        for a in range(q):
            for b in range(q):
                acc = 0.0
                for s in range(nn):
                    acc += buf[zg + s * q + a] * ZG[s, b]
                g_S[a, b] += acc
        if direct:  # d tr(Om e e^T) / 2 du = W^T Om e
            for s in range(nn):
                oe = 0.0
                for t in range(nn):
                    oe += Om[s, t] * e[t]
                for i in range(m):
                    g_u[i] -= buf[kg + s * m + i] * oe
        else:
            for s in range(nn):
                for t in range(nn):
                    base = kg + (s * T + t) * m * m
                    w = Om[s, t]
                    for i in range(m):
                        acc = 0.0
                        for j in range(m):
                            acc += buf[base + i * m + j] * u[j]
                        g_u[i] -= w * acc
    g_phi *= s2
    return ll, -g_u[1:], g_s2, g_phi, g_S


# ------------------------------------------------------------------------------ entry


@_jit
def logp_grad(x, buf, out):
    """Log-density at ``x``; writes the gradient into ``out``."""
    n = x.size
    p = int(buf[H_P])
    q = int(buf[H_Q])
    sigma, phi, L, logp = unpack(x, buf)
    S = covariance(L, buf, q, n)
    beta = np.empty(p)
    bidx = int(buf[O_BIDX])
    bpri = int(buf[O_BPRI])
    grad = logp[1:].copy()
    total = logp[0]
    for k in range(p):
        i = int(buf[bidx + k])
        beta[k] = x[i]
        lp, dlp = prior_logp(int(buf[bpri + 4 * k]), buf[bpri + 4 * k + 1],
                             buf[bpri + 4 * k + 2], buf[bpri + 4 * k + 3], x[i])
        total += lp
        grad[i] += dlp
    Sv = np.empty((q, q))
    for a in range(q):
        for b in range(q):
            Sv[a, b] = S[a, b, 0]
    s2 = _mul(sigma, sigma)
    ll, g_beta, g_s2, g_phi, g_S = loglik_pooled(buf, beta, s2[0], phi[0], Sv)
    total += ll
    for k in range(p):
        grad[int(buf[bidx + k])] += g_beta[k]
    grad += g_s2 * s2[1:] + g_phi * phi[1:]
    for a in range(q):
        for b in range(q):
            grad += g_S[a, b] * S[a, b, 1:]
    out[:] = grad
    return total


@_jit
def expand(x, buf, out):
    """The natural parameters at ``x``: beta (p), sigma, phi, sd (q, design order) and,
    for correlated terms, the q x q correlation matrix (row-major)."""
    p = int(buf[H_P])
    q = int(buf[H_Q])
    sigma, phi, L, _ = unpack(x, buf)
    S = covariance(L, buf, q, x.size)
    bidx = int(buf[O_BIDX])
    for k in range(p):
        out[k] = x[int(buf[bidx + k])]
    out[p] = sigma[0]
    k = p + 1
    if int(buf[H_CORR]) > 0:
        out[k] = phi[0]
        k += 1
    for a in range(q):
        out[k + a] = math.sqrt(S[a, a, 0])
    if int(buf[H_NEXP]) > k + q:
        for a in range(q):
            for b in range(q):
                out[k + q + a * q + b] = S[a, b, 0] / math.sqrt(S[a, a, 0] * S[b, b, 0])


# ------------------------------------------------------------------------ C entry points

LOGP_SIG = numba.types.int64(
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)
EXPAND_SIG = numba.types.int64(
    numba.types.uint64,
    numba.types.uint64,
    numba.types.CPointer(numba.types.double),
    numba.types.CPointer(numba.types.double),
    numba.types.voidptr,
)


@_jit
def _buffer(ud):
    head = numba.carray(ud, (1,), np.float64)
    return numba.carray(ud, (int(head[0]),), np.float64)


def _logp_c(dim, x_, out_, logp_, ud):
    buf = _buffer(ud)
    n = int(buf[H_NDIM])
    if dim != n:
        return -1
    x = numba.carray(x_, (n,))
    out = numba.carray(out_, (n,))
    lp = numba.carray(logp_, (1,))
    val = logp_grad(x, buf, out)
    lp[0] = val
    for i in range(n):
        if not np.isfinite(out[i]):
            return 3
    if not np.isfinite(val):
        return 4
    return 0


def _expand_c(dim, n_expanded, x_, out_, ud):
    buf = _buffer(ud)
    n = int(buf[H_NDIM])
    if dim != n or n_expanded != int(buf[H_NEXP]):
        return -1
    x = numba.carray(x_, (n,))
    out = numba.carray(out_, (int(n_expanded),))
    expand(x, buf, out)
    return 0


_CFUNCS: dict = {}


def cfuncs():
    """The compiled C entry points ``(logp, expand)`` (compiled once, cached on disk)."""
    if not _CFUNCS:
        _CFUNCS["logp"] = numba.cfunc(LOGP_SIG, cache=True, error_model="numpy")(_logp_c)
        _CFUNCS["expand"] = numba.cfunc(EXPAND_SIG, cache=True, error_model="numpy")(_expand_c)
    return _CFUNCS["logp"], _CFUNCS["expand"]
