"""Time per gradient of the marginal GLMM kernel (:mod:`hierbayes.likelihood.quadrature`).

Shapes of issue 21's benchmark cases: B6 (Bernoulli logit, (1 | g), 20,000 clusters x 5
rows) and B1 (Bernoulli logit, (1 + x | g), 500 clusters x 8 rows, a cluster-level binary
covariate). Each evaluation is at a point moved a little from the last (as between leapfrog
steps), so the warm-started Newton iterations are what a sampler sees; the first call
(compile or cache load) is discarded. Usage:

    python benchmarks/bench_quadrature.py            # all node counts 1, 3, default
"""

from __future__ import annotations

import time

import numpy as np

from hierbayes.likelihood import quadrature as Q
from hierbayes.spec.families import Bernoulli


def case(C: int, T: int, q: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(C), T)
    x = rng.normal(size=g.size)
    w = rng.integers(0, 2, C)[g].astype(float)
    X = np.column_stack([np.ones_like(x), x, w])
    Z = X[:, :q]
    L = np.array([[0.9, 0.0], [0.2, 0.5]])[:q, :q]
    b = rng.normal(size=(C, q)) @ L.T
    eta = X @ np.array([-0.3, 0.6, 0.4]) + (Z * b[g]).sum(axis=1)
    y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(float)
    rows, _ = Q.cluster_rows(y, X, Z, g)
    return rows, np.array([-0.3, 0.6, 0.4]), L


def time_gradient(model, beta, L, n_eval: int = 200, seed: int = 1) -> tuple[float, float]:
    """Median CPU seconds per value-and-gradient and Newton steps per cluster per evaluation."""
    rng = np.random.default_rng(seed)
    model.value_and_grad(beta, L)  # compile / load, and the first modes
    times, steps = [], 0
    for _ in range(n_eval):
        b = beta + 0.01 * rng.normal(size=beta.size)
        LL = L + np.tril(0.01 * rng.normal(size=L.shape))
        t0 = time.process_time()
        out = model.value_and_grad(b, LL)
        times.append(time.process_time() - t0)
        steps += out["newton_steps"]
    return float(np.median(times)), steps / (n_eval * model.rows.n_clusters)


def main() -> None:
    for name, (C, T, q) in {"B6": (20_000, 5, 1), "B1": (500, 8, 2)}.items():
        rows, beta, L = case(C, T, q)
        for nagq in sorted({1, 3, Q.DEFAULT_NAGQ[q]}):
            m = Q.marginal_glmm(Bernoulli(), rows, nagq=nagq)
            sec, steps = time_gradient(m, beta, L, n_eval=50 if C > 5000 else 300)
            print(f"{name} ({C} x {T}, q={q}) nagq={nagq:2d}: {sec * 1e3:8.3f} ms per gradient, "
                  f"{steps:.2f} Newton steps per cluster")


if __name__ == "__main__":
    main()
