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

A hybrid model (several factors) conditions each draw on that draw's sampled effects of the
other factors: they enter the kernel as the rows' offset (``offset``), so the integrated
factor's effects are drawn from ``p(u_c | y_c, theta, b_other)``, and together with the
sampled effects they are draws of the joint posterior.
"""

from __future__ import annotations

import numpy as np

from hierbayes.likelihood.quadrature import MarginalGLMM, family_param, marginal_glmm


def _log_target(mg: MarginalGLMM, eta_fixed: np.ndarray, L: np.ndarray, u: np.ndarray,
                params: dict) -> np.ndarray:
    """``g_c(u_c)`` for a chunk of draws and every cluster: ``eta_fixed`` (n, N), ``L``
    (n, q, q), ``u`` (n, C, q) -> (n, C)."""
    rows = mg.rows
    cl = np.repeat(np.arange(rows.n_clusters), rows.sizes)
    b = np.einsum("nij,ncj->nci", L, u)  # effects in the kernel's Z order
    eta = eta_fixed + np.einsum("rq,nrq->nr", rows.Z, b[:, cl])
    trials = rows.trials[None] if mg.family.name == "binomial" else None
    lp = mg.family.logpdf(rows.y[None], eta, params, trials)
    return np.add.reduceat(lp, rows.starts[:-1], axis=1) - 0.5 * np.einsum("ncq,ncq->nc", u, u)


def draw_random_effects(mg: MarginalGLMM, beta: np.ndarray, L: np.ndarray, alpha: np.ndarray | None,
                        rng: np.random.Generator, steps: int = 5,
                        chunk: int = 64, offset=None) -> tuple[np.ndarray, dict]:
    """Effects ``b`` per posterior draw, in the kernel's ``Z`` column order.

    Parameters
    ----------
    mg : MarginalGLMM
        The backend's likelihood (rows, family, nodes).
    beta : (nc, nd, p) array
    L : (nc, nd, q, q) array
        Lower Cholesky factors of the effects' covariance, in the kernel's term order.
    alpha : (nc, nd) array or None
        The family's parameter (:func:`~hierbayes.likelihood.quadrature.family_param`: the
        negative binomial's ``alpha``, the Gamma's ``shape``, the lognormal's ``sigma``).
    rng : numpy Generator
    steps : int
        Independence Metropolis steps per draw.
    chunk : int
        Draws handled at once (memory: chunk x rows numbers).
    offset : callable, optional
        ``offset(draws)`` -> (len(draws), N): each row's offset (kernel row order) at the
        flat draw indices ``draws`` (``chain * nd + draw``): a hybrid model's sampled
        effects of the other factors, computed a chunk at a time. Default: ``mg.rows.offset``.

    Returns
    -------
    b : (nc, nd, C, q) array
    info : dict
        ``acceptance`` (mean acceptance rate of the Metropolis steps), ``steps``.

    Examples
    --------
    See ``tests/backend/test_glmm.py``: the recovered effects follow the exact conditional
    and match a latent fit's.
    """
    nc, nd = beta.shape[:2]
    D = nc * nd
    rows = mg.rows
    C, q = rows.n_clusters, rows.q
    beta_f = beta.reshape(D, -1)
    L_f = L.reshape(D, q, q)
    alpha_f = None if alpha is None else alpha.reshape(D)
    out = np.empty((D, C, q))
    accepted = 0
    # the proposal needs each cluster's mode and Hessian only: one node (the nodes' pass is
    # most of a q = 2-3 evaluation), warm-started from the previous draw (one thread here)
    laplace = marginal_glmm(mg.family, rows, nagq=1, tol=mg.tol, max_iter=mg.max_iter)
    for s in range(0, D, chunk):
        sl = np.arange(s, min(s + chunk, D))
        n = sl.size
        mode = np.empty((n, C, q))
        Rt = np.empty((n, C, q, q))  # R' with H = R R'
        off = np.broadcast_to(rows.offset, (n, rows.y.size)) if offset is None else offset(sl)
        for k, d in enumerate(sl):
            a = None if alpha_f is None else float(alpha_f[d])
            ev = laplace.value_and_grad(beta_f[d], L_f[d], a, offset=off[k], grad=False)
            mode[k], Rt[k] = ev["modes"], np.swapaxes(ev["chol_H"], -1, -2)
        params = {} if alpha_f is None else {family_param(mg.family): alpha_f[sl][:, None]}
        eta_fixed = beta_f[sl] @ rows.X.T + off
        Ls = L_f[sl]

        def proposal():
            z = rng.standard_normal((n, C, q))
            return mode + np.linalg.solve(Rt, z[..., None])[..., 0], z

        def log_w(u_, z):
            return _log_target(mg, eta_fixed, Ls, u_, params) + 0.5 * np.einsum("ncq,ncq->nc", z, z)

        u, z = proposal()  # a fresh start at every draw (see the module docstring)
        lw = log_w(u, z)
        for _ in range(steps):
            prop, zp = proposal()
            lw_p = log_w(prop, zp)
            take = np.log(rng.random((n, C))) < lw_p - lw
            u = np.where(take[..., None], prop, u)
            lw = np.where(take, lw_p, lw)
            accepted += int(take.sum())
        out[sl] = np.einsum("nij,ncj->nci", Ls, u)
    return out.reshape(nc, nd, C, q), {"acceptance": accepted / (D * steps * C), "steps": steps}
