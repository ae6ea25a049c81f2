"""A hand-written, numba-compiled log-density and gradient for collapsed Gaussian models.

nutpie calls this kernel as a C function pointer (no Python, no GIL) for each leapfrog
step. It computes exactly the log-density of the PyMC model that
:func:`hierbayes.backend.marginal.build` builds for a supported model (see
:mod:`hierbayes.backend.native.bridge`), constants included, and its gradient:

- the parameters are unpacked from the sampler's unconstrained vector as PyMC does (the
  ridge coordinates of :mod:`hierbayes.backend.reparam`, or PyMC's default transforms),
  with *forward-mode dual numbers* (:mod:`hierbayes.backend.native.dual`; value and gradient
  with respect to the whole vector, a few dozen scalar operations), together with the
  log-Jacobian and the priors;
- the collapsed likelihood is summed over cluster patterns (clusters sharing their
  observation times and random-effect design share the marginal covariance
  ``V = Z S Z^T + sigma^2 R(phi)``), with its gradient with respect to ``beta``,
  ``sigma^2``, ``phi`` and ``S`` in closed form:
  ``dll/dV = (Omega E Omega - c Omega) / 2`` for ``Omega = V^-1`` and
  ``E = sum_c e_c e_c^T`` (a quadratic form in ``(1, -beta)`` over precomputed cross-products),
  then chained through the dual numbers of ``sigma^2``, ``phi`` and ``S``.

Everything the kernel needs is packed into one float64 buffer
(:func:`hierbayes.backend.native.bridge.pack`), so one
compiled function (cached on disk by numba) serves every model and every data set.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hierbayes.backend.native import dual as d
from hierbayes.backend.native.dual import LOG_2PI, prior_logp

_jit = d.jit

# ----------------------------------------------------------------------------- buffer
# The header, declared once: each name is a float64 slot (integers stored as floats), its
# number its position. H_*: scalars; O_*: the offset of each data section, which follow the
# header in this order (:func:`hierbayes.backend.native.bridge.pack` fills them by name).
# H_DIRECT: the layout (POOLED, DIRECT_DENSE, DIRECT_WHITENED below): the direct ones hold
# one "pattern" per cluster with its rows W = [y, X], not K;
# H_CORRELATED: 1 when the q > 1 terms have an LKJ-correlated factor (0 for "||");
# H_SHARE: ridge coordinates' share power k (w = w_+ sigmoid(x_b)^k). HEADER: its length.
(
    H_LEN, H_NDIM, H_P, H_Q, H_CORR, H_G, H_T, H_MODE,
    H_LO, H_HI, H_ETA, H_NORM, H_XR, H_XL, H_NEXP,
    O_BPRI, O_BIDX, O_SIGPRI, O_PHIPRI, O_SDPRI, O_ORDER,
    O_K, O_Z, O_TT, O_NOBS, O_COUNT,
    H_DIRECT, H_CORRELATED, H_SHARE, O_GLMM,
    HEADER,
) = range(31)

#: H_DIRECT: how the likelihood is laid out
POOLED = 0  # per pattern, cross-products K of its clusters; dense n x n algebra per pattern
DIRECT_DENSE = 1  # per cluster its rows W; dense n x n algebra (O(n^3); kept as reference)
DIRECT_WHITENED = 2  # per cluster its rows W; whitening + Woodbury (O(n q^2))

#: floats per prior in the buffer: (code, a, b, c, lower, log_mass): the distribution's code
#: and parameters (:func:`hierbayes.backend.native.dual.prior_logp`), the bound it is truncated
#: at (-inf: none) and the log of its mass above that bound, subtracted from its log density
PRIOR_WIDTH = 6

#: parameterisations
MODE_RIDGE = 1  # reparam.ridge_parameters, ridge="conditional" (random intercept + AR(1)/CAR(1))
MODE_PLAIN = 2  # PyMC's default transforms (params.residual_sd / ar_phi / re_covariance)


@_jit
def prior_at(buf, off, v):
    """Log density (and its derivative) at ``v`` of the prior stored at
    ``buf[off:off + PRIOR_WIDTH]``: PyMC's ``pm.Truncated`` density when it is truncated,
    ``-inf`` below the bound, the base density less the log mass above it from there."""
    if v < buf[off + 4]:
        return -np.inf, 0.0
    lp, dlp = prior_logp(int(buf[off]), buf[off + 1], buf[off + 2], buf[off + 3], v)
    return lp - buf[off + 5], dlp


@_jit
def prior_dual(buf, off, v):
    """The prior stored at ``buf[off:off + PRIOR_WIDTH]`` at the dual ``v`` (the prior, LKJ
    and packed-factor steps are shared with :mod:`hierbayes.backend.native.glmm_kernel`,
    which uses the same header)."""
    lp, dlp = prior_at(buf, off, v[0])
    return d.chain(v, lp, dlp)


# -------------------------------------------------------------------- parameter unpacking


@_jit
def lkj_chol_logp(buf, L, q, n):
    """PyMC's ``LKJCholeskyCov`` log density of a lower-triangular ``L`` (duals), with the
    sd priors of the sampled term order."""
    return lkj_chol_logp_at(buf, L, q, n, buf[H_ETA], buf[H_NORM], int(buf[O_SDPRI]))


@_jit
def lkj_chol_logp_at(buf, L, q, n, eta, norm, sdoff):
    """:func:`lkj_chol_logp` with the LKJ ``eta``, its log normaliser ``norm`` and the
    offset ``sdoff`` of the q sd priors given (another factor's than the header's: the
    sampled factors of :mod:`hierbayes.backend.native.hybrid_kernel`)."""
    out = d.const(norm, n)
    for i in range(q):
        var = d.const(0.0, n)
        for j in range(i + 1):
            var = d.add(var, d.mul(L[i, j], L[i, j]))
        sd = d.sqrt(var)
        out = d.add(out, prior_dual(buf, sdoff + PRIOR_WIDTH * i, sd))
        lcd = d.log(d.div(L[i, i], sd))
        out = d.add(out, d.scale(lcd, 2.0 * eta - 3.0 + q - i + 1.0))
        out = d.add(out, d.scale(d.log(sd), -float(i)))
    return out


@_jit
def fill_packed(x, k, rows, L, logp):
    """Rows ``0..rows-1`` of a lower-triangular ``L`` (duals) from the packed vector at
    ``x[k:]`` (row-major, diagonal on the log scale, whose log-Jacobian joins ``logp``);
    returns the next index of ``x`` and ``logp``."""
    for i in range(rows):
        for j in range(i + 1):
            v = d.var(x, k)
            if i == j:
                L[i, j] = d.exp(v)
                logp = d.add(logp, v)
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
    logp = d.const(0.0, n)
    L = np.zeros((q, q, n + 1))
    if mode == MODE_RIDGE:
        x_tau = d.var(x, xr)
        x_a = d.var(x, xr + 1)
        x_b = d.var(x, xr + 2)
        T = d.exp(d.scale(x_tau, 2.0))
        logp = d.add(logp, d.shift(d.scale(x_tau, 2.0), math.log(2.0)))
        s_r = d.sigmoid(x_a)
        rho = d.shift(d.scale(s_r, 1.0 - lo), lo)
        lsa = d.log_sigmoid(x_a)
        lsma = d.log_sigmoid(d.scale(x_a, -1.0))
        logp = d.add(logp, d.shift(d.add(lsa, lsma), math.log(1.0 - lo)))
        kp = buf[H_SHARE]
        lsb = d.log_sigmoid(x_b)
        w = d.mul(s_r, d.exp(d.scale(lsb, kp)))
        lj = d.add(lsa, d.add(d.scale(lsb, kp), d.log_sigmoid(d.scale(x_b, -1.0))))
        logp = d.add(logp, d.shift(lj, math.log(kp)))
        one_m_w = d.shift(d.scale(w, -1.0), 1.0)
        phi = d.div(d.add(rho, d.scale(w, -1.0)), one_m_w)
        sigma2 = d.mul(T, one_m_w)
        v0 = d.mul(T, w)
        sigma = d.sqrt(sigma2)
        r0 = d.sqrt(v0)
        lj = d.add(d.log(T), d.scale(d.log(one_m_w), -1.0))
        lj = d.add(lj, d.scale(d.add(d.log(sigma2), d.log(v0)), -0.5))
        logp = d.add(logp, d.shift(lj, -2.0 * math.log(2.0)))
        logp = d.add(logp, prior_dual(buf, int(buf[O_SIGPRI]), sigma))
        logp = d.add(logp, prior_dual(buf, int(buf[O_PHIPRI]), phi))
        if q == 1:
            L[0, 0] = r0
            logp = d.add(logp, prior_dual(buf, int(buf[O_SDPRI]), r0))
        else:
            m = q - 1
            k, logp = fill_packed(x, xl, m, L, logp)  # L_o
            # the intercept's row below the diagonal raw, its conditional sd on the diagonal
            for j in range(m):
                L[m, j] = d.var(x, k + j)
            L[m, m] = r0
            logp = d.add(logp, lkj_chol_logp(buf, L, q, n))
    else:
        # PyMC's default transforms: log for sigma, interval for phi, log for a single
        # sd / independent sds, CholeskyCovPacked (log diagonal) for an LKJ factor
        xs = d.var(x, xr)
        sigma = d.exp(xs)
        logp = d.add(logp, xs)
        logp = d.add(logp, prior_dual(buf, int(buf[O_SIGPRI]), sigma))
        corr = int(buf[H_CORR])
        if corr > 0:
            xp_ = d.var(x, xr + 1)
            hi = buf[H_HI]
            phi = d.shift(d.scale(d.sigmoid(xp_), hi - lo), lo)
            logp = d.add(logp, d.shift(d.add(d.log_sigmoid(xp_), d.log_sigmoid(d.scale(xp_, -1.0))),
                                     math.log(hi - lo)))
            logp = d.add(logp, prior_dual(buf, int(buf[O_PHIPRI]), phi))
        else:
            phi = d.const(0.0, n)
        if int(buf[H_CORRELATED]) == 0:
            for i in range(q):
                v = d.var(x, xl + i)
                L[i, i] = d.exp(v)
                logp = d.add(logp, v)
                logp = d.add(logp, prior_dual(buf, int(buf[O_SDPRI]) + PRIOR_WIDTH * i, L[i, i]))
        else:
            _, logp = fill_packed(x, xl, q, L, logp)
            logp = d.add(logp, lkj_chol_logp(buf, L, q, n))
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
            acc = d.const(0.0, n)
            for j in range(q):
                acc = d.add(acc, d.mul(L[inv[a], j], L[inv[b], j]))
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
def chol_inverse(V, nn, C, Ci, Om):
    """``log|V|`` of the leading ``nn x nn`` block of a small SPD matrix ``V``, its inverse
    written into ``Om`` (``C``, ``Ci``: work arrays); NaN if ``V`` is not positive definite.
    The public form of this kernel's Cholesky step, for the other native kernels."""
    return _chol_inverse(V, nn, C, Ci, Om)


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
    direct = int(buf[H_DIRECT]) == DIRECT_DENSE
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


@_jit
def lag_coef(phi, lag, log_phi, inv_phi):
    """``a = phi^lag`` by one exp (``lag`` is whole when ``phi < 0``: AR(1)) and
    ``da/dphi``; at ``phi = 0``, ``a = 0`` and ``da = 1`` for a lag of 1 (0 beyond).

    Examples
    --------
    >>> import math
    >>> a, da = lag_coef(-0.5, 3.0, math.log(0.5), -2.0)
    >>> round(a, 6), round(da, 6)
    (-0.125, 0.75)
    """
    if phi != 0.0:
        a = math.exp(lag * log_phi)
        if phi < 0.0 and lag % 2.0 == 1.0:
            a = -a
        return a, lag * a * inv_phi
    return 0.0, 1.0 if lag == 1.0 else 0.0


@_jit
def whitened_rows_q2(buf, kg, zg, tg, n, p, u, corr, phi, log_phi, inv_phi, xe, XZ, acc):
    """:func:`loglik_whitened`'s pass over one cluster's rows for q = 2, its sums in scalar
    locals: writes ``xe`` (p), ``XZ`` (p, 2) and ``acc`` = (ee, A1, A5, prod(1 - a^2), h (2),
    Q00, Q10, Q11, A2 (2), A3 (2), A4 (2 x 2, row-major)); False if a row's ``1 - a^2 <= 0``."""
    m = p + 1
    ee = a1 = a5 = 0.0
    prod_r = 1.0
    h0 = h1 = q00 = q10 = q11 = 0.0
    b0 = b1 = c0 = c1 = d00 = d01 = d10 = d11 = 0.0
    for k in range(p):
        xe[k] = 0.0
        XZ[k, 0] = 0.0
        XZ[k, 1] = 0.0
    e_prev = zp0 = zp1 = 0.0
    for s in range(n):
        row = kg + s * m
        zrow = zg + s * 2
        e = buf[row]
        for i in range(p):
            e += buf[row + 1 + i] * u[1 + i]
        z0 = buf[zrow]
        z1 = buf[zrow + 1]
        if s == 0 or corr == 0:
            et, t0, t1 = e, z0, z1
            c = a = 0.0
        else:
            a, da = lag_coef(phi, buf[tg + s] - buf[tg + s - 1], log_phi, inv_phi)
            one = 1.0 - a * a
            if not one > 0:
                return False
            prod_r *= one
            c = 1.0 / math.sqrt(one)
            cc = a * c * c
            et = c * (e - a * e_prev)
            t0 = c * (z0 - a * zp0)
            t1 = c * (z1 - a * zp1)
            dz0 = cc * t0 - c * zp0
            dz1 = cc * t1 - c * zp1
            de = cc * et - c * e_prev
            dae = da * et
            a1 += dae * de
            a5 += da * cc
            dt0 = da * t0
            dt1 = da * t1
            b0 += dt0 * de
            b1 += dt1 * de
            c0 += dae * dz0
            c1 += dae * dz1
            d00 += dt0 * dz0
            d01 += dt0 * dz1
            d10 += dt1 * dz0
            d11 += dt1 * dz1
        e_prev, zp0, zp1 = e, z0, z1
        ee += et * et
        h0 += t0 * et
        h1 += t1 * et
        q00 += t0 * t0
        q10 += t1 * t0
        q11 += t1 * t1
        for k in range(p):  # whitened X row, accumulated as it is made
            xk = buf[row + 1 + k]
            if s > 0 and corr != 0:
                xk = c * (xk - a * buf[row - m + 1 + k])
            xe[k] += xk * et
            XZ[k, 0] += xk * t0
            XZ[k, 1] += xk * t1
    acc[0], acc[1], acc[2], acc[3] = ee, a1, a5, prod_r
    acc[4], acc[5], acc[6], acc[7], acc[8] = h0, h1, q00, q10, q11
    acc[9], acc[10], acc[11], acc[12] = b0, b1, c0, c1
    acc[13], acc[14], acc[15], acc[16] = d00, d01, d10, d11
    return True


@_jit
def loglik_whitened(buf, beta, s2, phi, S):
    """Collapsed log-likelihood of clusters held one by one (``H_DIRECT == 2``) and its
    gradient, in one pass over each cluster's rows: DESIGN.md's whitening + Woodbury route.

    Rows of a cluster are in time order; the AR(1)/CAR(1) correlation is Markov, so with
    ``a_k = phi^(t_k - t_(k-1))`` and ``c_k = (1 - a_k^2)^(-1/2)`` the whitened rows
    ``w~_k = c_k (w_k - a_k w_(k-1))`` (``w~_0 = w_0``) of the residual ``e = y - X beta``,
    of ``X`` and of ``Z`` have identity correlation, and ``log|R| = sum_k log(1 - a_k^2)``.
    One pass over the rows accumulates ``e~'e~``, ``h = Z~'e~``, ``Q = Z~'Z~``, ``X~'e~``,
    ``X~'Z~`` and, for the gradient in phi, the sums ``A1..A5`` below; the rest is q x q
    algebra per cluster. Woodbury with ``K = (s2 S^-1 + Q)^-1`` (per cluster; ``S^-1`` once):

    - ``log|V| = log|R| + (n - q) log s2 + log|S| + log|K^-1|``,
      ``e'V^-1 e = (e~'e~ - h'Kh) / s2``;
    - ``v = V~^-1 e~ = (e~ - Z~Kh) / s2`` and ``Z~'v = S^-1 Kh``; with ``J = sum Kh Kh'``
      and ``Ks = sum K`` over clusters, ``dll/dS = S^-1 (J + s2 Ks - G S) S^-1 / 2``;
    - ``dll/ds2 = (v'v - tr V~^-1) / 2`` summed, with
      ``v'v = (e~'e~ - h'Kh - s2 Kh'S^-1 Kh) / s2^2``, ``tr V~^-1 = (n - q + s2 tr K S^-1) / s2``;
    - ``dll/dbeta = X~'v = (X~'e~ - X~'Z~ Kh) / s2``;
    - ``dll/dphi = sum_k da_k [-v_k de~_k + (v_k Kh' - Z~_k K) dZ~_k + a_k c_k^2]``, with
      ``de~_k = a_k c_k^2 e~_k - c_k e_(k-1)`` (and ``dZ~_k`` alike):
      ``(-(A1 - Kh'A2) + (A3 - A4'Kh)'Kh) / s2 - sum(K o A4) + A5`` with
      ``A1 = sum da e~ de~``, ``A2 = sum da Z~ de~``, ``A3 = sum da e~ dZ~``,
      ``A4 = sum da Z~ dZ~'``, ``A5 = sum da a c^2``.
    """
    p = int(buf[H_P])
    q = int(buf[H_Q])
    G = int(buf[H_G])
    T = int(buf[H_T])
    corr = int(buf[H_CORR])
    m = p + 1
    oK, oZ, oT, oN = int(buf[O_K]), int(buf[O_Z]), int(buf[O_TT]), int(buf[O_NOBS])
    u = np.empty(m)
    u[0] = 1.0
    for k in range(p):
        u[k + 1] = -beta[k]
    Sinv = np.empty((q, q))  # S is positive definite wherever the density is finite
    logdet_s = _chol_inverse(S.copy(), q, np.empty((q, q)), np.empty((q, q)), Sinv)
    if logdet_s != logdet_s:
        return np.nan, np.zeros(p), 0.0, 0.0, np.zeros((q, q))
    g_beta = np.zeros(p)
    g_s2 = 0.0
    g_phi = 0.0
    g_S = np.zeros((q, q))
    ll = 0.0
    log_s2 = math.log(s2)
    log_phi = math.log(abs(phi)) if phi != 0.0 else 0.0
    inv_phi = 1.0 / phi if phi != 0.0 else 0.0
    zt = np.empty(q)
    dz = np.empty(q)
    Q = np.empty((q, q))
    h = np.empty(q)
    xe = np.empty(p)
    XZ = np.empty((p, q))
    A2 = np.empty(q)
    A3 = np.empty(q)
    A4 = np.empty((q, q))
    B = np.empty((q, q))
    Ci = np.empty((q, q))
    Cw = np.empty((q, q))
    W1 = np.empty((q, q))
    K = np.empty((q, q))
    Kh = np.empty(q)
    sums = np.empty(17)
    Ks = np.zeros((q, q))
    J = np.zeros((q, q))
    vv_e = 0.0
    n_rows = 0
    for g in range(G):
        n = int(buf[oN + g])
        kg = oK + g * T * m
        zg = oZ + g * T * q
        tg = oT + g * T
        if q == 2:
            if not whitened_rows_q2(buf, kg, zg, tg, n, p, u, corr, phi, log_phi, inv_phi, xe, XZ, sums):
                return np.nan, g_beta, g_s2, g_phi, g_S
            ee, a1, a5, prod_r = sums[0], sums[1], sums[2], sums[3]
            h[0], h[1], Q[0, 0], Q[1, 0], Q[1, 1] = sums[4], sums[5], sums[6], sums[7], sums[8]
            A2[0], A2[1], A3[0], A3[1] = sums[9], sums[10], sums[11], sums[12]
            A4[0, 0], A4[0, 1], A4[1, 0], A4[1, 1] = sums[13], sums[14], sums[15], sums[16]
        else:
            ee = a1 = a5 = 0.0
            prod_r = 1.0  # prod (1 - a_k^2): one log per cluster
            for x in range(q):
                h[x] = A2[x] = A3[x] = 0.0
                for y_ in range(q):
                    Q[x, y_] = A4[x, y_] = 0.0
            for k in range(p):
                xe[k] = 0.0
                for b in range(q):
                    XZ[k, b] = 0.0
            e_prev = 0.0
            for s in range(n):
                row = kg + s * m
                zrow = zg + s * q
                e = buf[row]
                for i in range(p):
                    e += buf[row + 1 + i] * u[1 + i]
                if s == 0 or corr == 0:
                    et = e
                    for b in range(q):
                        zt[b] = buf[zrow + b]
                    c = 1.0
                    a = 0.0
                else:
                    a, da = lag_coef(phi, buf[tg + s] - buf[tg + s - 1], log_phi, inv_phi)
                    one = 1.0 - a * a
                    if not one > 0:
                        return np.nan, g_beta, g_s2, g_phi, g_S
                    prod_r *= one
                    c = 1.0 / math.sqrt(one)
                    cc = a * c * c
                    et = c * (e - a * e_prev)
                    for b in range(q):
                        zp = buf[zrow - q + b]
                        zt[b] = c * (buf[zrow + b] - a * zp)
                        dz[b] = cc * zt[b] - c * zp
                    de = cc * et - c * e_prev
                    a1 += da * et * de
                    a5 += da * cc
                    for x in range(q):
                        dzx = da * zt[x]
                        A2[x] += dzx * de
                        A3[x] += da * et * dz[x]
                        for y_ in range(q):
                            A4[x, y_] += dzx * dz[y_]
                e_prev = e
                ee += et * et
                for x in range(q):
                    h[x] += zt[x] * et
                    for y_ in range(x + 1):
                        Q[x, y_] += zt[x] * zt[y_]
                for k in range(p):  # whitened X row, accumulated as it is made
                    xk = buf[row + 1 + k]
                    if s > 0 and corr != 0:
                        xk = c * (xk - a * buf[row - m + 1 + k])
                    xe[k] += xk * et
                    for b in range(q):
                        XZ[k, b] += xk * zt[b]
        for x in range(q):
            for y_ in range(x):
                Q[y_, x] = Q[x, y_]
        if q == 2:  # K = (s2 S^-1 + Q)^-1 in closed form
            b00 = s2 * Sinv[0, 0] + Q[0, 0]
            b10 = s2 * Sinv[1, 0] + Q[1, 0]
            b11 = s2 * Sinv[1, 1] + Q[1, 1]
            det = b00 * b11 - b10 * b10
            if not (b00 > 0 and det > 0):
                return np.nan, g_beta, g_s2, g_phi, g_S
            logdet_b = math.log(det)
            K[0, 0] = b11 / det
            K[1, 1] = b00 / det
            K[0, 1] = K[1, 0] = -b10 / det
        else:
            for x in range(q):  # K = (s2 S^-1 + Q)^-1
                for y_ in range(q):
                    B[x, y_] = s2 * Sinv[x, y_] + Q[x, y_]
            logdet_b = _chol_inverse(B, q, Cw, Ci, K)
            if logdet_b != logdet_b:
                return np.nan, g_beta, g_s2, g_phi, g_S
        hKh = 0.0
        for x in range(q):
            acc = 0.0
            for y_ in range(q):
                acc += K[x, y_] * h[y_]
            Kh[x] = acc
            hKh += h[x] * acc
        logdet_r = math.log(prod_r) if corr != 0 else 0.0
        ll += -0.5 * (n * LOG_2PI + logdet_r + (n - q) * log_s2 + logdet_s + logdet_b
                      + (ee - hKh) / s2)
        vv_e += ee - hKh
        n_rows += n
        for x in range(q):
            for y_ in range(q):
                Ks[x, y_] += K[x, y_]
                J[x, y_] += Kh[x] * Kh[y_]
        for k in range(p):  # X~'v
            acc = xe[k]
            for b in range(q):
                acc -= XZ[k, b] * Kh[b]
            g_beta[k] += acc / s2
        if corr != 0:
            gp = a1
            for x in range(q):
                gp -= Kh[x] * A2[x]
            gp = -gp
            for y_ in range(q):
                acc = A3[y_]
                for x in range(q):
                    acc -= Kh[x] * A4[x, y_]
                gp += acc * Kh[y_]
            gp /= s2
            for x in range(q):
                for y_ in range(q):
                    gp -= K[x, y_] * A4[x, y_]
            g_phi += gp + a5
    # sums over clusters: dll/dS and dll/ds2
    tr_ks = 0.0
    tr_js = 0.0
    for x in range(q):
        for y_ in range(q):
            tr_ks += Ks[x, y_] * Sinv[y_, x]
            tr_js += J[x, y_] * Sinv[y_, x]
    vv = vv_e / (s2 * s2) - tr_js / s2
    tr_v = (n_rows - G * q + s2 * tr_ks) / s2
    g_s2 = 0.5 * (vv - tr_v)
    for x in range(q):
        for y_ in range(q):
            W1[x, y_] = J[x, y_] + s2 * Ks[x, y_] - G * S[x, y_]
    for x in range(q):
        for y_ in range(q):
            acc = 0.0
            for i in range(q):
                for j in range(q):
                    acc += Sinv[x, i] * W1[i, j] * Sinv[j, y_]
            g_S[x, y_] = 0.5 * acc
    return ll, g_beta, g_s2, g_phi, g_S


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
        lp, dlp = prior_at(buf, bpri + PRIOR_WIDTH * k, x[i])
        total += lp
        grad[i] += dlp
    Sv = np.empty((q, q))
    for a in range(q):
        for b in range(q):
            Sv[a, b] = S[a, b, 0]
    s2 = d.mul(sigma, sigma)
    if int(buf[H_DIRECT]) == DIRECT_WHITENED:
        ll, g_beta, g_s2, g_phi, g_S = loglik_whitened(buf, beta, s2[0], phi[0], Sv)
    else:
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
def buffer_of(ud):
    """The buffer behind a callback's user-data pointer (the GLMM callback's too)."""
    head = numba.carray(ud, (1,), np.float64)
    return numba.carray(ud, (int(head[0]),), np.float64)


def _logp_c(dim, x_, out_, logp_, ud):
    buf = buffer_of(ud)
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
    buf = buffer_of(ud)
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
