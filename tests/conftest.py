"""Shared helpers for the exact (no-MCMC) tests: random designs and dense references.

The references are computed from the user's DataFrame, cluster by cluster, with dense
matrices and scipy, never from :class:`hierbayes.design.build.Design`, so they check the
design stage (sorting, padding, lags) as well as the likelihood code.

Helpers are plain functions reached through the session-scoped ``ref`` fixture (hypothesis
accepts session fixtures), and ``fast_mode``, a PyTensor compile mode without C
compilation (the test graphs are tiny; compiling them to C would dominate the run time).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

# ----------------------------------------------------------------------- random data


def random_frame(
    rng: np.random.Generator,
    *,
    n_clusters: int = 5,
    min_size: int = 1,
    max_size: int = 5,
    times: str | None = "ar1",
    balanced: bool = False,
) -> pd.DataFrame:
    """A DataFrame with clusters ``g`` of unbalanced sizes, times ``t``, predictors ``x``, ``w``
    and a response ``y``; rows shuffled, index scrambled.

    ``times``: ``"ar1"`` integer times with random gaps, ``"car1"`` real-valued irregular
    times, ``None`` integer times too (unused by the likelihood). With ``balanced`` every
    cluster has the same times. Cluster labels are not in creation order, so sorting by
    label differs from the input order. At least one cluster has ``min_size`` rows.
    """
    labels = [f"c{k:02d}" for k in rng.permutation(n_clusters)]
    if balanced:
        size = int(rng.integers(min_size, max_size + 1))
        sizes = np.full(n_clusters, size)
    else:
        sizes = rng.integers(min_size, max_size + 1, size=n_clusters)
        sizes[rng.integers(n_clusters)] = min_size
    shared = None
    rows = []
    for lab, n in zip(labels, sizes):
        if times == "car1":
            t = np.round(rng.uniform(0, 2) + np.cumsum(0.05 + rng.exponential(0.7, size=n)), 6)
        else:
            t = np.sort(rng.choice(3 * max_size, size=n, replace=False)).astype(float)
        if balanced:
            shared = t if shared is None else shared
            t = shared
        rows += [{"g": lab, "t": float(tt)} for tt in rng.permutation(t)]
    df = pd.DataFrame(rows)
    n = len(df)
    df["x"] = rng.normal(size=n)
    df["w"] = rng.normal(size=n)
    df["y"] = 0.5 + 0.8 * df["x"] + rng.normal(size=n) * 1.3
    df = df.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    df.index = rng.permutation(n) * 7 + 3  # a non-default index must not matter
    return df


def random_spd(rng: np.random.Generator, q: int, scale: float = 1.0) -> np.ndarray:
    """A random, reasonably conditioned symmetric positive definite q x q matrix."""
    A = rng.normal(size=(q, q))
    return scale * (A @ A.T / q + 0.3 * np.eye(q))


# ----------------------------------------------------------------------- dense references


def columns(part: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """Design columns of ``part``: ``"1"`` is the intercept, other names are data columns."""
    out = [np.ones(len(part)) if c == "1" else part[c].to_numpy(dtype=float) for c in cols]
    return np.column_stack(out) if out else np.zeros((len(part), 0))


def correlation_matrix(t: np.ndarray, phi: float | None, corr: str | None) -> np.ndarray:
    """``R_ij = phi^|t_i - t_j|`` (identity without a residual correlation)."""
    if corr is None:
        return np.eye(t.size)
    lag = np.abs(t[:, None] - t[None, :])
    return np.power(phi, lag)  # integral float exponents keep the sign of a negative phi


def clusters(df: pd.DataFrame, group: str = "g"):
    """``(label, rows)`` for every cluster, labels as strings (as Design levels are)."""
    for lab, part in df.groupby(group, sort=False):
        yield str(lab), part


def dense_marginal_loglik(df, fixed, re, beta, sigma, phi, S, corr, group="g", time="t"):
    """sum_c log N(y_c; X_c beta, Z_c S Z_c^T + sigma^2 R_c(phi)) with scipy."""
    total = 0.0
    for _, part in clusters(df, group):
        X, Z = columns(part, fixed), columns(part, re)
        R = correlation_matrix(part[time].to_numpy(dtype=float), phi, corr)
        cov = Z @ S @ Z.T + sigma**2 * R
        total += stats.multivariate_normal.logpdf(part["y"].to_numpy(), X @ beta, cov)
    return float(total)


def dense_conditional_loglik(df, mu, sigma, phi, corr, group="g", time="t"):
    """sum_c log N(y_c; mu_c, sigma^2 R_c(phi)); ``mu`` a Series aligned with ``df``."""
    total = 0.0
    for _, part in clusters(df, group):
        R = correlation_matrix(part[time].to_numpy(dtype=float), phi, corr)
        total += stats.multivariate_normal.logpdf(
            part["y"].to_numpy(), mu.loc[part.index].to_numpy(), sigma**2 * R
        )
    return float(total)


def dense_posterior_b(df, fixed, re, beta, sigma, phi, S, corr, group="g", time="t"):
    """Exact conditional of each cluster's random effects: ``{label: (mean, cov)}``.

    Cov = (S^-1 + Z^T R^-1 Z / sigma^2)^-1, mean = Cov Z^T R^-1 (y - X beta) / sigma^2.
    """
    out = {}
    for lab, part in clusters(df, group):
        X, Z = columns(part, fixed), columns(part, re)
        Rinv = np.linalg.inv(correlation_matrix(part[time].to_numpy(dtype=float), phi, corr))
        r = part["y"].to_numpy() - X @ beta
        cov = np.linalg.inv(np.linalg.inv(S) + Z.T @ Rinv @ Z / sigma**2)
        out[lab] = (cov @ Z.T @ Rinv @ r / sigma**2, cov)
    return out


def user_fixed_columns(formula_rhs: str) -> list[str]:
    """Dense column list of a simple fixed part such as ``"x + w"`` or ``"0 + x"``."""
    parts = [p.strip() for p in formula_rhs.split("+")]
    if parts[0] == "0":
        return parts[1:]
    return ["1"] + [p for p in parts if p != "1"]


# ----------------------------------------------------------------------- PyMC models


def finite_difference(logp, point, value_vars, h=1e-6):
    """Central differences of ``logp`` over every element of ``value_vars`` (in order)."""
    grad = []
    for v in value_vars:
        x = np.asarray(point[v.name], dtype=float)
        for i in np.ndindex(x.shape):
            up, dn = x.copy(), x.copy()
            up[i] += h
            dn[i] -= h
            grad.append((logp({**point, v.name: up}) - logp({**point, v.name: dn})) / (2 * h))
    return np.array(grad)


def check_model_gradient(model, point, mode):
    """Model logp finite at ``point``; dlogp finite and equal to central differences."""
    logp = model.compile_logp(mode=mode)
    dlogp = model.compile_dlogp(mode=mode)
    assert np.isfinite(logp(point))
    g = np.asarray(dlogp(point))
    names = [
        f"{v.name}{list(i)}"
        for v in model.continuous_value_vars
        for i in np.ndindex(np.shape(point[v.name]))
    ]
    assert np.all(np.isfinite(g)), dict(zip(names, g))
    fd = finite_difference(logp, point, model.continuous_value_vars)
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def ref() -> SimpleNamespace:
    """The helpers above, for test modules (hypothesis-friendly: session scoped)."""
    return SimpleNamespace(
        random_frame=random_frame,
        random_spd=random_spd,
        columns=columns,
        correlation_matrix=correlation_matrix,
        clusters=clusters,
        dense_marginal_loglik=dense_marginal_loglik,
        dense_conditional_loglik=dense_conditional_loglik,
        dense_posterior_b=dense_posterior_b,
        user_fixed_columns=user_fixed_columns,
        finite_difference=finite_difference,
        check_model_gradient=check_model_gradient,
    )


@pytest.fixture(scope="session")
def fast_mode():
    """PyTensor mode for tiny test graphs: Python implementations, no graph rewrites
    (compiling to C, or rewriting gradient graphs, costs far more than evaluating them)."""
    from pytensor.compile.mode import Mode

    return Mode(linker="py", optimizer=None)
