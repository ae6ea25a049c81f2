"""Per-cluster fits (R's ``lmList``, and per-cluster GLMs), vectorised over clusters.

For every level ``c`` of a grouping factor the cluster's responses ``y_c`` are regressed on
the random-effect columns ``Z_c`` (e.g. intercept and time) together with every fixed-effect
column that the cluster coefficients do not absorb (row-level covariates such as ``t`` in
``y ~ t + (1 | id)``), as ``lmList(y ~ t | id)`` fits the whole fixed formula per cluster.
Gaussian and Student families use least squares; Bernoulli, binomial, Poisson and negative
binomial families a per-cluster GLM fitted by iteratively reweighted least squares (IRLS) on
the model's link. The per-cluster normal equations are accumulated with
:func:`numpy.bincount` and the small systems are solved as one batch, so thousands of
clusters take milliseconds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import special

#: Status labels of :func:`cluster_ols`.
STATUS_OK = "ok"
STATUS_NO_DF = "no residual df"
STATUS_FEW = "too few rows"
STATUS_RANK = "rank deficient"
#: GLM statuses: no finite maximum-likelihood estimate in the cluster
STATUS_ALL0 = "all 0"
STATUS_ALL1 = "all 1"
STATUS_SEPARATION = "separation"
STATUS_NOT_CONVERGED = "not converged"
#: every status, in the order of ``attrs["status_counts"]``
STATUSES = (STATUS_OK, STATUS_NO_DF, STATUS_FEW, STATUS_RANK, STATUS_ALL0, STATUS_ALL1,
            STATUS_SEPARATION, STATUS_NOT_CONVERGED)

# IRLS: iterations (R's glm.control maxit) and convergence tolerance on the deviance
_IRLS_MAXIT = 25
_IRLS_TOL = 1e-10
# a fitted mean this close to the boundary of its support marks (quasi-)separation
_BOUNDARY = 1e-8

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


def _per_cluster_gram(Z: np.ndarray, w: np.ndarray, idx: np.ndarray, n_levels: int,
                      weights: np.ndarray | None = None):
    """Per-cluster ``Z'VZ`` (C, q, q) and ``Z'Vw`` (C, q) by bincount over column pairs,
    ``V`` the diagonal of row ``weights`` (default 1)."""
    q = Z.shape[1]
    v = np.ones(Z.shape[0]) if weights is None else weights
    ZtZ = np.empty((n_levels, q, q))
    Ztw = np.empty((n_levels, q))
    for k in range(q):
        Ztw[:, k] = np.bincount(idx, weights=Z[:, k] * v * w, minlength=n_levels)
        for m in range(k, q):
            s = np.bincount(idx, weights=Z[:, k] * v * Z[:, m], minlength=n_levels)
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


def regressors(design, group: str | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The columns of every cluster's fit: ``Z`` of ``group``, then the fixed-effect columns
    its cluster coefficients do not absorb.

    A fixed column absorbed into a random-effect term (the intercept, a cluster-level
    treatment, ``time:treatment`` under a random ``time`` slope; see
    :func:`~hierbayes.report.coefficients.absorption_matrix`) is part of the cluster
    coefficient; any other (``t`` in ``y ~ t + (1 | id)``, a row-level covariate) gets its
    own per-cluster coefficient, as in ``lmList(y ~ t | id)``.

    Returns
    -------
    M : numpy.ndarray, shape (N, q + e)
        Design rows, ``Z`` first.
    extra : tuple of str
        Names of the ``e`` fixed-effect columns after ``Z``.

    Examples
    --------
    >>> from hierbayes import datasets
    >>> from hierbayes.spec.formula import parse
    >>> from hierbayes.design.build import build_design
    >>> d = build_design(parse("y ~ time + treatment + (1 | id)"), datasets.load("clark_ar1"))
    >>> M, extra = regressors(d)
    >>> M.shape, extra
    ((10000, 2), ('time',))
    """
    from hierbayes.report.coefficients import absorption_matrix

    g = group_block(design, group)
    X = np.asarray(design.X, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undetermined multipliers still mean "absorbed"
        A = absorption_matrix(design, g.name)
    absorbed = np.any((A != 0) | np.isnan(A), axis=(0, 1))
    keep = [j for j in range(X.shape[1]) if not absorbed[j]]
    M = np.column_stack([np.asarray(g.Z, dtype=float), X[:, keep]])
    return M, tuple(design.fixed_names[j] for j in keep)


def _masked(G: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per-cluster Gram matrices restricted to the ``use`` columns; an unused column gets a
    unit diagonal and no cross terms (its coefficient solves to 0)."""
    out = G * (use[:, :, None] & use[:, None, :])
    i = np.arange(G.shape[1])
    out[:, i, i] = np.where(use, out[:, i, i], 1.0)
    return out


def _select_columns(G: np.ndarray, q: int) -> np.ndarray:
    """Which columns each cluster's fit uses, (C, m): the ``q`` random-effect columns, then
    every further column, in order, that keeps the cluster's design of full rank (a column
    constant within the cluster next to an intercept, or collinear with ``Z_c``, is left
    out of that cluster's fit, as ``lm`` reports an aliased coefficient as NA)."""
    C, m, _ = G.shape
    use = np.zeros((C, m), dtype=bool)
    use[:, :q] = True
    for j in range(q, m):
        trial = use.copy()
        trial[:, j] = True
        use[:, j] = _full_rank(_masked(G, trial))
    return use


def _solve(G: np.ndarray, r: np.ndarray, use: np.ndarray, ok: np.ndarray):
    """Coefficients (C, m) and inverse Gram matrices of the clusters ``ok`` (NaN elsewhere)."""
    C, m = r.shape
    coef = np.full((C, m), np.nan)
    inv = np.full((C, m, m), np.nan)
    if ok.any():
        inv[ok] = np.linalg.inv(_masked(G[ok], use[ok]))
        coef[ok] = np.einsum("ckm,cm->ck", inv[ok], np.where(use[ok], r[ok], 0.0))
    return coef, inv


def _least_squares(M, y, idx, C, q):
    """Per-cluster least squares: coefficients, standard errors, status (and columns used)."""
    n = np.bincount(idx, minlength=C)
    G, r = _per_cluster_gram(M, y, idx, C)
    use = _select_columns(G, q)
    enough = n >= q
    zfull = _full_rank(G[:, :q, :q])
    full = enough & zfull
    coef, inv = _solve(G, r, use, full)
    # residual variance from the residuals themselves (no y'y - b'Z'y cancellation)
    fitted = np.einsum("nk,nk->n", M, np.nan_to_num(coef[idx]))
    rss = np.bincount(idx, weights=(y - fitted) ** 2, minlength=C)
    m_c = use.sum(axis=1)
    has_df = full & (n > m_c)
    s2 = np.where(has_df, rss / np.where(has_df, n - m_c, 1), np.nan)
    se = np.sqrt(s2[:, None] * np.einsum("ckk->ck", inv))
    status = np.full(C, STATUS_OK, dtype=object)
    status[full & (n == m_c)] = STATUS_NO_DF
    status[enough & ~zfull] = STATUS_RANK
    status[~enough] = STATUS_FEW
    return coef, se, status, use, (STATUS_OK, STATUS_NO_DF, STATUS_FEW, STATUS_RANK)


def _link_parts(link: str, eta: np.ndarray):
    """Mean, d mean / d eta and the link function of a start mean, for IRLS."""
    if link == "log":
        mu = np.exp(np.minimum(eta, 700.0))
        return mu, mu
    if link == "logit":
        mu = special.expit(np.clip(eta, -30.0, 30.0))
        return mu, mu * (1 - mu)
    if link == "probit":
        e = np.clip(eta, -8.0, 8.0)
        return special.ndtr(e), np.exp(-0.5 * e * e) / np.sqrt(2 * np.pi)
    raise ValueError(f"no per-cluster GLM for the {link!r} link.")


def _link(link: str, mu: np.ndarray) -> np.ndarray:
    return {"log": np.log, "logit": special.logit, "probit": special.ndtri}[link](mu)


def _deviance(binary: bool, y, mu, w, idx, C) -> np.ndarray:
    """Per-cluster deviance (``y`` a proportion with weights ``w`` when ``binary``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if binary:
            d = special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu))
        else:
            d = special.xlogy(y, y / mu) - (y - mu)
    return 2 * np.bincount(idx, weights=w * np.nan_to_num(d), minlength=C)


def _truncated_moments(mu):
    """Mean and variance of the zero-truncated Poisson with Poisson mean ``mu``."""
    m = mu / -np.expm1(-np.maximum(mu, 1e-300))
    return m, np.maximum(m * (1.0 + mu - m), 1e-300)


def _irls(M, y, trials, idx, C, q, family, truncated: bool = False):
    """Per-cluster GLM by IRLS on the family's link: coefficients, standard errors (Fisher
    information, dispersion 1), status (and columns used). ``truncated``: the zero-truncated
    Poisson (log link, canonical) of the positive rows, the count part of a hurdle model."""
    binary = family.name in ("bernoulli", "binomial")
    link = family.link
    w = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
    if truncated:  # the zeros belong to the hurdle part: they weigh nothing here
        w = (y > 0).astype(float)
    yy = y / w if binary else y
    n = np.bincount(idx, weights=w if truncated else None, minlength=C).astype(int)
    G0, _ = _per_cluster_gram(M, np.zeros_like(y), idx, C, weights=w if truncated else None)
    use = _select_columns(G0, q)
    enough = n >= q
    zfull = _full_rank(G0[:, :q, :q])
    total = np.bincount(idx, weights=y, minlength=C)
    all0 = total == 0
    all1 = binary & (total == np.bincount(idx, weights=w, minlength=C))
    fit = enough & zfull & ~all0 & ~all1
    mu = (w * yy + 0.5) / (w + 1) if binary else yy + 0.1
    eta = _link(link, mu)
    dev = np.full(C, np.inf)
    done = ~fit
    coef = np.full((C, M.shape[1]), np.nan)
    for _ in range(_IRLS_MAXIT):
        mu, dmu = _link_parts(link, eta)
        if truncated:  # canonical link: weight the truncated variance, residual from its mean
            m, v = _truncated_moments(mu)
            W, z = w * v, eta + (yy - m) / v
        else:
            var = mu * (1 - mu) if binary else mu
            W = w * dmu**2 / np.maximum(var, 1e-300)
            z = eta + (yy - mu) / np.maximum(dmu, 1e-300)
        G, r = _per_cluster_gram(M, z, idx, C, weights=W)
        step, _ = _solve(G, r, use, fit & ~done)
        live = fit & ~done
        coef[live] = step[live]
        eta = np.where(live[idx], np.einsum("nk,nk->n", M, np.nan_to_num(coef[idx])), eta)
        mu, _ = _link_parts(link, eta)
        if truncated:  # -2 log-likelihood (up to constants) of the positive rows
            ll = yy * eta - mu - np.log(-np.expm1(-np.maximum(mu, 1e-300)))
            new = -2 * np.bincount(idx, weights=w * ll, minlength=C)
        else:
            new = _deviance(binary, yy, mu, w, idx, C)
        done |= live & (np.abs(new - dev) / (np.abs(new) + 0.1) < _IRLS_TOL)
        dev = np.where(live, new, dev)
        if done.all():
            break
    mu, dmu = _link_parts(link, eta)
    var = mu * (1 - mu) if binary else mu
    info = w * _truncated_moments(mu)[1] if truncated else w * dmu**2 / np.maximum(var, 1e-300)
    G, _ = _per_cluster_gram(M, np.zeros_like(y), idx, C, weights=info)
    _, inv = _solve(G, np.zeros_like(coef), use, fit)
    se = np.sqrt(np.einsum("ckk->ck", inv))
    edge = ((mu < _BOUNDARY) | (binary & (mu > 1 - _BOUNDARY))) & (w > 0)
    boundary = np.bincount(idx, weights=edge.astype(float), minlength=C) > 0
    status = np.full(C, STATUS_OK, dtype=object)
    status[fit & ~done] = STATUS_NOT_CONVERGED
    status[fit & boundary] = STATUS_SEPARATION
    status[all0] = STATUS_ALL0
    status[all1] = STATUS_ALL1
    status[enough & ~zfull] = STATUS_RANK
    status[~enough] = STATUS_FEW
    if truncated:  # no positive row: no count part to fit
        status[all0] = STATUS_ALL0
    bad = status != STATUS_OK
    coef[bad], se[bad] = np.nan, np.nan
    counted = (STATUS_OK, STATUS_FEW, STATUS_RANK, STATUS_ALL0)
    counted += (STATUS_ALL1,) if binary else ()
    return coef, se, status, use, counted + (STATUS_SEPARATION, STATUS_NOT_CONVERGED)


def count_part_note(family) -> str:
    """What the per-cluster GLM of a zero-inflated or hurdle family estimates ("" for the
    other families), as :func:`cluster_ols` appends it to ``attrs["method"]``.

    Examples
    --------
    >>> from hierbayes.spec.families import get
    >>> count_part_note(get("hurdle_poisson"))
    ': a zero-truncated Poisson of the positive rows (the count part; the hurdle is not fitted per cluster)'
    """
    part = getattr(family, "part", None)
    if part == "hu":
        note = ": a zero-truncated Poisson of the positive rows (the count part; the hurdle is not fitted per cluster)"
        if family.extra_params[0] == "alpha":
            note += ("; the negative binomial's truncation depends on alpha, which is not estimated "
                     "per cluster, so the estimates approximate its count part (close for large alpha)")
        return note
    if part == "zi":
        return (": a Poisson GLM of every row, the zero inflation not fitted per cluster, so the "
                "estimates are of log E[y] = eta + log(1 - zi), below the count part's eta by "
                "-log(1 - zi), which biases the shrinkage factors")
    return ""


def cluster_ols(design, group: str | None = None) -> pd.DataFrame:
    """Per-cluster fits of the random-effect terms: the "no pooling" estimates the
    hierarchical model shrinks, as R's ``lmList``.

    Every cluster's responses are regressed on the group's random-effect columns and the
    fixed-effect columns its cluster coefficients do not absorb (:func:`regressors`): in
    ``y ~ t + (1 | id)`` the per-cluster intercept is that of ``lm(y ~ t)`` on the cluster
    (``lmList(y ~ t | id)``), not the cluster mean of ``y``. Gaussian and Student
    families: least squares. Bernoulli, binomial, Poisson and negative binomial families:
    a GLM per cluster on the model's link, fitted by IRLS (the negative binomial by its
    Poisson quasi-likelihood, which has the same estimating equations for the
    coefficients), so the estimates are on the scale of the model's cluster coefficients.
    Hurdle families: the count part, a zero-truncated Poisson GLM of the cluster's positive
    rows (exact for ``hurdle_poisson``; an approximation for ``hurdle_negbinomial``, whose
    truncation depends on ``alpha``). Zero-inflated families: a Poisson GLM of every row,
    which estimates ``log E[y] = eta + log(1 - zi)``, not ``eta`` (:func:`count_part_note`;
    ``attrs["method"]`` says so).

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
        - ``"no residual df"`` (least squares): as many rows as columns used: the fit
          interpolates, the coefficients are given (as ``lm`` does), standard errors NaN;
        - ``"too few rows"``: ``n < q``: all NaN;
        - ``"rank deficient"``: ``Z_c`` not of full column rank (e.g. ``time`` constant
          within the cluster): all NaN;
        - ``"all 0"`` (GLM): every response is 0, ``"all 1"`` (Bernoulli/binomial): every
          trial a success: no finite estimate, all NaN;
        - ``"separation"`` (GLM): the fit drives some fitted mean to the edge of its
          support (complete or quasi-complete separation): all NaN;
        - ``"not converged"`` (GLM): IRLS did not converge in 25 iterations: all NaN.

        ``df.attrs`` holds ``n_nan`` (levels with NaN coefficients), ``n_nan_se`` (levels
        with NaN standard errors), ``status_counts`` (the statuses of the method), ``group``,
        ``terms``, ``adjusted_for`` (the extra fixed-effect columns some cluster's fit
        used) and ``method`` (``"least squares"`` or ``"IRLS (<link> link)"``). A warning
        gives the counts whenever some level is not ``"ok"``; no level is dropped.

    Notes
    -----
    Least squares: with ``A_c = M_c' M_c`` over the columns the cluster uses, the
    coefficients are ``A_c^{-1} M_c' y_c``, the residual variance
    ``s_c^2 = |y_c - M_c beta_c|^2 / (n_c - m_c)`` and the standard errors
    ``sqrt(s_c^2 diag(A_c^{-1}))``, as ``lm`` on the cluster alone. GLM standard errors are
    ``sqrt(diag((M_c' W_c M_c)^{-1}))`` at the estimate (dispersion 1). Rank is judged on
    Gram matrices scaled to unit diagonal (smallest singular value below ``1e-7`` counts as
    deficient); an extra fixed column that would make a cluster's design deficient is left
    out of that cluster's fit.

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
    family = getattr(getattr(design, "spec", None), "family", None)
    if getattr(family, "ordered_response", False):
        raise NotImplementedError(
            f"per-cluster estimates of the {family.name} family are not available, so neither "
            "is the shrinkage report: a cumulative-link regression per cluster has no finite "
            "estimate for a cluster that misses a level or whose levels separate (common with "
            "a few rows per cluster), and one with the model's shared cut-points is not a "
            "no-pooling fit. The posterior cluster effects are in fit.posterior['b_<g>']."
        )
    y = np.asarray(design.y, dtype=float)
    M, extra = regressors(design, g.name)
    idx = np.asarray(g.index, dtype=np.int64)
    C, q = g.n_levels, g.q
    if family is None or family.link == "identity":
        coef, se, status, use, counted = _least_squares(M, y, idx, C, q)
        method = "least squares"
    else:
        trials = getattr(design, "trials", None)
        hurdle = getattr(family, "part", None) == "hu"
        coef, se, status, use, counted = _irls(M, y, trials, idx, C, q, family, truncated=hurdle)
        method = f"IRLS ({family.link} link)" + count_part_note(family)
    cols: dict[str, np.ndarray] = {}
    for k, t in enumerate(terms):
        cols[t] = coef[:, k]
        cols[f"{t}_se"] = se[:, k]
    cols["n"] = np.bincount(idx, minlength=C)
    cols["status"] = status
    out = pd.DataFrame(cols, index=pd.Index(list(g.levels), name=g.name))
    counts = {s: int(np.sum(status == s)) for s in counted}
    n_nan = int(np.isnan(coef[:, :q]).any(axis=1).sum())
    n_nan_se = int(np.isnan(se[:, :q]).any(axis=1).sum())
    used = [name for j, name in enumerate(extra) if use[:, q + j].any()]
    out.attrs.update(
        n_nan=n_nan, n_nan_se=n_nan_se, status_counts=counts, group=g.name, terms=terms,
        adjusted_for=used, method=method,
    )
    if n_nan_se:
        warnings.warn(_status_message(counts, C, g.name, terms, n_nan), UserWarning, stacklevel=2)
    return out


def _status_message(counts: dict, C: int, group: str, terms: tuple, n_nan: int) -> str:
    """The warning of :func:`cluster_ols`: how many levels have NaN estimates, and why."""
    parts = []
    if n_nan:
        why = {
            STATUS_FEW: f"with fewer rows than the {len(terms)} terms {list(terms)}",
            STATUS_RANK: "rank deficient",
            STATUS_ALL0: "with every response 0",
            STATUS_ALL1: "with every trial a success",
            STATUS_SEPARATION: "separated (fitted means at 0 or 1)",
            STATUS_NOT_CONVERGED: "where IRLS did not converge",
        }
        reasons = ", ".join(f"{counts[s]} {text}" for s, text in why.items() if counts.get(s))
        parts.append(f"{n_nan} of {C} levels of {group!r} have NaN coefficients ({reasons})")
    if counts.get(STATUS_NO_DF):
        parts.append(
            f"{counts[STATUS_NO_DF]} of {C} levels of {group!r} have NaN standard errors "
            "(as many rows as columns: no residual degrees of freedom)"
        )
    return f"cluster_ols: {'; '.join(parts)}. They are kept; see the 'status' column."
