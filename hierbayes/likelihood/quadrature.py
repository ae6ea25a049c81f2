"""The marginal GLMM likelihood: random effects integrated out by adaptive Gauss-Hermite
quadrature (DESIGN.md, "The marginal GLMM likelihood").

One grouping factor, q = 1..3 correlated effects per cluster, ``b_c = L u_c`` with
``u_c ~ N(0, I_q)`` and ``eta_ci = x_ci beta + o_ci + z_ci L u_c`` (``o`` an offset: the
other factors' effects of a hybrid model). For cluster c,

    g_c(u) = sum_i log p(y_ci | eta_ci(u)) - u^T u / 2,
    log p(y_c) = log integral exp(g_c(u)) du / (2 pi)^(q/2).

1. **Mode**: Newton steps ``u <- u + H^-1 grad g`` (halved while ``g`` would fall) from a
   warm start, until the largest step is below ``tol``. At the mode
   ``H_c = -grad^2 g_c = I + L^T Z_c^T W_c Z_c L``, ``W = -d2l/deta2`` (the exact Hessian, not
   the expected information, so that the implicit derivatives below are exact).
2. **Nodes**: with ``H_c = R R^T`` (lower Cholesky) and ``A = R^-T`` (so ``A A^T = H^-1``), a
   product grid of ``nagq`` Gauss-Hermite nodes per dimension ``x_k`` with weights ``w_k``:
   ``u_k = u* + sqrt(2) A x_k`` and

       log p(y_c) ~= -log|R| + log sum_k w~_k exp(g_c(u_k)),
       w~_k = prod_j w_kj exp(x_kj^2) / sqrt(pi),

   ``nagq = 1`` (one node at the mode, ``w~ = 1``) is the Laplace approximation.
3. **Gradient**, exact for the approximation: with ``pi_k`` the normalised node terms,
   ``gamma_k = grad_u g(u_k)``, ``G_u = sum_k pi_k gamma_k``, and ``G_H`` the derivative in
   ``H`` (through ``A`` and ``-log|R|``; Cholesky adjoint ``G_H = sym(R^-T Phi(R^T G_R) R^-1)``),
   the mode moves as ``du*/dtheta = H^-1 d(grad_u g)/dtheta`` and ``H`` moves with ``theta``
   and ``u*``. One solve ``v = H^-1 (G_u - W^T (l''' s))`` with ``s_i = w_i G_H w_i^T``
   (``w_i = z_i L``) collects every implicit term, and

       d ll / d o_i    = r_i = l''_i (w_i v) - l'''_i s_i + sum_k pi_k l'_ik
       d ll / d beta   = X^T r
       d ll / d L_ab   = sum_i z_ia [(l''_i (w_i v) - l'''_i s_i) u*_b + l'_i v_b
                                     - 2 l''_i (w_i G_H)_b + sum_k pi_k l'_ik u_kb]
       d ll / d alpha  = sum_i [dl'_i/dalpha (w_i v) - dl''_i/dalpha s_i]
                         + sum_k pi_k sum_i dl_ik/dalpha

   (derivatives without a node index are at the mode).

This module holds the numpy reference (:func:`cluster_loglik`, :func:`loglik_reference`,
:func:`grad_reference`), written for clarity, and the entry point of the numba kernel
(:mod:`hierbayes.likelihood.quadrature_kernel`): :class:`MarginalGLMM`, value and gradient
fused over all clusters, tested equal to the reference.

Layout and use by a backend
---------------------------
Rows are sorted by cluster (:func:`cluster_rows`; :func:`design_rows` from a model's
design): cluster c holds rows
``starts[c]:starts[c + 1]`` of ``y`` (N,), ``X`` (N, p), ``Z`` (N, q), ``trials`` (N,) and
``offset`` (N,) (:class:`ClusterRows`). The parameters are ``beta`` (p,), the lower-triangular
factor ``L`` (q, q) of the effects' covariance ``S = L L^T`` (columns in ``Z``'s order) and
the family's parameter ``alpha`` (its one parameter whatever its name, :func:`family_param`:
the negative binomial's ``alpha``, the Gamma's ``shape``, the lognormal's ``sigma``; ignored
without one). The
gradient comes back in the same terms: ``beta`` (p,), ``L`` (q, q; lower triangle), ``param``
(in ``alpha``) and ``offset`` (N,), the derivative in each row's offset: what a hybrid model chains into the
latent effects of its other factors (``Z_other^T g_offset``). A backend maps its sampled
coordinates to ``(beta, L, alpha)`` (sds and an LKJ factor, log transforms, Jacobians) and
chains this gradient through that map.

:func:`marginal_glmm` builds a :class:`MarginalGLMM` (rows, node grid, constants and the warm
starts); its ``value_and_grad`` calls :func:`hierbayes.likelihood.quadrature_kernel.value_and_grad`,
which is a plain ``numba.njit`` function on arrays, so a nutpie callback compiled by the
backend calls it directly (``tests/likelihood/test_quadrature.py`` does). The warm starts
``modes`` (C, q) are state: give each chain its own, since chains run in parallel threads.
The per-cluster values (``per_cluster``, for LOO by cluster) and each cluster's mode and
Cholesky factor of ``H`` (``chol_H``, the Gaussian proposal for drawing the effects after
sampling) come with every evaluation.

Accuracy (``DEFAULT_NAGQ``)
---------------------------
Absolute error of each cluster's log-likelihood, by nodes per dimension, over random designs
of every family (Bernoulli logit and probit, binomial logit with 1-30 trials, Poisson,
negative binomial with alpha 0.5-5): 2,400 clusters per q (1,200 for q = 3) of 1-40 rows,
fixed linear predictors in [-3, 3], correlations up to 0.6, responses simulated from the
model (all-0 and all-1 Bernoulli clusters included). Reference: scipy.integrate.quad for
q = 1; 60 adaptive nodes per dimension for q = 2 and 30 for q = 3 (agreeing with 10 nodes
fewer to 8.5e-9 and 4.5e-5 on the typical designs). "Typical": effect sds 0.3 and 1;
"wide": sds 2 and 3 (``benchmarks/quadrature_accuracy.py``, 2026-12-02)::

    q  nagq  nodes | typical: max    99%      median | wide: max    99%      median
    1   1      1   |     2.9e-02  1.3e-02  6e-04    |    1.9e-01  1.1e-01  1e-02
    1   3      3   |     2.7e-02  1.2e-02  3e-04    |    1.3e-01  6.0e-02  8e-03
    1   5      5   |     4.7e-03  1.0e-03  1e-06    |    7.2e-02  3.9e-02  9e-04
    1   7      7   |     2.0e-04  1.3e-04  7e-09    |    4.1e-02  3.6e-02  7e-05
    1   9      9   |     6.8e-05  2.2e-05  8e-10    |    2.7e-02  2.3e-02  2e-05
    1  11     11   |     1.0e-05  5.9e-06  1e-11    |    1.4e-02  1.1e-02  4e-06
    1  15     15   |     3.5e-06  4.3e-07  2e-14    |    2.1e-03  1.7e-03  2e-07
    1  21     21   |     7.2e-08  1.7e-08  4e-15    |    3.1e-03  2.2e-03  5e-09
    2   1      1   |     1.5e-01  8.9e-02  2e-03    |    3.0e-01  2.2e-01  3e-02
    2   3      9   |     5.3e-02  2.3e-02  7e-04    |    1.5e-01  9.4e-02  2e-02
    2   5     25   |     1.0e-02  2.6e-03  5e-06    |    8.4e-02  5.0e-02  3e-03
    2   7     49   |     1.7e-03  4.8e-04  6e-08    |    7.4e-02  3.1e-02  4e-04
    2   9     81   |     7.4e-04  1.0e-04  5e-09    |    4.2e-02  1.4e-02  9e-05
    2  11    121   |     1.6e-04  4.5e-05  2e-10    |    2.3e-02  6.0e-03  2e-05
    3   1      1   |     3.2e-01  2.1e-01  8e-03    |    3.2e-01  2.5e-01  7e-02
    3   3     27   |     5.6e-02  3.0e-02  1e-03    |    1.6e-01  1.2e-01  2e-02
    3   5    125   |     1.8e-02  7.8e-03  2e-05    |    5.6e-02  4.6e-02  4e-03
    3   7    343   |     5.7e-03  1.3e-03  6e-07    |    1.8e-02  1.3e-02  5e-04

The median cluster is accurate to 1e-6 or better from 5 nodes (q = 1) on, but the worst
clusters are one-sided (all-0 or all-1 binary clusters, zero counts, a probit likelihood
that falls off fast on one side of the mode): there the conditional density of the effect is
far from Gaussian and the error falls slowly with the node count; an error below 1e-6 in every
cluster is out of reach at any practical grid for q >= 2. Errors of this size move the
posterior little: a per-cluster bias ``e(theta)`` shifts the estimate by about
``grad e / i_c`` (``i_c`` one cluster's information) against a posterior sd of
``1 / sqrt(C i_c)``, so a 1e-4 bias matters only beyond ~1e8 clusters.

``DEFAULT_NAGQ``: for q = 1 and 3 the smallest odd node count (odd: the centre node reuses
the last Newton evaluation) whose 99th-percentile error on the typical designs is below 1e-4
(q = 1) and 1e-2 (q = 3; a budget that grows with q, because each dimension multiplies the
cost by ``nagq``): 9 and 5 nodes. For q = 2 by the rule's effect on the posterior, measured
on issue 21's B1 (``benchmarks/bench_glmm.py``: Bernoulli ``y ~ x + w + (1 + x | g)``, 500
clusters x 8): the 4,000 draws of a Laplace fit reweighted to each rule by
``exp(ll_rule - ll_laplace)`` (Pareto-smoothed, k = 0.26-0.33; ``benchmarks/nagq_posterior.py``,
2026-12-03). Against 7 x 7, Laplace moves the sds' posterior means by 0.57 and 0.78
posterior sds and narrows the slope sd's posterior by a sixth (too far), 3 x 3 moves them by
0.06 and 0.06, 5 x 5 by 0.003 and 0.003 (every other mean and sd by less), and 7 x 7 equals
11 x 11 to 0.001: 5 x 5, 25 nodes (24 evaluations of the family per row beyond the Newton
steps' 3-4). ``nagq = 1`` (Laplace) is 10-100 times less accurate and 2-5 times cheaper
(``benchmarks/bench_quadrature.py``: a Bernoulli (1 | g) model of 20,000 clusters x 5 rows
takes about 14 ms of CPU per gradient with Laplace and 33 ms with 9 nodes; the native
callback of B1's (1 + x | g), Newton from zero, 0.8 ms with Laplace, 1.2 ms with 3 x 3,
2.1 ms with 5 x 5 and 3.3 ms with 7 x 7: logit and Poisson nodes on a product grid take
``e^eta`` as products of per-dimension exponentials, :func:`~hierbayes.likelihood.quadrature_kernel.nodes_pass`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

from hierbayes.design.build import Design
from hierbayes.likelihood import quadrature_kernel as qk
from hierbayes.spec.families import Family

#: nodes per dimension by the number of effects per cluster (see the module docstring)
DEFAULT_NAGQ = {1: 9, 2: 5, 3: 5}
#: Newton iterations stop when the largest step in the whitened effects is below this. The
#: mode is then off by less than that; the value moves with it to first order (through
#: ``log|H|`` and the nodes), so a looser 1e-8 shifts Laplace values by up to 3e-9 per
#: cluster while saving only ~5% of the Newton steps from a warm start 0.01 away
DEFAULT_TOL = 1e-10
DEFAULT_MAX_ITER = 50
SQRT2 = float(np.sqrt(2.0))


# ---------------------------------------------------------------------------- layout


@dataclass(frozen=True, eq=False)
class ClusterRows:
    """The rows of one grouping factor sorted by cluster.

    Attributes
    ----------
    y : (N,) array
        Response (successes for the binomial).
    X : (N, p) array
        Fixed-effect design.
    Z : (N, q) array
        Random-effect design of the integrated factor.
    trials : (N,) array
        Trials of the binomial (ones otherwise).
    offset : (N,) array
        Added to the linear predictor (zeros without one).
    starts : (C + 1,) int64 array
        Cluster c holds rows ``starts[c]:starts[c + 1]`` (clusters may be empty).
    """

    y: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    trials: np.ndarray
    offset: np.ndarray
    starts: np.ndarray

    @property
    def n_clusters(self) -> int:
        return self.starts.size - 1

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return self.Z.shape[1]

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.starts)

    def cluster(self, c: int) -> slice:
        """The rows of cluster ``c``."""
        return slice(int(self.starts[c]), int(self.starts[c + 1]))

    def with_offset(self, offset: np.ndarray) -> "ClusterRows":
        """The same rows with another offset (N,), e.g. the other factors' ``Z b``."""
        return ClusterRows(self.y, self.X, self.Z, self.trials, _floats(offset, self.y.size), self.starts)


def _floats(a, n: int) -> np.ndarray:
    return np.ascontiguousarray(np.broadcast_to(np.asarray(a, dtype=float), (n,)))


def cluster_rows(y, X, Z, cluster, n_clusters: int | None = None, trials=None,
                 offset=None) -> tuple[ClusterRows, np.ndarray]:
    """Sort rows by cluster (stable) into a :class:`ClusterRows`.

    Parameters
    ----------
    y : (N,) array
    X : (N, p) array
    Z : (N, q) array
    cluster : (N,) int array
        Cluster index of each row, 0..C-1.
    n_clusters : int, optional
        C (clusters without rows are allowed); ``cluster.max() + 1`` by default.
    trials, offset : (N,) arrays, optional

    Returns
    -------
    rows : ClusterRows
    order : (N,) int array
        ``rows.y == y[order]``.

    Examples
    --------
    >>> import numpy as np
    >>> rows, order = cluster_rows(np.array([1., 0, 1]), np.ones((3, 1)), np.ones((3, 1)),
    ...                            np.array([1, 0, 1]))
    >>> rows.starts.tolist(), order.tolist()
    ([0, 1, 3], [1, 0, 2])
    """
    cluster = np.asarray(cluster, dtype=np.int64)
    N = cluster.size
    C = int(cluster.max()) + 1 if n_clusters is None else int(n_clusters)
    order = np.argsort(cluster, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(cluster, minlength=C))]).astype(np.int64)
    rows = ClusterRows(
        y=_floats(np.asarray(y, dtype=float)[order], N),
        X=np.ascontiguousarray(np.asarray(X, dtype=float).reshape(N, -1)[order]),
        Z=np.ascontiguousarray(np.asarray(Z, dtype=float).reshape(N, -1)[order]),
        trials=_floats(1.0 if trials is None else np.asarray(trials, dtype=float)[order], N),
        offset=_floats(0.0 if offset is None else np.asarray(offset, dtype=float)[order], N),
        starts=starts,
    )
    return rows, order


def design_rows(design: Design, group: str | None = None, offset=None) -> tuple[ClusterRows, np.ndarray]:
    """The rows of a model's design for the factor ``group`` (by default the factor with the
    most levels, the one a marginal backend integrates out), as a :class:`ClusterRows`.

    Parameters
    ----------
    design : Design
    group : str, optional
        Name of the grouping factor.
    offset : (N,) array, optional
        In design row order (e.g. the other factors' ``Z b``).

    Returns
    -------
    rows : ClusterRows
    order : (N,) int array
        Design row of each of ``rows``' rows.

    Examples
    --------
    >>> import pandas as pd
    >>> import hierbayes as hb
    >>> df = pd.DataFrame({"y": [1, 0, 1, 1, 0, 0], "x": [.1, .2, .3, .4, .5, .6], "g": list("abcabc")})
    >>> rows, order = design_rows(hb.Model("y ~ x + (1 | g)", df, family="bernoulli").design)
    >>> rows.n_clusters, rows.p, rows.q, rows.sizes.tolist()
    (3, 2, 1, [2, 2, 2])
    """
    if not design.groups:
        raise ValueError("the marginal GLMM likelihood integrates out a grouping factor, and this "
                         "model has none.")
    g = max(design.groups, key=lambda b: b.n_levels) if group is None else design.group(group)
    return cluster_rows(design.y, design.X, g.Z, g.index, n_clusters=g.n_levels,
                        trials=design.trials, offset=offset)


def gauss_hermite_grid(nagq: int, q: int) -> tuple[np.ndarray, np.ndarray]:
    """Product grid of ``nagq`` Gauss-Hermite nodes per dimension and the log weights
    ``log w~_k = sum_j (log w_kj + x_kj^2 - log(pi) / 2)`` (zero for the single Laplace node).

    Returns
    -------
    nodes : (nagq**q, q) array
    log_weights : (nagq**q,) array

    Examples
    --------
    >>> import numpy as np
    >>> nodes, logw = gauss_hermite_grid(3, 2)
    >>> nodes.shape, round(float(np.exp(logw - (nodes**2).sum(1)).sum()), 12)
    ((9, 2), 1.0)
    """
    if int(nagq) < 1:
        raise ValueError(f"nagq must be a positive whole number of nodes per dimension, got {nagq!r}.")
    x, w = np.polynomial.hermite.hermgauss(int(nagq))
    lw = np.log(w) + x * x - 0.5 * np.log(np.pi)
    grids = np.meshgrid(*([x] * q), indexing="ij")
    lgrids = np.meshgrid(*([lw] * q), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=1)
    logw = np.sum([g.ravel() for g in lgrids], axis=0)
    return nodes, logw


# --------------------------------------------------------------- numpy reference


def family_param(family: Family) -> str | None:
    """The name of ``family``'s one parameter, what the kernel takes as ``alpha`` (and the
    posterior holds under this name); None for a family without one.

    Examples
    --------
    >>> from hierbayes.spec.families import get
    >>> family_param(get("gamma")), family_param(get("lognormal")), family_param(get("poisson"))
    ('shape', 'sigma', None)
    """
    extra = tuple(family.extra_params)
    if len(extra) > 1:
        raise ValueError(f"the marginal GLMM likelihood takes a family with at most one parameter; "
                         f"{family.name} has {', '.join(extra)}. Use backend='latent'.")
    return extra[0] if extra else None


def _params(family: Family, alpha) -> dict:
    return {name: alpha for name in family.extra_params}


def _evaluate(family, y, n, eta0, W, params, u):
    """``g(u)``, ``grad g(u)``, ``H(u)`` and the family derivatives at ``u``."""
    eta = eta0 + W @ u
    l, d1, d2, d3 = family.eta_derivatives(y, eta, params, n)
    g = float(l.sum() - u @ u / 2)
    H = np.eye(u.size) - W.T @ (d2[:, None] * W)
    return g, W.T @ d1 - u, H, (d1, d2, d3)


def cluster_mode(family: Family, y, n, eta0, W, params: dict, u0=None,
                 tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER):
    """The mode ``u*`` of ``g(u)`` by damped Newton steps (numpy reference).

    Parameters
    ----------
    family : Family
    y, n, eta0 : (n,) arrays
        Response, trials and the fixed part of the linear predictor ``x beta + o``.
    W : (n, q) array
        ``Z L``.
    params : dict
        The family's extra parameters.
    u0 : (q,) array, optional
        Warm start (zeros by default).

    Returns
    -------
    u : (q,) array
    g : float
        ``g(u*)``.
    H : (q, q) array
        ``-grad^2 g(u*)``.
    derivs : tuple of (n,) arrays
        ``l'``, ``l''``, ``l'''`` at the mode.
    steps : int
        Newton steps taken.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import Poisson
    >>> u, g, H, _, steps = cluster_mode(Poisson(), np.array([3., 5.]), np.ones(2), np.zeros(2),
    ...                                  np.ones((2, 1)), {})
    >>> round(float(u[0]), 6), steps < 10
    (1.220723, True)
    """
    q = W.shape[1]
    u = np.zeros(q) if u0 is None else np.array(u0, dtype=float)
    g, grad, H, derivs = _evaluate(family, y, n, eta0, W, params, u)
    steps = 0
    for _ in range(max_iter):
        step = np.linalg.solve(H, grad)
        if np.max(np.abs(step)) < tol:
            break
        steps += 1
        t, accepted = 1.0, False
        for _ in range(30):
            trial = _evaluate(family, y, n, eta0, W, params, u + t * step)
            if trial[0] >= g - 1e-12 * abs(g):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        u = u + t * step
        g, grad, H, derivs = trial
    return u, g, H, derivs, steps


def _node_terms(family, y, n, eta0, W, params, ustar, H, nodes, logw):
    """The node points ``u_k`` (K, q), ``log w~_k + g(u_k)`` (K,) and ``-log|R|``."""
    R = np.linalg.cholesky(H)
    A = np.linalg.inv(R).T
    U = ustar + SQRT2 * nodes @ A.T
    eta = eta0[None, :] + U @ W.T  # (K, n)
    l = family.eta_derivatives(y, eta, params, n)[0]
    terms = logw + l.sum(axis=1) - 0.5 * (U * U).sum(axis=1)
    return U, terms, -np.log(np.diag(R)).sum(), R, A


def cluster_loglik(family: Family, y, n, eta0, W, params: dict, nagq: int, u0=None,
                   tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER) -> tuple[float, np.ndarray]:
    """One cluster's marginal log-likelihood by adaptive Gauss-Hermite quadrature (numpy).

    Parameters as :func:`cluster_mode`; ``nagq`` nodes per dimension (1: Laplace).

    Returns
    -------
    ll : float
    mode : (q,) array

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import Bernoulli
    >>> ll, u = cluster_loglik(Bernoulli(), np.array([1., 1., 0.]), np.ones(3), np.zeros(3),
    ...                        np.ones((3, 1)), {}, nagq=15)
    >>> round(ll, 6)
    -2.270016
    """
    nodes, logw = gauss_hermite_grid(nagq, W.shape[1])
    u, _, H, _, _ = cluster_mode(family, y, n, eta0, W, params, u0, tol, max_iter)
    _, terms, half_logdet, _, _ = _node_terms(family, y, n, eta0, W, params, u, H, nodes, logw)
    return float(half_logdet + special.logsumexp(terms)), u


def _check_L(L, q: int) -> np.ndarray:
    L = np.asarray(L, dtype=float).reshape(q, q)
    if np.any(np.triu(L, 1) != 0):
        raise ValueError("L must be lower triangular (the Cholesky factor of the effects' covariance).")
    return L


def loglik_reference(family: Family, rows: ClusterRows, beta, L, alpha=None, nagq: int | None = None,
                     modes=None, tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER):
    """Per-cluster marginal log-likelihood (numpy reference; slow, for tests).

    Parameters
    ----------
    family : Family
    rows : ClusterRows
    beta : (p,) array
    L : (q, q) lower-triangular array
        ``S = L L^T`` the effects' covariance.
    alpha : float, optional
        The family's parameter (:func:`family_param`: the negative binomial's ``alpha``, the
            Gamma's ``shape``, the lognormal's ``sigma``).
    nagq : int, optional
        Nodes per dimension; ``DEFAULT_NAGQ[q]`` by default.
    modes : (C, q) array, optional
        Warm starts.

    Returns
    -------
    ll : (C,) array
    modes : (C, q) array

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import Poisson
    >>> rows, _ = cluster_rows(np.array([3., 5, 0, 1]), np.ones((4, 1)), np.ones((4, 1)),
    ...                        np.array([0, 0, 1, 1]))
    >>> ll, modes = loglik_reference(Poisson(), rows, [0.5], [[0.8]], nagq=9)
    >>> ll.round(6).tolist()
    [-4.835911, -2.585097]
    """
    q = rows.q
    nagq = DEFAULT_NAGQ[q] if nagq is None else nagq
    L = _check_L(L, q)
    params = _params(family, alpha)
    eta0_all = rows.X @ np.asarray(beta, dtype=float) + rows.offset
    W_all = rows.Z @ L
    out, new_modes = np.zeros(rows.n_clusters), np.zeros((rows.n_clusters, q))
    for c in range(rows.n_clusters):
        s = rows.cluster(c)
        u0 = None if modes is None else modes[c]
        out[c], new_modes[c] = cluster_loglik(family, rows.y[s], rows.trials[s], eta0_all[s], W_all[s],
                                              params, nagq, u0, tol, max_iter)
    return out, new_modes


def cholesky_adjoint(R: np.ndarray, G_R: np.ndarray) -> np.ndarray:
    """The symmetric ``G_H`` with ``<G_H, dH> = <G_R, dR>`` for ``H = R R^T`` (lower ``R``):
    ``sym(R^-T Phi(R^T G_R) R^-1)``, ``Phi`` the lower triangle with the diagonal halved
    (Murray, 2016).

    Examples
    --------
    >>> import numpy as np
    >>> R = np.array([[2.0]])
    >>> cholesky_adjoint(R, np.array([[1.0]])).tolist()   # d sqrt(h) / dh at h = 4
    [[0.25]]
    """
    P = np.tril(R.T @ np.tril(G_R))
    P[np.diag_indices_from(P)] *= 0.5
    Ri = np.linalg.inv(R)
    S = Ri.T @ P @ Ri
    return 0.5 * (S + S.T)


def _cluster_grad(family, y, n, X, Z, eta0, L, params, nagq_grid, u0, tol, max_iter):
    """One cluster's value and its gradient in (offset rows, beta, L, alpha) (numpy)."""
    nodes, logw = nagq_grid
    W = Z @ L
    u, _, H, (d1s, d2s, d3s), _ = cluster_mode(family, y, n, eta0, W, params, u0, tol, max_iter)
    U, terms, half_logdet, R, A = _node_terms(family, y, n, eta0, W, params, u, H, nodes, logw)
    value = half_logdet + special.logsumexp(terms)
    pi = np.exp(terms - special.logsumexp(terms))
    eta = eta0[None, :] + U @ W.T
    D1 = family.eta_derivatives(y, eta, params, n)[1]  # (K, n)
    gamma = D1 @ W - U  # (K, q)
    G_u = pi @ gamma
    M = SQRT2 * (pi[:, None] * gamma).T @ nodes
    G_R = -A @ M.T @ A - np.diag(1.0 / np.diag(R))
    G_H = cholesky_adjoint(R, G_R)
    s = np.einsum("ia,ab,ib->i", W, G_H, W)
    v = np.linalg.solve(H, G_u - W.T @ (d3s * s))
    t = W @ v
    node_d1 = pi @ D1  # (n,)
    r = d2s * t - d3s * s + node_d1
    gL = Z.T @ (np.outer(d2s * t - d3s * s, u) + np.outer(d1s, v) - 2 * d2s[:, None] * (W @ G_H)
                + (pi[:, None, None] * D1[:, :, None] * U[:, None, :]).sum(axis=0))
    g_alpha = 0.0
    if family.extra_params:
        name = family.extra_params[0]
        d_mode = family.param_derivatives(y, eta0 + W @ u, params, n)[name]
        d_nodes = family.param_derivatives(y, eta, params, n)[name][0]
        g_alpha = float(d_mode[1] @ t - d_mode[2] @ s + pi @ d_nodes.sum(axis=1))
    return value, u, r, X.T @ r, np.tril(gL), g_alpha


def grad_reference(family: Family, rows: ClusterRows, beta, L, alpha=None, nagq: int | None = None,
                   modes=None, tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER) -> dict:
    """Total marginal log-likelihood and its gradient (numpy reference; slow, for tests).

    Parameters as :func:`loglik_reference`.

    Returns
    -------
    dict
        ``ll`` (float), ``per_cluster`` (C,), ``modes`` (C, q), and the gradient: ``beta``
        (p,), ``L`` (q, q, lower triangle; zeros above), ``param`` (float: in the family's
        parameter, :func:`family_param`; 0 without one), ``offset`` (N,): the derivative in each row's offset.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import Poisson
    >>> rows, _ = cluster_rows(np.array([3., 5, 0, 1]), np.ones((4, 1)), np.ones((4, 1)),
    ...                        np.array([0, 0, 1, 1]))
    >>> out = grad_reference(Poisson(), rows, [0.5], [[0.8]], nagq=9)
    >>> round(out["ll"], 6), out["beta"].round(6).tolist()
    (-7.421009, [0.068989])
    """
    q = rows.q
    nagq = DEFAULT_NAGQ[q] if nagq is None else nagq
    L = _check_L(L, q)
    params = _params(family, alpha)
    grid = gauss_hermite_grid(nagq, q)
    eta0_all = rows.X @ np.asarray(beta, dtype=float) + rows.offset
    C = rows.n_clusters
    out = {"per_cluster": np.zeros(C), "modes": np.zeros((C, q)), "offset": np.zeros(rows.y.size),
           "beta": np.zeros(rows.p), "L": np.zeros((q, q)), "param": 0.0}
    for c in range(C):
        s = rows.cluster(c)
        u0 = None if modes is None else modes[c]
        v, u, r, gb, gL, ga = _cluster_grad(family, rows.y[s], rows.trials[s], rows.X[s], rows.Z[s],
                                            eta0_all[s], L, params, grid, u0, tol, max_iter)
        out["per_cluster"][c], out["modes"][c], out["offset"][s] = v, u, r
        out["beta"] += gb
        out["L"] += gL
        out["param"] += ga
    out["ll"] = float(out["per_cluster"].sum())
    return out


# ------------------------------------------------------------------- numba kernel


def family_code(family: Family) -> int:
    """The kernel's code of ``family`` (name and link).

    Examples
    --------
    >>> from hierbayes.spec.families import get
    >>> family_code(get("poisson"))
    3
    """
    key = (family.name, family.link)
    if key not in qk.FAMILY_CODES:
        known = ", ".join(f"{n} ({lk})" for n, lk in qk.FAMILY_CODES)
        raise ValueError(
            f"the marginal GLMM likelihood has no kernel for the {family.name} family with link "
            f"{family.link!r}; it covers {known}. Use backend='latent'."
        )
    return qk.FAMILY_CODES[key]


@dataclass(frozen=True, eq=False)
class MarginalGLMM:
    """The marginal likelihood of one model's rows, evaluated by the numba kernel.

    Build it with :func:`marginal_glmm`. ``modes`` (C, q) holds each cluster's last mode,
    the warm start of the next evaluation (the kernel overwrites it; one object per chain,
    since chains running in parallel threads would share it); :meth:`reset` zeros it.

    Attributes
    ----------
    family : Family
    rows : ClusterRows
    nagq : int
        Nodes per dimension (1: Laplace).
    nodes, log_weights : arrays
        The product grid, (K, q) and (K,).
    center : int
        Index of the node at the mode (-1 for an even ``nagq``): its terms come from the
        last Newton evaluation.
    constants : (C,) array
        Each cluster's terms of the log density without the linear predictor (binomial
        coefficients, ``-log y!``), computed once (the kernel recomputes the negative
        binomial's, which depend on ``alpha``).
    tol, max_iter : float, int
        Newton convergence: the largest step below ``tol``, at most ``max_iter`` steps.
    """

    family: Family
    rows: ClusterRows
    nagq: int
    nodes: np.ndarray
    log_weights: np.ndarray
    center: int
    tol: float
    max_iter: int
    code: int
    constants: np.ndarray = field(repr=False)
    modes: np.ndarray = field(repr=False)

    def reset(self) -> None:
        """Forget the warm starts (the next evaluation starts every cluster from zero)."""
        self.modes[:] = 0.0

    def value_and_grad(self, beta, L, alpha=None, offset=None, grad: bool = True) -> dict:
        """Total log-likelihood and its gradient (the keys of :func:`grad_reference`), with
        ``chol_H`` (C, q, q): the lower Cholesky factor of each cluster's ``H`` at its mode
        (``u_c | y_c`` is about ``N(u*_c, H_c^-1)``: the proposal for drawing the effects), and
        ``newton_steps``: the Newton steps taken over all clusters.

        Parameters
        ----------
        beta : (p,) array
        L : (q, q) lower-triangular array
        alpha : float, optional
            The family's parameter (:func:`family_param`: the negative binomial's ``alpha``, the
            Gamma's ``shape``, the lognormal's ``sigma``).
        offset : (N,) array, optional
            Replaces ``rows.offset`` for this evaluation (the other factors' ``Z b``).
        grad : bool
            False skips the gradient (the per-cluster values only).

        Examples
        --------
        >>> import numpy as np
        >>> from hierbayes.spec.families import Poisson
        >>> rows, _ = cluster_rows(np.array([3., 5, 0, 1]), np.ones((4, 1)), np.ones((4, 1)),
        ...                        np.array([0, 0, 1, 1]))
        >>> out = marginal_glmm(Poisson(), rows, nagq=9).value_and_grad([0.5], [[0.8]])
        >>> round(out["ll"], 6), out["beta"].round(6).tolist()
        (-7.421009, [0.068989])
        """
        rows, q = self.rows, self.rows.q
        L = _check_L(L, q)
        off = rows.offset if offset is None else _floats(offset, rows.y.size)
        per_cluster, g_off = np.empty(rows.n_clusters), np.zeros(rows.y.size)
        chol = np.zeros((rows.n_clusters, q, q))
        a = 1.0 if alpha is None else float(alpha)
        beta = np.ascontiguousarray(beta, dtype=float)
        ll, g_beta, g_L, g_alpha, steps = qk.value_and_grad(
            self.code, rows.y, rows.trials, rows.X, rows.Z, off, rows.starts, beta,
            np.ascontiguousarray(L), a, self.constants, self.nodes, self.log_weights, self.center,
            self.tol, self.max_iter, self.modes, chol, per_cluster, g_off, grad, (0,) * q)
        return {"ll": ll, "per_cluster": per_cluster, "modes": self.modes.copy(), "chol_H": chol,
                "beta": g_beta, "L": g_L, "param": g_alpha, "offset": g_off, "newton_steps": steps}

    def loglik(self, beta, L, alpha=None, offset=None) -> np.ndarray:
        """Each cluster's log-likelihood (C,), without the gradient."""
        return self.value_and_grad(beta, L, alpha, offset, grad=False)["per_cluster"]


def marginal_glmm(family: Family, rows: ClusterRows, nagq: int | None = None,
                  tol: float = DEFAULT_TOL, max_iter: int = DEFAULT_MAX_ITER) -> MarginalGLMM:
    """The kernel-backed marginal likelihood of ``rows`` under ``family``.

    Parameters
    ----------
    family : Family
        Bernoulli (logit, probit), binomial (logit, probit), Poisson, negative binomial,
        Gamma (log) or lognormal.
    rows : ClusterRows
    nagq : int, optional
        Nodes per dimension; ``DEFAULT_NAGQ[q]`` by default, 1 for the Laplace approximation.
    tol, max_iter
        Newton convergence.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import Bernoulli
    >>> rows, _ = cluster_rows(np.array([1., 0, 1]), np.ones((3, 1)), np.ones((3, 1)),
    ...                        np.array([0, 0, 1]))
    >>> m = marginal_glmm(Bernoulli(), rows, nagq=1)
    >>> m.nodes.shape, m.center
    ((1, 1), 0)
    """
    q = rows.q
    if not 1 <= q <= 3:
        raise ValueError(f"the marginal GLMM likelihood integrates 1 to 3 effects per cluster, not {q}.")
    nagq = DEFAULT_NAGQ[q] if nagq is None else int(nagq)
    nodes, logw = gauss_hermite_grid(nagq, q)
    code = family_code(family)
    zero = np.flatnonzero(np.all(nodes == 0.0, axis=1))
    return MarginalGLMM(family=family, rows=rows, nagq=nagq, nodes=nodes, log_weights=logw,
                        center=int(zero[0]) if zero.size else -1, tol=float(tol),
                        max_iter=int(max_iter), code=code,
                        constants=qk.cluster_constants(code, rows.y, rows.trials, rows.starts, 1.0),
                        modes=np.zeros((rows.n_clusters, q)))
