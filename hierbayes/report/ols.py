"""Per-cluster least squares (R's ``lmList``), vectorised over clusters.

For every level ``c`` of a grouping factor the random-effect design ``Z_c`` (e.g. intercept
and time) is regressed on that cluster's responses ``y_c``. The per-cluster normal equations
are accumulated with :func:`numpy.bincount` and the ``q x q`` systems are solved as one batch,
so thousands of clusters take milliseconds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

#: Status labels of :func:`cluster_ols`.
STATUS_OK = "ok"
STATUS_NO_DF = "no residual df"
STATUS_FEW = "too few rows"
STATUS_RANK = "rank deficient"

# relative singular-value threshold (column-scaled Z_c) under which Z_c counts as rank deficient
_RANK_RTOL = 1e-7


def group_block(design, group: str | None = None):
    """The :class:`~hierbayes.design.build.GroupBlock` named ``group``.

    With ``group=None`` the design's only grouping factor is used; with several factors,
    the one with the most levels (the clustering factor of the collapsed likelihood).
    """
    groups = getattr(design, "groups", None)
    if groups is None:
        raise TypeError(f"expected a hierbayes Design, got {type(design).__name__}.")
    if not groups:
        raise ValueError(
            "the design has no grouping factor: per-cluster reports need a random-effect "
            "term such as (1 + time | id) in the formula."
        )
    if group is None:
        return max(groups, key=lambda g: g.n_levels)
    return design.group(group)


def _per_cluster_gram(Z: np.ndarray, w: np.ndarray, idx: np.ndarray, n_levels: int):
    """Per-cluster ``Z'Z`` (C, q, q) and ``Z'w`` (C, q) by bincount over column pairs."""
    q = Z.shape[1]
    ZtZ = np.empty((n_levels, q, q))
    Ztw = np.empty((n_levels, q))
    for k in range(q):
        Ztw[:, k] = np.bincount(idx, weights=Z[:, k] * w, minlength=n_levels)
        for m in range(k, q):
            s = np.bincount(idx, weights=Z[:, k] * Z[:, m], minlength=n_levels)
            ZtZ[:, k, m] = ZtZ[:, m, k] = s
    return ZtZ, Ztw


def _full_rank(ZtZ: np.ndarray) -> np.ndarray:
    """Which (q, q) Gram matrices of a batch come from a full-column-rank ``Z_c``.

    The Gram matrix is scaled to unit diagonal (so column units do not matter) and ``Z_c``
    counts as full rank when its smallest scaled singular value, ``sqrt`` of the smallest
    eigenvalue, exceeds ``1e-7`` (the largest is at most ``sqrt(q)``).
    """
    d = np.einsum("ckk->ck", ZtZ)
    ok = np.all(d > 0, axis=1)
    s = np.where(ok[:, None], 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    scaled = ZtZ * s[:, :, None] * s[:, None, :]
    scaled[~ok] = np.eye(ZtZ.shape[1])
    lam_min = np.linalg.eigvalsh(scaled)[:, 0]
    return ok & (lam_min > _RANK_RTOL**2)


def cluster_ols(design, group: str | None = None) -> pd.DataFrame:
    """Least squares of ``y`` on the random-effect columns, separately in every cluster.

    For a non-Gaussian family ``y`` is first carried to the link scale
    (:meth:`hierbayes.spec.families.Family.working_response`, e.g. ``log(y + 0.5)`` for counts),
    so the estimates compare with the model's cluster coefficients.

    The by-group fits of R's ``nlme::lmList`` (``lmList(y ~ time | id)``): the "no pooling"
    estimates the hierarchical model shrinks.

    Parameters
    ----------
    design : hierbayes.design.build.Design
        The model's design (rows in any order; ``Z`` and ``index`` of the group are used).
    group : str, optional
        Grouping factor. Default: the only one, or the one with the most levels.

    Returns
    -------
    pandas.DataFrame
        One row per level (index = level labels, index name = the group name) with, for each
        term ``t`` of the group, the coefficient ``t`` and its standard error ``t_se``; then
        ``n`` (rows in the cluster) and ``status``:

        - ``"ok"``: coefficients and standard errors;
        - ``"no residual df"``: ``n == q`` and ``Z_c`` full rank: the fit interpolates, the
          coefficients are given (as ``lm`` does) but the standard errors are NaN;
        - ``"too few rows"``: ``n < q``: all NaN;
        - ``"rank deficient"``: ``Z_c`` not of full column rank (e.g. ``time`` constant within
          the cluster): all NaN.

        ``df.attrs`` holds ``n_nan`` (levels with NaN coefficients), ``n_nan_se`` (levels with
        NaN standard errors), ``status_counts``, ``group`` and ``terms``. A warning gives the
        counts whenever some level is not ``"ok"``; no level is dropped.

    Notes
    -----
    With ``A_c = Z_c' Z_c`` the coefficient is ``A_c^{-1} Z_c' y_c``, the residual variance
    ``s_c^2 = |y_c - Z_c beta_c|^2 / (n_c - q)`` and the standard errors
    ``sqrt(s_c^2 diag(A_c^{-1}))``, as ``lm`` on the cluster alone. Rank is judged on
    ``A_c`` scaled to unit diagonal (smallest singular value of the scaled ``Z_c`` below
    ``1e-7`` counts as deficient).

    Examples
    --------
    >>> from hierbayes import datasets
    >>> from hierbayes.spec.formula import parse
    >>> from hierbayes.design.build import build_design
    >>> d = build_design(parse("y ~ time + (1 + time | id)"), datasets.load("clark_ar1"))
    >>> ols = cluster_ols(d)
    >>> list(ols.columns)
    ['Intercept', 'Intercept_se', 'time', 'time_se', 'n', 'status']
    >>> ols.shape
    (2500, 6)
    """
    g = group_block(design, group)
    terms = tuple(g.terms)
    clash = {"n", "status"} & (set(terms) | {f"{t}_se" for t in terms})
    if clash:
        raise ValueError(
            f"term name(s) {sorted(clash)} of group {g.name!r} clash with the output columns "
            "'n'/'status'; rename the covariate."
        )
    # non-Gaussian families: least squares of the response carried to the link scale
    family = getattr(getattr(design, "spec", None), "family", None)
    y = (
        family.working_response(design.y, getattr(design, "trials", None))
        if family is not None
        else np.asarray(design.y, dtype=float)
    )
    Z = np.asarray(g.Z, dtype=float)
    idx = np.asarray(g.index, dtype=np.int64)
    C, q = g.n_levels, g.q

    n = np.bincount(idx, minlength=C)
    ZtZ, Zty = _per_cluster_gram(Z, y, idx, C)

    enough = n >= q
    full = enough & _full_rank(ZtZ)
    coef = np.full((C, q), np.nan)
    cov_unscaled = np.full((C, q, q), np.nan)
    if full.any():
        inv = np.linalg.inv(ZtZ[full])
        cov_unscaled[full] = inv
        coef[full] = np.einsum("ckm,cm->ck", inv, Zty[full])

    # residual variance from the residuals themselves (no y'y - b'Z'y cancellation)
    fitted = np.einsum("nk,nk->n", Z, np.nan_to_num(coef[idx]))
    rss = np.bincount(idx, weights=(y - fitted) ** 2, minlength=C)
    has_df = full & (n > q)
    s2 = np.where(has_df, rss / np.where(has_df, n - q, 1), np.nan)
    se = np.sqrt(s2[:, None] * np.einsum("ckk->ck", cov_unscaled))

    status = np.full(C, STATUS_OK, dtype=object)
    status[full & (n == q)] = STATUS_NO_DF
    status[enough & ~full] = STATUS_RANK
    status[~enough] = STATUS_FEW

    cols: dict[str, np.ndarray] = {}
    for k, t in enumerate(terms):
        cols[t] = coef[:, k]
        cols[f"{t}_se"] = se[:, k]
    cols["n"] = n
    cols["status"] = status
    out = pd.DataFrame(cols, index=pd.Index(list(g.levels), name=g.name))

    counts = {
        s: int(np.sum(status == s)) for s in (STATUS_OK, STATUS_NO_DF, STATUS_FEW, STATUS_RANK)
    }
    n_nan = counts[STATUS_FEW] + counts[STATUS_RANK]
    n_nan_se = n_nan + counts[STATUS_NO_DF]
    out.attrs.update(
        n_nan=n_nan, n_nan_se=n_nan_se, status_counts=counts, group=g.name, terms=terms
    )
    if n_nan_se:
        parts = []
        if n_nan:
            parts.append(
                f"{n_nan} of {C} levels of {g.name!r} have NaN coefficients "
                f"({counts[STATUS_FEW]} with fewer rows than the {q} terms {list(terms)}, "
                f"{counts[STATUS_RANK]} rank deficient)"
            )
        if counts[STATUS_NO_DF]:
            parts.append(
                f"{counts[STATUS_NO_DF]} of {C} levels of {g.name!r} have NaN standard errors "
                "(as many rows as terms: no residual degrees of freedom)"
            )
        warnings.warn(
            f"cluster_ols: {'; '.join(parts)}. They are kept; see the 'status' column.",
            UserWarning,
            stacklevel=2,
        )
    return out
