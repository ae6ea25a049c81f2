"""Accuracy of adaptive Gauss-Hermite quadrature by nodes per dimension: what
``DEFAULT_NAGQ`` in :mod:`hierbayes.likelihood.quadrature` is chosen from.

Random designs for every family of the marginal GLMM likelihood (Bernoulli logit and
probit, binomial logit with 1-30 trials, Poisson, negative binomial with alpha 0.5-5):
cluster sizes 1-40 rows, effect sds 0.3-3, correlations up to +-0.6, fixed linear predictors
in [-3, 3], responses simulated from the model (so all-0 and all-1 Bernoulli clusters occur).
Each cluster's log-likelihood is compared with scipy.integrate.quad (q = 1) or a fine
adaptive grid (60 nodes per dimension for q = 2, 30 for q = 3; checked against 10 nodes
fewer). Prints, per q and node count, the maximum, 99th percentile and median of the
absolute error over the clusters, for effect sds up to 1 and for sds 2-3 apart.

    python benchmarks/quadrature_accuracy.py
"""

from __future__ import annotations

import numpy as np
from scipy import integrate

from hierbayes.likelihood import quadrature as Q
from hierbayes.spec.families import Bernoulli, Binomial, NegativeBinomial, Poisson

FAMILIES = [Bernoulli(), Bernoulli(link="probit"), Binomial(), Poisson(), NegativeBinomial()]
SIZES = [1, 2, 3, 5, 8, 12, 20, 40]
SDS = [0.3, 1.0, 2.0, 3.0]
REFERENCE_NAGQ = {2: 60, 3: 30}
NAGQ = {1: [1, 2, 3, 4, 5, 6, 7, 9, 11, 13, 15, 21], 2: [1, 2, 3, 4, 5, 6, 7, 9, 11],
        3: [1, 2, 3, 4, 5, 6, 7]}


def simulate(family, q: int, n_clusters: int, sd: float, rng):
    """One random design: rows, beta, L and alpha."""
    sizes = rng.choice(SIZES, n_clusters)
    cl = np.repeat(np.arange(n_clusters), sizes)
    N = cl.size
    X = np.column_stack([np.ones(N), rng.normal(size=N)])
    Z = np.column_stack([np.ones(N), rng.normal(size=(N, q - 1))]) if q > 1 else np.ones((N, 1))
    corr = np.eye(q)
    if q > 1:
        A = rng.uniform(-0.6, 0.6, (q, q))
        corr = np.eye(q) + np.tril(A, -1) + np.tril(A, -1).T
        corr = corr if np.all(np.linalg.eigvalsh(corr) > 0.1) else np.eye(q)
    L = np.linalg.cholesky(sd * sd * corr)
    beta = np.array([rng.uniform(-3, 3), rng.uniform(-1, 1)])
    eta = X @ beta + (Z * (rng.normal(size=(n_clusters, q)) @ L.T)[cl]).sum(axis=1)
    trials = rng.integers(1, 31, N).astype(float) if family.name == "binomial" else None
    alpha = float(rng.uniform(0.5, 5.0))
    y = family.draw(rng, np.clip(eta, -20, 8), {"alpha": alpha}, trials)
    rows, _ = Q.cluster_rows(y, X, Z, cl, n_clusters=n_clusters, trials=trials)
    return rows, beta, L, alpha


def quad_reference(family, rows, beta, L, alpha) -> np.ndarray:
    """Each cluster's log-likelihood by scipy.integrate.quad (q = 1), in the coordinate
    ``t = (u - u*) sqrt(H)`` on both half-lines."""
    out = np.empty(rows.n_clusters)
    params = {"alpha": alpha}
    for c in range(rows.n_clusters):
        s = rows.cluster(c)
        y, n, eta0, w = rows.y[s], rows.trials[s], rows.X[s] @ beta, rows.Z[s, 0] * L[0, 0]
        u, g, H, _, _ = Q.cluster_mode(family, y, n, eta0, w[:, None], params)
        scale = 1.0 / np.sqrt(H[0, 0])

        def f(t):
            uu = u[0] + scale * t
            with np.errstate(over="ignore"):  # far tails: exp(eta) = inf, density 0
                l = family.eta_derivatives(y, eta0 + w * uu, params, n)[0].sum()
            return np.exp(l - 0.5 * uu * uu - g)

        kw = dict(epsabs=1e-15, epsrel=1e-13, limit=500)
        val = integrate.quad(f, -np.inf, 0, **kw)[0] + integrate.quad(f, 0, np.inf, **kw)[0]
        out[c] = g + np.log(val * scale / np.sqrt(2 * np.pi))
    return out


def errors(q: int, n_designs: int = 24, n_clusters: int = 100, seed: int = 0):
    """Absolute errors per node count against the reference, and each cluster's effect sd."""
    rng = np.random.default_rng(seed + q)
    out = {k: [] for k in NAGQ[q]}
    sds, gaps = [], []
    for d in range(n_designs):
        family = FAMILIES[d % len(FAMILIES)]
        sd = SDS[(d // len(FAMILIES)) % len(SDS)]
        rows, beta, L, alpha = simulate(family, q, n_clusters, sd, rng)
        if q == 1:
            ref = quad_reference(family, rows, beta, L, alpha)
            gap = Q.marginal_glmm(family, rows, nagq=80).loglik(beta, L, alpha) - ref
        else:
            ref = Q.marginal_glmm(family, rows, nagq=REFERENCE_NAGQ[q]).loglik(beta, L, alpha)
            gap = Q.marginal_glmm(family, rows, nagq=REFERENCE_NAGQ[q] - 10).loglik(beta, L, alpha) - ref
        gaps.append(np.abs(gap))
        sds.append(np.full(n_clusters, sd))
        for k in NAGQ[q]:
            out[k].append(np.abs(Q.marginal_glmm(family, rows, nagq=k).loglik(beta, L, alpha) - ref))
    return {k: np.concatenate(v) for k, v in out.items()}, np.concatenate(sds), np.concatenate(gaps)


def main() -> None:
    for q in (1, 2, 3):
        errs, sds, gap = errors(q, n_designs=24 if q < 3 else 12)
        what = "80-node grid vs quad" if q == 1 else f"{REFERENCE_NAGQ[q] - 10} vs {REFERENCE_NAGQ[q]} nodes"
        print(f"q = {q}: {sds.size} clusters; reference check ({what}): max |diff| "
              f"{gap[sds <= 1].max():.1e} (sd <= 1), {gap[sds > 1].max():.1e} (sd 2-3)")
        print("  nagq (nodes) | sd <= 1: max, 99%, median | sd 2-3: max, 99%, median")
        for k, e in errs.items():
            lo, hi = e[sds <= 1], e[sds > 1]
            print(f"  {k:2d} ({k ** q:4d}) | {lo.max():.1e} {np.quantile(lo, 0.99):.1e} {np.median(lo):.0e}"
                  f" | {hi.max():.1e} {np.quantile(hi, 0.99):.1e} {np.median(hi):.0e}")


if __name__ == "__main__":
    main()
