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
"""

from __future__ import annotations

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
    G_LEN,
) = range(18)


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
def _loglik(buf, beta, Lv, alpha, want_grad):
    """The kernel's value and gradient with the arrays of the buffer's GLMM section."""
    g = int(buf[k.O_GLMM])
    p, q = int(buf[k.H_P]), int(buf[k.H_Q])
    N, C, K = int(buf[g + G_N]), int(buf[g + G_C]), int(buf[g + G_K])
    y = _section(buf, g, G_Y, N)
    trials = _section(buf, g, G_TRIALS, N)
    X = _section(buf, g, G_X, N * p).reshape((N, p))
    Z = _section(buf, g, G_Z, N * q).reshape((N, q))
    offset = _section(buf, g, G_OFFSET, N)
    starts = _section(buf, g, G_STARTS, C + 1).astype(np.int64)
    consts = _section(buf, g, G_CONSTS, C)
    nodes = _section(buf, g, G_NODES, K * q).reshape((K, q))
    logw = _section(buf, g, G_LOGW, K)
    code, center = int(buf[g + G_CODE]), int(buf[g + G_CENTER])
    tol, maxit = buf[g + G_TOL], int(buf[g + G_MAXIT])
    modes = np.zeros((C, q))
    chol = np.zeros((C, q, q))
    per = np.zeros(C)
    g_off = np.zeros(N)
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
def logp_grad(x, buf, out):
    """Log-density at ``x``; writes the gradient into ``out``."""
    p, q = int(buf[k.H_P]), int(buf[k.H_Q])
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
    ll, g_beta, g_L, g_alpha, _ = _loglik(buf, beta, Lv, alpha[0], True)
    total += ll
    for j in range(p):
        grad[int(buf[bidx + j])] += g_beta[j]
    for a in range(q):
        for b in range(a + 1):
            grad += g_L[a, b] * L[a, b, 1:]
    grad += g_alpha * alpha[1:]
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
    if int(buf[k.H_NEXP]) > i + q:
        for a in range(q):
            for b in range(q):
                out[i + q + a * q + b] = S[a, b, 0] / np.sqrt(S[a, a, 0] * S[b, b, 0])


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
