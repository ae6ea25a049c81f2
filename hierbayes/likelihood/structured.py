"""Dense within-cluster residual correlations: compound symmetry, unstructured and ARMA.

A cluster's residuals ``e = D u`` (``D`` the diagonal of residual sds) have ``u ~ N(0, R)``:

- compound symmetry (``hb.CompSymm``): ``R = (1 - rho) I + rho J`` for a cluster of size
  ``n``, so ``log |R| = (n - 1) log(1 - rho) + log(1 + (n - 1) rho)`` and, by
  Sherman-Morrison, ``u' R^-1 u = (sum u^2 - rho (sum u)^2 / (1 + (n - 1) rho)) / (1 - rho)``:
  two segment sums per cluster, no matrix.
- unstructured (``hb.Unstructured``): ``R = C[o, o]``, the sub-matrix of the K x K
  correlation matrix ``C`` at the cluster's observed occasions ``o``. Clusters that share
  their occasions (a *pattern*; balanced data: one) share one Cholesky factor.
- ARMA(p, q) (``hb.ARMA``): ``R[i, j] = acf(|t_i - t_j|)``, the exact ARMA autocorrelation
  (:mod:`hierbayes.likelihood.arma`); clusters whose times are the same from their first
  share one Cholesky factor.

Every function taking ``xp`` runs on numpy or pytensor.tensor arrays alike; the residuals
come on the padded (cluster x slot) layout of :class:`hierbayes.design.build.ClusterLayout`
(zeros past a cluster's end; rows sorted by occasion within cluster).

Examples
--------
>>> import numpy as np
>>> u = np.array([[0.5, -1.0, 0.0], [2.0, 0.0, 0.0]])   # clusters of 2 and 1 rows
>>> compsymm_logpdf(np, u, np.array([2, 1]), 0.3).round(6).tolist()
[-2.64237, -2.918939]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierbayes.likelihood import arma

LOG_2PI = float(np.log(2.0 * np.pi))


def compsymm_logpdf(xp, u, sizes, rho):
    """``log N(u_c; 0, (1 - rho) I + rho J)`` per cluster: (C,) from padded ``u`` (C, T)
    (zeros on padding) and the cluster sizes ``n`` (C,)."""
    n = sizes
    s1 = u.sum(axis=1)
    s2 = (u * u).sum(axis=1)
    one_m = 1.0 - rho
    big = 1.0 + (n - 1.0) * rho
    quad = (s2 - rho * s1 * s1 / big) / one_m
    logdet = (n - 1.0) * xp.log(one_m) + xp.log(big)
    return -0.5 * (n * LOG_2PI + logdet + quad)


def compsymm_whiten(xp, v, mask, nobs, rho):
    """``R^-1/2 v`` per cluster along the last axis (a cluster's slots, zeros on padding)
    and the log-Jacobian ``-1/2 log|R|`` per cluster, for ``R = (1 - rho) I + rho J``.

    ``R^-1/2 = a I + (b - a) J / n`` with ``a = (1 - rho)^-1/2`` and
    ``b = (1 + (n - 1) rho)^-1/2`` (the eigenvalues of ``R``: ``1 - rho`` off the mean,
    ``1 + (n - 1) rho`` along it), so the whitened values are ``a v + (b - a) mean(v)`` on
    the observed slots. ``nobs`` (cluster sizes) and ``rho`` broadcast against
    ``v.sum(-1)``; ``mask`` against ``v``.

    Examples
    --------
    >>> w, jac = compsymm_whiten(np, np.array([[1.0, 2.0, 0.0]]), np.array([[1, 1, 0]]),
    ...                          np.array([2.0]), 0.5)
    >>> R = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> bool(np.isclose(w[0, :2] @ w[0, :2], np.array([1.0, 2.0]) @ np.linalg.solve(R, [1.0, 2.0])))
    True
    """
    n = nobs
    big = 1.0 + (n - 1.0) * rho
    mean = v.sum(axis=-1) / n
    a = xp.ones_like(mean) / xp.sqrt(1.0 - rho)  # the shape of the per-cluster values
    b = 1.0 / xp.sqrt(big)
    w = a[..., None] * v + ((b - a) * mean)[..., None] * mask
    jac = -0.5 * ((n - 1.0) * xp.log(1.0 - rho) + xp.log(big))
    return w, jac


@dataclass(frozen=True)
class Pattern:
    """Clusters observed at the same occasions: ``occasions`` (n,) codes in sorted order,
    ``clusters`` (m,) cluster indices of the padded layout."""

    occasions: np.ndarray
    clusters: np.ndarray


def patterns(layout, occasion: np.ndarray) -> list[Pattern]:
    """The occasion patterns of a padded layout; ``occasion`` the occasion code of every
    design row (rows sorted by cluster, then occasion).

    Examples
    --------
    >>> from hierbayes.design.build import cluster_layout
    >>> lay = cluster_layout(np.array([0, 0, 1, 2, 2]), np.array([0., 2., 1., 0., 2.]), 3)
    >>> [(p.occasions.tolist(), p.clusters.tolist()) for p in patterns(lay, np.array([0, 2, 1, 0, 2]))]
    [([0, 2], [0, 2]), ([1], [1])]
    """
    groups: dict[tuple, list[int]] = {}
    for c in range(layout.n_clusters):
        key = tuple(int(occasion[r]) for r in layout.pos[c, : layout.sizes[c]])
        groups.setdefault(key, []).append(c)
    return [Pattern(np.array(k, dtype=np.int64), np.array(v, dtype=np.int64))
            for k, v in groups.items() if k]


def unstructured_logpdf(xp, u, pats: list[Pattern], corr, n_clusters: int, total: bool = False):
    """``log N(u_c; 0, C[o_c, o_c])`` per cluster: (C,) from padded ``u`` (C, T), the
    layout's occasion patterns and the K x K correlation matrix ``corr``; their sum with
    ``total=True`` (what the sampler needs: no scatter into a per-cluster vector).
    :func:`pattern_logpdf` with the entries of ``corr``."""
    return pattern_logpdf(xp, u, pats, lambda a, b: corr[a, b], n_clusters, total)


def pattern_logpdf(xp, u, pats: list[Pattern], entry, n_clusters: int, total: bool = False):
    """``log N(u_c; 0, R_c)`` per cluster (or their sum, ``total=True``), ``R_c[i, j] =
    entry(o_i, o_j)`` for the keys ``o`` of the cluster's pattern (occasion codes of an
    unstructured correlation, times from the cluster's first of an ARMA one).

    Per pattern one n x n Cholesky factor ``L``, unrolled into scalar operations
    (:mod:`hierbayes.likelihood.smallmat`, n <= 10), and one forward substitution
    ``L w = u`` over the pattern's cluster vectors: elementwise work, no linear-algebra Op
    (PyTensor's triangular solve is a Python Op of about 1 ms a call)."""
    from hierbayes.likelihood import smallmat

    out = 0.0 if total else xp.zeros(n_clusters)
    for p in pats:
        o = [int(k) for k in p.occasions]
        n = len(o)
        L = smallmat.cholesky([[entry(o[i], o[j]) if j <= i else None for j in range(n)]
                               for i in range(n)], xp.sqrt)
        every = p.clusters.size == n_clusters  # balanced data: one pattern, no gather
        U = u if every else u[p.clusters]
        w = smallmat.forward_solve(L, [U[:, k] for k in range(n)])
        quad = sum(wk * wk for wk in w)
        logdet = 2.0 * smallmat.log_diag_sum(L, xp.log)
        vals = -0.5 * (n * LOG_2PI + logdet + quad)
        if total:
            out = out + vals.sum()
        elif xp is np:
            out[p.clusters] = vals
        else:
            out = xp.set_subtensor(out[p.clusters], vals)
    return out


def cluster_logpdf(xp, kind: str, u, layout_arrays: dict, theta, total: bool = False):
    """Per-cluster log-density of unit-variance residuals ``u`` (C, T) under the dense
    structure ``kind`` (``"compsymm"``: ``theta = rho``; ``"unstructured"``: ``theta`` the
    K x K correlation matrix), or its sum (``total=True``). ``layout_arrays`` from
    :func:`layout_arrays`."""
    if kind == "compsymm":
        out = compsymm_logpdf(xp, u, layout_arrays["sizes"], theta)
        return out.sum() if total else out
    if kind == "unstructured":
        return unstructured_logpdf(xp, u, layout_arrays["patterns"], theta,
                                   layout_arrays["n_clusters"], total)
    if kind == "arma":
        ar, ma = arma_pacfs(theta, layout_arrays["order"])
        r = arma.acf(ar, ma, layout_arrays["max_lag"])
        return pattern_logpdf(xp, u, layout_arrays["patterns"], lambda a, b: r[abs(a - b)],
                              layout_arrays["n_clusters"], total)
    raise ValueError(f"no dense residual structure {kind!r}")


def arma_pacfs(theta, order: tuple[int, int]) -> tuple[list, list]:
    """The AR and MA partial autocorrelations of packed ``theta`` (last axis
    :data:`hierbayes.likelihood.arma.WIDTH`, numpy or PyTensor) for ARMA(p, q)."""
    p, q = order
    return ([theta[..., k] for k in range(p)],
            [theta[..., arma.MAX_ORDER + k] for k in range(q)])


def pattern_keys(kind: str, layout, time: np.ndarray) -> np.ndarray:
    """The per-row keys clusters are grouped into patterns by: the occasion code
    (unstructured), the time since the cluster's first row (ARMA: stationary, so only
    the lags matter)."""
    t = np.asarray(time, dtype=np.int64)
    if kind != "arma":
        return t
    first = t[np.where(layout.sizes > 0, layout.pos[:, 0], 0)]
    cl = np.zeros(t.size, dtype=np.int64)
    cl[layout.pos[layout.mask]] = np.nonzero(layout.mask)[0]
    return t - first[cl]


def layout_arrays(design) -> dict:
    """What :func:`cluster_logpdf` needs of a design: cluster sizes (float) and, for the
    unstructured and ARMA correlations, the patterns (ARMA: its order and largest lag)."""
    lay = design.layout
    kind = design.correlation.kind
    out = {"sizes": lay.sizes.astype(float), "n_clusters": int(lay.n_clusters)}
    if kind in ("unstructured", "arma"):
        out["patterns"] = patterns(lay, pattern_keys(kind, lay, design.time))
    if kind == "arma":
        out["order"] = (design.correlation.p, design.correlation.q)
        out["max_lag"] = max([int(p.occasions[-1]) for p in out["patterns"]] + [0])
    return out


def correlation_matrix(kind: str, t1: np.ndarray, t2: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The residual correlations between rows of one cluster with keys ``t1`` and ``t2``
    for D draws of ``theta``: (D, len(t1), len(t2)).

    Keys: times for ``"ar1"``/``"car1"`` (``theta = phi``, :mod:`~hierbayes.likelihood.arprocess`);
    distinct row keys for ``"compsymm"`` (``theta = rho`` (D,): 1 for equal keys, ``rho``
    otherwise); occasion codes for ``"unstructured"`` (``theta`` (D, K, K)); integer
    times for ``"arma"`` (``theta`` (D, 6) packed partial autocorrelations: the ACF at
    the lag).

    Examples
    --------
    >>> correlation_matrix("compsymm", np.array([0, 1]), np.array([1, -1]), np.array([0.4])).tolist()
    [[[0.4, 0.4], [1.0, 0.4]]]
    """
    if kind in ("ar1", "car1"):
        from hierbayes.likelihood import arprocess

        return arprocess.correlation_matrix(np.asarray(t1, float), np.asarray(t2, float), theta)
    if kind == "compsymm":
        same = np.asarray(t1)[:, None] == np.asarray(t2)[None, :]
        return np.where(same[None], 1.0, np.asarray(theta, float)[:, None, None])
    if kind == "unstructured":
        i1, i2 = np.asarray(t1, np.int64), np.asarray(t2, np.int64)
        return np.asarray(theta)[:, i1][:, :, i2]
    if kind == "arma":
        lag = np.rint(np.abs(np.asarray(t1, float)[:, None] - np.asarray(t2, float)[None, :]))
        lag = lag.astype(np.int64)
        r = arma.acf_packed(theta, int(lag.max()) if lag.size else 0)
        return r[:, lag]
    raise ValueError(f"no residual structure {kind!r}")


def draw_padded(rng, kind: str, layout, theta: np.ndarray, occasion=None) -> np.ndarray:
    """Unit-variance correlated residuals on the padded layout for D draws of ``theta``:
    (D, C, T), zeros on padding. ``occasion``: the occasion code per design row
    (unstructured), the integer time (ARMA)."""
    D = np.asarray(theta).shape[0]
    C, T = layout.pos.shape
    out = np.zeros((D, C, T))
    if kind == "compsymm":
        rho = np.asarray(theta, float)[:, None, None]
        # one Cholesky factor per cluster size (rho < 0 allowed down to -1/(n_max - 1))
        for n in np.unique(layout.sizes[layout.sizes > 0]):
            cl = np.flatnonzero(layout.sizes == n)
            R = correlation_matrix("compsymm", np.arange(n), np.arange(n), rho[:, 0, 0])
            L = np.linalg.cholesky(R)  # (D, n, n)
            z = rng.standard_normal((D, cl.size, n))
            out[:, cl, :n] = np.einsum("dij,dmj->dmi", L, z)
        return out
    if kind in ("unstructured", "arma"):
        for p in patterns(layout, pattern_keys(kind, layout, occasion)):
            n = p.occasions.size
            R = correlation_matrix(kind, p.occasions, p.occasions, theta)
            L = np.linalg.cholesky(R)
            z = rng.standard_normal((D, p.clusters.size, n))
            out[:, p.clusters, :n] = np.einsum("dij,dmj->dmi", L, z)
        return out
    raise ValueError(f"no dense residual structure {kind!r}")


def draw_rows(rng, design, theta: np.ndarray) -> np.ndarray:
    """Unit-variance correlated residuals (D, N) in design row order."""
    lay = design.layout
    u = draw_padded(rng, design.correlation.kind, lay, theta, design.time)
    out = np.empty((u.shape[0], design.n))
    out[:, lay.pos[lay.mask]] = u[:, lay.mask]
    return out
