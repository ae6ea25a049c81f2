"""The native nutpie callback of the quadrature (marginal GLMM) backend.

The same contract as :mod:`hierbayes.backend.native.kernel`: nutpie calls a C function
pointer with the sampled vector and one float64 buffer; the parameters are unpacked as PyMC
does (``beta`` untransformed, the sds on the log scale or the LKJ Cholesky factor packed with
a log diagonal, the family's one parameter on the log scale: the negative binomial's
``alpha``, the Gamma's ``shape``, the lognormal's ``sigma``), with their priors and
log-Jacobians in forward-mode dual numbers, and the marginal log-likelihood and its gradient
come from :func:`hierbayes.likelihood.quadrature_kernel.value_and_grad`, chained through the
dual numbers. The buffer has the Gaussian kernel's header (so its prior, LKJ and
packed-factor steps apply unchanged) and a GLMM section at ``buf[O_GLMM]``: the scalars
below, then the rows (y, trials, X, Z in the sampled term order, offset, starts), the
clusters' constants and the node grid. Newton starts from zero at every call (no state
shared between the chains' threads: the draws do not depend on thread timing).

A hybrid model (:mod:`hierbayes.backend.glmm`: the factor with the most levels integrated
out, the others sampled) adds one record per sampled factor (``G_NLAT`` records, their
offsets at ``buf[G_LAT]``): its sd (log scale) or LKJ Cholesky factor and prior, and its
effects, non-centred (``b_j = F z_j``, ``z ~ N(0, 1)``) or centred (``b_j ~ N(0, F F^T)``),
with their index and ``Z`` rows in the kernel's row order. The offsets
``o_i = sum_f z_fi b_f[level_f(i)]`` enter the quadrature, and its offset gradient ``r``
goes back as ``g_b[j] = sum_{i in level j} z_fi r_i``, then to ``z`` (``F^T g_b``) or ``b``,
and to ``F`` (``g_b z^T``). The effects' own prior is evaluated in closed form (its gradient
in the effects by hand, not as dual numbers: a factor may have thousands of levels); only
``F``, a q x q matrix, is a dual number. Each record carries a copy of the header's prior
slots (``R_SUB``: ``H_ETA``, ``H_NORM``, ``O_SDPRI`` and its sd priors), so the Gaussian
kernel's prior and LKJ steps apply to it unchanged.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hierbayes.backend.native import dual as d
from hierbayes.backend.native import kernel as k
from hierbayes.likelihood import quadrature_kernel as qk

_jit = d.jit

# the GLMM section: scalars, then the offsets of its arrays (absolute, into buf)
(
    G_CODE, G_N, G_C, G_K, G_CENTER, G_TOL, G_MAXIT, G_ALPHA,
    G_Y, G_TRIALS, G_X, G_Z, G_OFFSET, G_STARTS, G_CONSTS, G_NODES, G_LOGW,
    G_NLAT, G_LAT,
    G_LEN,
) = range(20)

# one sampled factor's record (hybrid models): its scalars, then (absolute offsets) its
# level index and Z rows (kernel row order) and its prior sub-header; R_XS: the slot of its
# log sds or packed LKJ factor, R_XB: of its effects (z or b, levels x q, row-major)
(
    R_Q, R_LEVELS, R_CENTRED, R_CORRELATED, R_XS, R_XB, R_IDX, R_Z, R_SUB,
    R_LEN,
) = range(10)


@_jit
def unpack(x, buf):
    """``L`` (q x q duals, the sampled term order), ``alpha`` (dual; 1 when the family has
    none) and the log prior density plus log-Jacobian."""
    n = x.size
    q = int(buf[k.H_Q])
    xl = int(buf[k.H_XL])
    g = int(buf[k.O_GLMM])
    logp = d.const(0.0, n)
    L = np.zeros((q, q, n + 1))
    if int(buf[k.H_CORRELATED]) == 0:
        for i in range(q):
            v = d.var(x, xl + i)
            L[i, i] = d.exp(v)
            logp = d.add(logp, v)
            logp = d.add(logp, k.prior_dual(buf, int(buf[k.O_SDPRI]) + k.PRIOR_WIDTH * i, L[i, i]))
    else:
        _, logp = k.fill_packed(x, xl, q, L, logp)
        logp = d.add(logp, k.lkj_chol_logp(buf, L, q, n))
    alpha = d.const(1.0, n)
    if buf[g + G_ALPHA] > 0:
        xa = d.var(x, int(buf[k.H_XR]))
        alpha = d.exp(xa)
        logp = d.add(logp, xa)
        logp = d.add(logp, k.prior_dual(buf, int(buf[k.O_SIGPRI]), alpha))
    return L, alpha, logp


@_jit
def _section(buf, g, slot, size):
    o = int(buf[g + slot])
    return buf[o:o + size]


@_jit
def _loglik(buf, beta, Lv, alpha, offset, g_off, want_grad):
    """The kernel's value and gradient with the arrays of the buffer's GLMM section, the
    rows' ``offset`` given; the offset gradient is written into ``g_off``."""
    g = int(buf[k.O_GLMM])
    p, q = int(buf[k.H_P]), int(buf[k.H_Q])
    N, C, K = int(buf[g + G_N]), int(buf[g + G_C]), int(buf[g + G_K])
    y = _section(buf, g, G_Y, N)
    trials = _section(buf, g, G_TRIALS, N)
    X = _section(buf, g, G_X, N * p).reshape((N, p))
    Z = _section(buf, g, G_Z, N * q).reshape((N, q))
    starts = _section(buf, g, G_STARTS, C + 1).astype(np.int64)
    consts = _section(buf, g, G_CONSTS, C)
    nodes = _section(buf, g, G_NODES, K * q).reshape((K, q))
    logw = _section(buf, g, G_LOGW, K)
    code, center = int(buf[g + G_CODE]), int(buf[g + G_CENTER])
    tol, maxit = buf[g + G_TOL], int(buf[g + G_MAXIT])
    modes = np.zeros((C, q))
    chol = np.zeros((C, q, q))
    per = np.zeros(C)
    if q == 1:
        return qk.value_and_grad(code, y, trials, X, Z, offset, starts, beta, Lv, alpha, consts,
                                 nodes, logw, center, tol, maxit, modes, chol, per, g_off,
                                 want_grad, (0,))
    if q == 2:
        return qk.value_and_grad(code, y, trials, X, Z, offset, starts, beta, Lv, alpha, consts,
                                 nodes, logw, center, tol, maxit, modes, chol, per, g_off,
                                 want_grad, (0, 0))
    return qk.value_and_grad(code, y, trials, X, Z, offset, starts, beta, Lv, alpha, consts,
                             nodes, logw, center, tol, maxit, modes, chol, per, g_off,
                             want_grad, (0, 0, 0))


@_jit
def _factor(x, buf, rec, n):
    """A sampled factor's ``F`` (q x q duals; ``S = F F^T``, rows in design term order, as
    :func:`hierbayes.backend.params.re_covariance` builds it) and the log prior density
    plus log-Jacobian of its sds or LKJ factor."""
    q = int(buf[rec + R_Q])
    xs = int(buf[rec + R_XS])
    sub = buf[int(buf[rec + R_SUB]):]
    logp = d.const(0.0, n)
    F = np.zeros((q, q, n + 1))
    if int(buf[rec + R_CORRELATED]) == 0:
        for i in range(q):
            v = d.var(x, xs + i)
            F[i, i] = d.exp(v)
            logp = d.add(logp, v)
            logp = d.add(logp, k.prior_dual(sub, int(sub[k.O_SDPRI]) + k.PRIOR_WIDTH * i, F[i, i]))
        return F, logp
    Lr = np.zeros((q, q, n + 1))  # PyMC's factor of the reversed terms
    _, logp = k.fill_packed(x, xs, q, Lr, logp)
    logp = d.add(logp, k.lkj_chol_logp(sub, Lr, q, n))
    for a in range(q):
        F[a] = Lr[q - 1 - a]
    return F, logp


@_jit
def _effects(x, buf, rec, Fv):
    """A sampled factor's effects ``b`` (levels x q) at ``x``, their prior's log density
    and its gradient in the sampled effects (z or b) and in ``F`` (q x q, real)."""
    q, nl = int(buf[rec + R_Q]), int(buf[rec + R_LEVELS])
    xb = int(buf[rec + R_XB])
    v = x[xb:xb + nl * q].reshape((nl, q))
    g_v = np.zeros((nl, q))
    g_F = np.zeros((q, q))
    half_log_2pi = 0.5 * math.log(2.0 * math.pi)
    lp = -half_log_2pi * nl * q
    if int(buf[rec + R_CENTRED]) == 0:  # b_j = F z_j, z ~ N(0, 1)
        b = np.zeros((nl, q))
        for j in range(nl):
            for a in range(q):
                lp -= 0.5 * v[j, a] * v[j, a]
                g_v[j, a] = -v[j, a]
                for c in range(q):
                    b[j, a] += Fv[a, c] * v[j, c]
        return b, lp, g_v, g_F
    b = v.copy()
    if int(buf[rec + R_CORRELATED]) == 0:  # b_ja ~ N(0, sd_a)
        for a in range(q):
            sd = Fv[a, a]
            acc = 0.0
            for j in range(nl):
                z = b[j, a] / sd
                acc += z * z
                g_v[j, a] = -z / sd
            lp -= 0.5 * acc + nl * math.log(sd)
            g_F[a, a] = (acc - nl) / sd
        return b, lp, g_v, g_F
    # b_j ~ N(0, S), S = F F^T = P Lr Lr^T P (P reverses the terms): w = Lr^-1 P b_j
    Lr = np.empty((q, q))
    for r in range(q):
        Lr[r] = Fv[q - 1 - r]
    g_Lr = np.zeros((q, q))
    for r in range(q):
        lp -= nl * math.log(Lr[r, r])
        g_Lr[r, r] -= nl / Lr[r, r]
    w = np.empty(q)
    t = np.empty(q)
    for j in range(nl):
        for r in range(q):  # forward solve Lr w = P b_j
            acc = b[j, q - 1 - r]
            for c in range(r):
                acc -= Lr[r, c] * w[c]
            w[r] = acc / Lr[r, r]
        for r in range(q - 1, -1, -1):  # back solve Lr^T t = w: t = Lr^-T w
            acc = w[r]
            for c in range(r + 1, q):
                acc -= Lr[c, r] * t[c]
            t[r] = acc / Lr[r, r]
        for r in range(q):
            lp -= 0.5 * w[r] * w[r]
            g_v[j, q - 1 - r] = -t[r]
            for c in range(r + 1):
                g_Lr[r, c] += t[r] * w[c]
    for a in range(q):
        g_F[a] = g_Lr[q - 1 - a]
    return b, lp, g_v, g_F


@_jit
def _real(F, q):
    Fv = np.empty((q, q))
    for a in range(q):
        for b in range(q):
            Fv[a, b] = F[a, b, 0]
    return Fv


@_jit
def _records(buf):
    g = int(buf[k.O_GLMM])
    nlat = int(buf[g + G_NLAT])
    lat = int(buf[g + G_LAT])
    out = np.empty(nlat, dtype=np.int64)
    for f in range(nlat):
        out[f] = int(buf[lat + f])
    return out


@_jit
def logp_grad(x, buf, out):
    """Log-density at ``x``; writes the gradient into ``out``."""
    n = x.size
    p, q = int(buf[k.H_P]), int(buf[k.H_Q])
    g = int(buf[k.O_GLMM])
    N = int(buf[g + G_N])
    L, alpha, logp = unpack(x, buf)
    grad = logp[1:].copy()
    total = logp[0]
    beta = np.empty(p)
    bidx, bpri = int(buf[k.O_BIDX]), int(buf[k.O_BPRI])
    for j in range(p):
        i = int(buf[bidx + j])
        beta[j] = x[i]
        lp, dlp = k.prior_at(buf, bpri + k.PRIOR_WIDTH * j, x[i])
        total += lp
        grad[i] += dlp
    Lv = np.zeros((q, q))
    for a in range(q):
        for b in range(a + 1):
            Lv[a, b] = L[a, b, 0]
    # the sampled factors' effects: their priors, and the rows' offset
    offset = _section(buf, g, G_OFFSET, N).copy()
    recs = _records(buf)
    for rec in recs:
        F, lpF = _factor(x, buf, rec, n)
        beff, lp, g_v, _ = _effects(x, buf, rec, _real(F, int(buf[rec + R_Q])))
        total += lpF[0] + lp
        grad += lpF[1:]
        qf = int(buf[rec + R_Q])
        idx = buf[int(buf[rec + R_IDX]):int(buf[rec + R_IDX]) + N]
        Zf = buf[int(buf[rec + R_Z]):int(buf[rec + R_Z]) + N * qf].reshape((N, qf))
        for i in range(N):
            j = int(idx[i])
            for a in range(qf):
                offset[i] += Zf[i, a] * beff[j, a]
    g_off = np.zeros(N)
    ll, g_beta, g_L, g_alpha, _ = _loglik(buf, beta, Lv, alpha[0], offset, g_off, True)
    total += ll
    for j in range(p):
        grad[int(buf[bidx + j])] += g_beta[j]
    for a in range(q):
        for b in range(a + 1):
            grad += g_L[a, b] * L[a, b, 1:]
    grad += g_alpha * alpha[1:]
    # the offset gradient back to each sampled factor's effects and F
    for rec in recs:
        qf, nl = int(buf[rec + R_Q]), int(buf[rec + R_LEVELS])
        xb = int(buf[rec + R_XB])
        F, _ = _factor(x, buf, rec, n)
        Fv = _real(F, qf)
        _, _, g_v, g_F = _effects(x, buf, rec, Fv)
        idx = buf[int(buf[rec + R_IDX]):int(buf[rec + R_IDX]) + N]
        Zf = buf[int(buf[rec + R_Z]):int(buf[rec + R_Z]) + N * qf].reshape((N, qf))
        g_b = np.zeros((nl, qf))
        for i in range(N):
            j = int(idx[i])
            for a in range(qf):
                g_b[j, a] += Zf[i, a] * g_off[i]
        if int(buf[rec + R_CENTRED]) == 0:  # b_j = F z_j
            for j in range(nl):
                for a in range(qf):
                    for c in range(qf):
                        g_v[j, c] += g_b[j, a] * Fv[a, c]
                        g_F[a, c] += g_b[j, a] * x[xb + j * qf + c]
        else:
            g_v += g_b
        for j in range(nl):
            for a in range(qf):
                grad[xb + j * qf + a] += g_v[j, a]
        for a in range(qf):
            for c in range(qf):
                if g_F[a, c] != 0.0:
                    grad += g_F[a, c] * F[a, c, 1:]
    out[:] = grad
    return total


@_jit
def expand(x, buf, out):
    """The natural parameters at ``x``: beta (p), alpha (if any), sd (q, design order) and,
    for correlated terms, the q x q correlation matrix (row-major)."""
    p, q = int(buf[k.H_P]), int(buf[k.H_Q])
    L, alpha, _ = unpack(x, buf)
    S = k.covariance(L, buf, q, x.size)
    bidx = int(buf[k.O_BIDX])
    for j in range(p):
        out[j] = x[int(buf[bidx + j])]
    i = p
    if buf[int(buf[k.O_GLMM]) + G_ALPHA] > 0:
        out[i] = alpha[0]
        i += 1
    for a in range(q):
        out[i + a] = np.sqrt(S[a, a, 0])
    i += q
    if int(buf[k.H_CORRELATED]) == 1:
        for a in range(q):
            for b in range(q):
                out[i + a * q + b] = S[a, b, 0] / np.sqrt(S[a, a, 0] * S[b, b, 0])
        i += q * q
    for rec in _records(buf):  # each sampled factor: sd, corr (correlated terms), b
        qf, nl = int(buf[rec + R_Q]), int(buf[rec + R_LEVELS])
        F, _ = _factor(x, buf, rec, x.size)
        Fv = _real(F, qf)
        Sf = np.zeros((qf, qf))
        for a in range(qf):
            for b in range(qf):
                for c in range(qf):
                    Sf[a, b] += Fv[a, c] * Fv[b, c]
        for a in range(qf):
            out[i + a] = np.sqrt(Sf[a, a])
        i += qf
        if int(buf[rec + R_CORRELATED]) == 1:
            for a in range(qf):
                for b in range(qf):
                    out[i + a * qf + b] = Sf[a, b] / np.sqrt(Sf[a, a] * Sf[b, b])
            i += qf * qf
        beff = _effects(x, buf, rec, Fv)[0]
        for j in range(nl):
            for a in range(qf):
                out[i + j * qf + a] = beff[j, a]
        i += nl * qf


def _logp_c(dim, x_, out_, logp_, ud):
    buf = k.buffer_of(ud)
    n = int(buf[k.H_NDIM])
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
    buf = k.buffer_of(ud)
    n = int(buf[k.H_NDIM])
    if dim != n or n_expanded != int(buf[k.H_NEXP]):
        return -1
    x = numba.carray(x_, (n,))
    out = numba.carray(out_, (int(n_expanded),))
    expand(x, buf, out)
    return 0


_CFUNCS: dict = {}


def cfuncs():
    """The compiled C entry points ``(logp, expand)`` (compiled once, cached on disk)."""
    if not _CFUNCS:
        _CFUNCS["logp"] = numba.cfunc(k.LOGP_SIG, cache=True, error_model="numpy")(_logp_c)
        _CFUNCS["expand"] = numba.cfunc(k.EXPAND_SIG, cache=True, error_model="numpy")(_expand_c)
    return _CFUNCS["logp"], _CFUNCS["expand"]
