"""Drawing a GLMM's integrated-out random effects back, per posterior draw.

Given a posterior draw ``theta`` of the marginal GLMM backend
(:mod:`hierbayes.backend.glmm`), each cluster's whitened effects have the conditional density
``p(u_c | y_c, theta) ~ exp(g_c(u))`` (DESIGN.md). The quadrature kernel gives the mode
``u*_c`` and the Cholesky factor ``R_c`` of ``H_c = -grad^2 g_c(u*_c)``; the Laplace Gaussian
``N(u*_c, H_c^-1)`` is the proposal of a short independence Metropolis chain per cluster and
posterior draw: it starts from a proposal and takes ``steps`` more, each accepted with
probability ``min(1, w(u') / w(u))``, ``w = exp(g) / proposal density``. Each step leaves
``p(u_c | y_c, theta)`` invariant and, with the Laplace proposal, mixes in a step or two; the
acceptance rate measures how close the proposal is (1 when the conditional is Gaussian) and is
reported. (Carrying the state from one posterior draw to the next instead is cheaper but
wrong where the conditional moves with ``theta`` faster than the chain follows: a carried
state in the proposal's light tail is rarely left, and the draws come out too wide.)
"""

from __future__ import annotations

import numpy as np

from hierbayes.likelihood.quadrature import MarginalGLMM


def _log_target(mg: MarginalGLMM, eta_fixed: np.ndarray, L: np.ndarray, u: np.ndarray,
                params: dict) -> np.ndarray:
    """``g_c(u_c)`` for every cluster: ``u`` (C, q) -> (C,)."""
    rows = mg.rows
    cl = np.repeat(np.arange(rows.n_clusters), rows.sizes)
    b = u @ L.T  # (C, q) effects in the kernel's Z order
    eta = eta_fixed + np.einsum("nq,nq->n", rows.Z, b[cl])
    trials = None if mg.family.name not in ("binomial",) else rows.trials
    lp = mg.family.logpdf(rows.y, eta, params, trials)
    return np.add.reduceat(lp, rows.starts[:-1]) - 0.5 * np.einsum("cq,cq->c", u, u)


def _log_proposal(z: np.ndarray) -> np.ndarray:
    """Log density of the Laplace proposal up to a per-cluster constant, ``-z'z / 2`` with
    ``z = R'(u - u*)``."""
    return -0.5 * np.einsum("cq,cq->c", z, z)


def draw_random_effects(mg: MarginalGLMM, beta: np.ndarray, L: np.ndarray, alpha: np.ndarray | None,
                        rng: np.random.Generator, steps: int = 5) -> tuple[np.ndarray, dict]:
    """Effects ``b`` per posterior draw, in the kernel's ``Z`` column order.

    Parameters
    ----------
    mg : MarginalGLMM
        The backend's likelihood (rows, family, nodes).
    beta : (nc, nd, p) array
    L : (nc, nd, q, q) array
        Lower Cholesky factors of the effects' covariance, in the kernel's term order.
    alpha : (nc, nd) array or None
        The negative binomial's shape.
    rng : numpy Generator
    steps : int
        Independence Metropolis steps per draw.

    Returns
    -------
    b : (nc, nd, C, q) array
    info : dict
        ``acceptance`` (mean acceptance rate of the Metropolis steps), ``steps``.

    Examples
    --------
    See ``tests/backend/test_glmm.py``: the recovered effects match a latent fit's.
    """
    nc, nd = beta.shape[:2]
    rows = mg.rows
    C, q = rows.n_clusters, rows.q
    out = np.empty((nc, nd, C, q))
    accepted = 0
    for c in range(nc):
        for d in range(nd):
            a = None if alpha is None else float(alpha[c, d])
            ev = mg.value_and_grad(beta[c, d], L[c, d], a, grad=False)
            mode, R = ev["modes"], ev["chol_H"]  # H = R R'
            params = {} if a is None else {"alpha": a}
            eta_fixed = rows.X @ beta[c, d] + rows.offset

            def to_u(z):  # u = u* + R^-T z
                return mode + np.linalg.solve(np.swapaxes(R, -1, -2), z[..., None])[..., 0]

            def log_w(u_):
                z = np.einsum("cij,ci->cj", R, u_ - mode)  # R'(u - u*)
                return _log_target(mg, eta_fixed, L[c, d], u_, params) - _log_proposal(z)

            u = to_u(rng.standard_normal((C, q)))  # a fresh start at every draw (see above)
            lw = log_w(u)
            for _ in range(steps):
                prop = to_u(rng.standard_normal((C, q)))
                lw_p = log_w(prop)
                take = np.log(rng.random(C)) < lw_p - lw
                u = np.where(take[:, None], prop, u)
                lw = np.where(take, lw_p, lw)
                accepted += int(take.sum())
            out[c, d] = u @ L[c, d].T
    return out, {"acceptance": accepted / (nc * nd * steps * C), "steps": steps}
