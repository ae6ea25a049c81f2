"""The numba kernel of the marginal GLMM likelihood (adaptive Gauss-Hermite quadrature).

Value and gradient fused, over all clusters in one pass, with no allocation inside the
cluster loop; the maths and the array layout are those of
:mod:`hierbayes.likelihood.quadrature`, whose numpy reference it is tested equal to. Every
function is ``numba.njit(cache=True)``: compiled once per installation, cached on disk, and
callable from the backend's own compiled code (a nutpie callback).

The families enter by a code (:data:`FAMILY_CODES`, keyed by family name and link). Each
row's log density splits into a part without the linear predictor, summed once per cluster
(:func:`const_terms`: the binomial coefficient, ``-log y!``, the negative binomial's
``lgamma``, the Gamma's ``shape log shape - lgamma(shape) + (shape - 1) log y``, the
lognormal's ``-log y - log sigma - log(2 pi) / 2``), and a part in ``eta`` with its
derivatives (:func:`row_terms`). The family's one parameter (the negative binomial's
``alpha``, the Gamma's ``shape``, the lognormal's ``sigma``) is the kernel's ``alpha``
argument, whatever the family calls it; the codes from :data:`NEGBIN` on have one
(:func:`has_param`), and their constants are recomputed at every evaluation.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# numpy's error model: an overflow at an extreme point gives inf/NaN (the sampler rejects
# the point) instead of raising inside a C callback
jit = numba.njit(cache=True, error_model="numpy")

LOGIT, PROBIT, POISSON, NEGBIN, GAMMA, LOGNORMAL = 1, 2, 3, 4, 5, 6
#: kernel code of each (family name, link)
FAMILY_CODES = {
    ("bernoulli", "logit"): LOGIT, ("binomial", "logit"): LOGIT,
    ("bernoulli", "probit"): PROBIT, ("binomial", "probit"): PROBIT,
    ("poisson", "log"): POISSON, ("negbinomial", "log"): NEGBIN,
    ("gamma", "log"): GAMMA, ("lognormal", "identity"): LOGNORMAL,
}
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
SQRT2 = math.sqrt(2.0)


# ----------------------------------------------------------------- scalar functions


@jit
def digamma(x):
    """psi(x) for x > 0: recurrence to x >= 10, then the asymptotic series (|error| < 1e-15).

    Examples
    --------
    >>> round(digamma(1.0), 12)   # -Euler's gamma
    -0.577215664902
    """
    r = 0.0
    while x < 10.0:
        r -= 1.0 / x
        x += 1.0
    x2 = 1.0 / (x * x)
    series = x2 * (1.0 / 12 - x2 * (1.0 / 120 - x2 * (1.0 / 252 - x2 * (1.0 / 240 - x2 * (1.0 / 132)))))
    return r + math.log(x) - 0.5 / x - series


@jit
def softplus(z):
    """log(1 + e^z) without overflow. ``log(1 + e)`` rather than ``log1p(e)`` here and in the
    logit rows: the same absolute error (what a sum of log densities needs), a third of the
    time."""
    return max(z, 0.0) + math.log(1.0 + math.exp(-abs(z)))


@jit
def expit_pair(z):
    """``(p, 1 - p)`` for ``p = 1 / (1 + e^-z)``, each without cancellation."""
    if z >= 0:
        e = math.exp(-z)
        return 1.0 / (1.0 + e), e / (1.0 + e)
    e = math.exp(z)
    return e / (1.0 + e), 1.0 / (1.0 + e)


@jit
def expit_parts(z):
    """``(e, p, 1 - p)`` with one exp: ``e = e^-|z|``, ``p = 1 / (1 + e^-z)``; ``p`` and
    ``1 - p`` are ``1 / (1 + e)`` and ``e / (1 + e)`` in the order of ``z``'s sign
    (``log(1 + e^z) = max(z, 0) + log(1 + e)``).

    Examples
    --------
    >>> [round(v, 6) for v in expit_parts(0.0)]
    [1.0, 0.5, 0.5]
    """
    e = math.exp(-abs(z))
    inv = 1.0 / (1.0 + e)
    if z >= 0:
        return e, inv, e * inv
    return e, e * inv, inv


@jit
def log_ndtr_mills(t):
    """``(log Phi(t), phi(t) / Phi(t))``: erfc above t = -30, the asymptotic series of the
    inverse Mills ratio below.

    Examples
    --------
    >>> lp, m = log_ndtr_mills(0.0)
    >>> round(lp, 12), round(m, 12)   # log(1/2), 2 phi(0)
    (-0.69314718056, 0.797884560803)
    """
    if t > -30.0:
        if t > 0:
            lp = math.log1p(-0.5 * math.erfc(t / SQRT2))
        else:
            lp = math.log(0.5 * math.erfc(-t / SQRT2))
        return lp, math.exp(-0.5 * t * t - LOG_SQRT_2PI - lp)
    x = -t
    y = 1.0 / (x * x)
    m = x + (1.0 - y * (2.0 - y * (10.0 - y * (74.0 - y * (706.0 - y * (8162.0 - y * 110410.0)))))) / x
    return -0.5 * t * t - LOG_SQRT_2PI - math.log(m), m


@jit
def has_param(code):
    """Whether the family of ``code`` has a parameter (the kernel's ``alpha``).

    Examples
    --------
    >>> has_param(POISSON), has_param(GAMMA)
    (False, True)
    """
    return code >= NEGBIN


@jit
def const_terms(code, y, n, alpha):
    """The part of a row's log density without ``eta``, and its derivative in ``alpha``.

    Examples
    --------
    >>> [round(v, 6) for v in const_terms(LOGIT, 2.0, 4.0, 1.0)]   # log C(4, 2)
    [1.791759, 0.0]
    """
    if code == LOGIT or code == PROBIT:
        return math.lgamma(n + 1.0) - math.lgamma(y + 1.0) - math.lgamma(n - y + 1.0), 0.0
    if code == POISSON:
        return -math.lgamma(y + 1.0), 0.0
    if code == GAMMA:
        ly = math.log(y)
        return (alpha * math.log(alpha) - math.lgamma(alpha) + (alpha - 1.0) * ly,
                math.log(alpha) + 1.0 - digamma(alpha) + ly)
    if code == LOGNORMAL:
        return -math.log(y) - math.log(alpha) - LOG_SQRT_2PI, -1.0 / alpha
    return (math.lgamma(y + alpha) - math.lgamma(alpha) - math.lgamma(y + 1.0),
            digamma(y + alpha) - digamma(alpha))


@jit
def row_terms(code, y, n, eta, alpha):
    """The part of a row's log density in ``eta``: ``(h, h', h'', h''', dh/dalpha,
    dh'/dalpha, dh''/dalpha)`` (primes: derivatives in ``eta``).

    Examples
    --------
    >>> [round(v, 6) for v in row_terms(POISSON, 2.0, 1.0, 0.0, 1.0)[:4]]
    [-1.0, 1.0, -1.0, -1.0]
    """
    if code == LOGIT:
        e, p, r = expit_parts(eta)
        w = p * r
        h = y * eta - n * (max(eta, 0.0) + math.log(1.0 + e))
        return h, y - n * p, -n * w, -n * w * (r - p), 0.0, 0.0, 0.0
    if code == PROBIT:
        lu, a = log_ndtr_mills(eta)
        lo, b = log_ndtr_mills(-eta)
        m = n - y
        d2 = -y * a * (eta + a) - m * b * (b - eta)
        d3 = y * a * ((eta + a) * (eta + 2 * a) - 1.0) - m * b * ((b - eta) * (2 * b - eta) - 1.0)
        return y * lu + m * lo, y * a - m * b, d2, d3, 0.0, 0.0, 0.0
    if code == POISSON:
        mu = math.exp(eta)
        return y * eta - mu, y - mu, -mu, -mu, 0.0, 0.0, 0.0
    if code == GAMMA:  # w = y e^-eta, v = shape w
        w = y * math.exp(-eta)
        v = alpha * w
        return -alpha * eta - v, v - alpha, -v, v, -eta - w, w - 1.0, -w
    if code == LOGNORMAL:  # r = log y - eta
        r = math.log(y) - eta
        s2 = alpha * alpha
        s3 = s2 * alpha
        return (-r * r / (2.0 * s2), r / s2, -1.0 / s2, 0.0, r * r / s3, -2.0 * r / s3,
                2.0 / s3)
    z = eta - math.log(alpha)
    p, r = expit_pair(z)
    w = p * r
    ay = alpha + y
    sp = softplus(z)
    return (y * z - ay * sp, y - ay * p, -ay * w, -ay * w * (r - p),
            (ay * p - y) / alpha - sp, p * (y * r - alpha * p) / alpha,
            -w * (2 * p + y * (p - r) / alpha))


# ------------------------------------------------------------------- q x q algebra


@jit
def chol(H, R, q):
    """Lower Cholesky factor of ``H`` into ``R``; False if ``H`` is not positive definite."""
    for j in range(q):
        s = H[j, j]
        for k in range(j):
            s -= R[j, k] * R[j, k]
        if not s > 0:
            return False
        R[j, j] = math.sqrt(s)
        for i in range(j + 1, q):
            t = H[i, j]
            for k in range(j):
                t -= R[i, k] * R[j, k]
            R[i, j] = t / R[j, j]
        for i in range(j):
            R[i, j] = 0.0
    return True


@jit
def chol_solve(R, b, x, q):
    """``x = (R R^T)^-1 b``."""
    for i in range(q):
        s = b[i]
        for k in range(i):
            s -= R[i, k] * x[k]
        x[i] = s / R[i, i]
    for i in range(q - 1, -1, -1):
        s = x[i]
        for k in range(i + 1, q):
            s -= R[k, i] * x[k]
        x[i] = s / R[i, i]


@jit
def tri_inverse(R, Ri, q):
    """Inverse of a lower-triangular ``R`` into ``Ri``."""
    for j in range(q):
        for i in range(q):
            Ri[i, j] = 0.0
        Ri[j, j] = 1.0 / R[j, j]
        for i in range(j + 1, q):
            t = 0.0
            for k in range(j, i):
                t -= R[i, k] * Ri[k, j]
            Ri[i, j] = t / R[i, i]


# ----------------------------------------------------------------------- one cluster


@jit
def evaluate(code, y, tr, st, n, e0, Wc, q, alpha, u, D, grad, H):
    """``g(u)`` without the constant terms, ``grad g``, ``H`` and the row derivatives
    ``D[0..4] = (h', h'', h''', dh'/dalpha, dh''/dalpha)`` of the cluster's ``n`` rows from
    ``st``; returns ``(g, sum dh/dalpha)``."""
    uu = 0.0
    for a in range(q):
        grad[a] = -u[a]
        uu += u[a] * u[a]
        for b in range(q):
            H[a, b] = 1.0 if a == b else 0.0
    hs, has = 0.0, 0.0
    prod = 1.0  # logit rows of one trial: prod (1 + e^-|eta|), one log per evaluation
    for i in range(n):
        eta = e0[i]
        for a in range(q):
            eta += Wc[i, a] * u[a]
        yi, ni = y[st + i], tr[st + i]
        if code == LOGIT and ni == 1.0:  # row_terms' logit case, the log taken once
            e, pr, r = expit_parts(eta)
            w = pr * r
            hs += yi * eta - max(eta, 0.0)
            prod *= 1.0 + e
            if prod > 1e300:
                hs -= math.log(prod)
                prod = 1.0
            d1, d2, d3, d1a, d2a = yi - pr, -w, -w * (r - pr), 0.0, 0.0
        else:
            h, d1, d2, d3, ha, d1a, d2a = row_terms(code, yi, ni, eta, alpha)
            hs += h
            has += ha
        D[0, i], D[1, i], D[2, i], D[3, i], D[4, i] = d1, d2, d3, d1a, d2a
        for a in range(q):
            grad[a] += Wc[i, a] * d1
            for b in range(a + 1):
                H[a, b] -= d2 * Wc[i, a] * Wc[i, b]
    for a in range(q):
        for b in range(a):
            H[b, a] = H[a, b]
    return hs - math.log(prod) - 0.5 * uu, has


@jit
def newton(code, y, tr, st, n, e0, Wc, q, alpha, csum, u, tol, max_iter, D, grad, H, R, step, ut):
    """Damped Newton steps from ``u`` (updated in place) to the mode; leaves ``D``, ``grad``,
    ``H`` and ``R = chol(H)`` at the mode. Returns ``(g, sum dh/dalpha, steps)``; ``g`` NaN
    where ``H`` is not positive definite."""
    g, has = evaluate(code, y, tr, st, n, e0, Wc, q, alpha, u, D, grad, H)
    steps = 0
    current = False  # whether R is the factor of the current H
    for _ in range(max_iter):
        if not chol(H, R, q):
            return np.nan, has, steps
        current = True
        chol_solve(R, grad, step, q)
        big = 0.0
        for a in range(q):
            big = max(big, abs(step[a]))
        if not big >= tol:  # converged (or NaN)
            break
        steps += 1
        t, ok = 1.0, False
        for _ in range(30):
            for a in range(q):
                ut[a] = u[a] + t * step[a]
            gt, hast = evaluate(code, y, tr, st, n, e0, Wc, q, alpha, ut, D, grad, H)
            if gt + csum >= (g + csum) - 1e-12 * abs(g + csum):
                ok = True
                break
            t *= 0.5
        current = False
        if not ok:
            g, has = evaluate(code, y, tr, st, n, e0, Wc, q, alpha, u, D, grad, H)
            break
        for a in range(q):
            u[a] = ut[a]
        g, has = gt, hast
    if not current and not chol(H, R, q):
        return np.nan, has, steps
    return g, has, steps


@jit
def nodes_pass(code, y, tr, st, n, e0, Wc, Z, q, alpha, u, Ri, nodes, logw, center, g, has, grad, D,
               U, terms, Dk, gam, ZD, gak, side, F, est, digits):
    """Every node's point ``U[k]``, ``terms[k] = log w~_k + g(u_k)``, ``h'`` per row
    ``Dk[k]``, ``gam[k] = grad g(u_k)``, ``ZD[k] = Z^T h'_k`` and ``gak[k] = sum dh/dalpha``;
    the node at the mode (``center``) is copied from the Newton pass.

    ``side > 0`` (:func:`factorised_side`: a product grid of ``side`` nodes per dimension, a
    logit or Poisson family) takes ``e^eta`` at the nodes as products: on the grid
    ``eta_ik = eta*_i + sum_b t_ib x_(j_b)``, ``t_ib = sqrt 2 sum_a W_ia Ri_ba``, so
    ``e^eta_ik = e^eta*_i prod_b F_ib(j_b)`` with ``F_ib(j) = e^(t_ib x_j)``: ``q side``
    exponentials per row instead of ``side^q`` (``F`` (nmax, q, side), ``est`` (nmax,) are
    scratch; ``digits`` (K, q) the grid index ``j_b`` of each node, :func:`grid_digits`). A
    node row with ``|eta| > 30`` is computed directly."""
    K = nodes.shape[0]
    if side > 0:
        for i in range(n):
            eta = e0[i]
            for a in range(q):
                eta += Wc[i, a] * u[a]
            est[i] = math.exp(eta)
            for b in range(q):
                t = 0.0
                for a in range(b + 1):
                    t += Wc[i, a] * Ri[b, a]
                t *= SQRT2
                for j in range(side):
                    F[i, b, j] = math.exp(t * nodes[j, q - 1])
    for k in range(K):
        uu = 0.0
        for a in range(q):
            acc = u[a]
            for b in range(a, q):
                acc += SQRT2 * Ri[b, a] * nodes[k, b]
            U[k, a] = acc
            uu += acc * acc
            ZD[k, a] = 0.0
        if k == center:
            for a in range(q):
                gam[k, a] = grad[a]
            for i in range(n):
                Dk[k, i] = D[0, i]
                for a in range(q):
                    ZD[k, a] += Z[st + i, a] * D[0, i]
            terms[k] = logw[k] + g
            gak[k] = has
            continue
        for a in range(q):
            gam[k, a] = -U[k, a]
        hs, hsa = 0.0, 0.0
        prod = 1.0  # logit rows of one trial: prod (1 + e^-|eta|), one log per node
        for i in range(n):
            eta = e0[i]
            for a in range(q):
                eta += Wc[i, a] * U[k, a]
            yi, ni = y[st + i], tr[st + i]
            onep = 1.0  # logit rows: 1 + e^-|eta| (direct) or 1 + e^eta (factorised)
            if side > 0 and abs(eta) <= 30.0:
                E = est[i]
                for b in range(q):
                    E *= F[i, b, digits[k, b]]
                if code == POISSON:
                    hs += yi * eta - E
                    d1 = yi - E
                else:  # LOGIT, E = e^eta
                    d1 = yi - ni * E / (1.0 + E)
                    hs += yi * eta
                    onep = 1.0 + E
            elif code == LOGIT:  # row_terms' logit case without the log (and no d2, d3)
                e, pr, _ = expit_parts(eta)
                d1 = yi - ni * pr
                hs += yi * eta - ni * max(eta, 0.0)
                onep = 1.0 + e
            else:
                h, d1, _, _, ha, _, _ = row_terms(code, yi, ni, eta, alpha)
                hs += h
                hsa += ha
            if code == LOGIT:  # the log of one-trial rows taken once per node
                if ni == 1.0:
                    prod *= onep
                    if prod > 1e250:
                        hs -= math.log(prod)
                        prod = 1.0
                else:
                    hs -= ni * math.log(onep)
            Dk[k, i] = d1
            for a in range(q):
                gam[k, a] += Wc[i, a] * d1
                ZD[k, a] += Z[st + i, a] * d1
        terms[k] = logw[k] + hs - math.log(prod) - 0.5 * uu
        gak[k] = hsa


@jit
def node_weights(terms, pi):
    """Normalised node terms into ``pi``; returns their log-sum-exp."""
    K = terms.size
    if K == 1:  # Laplace
        pi[0] = 1.0
        return terms[0]
    mx = terms[0]
    for k in range(1, K):
        mx = max(mx, terms[k])
    s = 0.0
    for k in range(K):
        pi[k] = math.exp(terms[k] - mx)
        s += pi[k]
    for k in range(K):
        pi[k] /= s
    return mx + math.log(s)


@jit
def h_adjoint(R, Ri, pi, gam, nodes, q, G_u, M, G_R, P, G_H):
    """``G_u = sum_k pi_k gam_k`` and the derivative ``G_H`` in ``H`` of the node sum and of
    ``-log|R|`` (through ``A = R^-T``; Cholesky adjoint)."""
    K = pi.size
    for a in range(q):
        G_u[a] = 0.0
        for b in range(q):
            M[a, b] = 0.0
    for k in range(K):
        for a in range(q):
            G_u[a] += pi[k] * gam[k, a]
            for b in range(q):
                M[a, b] += SQRT2 * pi[k] * gam[k, a] * nodes[k, b]
    for a in range(q):  # G_R = -A M^T A - diag(1 / R_aa), A = Ri^T (lower part used)
        for b in range(a + 1):
            acc = 0.0
            for c in range(q):
                for d in range(q):
                    acc += Ri[c, a] * M[d, c] * Ri[b, d]
            G_R[a, b] = -acc - (1.0 / R[a, a] if a == b else 0.0)
    for a in range(q):  # P = Phi(R^T tril(G_R))
        for b in range(q):
            acc = 0.0
            if b <= a:
                for c in range(a, q):
                    if b <= c:
                        acc += R[c, a] * G_R[c, b]
                if a == b:
                    acc *= 0.5
            P[a, b] = acc
    for a in range(q):  # G_H = sym(Ri^T P Ri)
        for b in range(q):
            acc = 0.0
            for c in range(q):
                for d in range(q):
                    acc += Ri[c, a] * P[c, d] * Ri[d, b]
            M[a, b] = acc
    for a in range(q):
        for b in range(q):
            G_H[a, b] = 0.5 * (M[a, b] + M[b, a])


# ------------------------------------------------------------------------ all clusters


@jit
def cluster_constant(code, y, trials, st, n, alpha):
    """Sum over a cluster's rows of :func:`const_terms` and of its alpha-derivative."""
    csum, csa = 0.0, 0.0
    for i in range(n):
        cc, ca = const_terms(code, y[st + i], trials[st + i], alpha)
        csum += cc
        csa += ca
    return csum, csa


@jit
def cluster_constants(code, y, trials, starts, alpha):
    """Each cluster's sum of :func:`const_terms` (C,): computed once for the families whose
    constants have no parameter."""
    C = starts.size - 1
    out = np.empty(C)
    for c in range(C):
        out[c] = cluster_constant(code, y, trials, starts[c], starts[c + 1] - starts[c], alpha)[0]
    return out


@jit
def _prepare_cluster(X, Z, offset, st, n, beta, L, p, q, e0, Wc):
    for i in range(n):
        acc = offset[st + i]
        for j in range(p):
            acc += X[st + i, j] * beta[j]
        e0[i] = acc
        for a in range(q):
            acc = 0.0
            for b in range(a, q):
                acc += Z[st + i, b] * L[b, a]
            Wc[i, a] = acc


@jit
def factorised_side(code, nodes, q):
    """Nodes per dimension when ``nodes`` (K, q) is a product grid in
    :func:`~hierbayes.likelihood.quadrature.gauss_hermite_grid`'s order (the last dimension
    fastest) and the family's ``e^eta`` terms factorise over it (logit, Poisson), q >= 2;
    0 otherwise (:func:`nodes_pass` then evaluates every node directly).

    Examples
    --------
    >>> from hierbayes.likelihood.quadrature import gauss_hermite_grid
    >>> grid = gauss_hermite_grid(5, 2)[0]
    >>> factorised_side(LOGIT, grid, 2), factorised_side(PROBIT, grid, 2)
    (5, 0)
    """
    K = nodes.shape[0]
    if q < 2 or not (code == LOGIT or code == POISSON):
        return 0
    side = int(round(K ** (1.0 / q)))
    if side ** q != K:
        return 0
    for k in range(K):
        kk = k
        for b in range(q - 1, -1, -1):
            if nodes[k, b] != nodes[kk % side, q - 1]:
                return 0
            kk //= side
    return side


@jit
def grid_digits(K, q, side):
    """``digits[k, b]``: the index along dimension ``b`` of node ``k`` of a product grid of
    ``side`` nodes per dimension, the last dimension fastest (zeros for ``side = 0``).

    Examples
    --------
    >>> grid_digits(4, 2, 2).tolist()
    [[0, 0], [0, 1], [1, 0], [1, 1]]
    """
    out = np.zeros((K, q), dtype=np.int64)
    if side > 0:
        for k in range(K):
            kk = k
            for b in range(q - 1, -1, -1):
                out[k, b] = kk % side
                kk //= side
    return out


@jit
def value_and_grad(code, y, trials, X, Z, offset, starts, beta, L, alpha, consts, nodes, logw,
                   center, tol, max_iter, modes, chol_out, ll_out, g_offset, want_grad, q_zeros):
    """Marginal log-likelihood summed over clusters and its gradient.

    Arrays as :class:`hierbayes.likelihood.quadrature.ClusterRows`; ``consts`` (C,) the
    clusters' constant terms (:func:`cluster_constants`; recomputed here for the families
    whose constants depend on ``alpha``, :func:`has_param`); ``nodes`` (K, q) and
    ``logw`` (K,) from :func:`~hierbayes.likelihood.quadrature.gauss_hermite_grid`,
    ``center`` the index of the node at zero (-1 if none). ``modes`` (C, q) are the warm
    starts, overwritten with the modes; ``chol_out`` (C, q, q) receives the lower Cholesky
    factor ``R`` of each cluster's ``H`` (``u | y ~ N(u*, (R R^T)^-1)`` approximately: the
    proposal of the effects' recovery); ``ll_out`` (C,) receives each cluster's value and
    ``g_offset`` (N,) the derivative in each row's offset (with ``want_grad``).
    ``q_zeros`` is a tuple of q zeros: its length is part of the compiled type, so the loops
    over the effects have a known trip count (a quarter faster for small clusters; one
    compilation per q).

    Returns ``(ll, g_beta (p,), g_L (q, q) lower, g_alpha, newton_steps)``; ``ll`` is NaN
    where a Hessian is not positive definite.

    Examples
    --------
    One Poisson cluster of two rows (y = 3, 5), ``eta = 0.5 + 0.8 u``, 9 nodes:

    >>> import numpy as np
    >>> from hierbayes.likelihood.quadrature import gauss_hermite_grid
    >>> nodes, logw = gauss_hermite_grid(9, 1)
    >>> y, one = np.array([3.0, 5.0]), np.ones((2, 1))
    >>> starts = np.array([0, 2])
    >>> consts = cluster_constants(POISSON, y, np.ones(2), starts, 1.0)
    >>> out = value_and_grad(POISSON, y, np.ones(2), one, one, np.zeros(2), starts,
    ...                      np.array([0.5]), np.array([[0.8]]), 1.0, consts, nodes, logw, 4,
    ...                      1e-10, 50, np.zeros((1, 1)), np.zeros((1, 1, 1)), np.zeros(1),
    ...                      np.zeros(2), True, (0,))
    >>> round(out[0], 6)
    -4.835911
    """
    q = len(q_zeros)
    C = starts.size - 1
    p, K = X.shape[1], nodes.shape[0]
    nmax = 0
    for c in range(C):
        nmax = max(nmax, starts[c + 1] - starts[c])
    e0, Wc, D = np.empty(nmax), np.empty((nmax, q)), np.empty((5, nmax))
    s_row, Dk = np.empty(nmax), np.empty((K, nmax))
    U, terms, pi, gam = np.empty((K, q)), np.empty(K), np.empty(K), np.empty((K, q))
    ZD, gak = np.empty((K, q)), np.empty(K)
    side = factorised_side(code, nodes, q)
    F, est = np.empty((nmax, q, max(side, 1))), np.empty(nmax)
    digits = grid_digits(K, q, side)
    grad, step, ut, u, G_u, rhs, v = (np.empty(q), np.empty(q), np.empty(q), np.empty(q),
                                      np.empty(q), np.empty(q), np.empty(q))
    H, R, Ri, M, G_R, P, G_H, WG = (np.empty((q, q)), np.zeros((q, q)), np.empty((q, q)), np.empty((q, q)),
                                    np.empty((q, q)), np.empty((q, q)), np.empty((q, q)), np.empty(q))
    g_beta, g_L = np.zeros(p), np.zeros((q, q))
    total, g_alpha, steps = 0.0, 0.0, 0
    for c in range(C):
        st, n = starts[c], starts[c + 1] - starts[c]
        if has_param(code):
            csum, csa = cluster_constant(code, y, trials, st, n, alpha)
        else:
            csum, csa = consts[c], 0.0
        _prepare_cluster(X, Z, offset, st, n, beta, L, p, q, e0, Wc)
        for a in range(q):
            u[a] = modes[c, a]
        g, has, k_steps = newton(code, y, trials, st, n, e0, Wc, q, alpha, csum, u, tol, max_iter,
                                 D, grad, H, R, step, ut)
        steps += k_steps
        if g != g:
            ll_out[c] = np.nan
            total = np.nan
            continue
        for a in range(q):
            modes[c, a] = u[a]
            for b in range(q):
                chol_out[c, a, b] = R[a, b]
        tri_inverse(R, Ri, q)
        nodes_pass(code, y, trials, st, n, e0, Wc, Z, q, alpha, u, Ri, nodes, logw, center, g, has,
                   grad, D, U, terms, Dk, gam, ZD, gak, side, F, est, digits)
        value = csum + node_weights(terms, pi)
        for a in range(q):
            value -= math.log(R[a, a])
        ll_out[c] = value
        total += value
        if not want_grad:
            continue
        h_adjoint(R, Ri, pi, gam, nodes, q, G_u, M, G_R, P, G_H)
        for a in range(q):
            rhs[a] = G_u[a]
        for i in range(n):
            s = 0.0
            for a in range(q):
                for b in range(q):
                    s += Wc[i, a] * G_H[a, b] * Wc[i, b]
            s_row[i] = s
            for a in range(q):
                rhs[a] -= Wc[i, a] * D[2, i] * s
        chol_solve(R, rhs, v, q)
        for i in range(n):
            t = 0.0
            for a in range(q):
                t += Wc[i, a] * v[a]
            m = D[1, i] * t - D[2, i] * s_row[i]
            r = m
            for k in range(K):
                r += pi[k] * Dk[k, i]
            g_offset[st + i] = r
            for j in range(p):
                g_beta[j] += X[st + i, j] * r
            for b in range(q):
                acc = 0.0
                for d in range(q):
                    acc += Wc[i, d] * G_H[d, b]
                WG[b] = acc
            for a in range(q):
                za = Z[st + i, a]
                for b in range(a + 1):
                    g_L[a, b] += za * (m * u[b] + D[0, i] * v[b] - 2.0 * D[1, i] * WG[b])
            g_alpha += D[3, i] * t - D[4, i] * s_row[i]
        for k in range(K):
            g_alpha += pi[k] * gak[k]
            for a in range(q):
                for b in range(a + 1):
                    g_L[a, b] += pi[k] * ZD[k, a] * U[k, b]
        g_alpha += csa
    return total, g_beta, g_L, g_alpha, steps
