"""The native nutpie callback of Gaussian hybrid (crossed or nested) models.

A hybrid model (:func:`hierbayes.backend.marginal.build` with several grouping factors)
integrates out the factor of :func:`hierbayes.likelihood.collapsed.collapsed_group` and
samples the other factors' effects, which enter the collapsed likelihood as a per-row offset
``o_i = sum_f Z_f[i] b_f[idx_f[i]]``. This callback computes exactly that PyMC model's
log-density and gradient:

- the collapsed factor's hyperparameters (``beta``, ``sigma``, ``phi``, its covariance)
  are unpacked as the one-factor kernel does (:func:`hierbayes.backend.native.kernel.unpack`,
  PyMC's default transforms; the buffer has that kernel's header);
- each sampled factor's covariance factor is unpacked from its own slots with dual numbers
  (sds on the log scale, or the LKJ Cholesky factor with a log diagonal), its rows put back
  in design term order (``F``, ``S = F F^T``), with its priors;
- its effects are ``b_j = F z_j`` (non-centred, ``z ~ N(0, I)``) or sampled as they are
  (centred, ``b_j ~ N(0, S)``), as :mod:`hierbayes.backend.centring` decided;
- the collapsed likelihood is DESIGN.md's whitening + Woodbury route per cluster
  (:func:`loglik_offset`) on ``e = y - X beta - o``; a second pass over each cluster's rows
  gives ``dll/do = W^T v`` (``W`` the whitening map, ``v = V~^-1 e~``), which is scattered to
  the effects (``dll/db_j = sum_{i in j} Z_f[i] dll/do_i``), then to ``z`` (``F^T dll/db_j``)
  and ``F`` (``sum_j dll/db_j z_j^T``) for a non-centred factor.

Cost per gradient: two passes over the rows and q x q algebra per cluster, linear in the
rows; nothing the size of levels x levels.

The buffer: the one-factor kernel's header (its priors, term order and slots describe the
collapsed factor), then a hybrid section at ``buf[O_HYBRID]``: the scalars ``Y_*`` below,
the rows in cluster order ([y, X], the collapsed factor's Z, the lag since the previous
row), the clusters' first rows, and a table of ``F_WIDTH`` slots per sampled factor.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from hierbayes.backend.native import dual as d
from hierbayes.backend.native import kernel as k
from hierbayes.backend.native.dual import LOG_2PI

_jit = d.jit

#: the header slot holding the offset of a kernel's own section (the GLMM callback's, or this one's)
O_HYBRID = k.O_GLMM

# the hybrid section: scalars, then the absolute offsets of its arrays
(
    Y_N, Y_C, Y_TMAX, Y_NF, Y_ROWS, Y_ZC, Y_LAG, Y_STARTS, Y_FACTORS, Y_WORK,
    Y_LEN,
) = range(11)

# one sampled factor's slots in the factor table: q, levels, centred (1/0), LKJ-correlated
# (1/0), where its covariance (F_XL) and effects (F_XB: z or b) sit in the sampled vector,
# LKJ eta and log normaliser, offsets of its sd priors (sampled order), term order, level
# index per row and Z (N x q, row order of the section), and of its effects in the work
# array (F_WB)
(
    F_Q, F_J, F_CENTRED, F_CORRELATED, F_XL, F_XB, F_ETA, F_NORM, F_SDPRI, F_ORDER,
    F_IDX, F_Z, F_WB,
    F_WIDTH,
) = range(14)


@_jit
def factor_L(x, buf, f, logp):
    """The covariance factor of sampled factor ``f`` (table row at ``f``) as duals, sampled
    term order, and ``logp`` plus its priors and log-Jacobian."""
    n = x.size
    q = int(buf[f + F_Q])
    xl = int(buf[f + F_XL])
    sdoff = int(buf[f + F_SDPRI])
    L = np.zeros((q, q, n + 1))
    if int(buf[f + F_CORRELATED]) == 0:
        for i in range(q):
            v = d.var(x, xl + i)
            L[i, i] = d.exp(v)
            logp = d.add(logp, v)
            logp = d.add(logp, k.prior_dual(buf, sdoff + k.PRIOR_WIDTH * i, L[i, i]))
    else:
        _, logp = k.fill_packed(x, xl, q, L, logp)
        logp = d.add(logp, k.lkj_chol_logp_at(buf, L, q, n, buf[f + F_ETA], buf[f + F_NORM], sdoff))
    return L, logp


@_jit
def design_order(L, buf, f):
    """The rows of ``L`` in design term order: ``F`` with ``F F^T = S`` (duals)."""
    q = int(buf[f + F_Q])
    order = int(buf[f + F_ORDER])
    F = np.empty_like(L)
    for kk in range(q):
        F[int(buf[order + kk])] = L[kk]
    return F


@_jit
def loglik_offset(buf, beta, off, s2, phi, S, g_off):
    """Collapsed log-likelihood of ``e = y - X beta - off`` (clusters of the hybrid section,
    rows in time order) and its gradient: returns ``ll, g_beta, g_s2, g_phi, g_S`` and
    writes ``dll/d off`` per row into ``g_off``.

    The algebra of :func:`hierbayes.backend.native.kernel.loglik_whitened` (whitening +
    Woodbury per cluster, AR(1)/CAR(1) where the header says so), and a second pass per
    cluster: with ``v = (e~ - Z~ K h) / s2`` and the whitening ``e~_k = c_k (e_k - a_k e_(k-1))``,
    ``dll/de = -W^T v``, so ``dll/d off_k = c_k v_k - a_(k+1) c_(k+1) v_(k+1)`` and
    ``dll/dbeta = X^T dll/d off``.
    """
    p = int(buf[k.H_P])
    q = int(buf[k.H_Q])
    corr = int(buf[k.H_CORR])
    hy = int(buf[O_HYBRID])
    C = int(buf[hy + Y_C])
    Tm = int(buf[hy + Y_TMAX])
    m = p + 1
    o_rows, o_z = int(buf[hy + Y_ROWS]), int(buf[hy + Y_ZC])
    o_lag, o_st = int(buf[hy + Y_LAG]), int(buf[hy + Y_STARTS])
    Sinv = np.empty((q, q))
    logdet_s = k.chol_inverse(S.copy(), q, np.empty((q, q)), np.empty((q, q)), Sinv)
    g_beta = np.zeros(p)
    g_S = np.zeros((q, q))
    if logdet_s != logdet_s:
        return np.nan, g_beta, 0.0, 0.0, g_S
    g_phi = 0.0
    ll = 0.0
    log_s2 = math.log(s2)
    log_phi = math.log(abs(phi)) if phi != 0.0 else 0.0
    inv_phi = 1.0 / phi if phi != 0.0 else 0.0
    et = np.empty(Tm)
    zt = np.empty((Tm, q))
    cb = np.empty(Tm)
    ab = np.empty(Tm)
    vb = np.empty(Tm)
    dz = np.empty(q)
    Q = np.empty((q, q))
    h = np.empty(q)
    A2 = np.empty(q)
    A3 = np.empty(q)
    A4 = np.empty((q, q))
    B = np.empty((q, q))
    Ci = np.empty((q, q))
    Cw = np.empty((q, q))
    K = np.empty((q, q))
    Kh = np.empty(q)
    Ks = np.zeros((q, q))
    J = np.zeros((q, q))
    vv_e = 0.0
    n_rows = 0
    for c in range(C):
        r0 = int(buf[o_st + c])
        n = int(buf[o_st + c + 1]) - r0
        ee = a1 = a5 = 0.0
        prod_r = 1.0
        for x in range(q):
            h[x] = A2[x] = A3[x] = 0.0
            for y_ in range(q):
                Q[x, y_] = A4[x, y_] = 0.0
        e_prev = 0.0
        for s in range(n):
            r = r0 + s
            row = o_rows + r * m
            zrow = o_z + r * q
            e = buf[row] - off[r]
            for i in range(p):
                e -= buf[row + 1 + i] * beta[i]
            if s == 0 or corr == 0:
                et[s] = e
                for b in range(q):
                    zt[s, b] = buf[zrow + b]
                cb[s] = 1.0
                ab[s] = 0.0
            else:
                lag = buf[o_lag + r]
                if phi != 0.0:
                    a = math.exp(lag * log_phi)
                    if phi < 0.0 and lag % 2.0 == 1.0:
                        a = -a
                    da = lag * a * inv_phi
                else:
                    a = 0.0
                    da = 1.0 if lag == 1.0 else 0.0
                one = 1.0 - a * a
                if not one > 0:
                    return np.nan, g_beta, 0.0, 0.0, g_S
                prod_r *= one
                cc_ = 1.0 / math.sqrt(one)
                cb[s] = cc_
                ab[s] = a
                acc = a * cc_ * cc_
                et[s] = cc_ * (e - a * e_prev)
                for b in range(q):
                    zp = buf[zrow - q + b]
                    zt[s, b] = cc_ * (buf[zrow + b] - a * zp)
                    dz[b] = acc * zt[s, b] - cc_ * zp
                de = acc * et[s] - cc_ * e_prev
                a1 += da * et[s] * de
                a5 += da * acc
                for x in range(q):
                    dzx = da * zt[s, x]
                    A2[x] += dzx * de
                    A3[x] += da * et[s] * dz[x]
                    for y_ in range(q):
                        A4[x, y_] += dzx * dz[y_]
            e_prev = e
            ee += et[s] * et[s]
            for x in range(q):
                h[x] += zt[s, x] * et[s]
                for y_ in range(x + 1):
                    Q[x, y_] += zt[s, x] * zt[s, y_]
        for x in range(q):
            for y_ in range(x):
                Q[y_, x] = Q[x, y_]
        for x in range(q):
            for y_ in range(q):
                B[x, y_] = s2 * Sinv[x, y_] + Q[x, y_]
        logdet_b = k.chol_inverse(B, q, Cw, Ci, K)
        if logdet_b != logdet_b:
            return np.nan, g_beta, 0.0, 0.0, g_S
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
        # second pass: v = V~^-1 e~, then dll/d off = W^T v
        for s in range(n):
            acc = et[s]
            for b in range(q):
                acc -= zt[s, b] * Kh[b]
            vb[s] = acc / s2
        for s in range(n):
            go = cb[s] * vb[s]
            if s + 1 < n:
                go -= ab[s + 1] * cb[s + 1] * vb[s + 1]
            r = r0 + s
            g_off[r] = go
            row = o_rows + r * m
            for i in range(p):
                g_beta[i] += buf[row + 1 + i] * go
    tr_ks = 0.0
    tr_js = 0.0
    for x in range(q):
        for y_ in range(q):
            tr_ks += Ks[x, y_] * Sinv[y_, x]
            tr_js += J[x, y_] * Sinv[y_, x]
    vv = vv_e / (s2 * s2) - tr_js / s2
    tr_v = (n_rows - C * q + s2 * tr_ks) / s2
    g_s2 = 0.5 * (vv - tr_v)
    W1 = np.empty((q, q))
    for x in range(q):
        for y_ in range(q):
            W1[x, y_] = J[x, y_] + s2 * Ks[x, y_] - C * S[x, y_]
    for x in range(q):
        for y_ in range(q):
            acc = 0.0
            for i in range(q):
                for j in range(q):
                    acc += Sinv[x, i] * W1[i, j] * Sinv[j, y_]
            g_S[x, y_] = 0.5 * acc
    return ll, g_beta, g_s2, g_phi, g_S


@_jit
def _effects(x, buf, f, Fv, work):
    """Write factor ``f``'s effects ``b`` (J x q, design term order) into ``work``: ``z F^T``
    (non-centred) or the sampled values (centred)."""
    q, J = int(buf[f + F_Q]), int(buf[f + F_J])
    xb, wb = int(buf[f + F_XB]), int(buf[f + F_WB])
    centred = int(buf[f + F_CENTRED]) == 1
    for j in range(J):
        for a in range(q):
            if centred:
                work[wb + j * q + a] = x[xb + j * q + a]
            else:
                acc = 0.0
                for c in range(q):
                    acc += Fv[a, c] * x[xb + j * q + c]
                work[wb + j * q + a] = acc


@_jit
def _effects_prior(x, buf, f, F, work, gwork, grad):
    """Log prior of factor ``f``'s effects, its gradient in their coordinates (added to
    ``grad``), and in ``F`` through its duals (added to ``grad``). For a centred factor
    ``gwork`` (dll/db) is chained as well; for a non-centred one, :func:`logp_grad` chains it."""
    n = x.size
    q, J = int(buf[f + F_Q]), int(buf[f + F_J])
    xb, wb = int(buf[f + F_XB]), int(buf[f + F_WB])
    if int(buf[f + F_CENTRED]) == 0:  # z ~ N(0, 1)
        lp = -0.5 * J * q * LOG_2PI
        for i in range(J * q):
            z = x[xb + i]
            lp -= 0.5 * z * z
            grad[xb + i] -= z
        return lp
    if int(buf[f + F_CORRELATED]) == 0:  # b_ja ~ N(0, sd_a), sd_a = F[a, a]
        lp = 0.0
        for a in range(q):
            sd = F[a, a, 0]
            bb = 0.0
            for j in range(J):
                b = work[wb + j * q + a]
                bb += b * b
                grad[xb + j * q + a] += gwork[wb + j * q + a] - b / (sd * sd)
            lp += -J * (0.5 * LOG_2PI + math.log(sd)) - 0.5 * bb / (sd * sd)
            g_sd = -J / sd + bb / (sd * sd * sd)
            grad += g_sd * F[a, a, 1:]
        return lp
    # b_j ~ MvNormal(0, S), S = F F^T: dlogp/dS = (S^-1 B S^-1 - J S^-1) / 2, B = sum b b^T
    S = np.zeros((q, q, n + 1))
    Sv = np.empty((q, q))
    for a in range(q):
        for b in range(a + 1):
            acc = d.const(0.0, n)
            for c in range(q):
                acc = d.add(acc, d.mul(F[a, c], F[b, c]))
            S[a, b] = acc
            S[b, a] = acc
            Sv[a, b] = acc[0]
            Sv[b, a] = acc[0]
    Sinv = np.empty((q, q))
    logdet = k.chol_inverse(Sv, q, np.empty((q, q)), np.empty((q, q)), Sinv)
    if logdet != logdet:
        return np.nan
    Bm = np.zeros((q, q))
    quad = 0.0
    for j in range(J):
        for a in range(q):
            acc = 0.0
            for c in range(q):
                acc += Sinv[a, c] * work[wb + j * q + c]
            quad += work[wb + j * q + a] * acc
            grad[xb + j * q + a] += gwork[wb + j * q + a] - acc
            for c in range(q):
                Bm[a, c] += work[wb + j * q + a] * work[wb + j * q + c]
    lp = -0.5 * (J * q * LOG_2PI + J * logdet + quad)
    SB = Sinv @ Bm @ Sinv
    for a in range(q):
        for b in range(q):
            grad += 0.5 * (SB[a, b] - J * Sinv[a, b]) * S[a, b, 1:]
    return lp


@_jit
def logp_grad(x, buf, out):
    """Log-density at ``x``; writes the gradient into ``out``."""
    n = x.size
    p = int(buf[k.H_P])
    q = int(buf[k.H_Q])
    hy = int(buf[O_HYBRID])
    N, nf = int(buf[hy + Y_N]), int(buf[hy + Y_NF])
    ftab = int(buf[hy + Y_FACTORS])
    sigma, phi, L, logp = k.unpack(x, buf)
    S = k.covariance(L, buf, q, n)
    beta = np.empty(p)
    bidx, bpri = int(buf[k.O_BIDX]), int(buf[k.O_BPRI])
    fact_lp = d.const(0.0, n)
    Fs = []
    for fi in range(nf):
        f = ftab + fi * F_WIDTH
        Lf, fact_lp = factor_L(x, buf, f, fact_lp)
        Fs.append(design_order(Lf, buf, f))
    grad = logp[1:] + fact_lp[1:]
    total = logp[0] + fact_lp[0]
    for j in range(p):
        i = int(buf[bidx + j])
        beta[j] = x[i]
        lp, dlp = k.prior_at(buf, bpri + k.PRIOR_WIDTH * j, x[i])
        total += lp
        grad[i] += dlp
    work = np.zeros(int(buf[hy + Y_WORK]))
    gwork = np.zeros(work.size)
    off = np.zeros(N)
    for fi in range(nf):
        f = ftab + fi * F_WIDTH
        qf = int(buf[f + F_Q])
        F = Fs[fi]
        Fv = np.empty((qf, qf))
        for a in range(qf):
            for c in range(qf):
                Fv[a, c] = F[a, c, 0]
        _effects(x, buf, f, Fv, work)
        oi, oz, wb = int(buf[f + F_IDX]), int(buf[f + F_Z]), int(buf[f + F_WB])
        for r in range(N):
            j = int(buf[oi + r])
            acc = 0.0
            for a in range(qf):
                acc += buf[oz + r * qf + a] * work[wb + j * qf + a]
            off[r] += acc
    Sv = np.empty((q, q))
    for a in range(q):
        for b in range(q):
            Sv[a, b] = S[a, b, 0]
    s2 = d.mul(sigma, sigma)
    g_off = np.zeros(N)
    ll, g_beta, g_s2, g_phi, g_S = loglik_offset(buf, beta, off, s2[0], phi[0], Sv, g_off)
    total += ll
    for j in range(p):
        grad[int(buf[bidx + j])] += g_beta[j]
    grad += g_s2 * s2[1:] + g_phi * phi[1:]
    for a in range(q):
        for b in range(q):
            grad += g_S[a, b] * S[a, b, 1:]
    for fi in range(nf):
        f = ftab + fi * F_WIDTH
        qf, J = int(buf[f + F_Q]), int(buf[f + F_J])
        oi, oz, wb = int(buf[f + F_IDX]), int(buf[f + F_Z]), int(buf[f + F_WB])
        xb = int(buf[f + F_XB])
        for r in range(N):
            j = int(buf[oi + r])
            for a in range(qf):
                gwork[wb + j * qf + a] += buf[oz + r * qf + a] * g_off[r]
        F = Fs[fi]
        total += _effects_prior(x, buf, f, F, work, gwork, grad)
        if int(buf[f + F_CENTRED]) == 0:  # b_j = F z_j: dll/dz_j = F^T g_j, dll/dF = sum g_j z_j^T
            gF = np.zeros((qf, qf))
            for j in range(J):
                for a in range(qf):
                    g = gwork[wb + j * qf + a]
                    for c in range(qf):
                        grad[xb + j * qf + c] += F[a, c, 0] * g
                        gF[a, c] += g * x[xb + j * qf + c]
            for a in range(qf):
                for c in range(qf):
                    if gF[a, c] != 0.0:
                        grad += gF[a, c] * F[a, c, 1:]
    out[:] = grad
    return total


@_jit
def expand(x, buf, out):
    """The natural parameters at ``x``: beta (p), sigma, phi (with a correlation), the
    collapsed factor's sds (q, design order) and correlation matrix (q x q, LKJ only); then
    per sampled factor its sds, correlation matrix (LKJ only) and effects (J x q)."""
    n = x.size
    p = int(buf[k.H_P])
    q = int(buf[k.H_Q])
    hy = int(buf[O_HYBRID])
    nf = int(buf[hy + Y_NF])
    ftab = int(buf[hy + Y_FACTORS])
    sigma, phi, L, _ = k.unpack(x, buf)
    S = k.covariance(L, buf, q, n)
    bidx = int(buf[k.O_BIDX])
    for j in range(p):
        out[j] = x[int(buf[bidx + j])]
    i = p
    out[i] = sigma[0]
    i += 1
    if int(buf[k.H_CORR]) > 0:
        out[i] = phi[0]
        i += 1
    i = _write_cov(S, q, int(buf[k.H_CORRELATED]) == 1, out, i)
    for fi in range(nf):
        f = ftab + fi * F_WIDTH
        qf, J = int(buf[f + F_Q]), int(buf[f + F_J])
        Lf, _ = factor_L(x, buf, f, d.const(0.0, n))
        F = design_order(Lf, buf, f)
        Sf = np.empty((qf, qf, 1))
        Fv = np.empty((qf, qf))
        for a in range(qf):
            for c in range(qf):
                Fv[a, c] = F[a, c, 0]
        for a in range(qf):
            for b in range(qf):
                acc = 0.0
                for c in range(qf):
                    acc += Fv[a, c] * Fv[b, c]
                Sf[a, b, 0] = acc
        i = _write_cov(Sf, qf, int(buf[f + F_CORRELATED]) == 1, out, i)
        work = np.zeros(int(buf[hy + Y_WORK]))
        _effects(x, buf, f, Fv, work)
        wb = int(buf[f + F_WB])
        for r in range(J * qf):
            out[i + r] = work[wb + r]
        i += J * qf


@_jit
def _write_cov(S, q, correlated, out, i):
    """The sds of ``S`` (duals or values; their first entry is read) at ``out[i:]``, then its
    correlation matrix if ``correlated``; returns the next index."""
    for a in range(q):
        out[i + a] = math.sqrt(S[a, a, 0])
    i += q
    if correlated:
        for a in range(q):
            for b in range(q):
                out[i + a * q + b] = S[a, b, 0] / math.sqrt(S[a, a, 0] * S[b, b, 0])
        i += q * q
    return i


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
