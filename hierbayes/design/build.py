"""Design: the numeric arrays of a model, validated, sorted within cluster.

Rows are sorted by cluster (and by time within cluster when residuals are correlated);
``Design.rows`` maps every design row back to the user's row position, so every output
can be returned in the user's order.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import formulae
import numpy as np
import pandas as pd

from hierbayes.design import censoring
from hierbayes.design.censoring import Censoring
from hierbayes.spec import mundlak
from hierbayes.spec.correlation import (MAX_OCCASIONS, Correlation, PhiSignWarning,
                                        time_spacing)
from hierbayes.spec.formula import ModelSpec


@dataclass(frozen=True)
class GroupBlock:
    """Random effects of one grouping factor.

    Attributes
    ----------
    name : str
        Grouping factor (``"id"``; ``"a:b"`` for an interaction / nested factor).
    levels : tuple of str
        Level labels, in index order.
    index : ndarray of int, shape (N,)
        Level of each design row.
    Z : ndarray, shape (N, q)
        Random-effect design columns.
    terms : tuple of str
        Names of the q columns (``"Intercept"``, ``"time"``).
    term_matrices : tuple
        The formulae design matrices of the group terms merged into this factor, in column
        order; ``evaluate_new_data`` on them builds ``Z`` for new rows (prediction).
    correlated : bool
        Whether the terms are correlated (LKJ prior); False for ``(1 + x || g)``.
    """

    name: str
    levels: tuple[str, ...]
    index: np.ndarray
    Z: np.ndarray
    terms: tuple[str, ...]
    term_matrices: tuple = field(default=(), repr=False, compare=False)
    correlated: bool = True

    @property
    def q(self) -> int:
        return self.Z.shape[1]

    @property
    def n_levels(self) -> int:
        return len(self.levels)


@dataclass(frozen=True)
class ClusterLayout:
    """Padded (cluster x occasion) layout of the rows of one grouping factor.

    ``pos[c, k]`` is the design row of the k-th observation of cluster c (in time order),
    or -1 past the cluster's end; ``lag[c, k]`` is the time since the previous observation
    (0 for the first and padded slots).
    """

    pos: np.ndarray
    lag: np.ndarray
    mask: np.ndarray
    sizes: np.ndarray

    @property
    def n_clusters(self) -> int:
        return self.pos.shape[0]

    @property
    def width(self) -> int:
        return self.pos.shape[1]

    def pad(self, values: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """Scatter per-row ``values`` (N, ...) into the padded (C, T, ...) layout."""
        out = np.full(self.pos.shape + values.shape[1:], fill, dtype=float)
        out[self.mask] = values[self.pos[self.mask]]
        return out


@dataclass(frozen=True)
class DparBlock:
    """The design of one distributional parameter's formula (``sigma="~ Sex"``).

    ``X`` (N, k) in design row order, ``names`` its column labels (``Intercept``, ``SexM``),
    ``link`` the family's link for the parameter (``"log"``: ``sigma_i = exp(X_i beta)``),
    ``terms`` formulae's design information (``evaluate_new_data`` builds ``X`` for new rows).
    """

    name: str
    X: np.ndarray
    names: tuple[str, ...]
    link: str
    terms: object = field(default=None, repr=False, compare=False)

    def rows(self, coefs: np.ndarray, X: np.ndarray | None = None) -> np.ndarray:
        """The parameter per row for coefficient draws ``coefs`` (D, k): (D, N), the
        inverse link of ``coefs @ X.T`` (``X`` default: the design's own rows)."""
        from hierbayes.spec.families import inverse_link

        X = self.X if X is None else X
        return inverse_link(self.link, np.atleast_2d(coefs) @ X.T)


@dataclass(frozen=True)
class Design:
    """Numeric arrays of a model, in cluster-sorted row order.

    ``source`` holds the used columns of the user's data (every input row, in the user's
    order, index reset): what :func:`hierbayes.load` rebuilds the design from.
    """

    spec: ModelSpec
    y: np.ndarray
    X: np.ndarray
    fixed_names: tuple[str, ...]
    groups: tuple[GroupBlock, ...]
    rows: np.ndarray
    n_input_rows: int
    n_dropped: int
    correlation: Correlation | None = None
    #: per row: the correlation's time (AR1/CAR1), occasion code (Unstructured) or
    #: position within its cluster (CompSymm)
    time: np.ndarray | None = None
    cluster: np.ndarray | None = None
    cluster_levels: tuple[str, ...] = ()
    layout: ClusterLayout | None = None
    common_terms: object = field(default=None, repr=False, compare=False)
    trials: np.ndarray | None = None
    source: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    #: distributional parameters with a formula, by name (empty: every family parameter a scalar)
    dpars: dict = field(default_factory=dict, compare=False)
    #: an ordinal response's level labels, lowest first (``y`` holds their codes 0 .. K-1);
    #: empty for other families
    response_levels: tuple[str, ...] = ()
    #: censored responses (:mod:`hierbayes.design.censoring`; None: every response exact)
    censoring: Censoring | None = field(default=None, compare=False)
    #: the occasion labels of an unstructured correlation, in code order
    occasions: tuple = ()

    @property
    def sd_by_occasion(self) -> bool:
        """Whether each occasion of an unstructured correlation has its own residual sd
        (``sigma_occasion``, replacing ``sigma``)."""
        return bool(getattr(self.correlation, "sd_by_occasion", False))

    @property
    def occasion_index(self) -> np.ndarray:
        """The occasion code of every design row (hb.Unstructured)."""
        return self.time.astype(np.int64)

    @property
    def phi_bounds(self) -> tuple[float, float]:
        """The support of the correlation parameter ``phi`` for this design's clusters
        (compound symmetry: ``(-1/(n_max - 1), 1)``)."""
        n_max = int(self.layout.sizes.max()) if self.layout is not None else 1
        return self.correlation.bounds(n_max)

    @property
    def n(self) -> int:
        return self.y.shape[0]

    @property
    def p(self) -> int:
        return self.X.shape[1]

    def group(self, name: str) -> GroupBlock:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no grouping factor {name!r}; factors are {[g.name for g in self.groups]}.")

    @property
    def time_spacing(self) -> int | None:
        """The common divisor of the gaps between successive times within clusters under a
        residual correlation (:func:`hierbayes.spec.correlation.time_spacing`); None
        without a correlation or when no cluster has two rows."""
        if self.correlation is None or self.time is None:
            return None
        return time_spacing(self.cluster, self.time)

    @property
    def phi_sign_alias(self) -> str | None:
        """Why ``phi``'s sign is not identified by these times (AR(1) with an even
        spacing; see :meth:`hierbayes.spec.correlation.AR1.sign_alias`), else None."""
        if self.correlation is None:
            return None
        return self.correlation.sign_alias(self.time_spacing)

    def to_user_order(self, values: np.ndarray, axis: int = -1) -> np.ndarray:
        """Reorder per-row values (design order along ``axis``) into the user's row order.

        Rows the design dropped (missing values) come back as NaN.
        """
        values = np.moveaxis(np.asarray(values, dtype=float), axis, -1)
        out = np.full(values.shape[:-1] + (self.n_input_rows,), np.nan)
        out[..., self.rows] = values
        return np.moveaxis(out, -1, axis)


# --------------------------------------------------------------------------- helpers


def _check_columns(spec: ModelSpec, data: pd.DataFrame) -> list[str]:
    cols = spec.columns
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise KeyError(
            f"column(s) {missing} used in the formula or correlation are not in the data; "
            f"the data has columns {list(data.columns)}."
        )
    if spec.response not in data.columns:
        raise KeyError(
            f"the response {spec.response!r} is not a column of the data; transformed responses "
            "are not supported: add the transformed column to the data (e.g. "
            "data['log_y'] = np.log(data['y'])) and name it on the left of '~'."
        )
    return cols


def _drop_missing(data: pd.DataFrame, cols: list[str], na_action: str) -> pd.DataFrame:
    used = data[cols]
    bad = used.isna().any(axis=1).to_numpy()
    if bad.any():
        per_col = {c: int(n) for c, n in used.isna().sum().items() if n}
        if na_action == "raise":
            raise ValueError(
                f"missing values in used columns {per_col} ({int(bad.sum())} rows); "
                "fill or remove them, or pass na_action='drop' to drop those rows."
            )
        warnings.warn(
            f"dropped {int(bad.sum())} of {len(data)} rows with missing values in {per_col}.",
            stacklevel=4,
        )
    return data.loc[~bad]


def _factor_codes(data: pd.DataFrame, columns: tuple[str, ...]) -> tuple[np.ndarray, tuple[str, ...]]:
    if len(columns) == 1:
        codes, uniques = pd.factorize(data[columns[0]], sort=True)
        return codes.astype(np.int64), tuple(str(u) for u in uniques)
    # nested / interaction factor: one level per distinct combination, labelled "a:b"
    codes = data.groupby(list(columns), sort=True, observed=True).ngroup().to_numpy(np.int64)
    first = np.unique(codes, return_index=True)[1]
    parts = data[list(columns)].iloc[first].astype(str)
    levels = tuple(parts.agg(":".join, axis=1))
    if len(set(levels)) < len(levels):
        raise ValueError(
            f"grouping factor {':'.join(columns)!r}: distinct combinations of {list(columns)} "
            "get the same label because some labels contain ':' (e.g. 'a:b' + 'c' and "
            "'a' + 'b:c'); replace ':' in those columns' labels."
        )
    return codes, levels


def _term_labels(dm) -> list[str]:
    labels = []
    for term in dm.common.terms.values():
        labels.extend(term.labels)
    return labels


def _check_rank(X: np.ndarray, names: list[str], what: str) -> None:
    """Raise if a column of ``X`` is constant next to an intercept, or a linear combination
    of the columns before it; the error names the column and the columns it depends on.

    Columns are scaled to unit length, so the test does not depend on their units; one QR
    decomposition, O(N p^2): ``|R_jj|`` is the length of what column j adds to the span of
    the columns before it. Without an intercept a constant column is allowed (it is one).
    """
    n, p = X.shape
    if p == 0:
        return
    if "Intercept" in names:
        for j, name in enumerate(names):
            if name != "Intercept" and np.ptp(X[:, j]) == 0:
                raise ValueError(
                    f"{what} column {name!r} is constant ({X[0, j]:g}) across the rows used; "
                    "remove it from the formula (the intercept already carries a constant)."
                )
    norms = np.linalg.norm(X, axis=0)
    for j, name in enumerate(names):
        if norms[j] == 0:
            raise ValueError(
                f"{what} column {name!r} is zero in every row used; remove it from the formula."
            )
    Xs = X / norms
    R = np.linalg.qr(Xs, mode="r")
    tol = max(n, p) * np.finfo(float).eps * 10
    dependent = np.flatnonzero(np.abs(np.diag(R)) <= tol)
    if dependent.size == 0:
        return
    j = int(dependent[0])
    coef, *_ = np.linalg.lstsq(Xs[:, :j], Xs[:, j], rcond=None)
    partners = [names[k] for k in np.flatnonzero(np.abs(coef) > 1e-6)] or names[:j]
    # coefficients on the user's scale: column j = sum_k c_k column k
    combo = " + ".join(
        f"{coef[k] * norms[j] / norms[k]:.4g} * {names[k]}"
        for k in range(j) if names[k] in partners
    )
    raise ValueError(
        f"{what} column {names[j]!r} is collinear with {partners} ({names[j]} = {combo}); "
        f"their effects cannot be told apart: remove {names[j]!r} or one of {partners} from "
        "the formula."
    )


def _cluster_sort(cluster: np.ndarray, time: np.ndarray | None) -> np.ndarray:
    if time is None:
        return np.argsort(cluster, kind="stable")
    return np.lexsort((time, cluster))


def cluster_layout(cluster: np.ndarray, time: np.ndarray | None, n_clusters: int) -> ClusterLayout:
    """Padded layout of rows already sorted by (cluster, time)."""
    sizes = np.bincount(cluster, minlength=n_clusters)
    width = int(sizes.max()) if sizes.size else 0
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    k = np.arange(cluster.size) - starts[cluster]
    pos = np.full((n_clusters, width), -1, dtype=np.int64)
    pos[cluster, k] = np.arange(cluster.size)
    mask = pos >= 0
    lag = np.zeros((n_clusters, width))
    if time is not None:
        tp = np.zeros((n_clusters, width))
        tp[mask] = time[pos[mask]]
        inner = mask[:, 1:]
        lag[:, 1:] = np.where(inner, tp[:, 1:] - tp[:, :-1], 0.0)
    return ClusterLayout(pos=pos, lag=lag, mask=mask, sizes=sizes)


# --------------------------------------------------------------------------- builder


def correlation_times(frame: pd.DataFrame, corr, where: str = "") -> np.ndarray:
    """The residual correlation's time column as floats, checked: numeric, and integer for
    AR1. ``where`` names the data in messages (e.g. ``" in the new data"``)."""
    t = frame[corr.time]
    if not pd.api.types.is_numeric_dtype(t):
        raise ValueError(f"time column {corr.time!r}{where} must be numeric (dtype {t.dtype}).")
    time = t.to_numpy(dtype=float)
    if corr.integer_times and np.any(time != np.round(time)):
        raise ValueError(
            f"time column {corr.time!r} has non-integer values{where}, which "
            f"{type(corr).__name__} cannot use; "
            "use hb.CAR1 for real-valued, irregular times."
        )
    return time


def build_design(spec: ModelSpec, data: pd.DataFrame, na_action: str = "drop", *,
                 check_support: bool = True) -> Design:
    """Validate ``data`` against ``spec`` and build the :class:`Design`.

    Parameters
    ----------
    spec : ModelSpec
    data : pandas.DataFrame
    na_action : {"drop", "raise"}
        Rows with missing values in used columns are dropped with a warning that counts
        them (``"drop"``), or raise an error (``"raise"``).
    check_support : bool
        Check the response against the family's support; :func:`hierbayes.simulate` turns it
        off for its placeholder response (the one it is about to draw).

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.spec.formula import parse
    >>> d = build_design(parse("y ~ time + (1 + time | id)"), hb.datasets.load("clark_ar1"))
    >>> d.X.shape, d.groups[0].Z.shape, d.groups[0].n_levels
    ((10000, 2), (10000, 2), 2500)
    """
    _check_arguments(data, na_action)
    n_input = len(data)
    cols = _check_columns(spec, data)
    # only the used columns, in the user's row order: what a saved fit needs to rebuild this
    data = data.loc[:, cols].reset_index(drop=True)
    clean, kept = _rows_used(data, cols, na_action)
    y, trials, levels = _response(spec, clean, check_support)  # an ordered response's own dtype
    clean = _categories_in_user_order(clean)
    cens = censoring.build(spec, clean, y)
    _check_finite(spec, clean, cols)
    X, coef_names, common = _fixed_effects(spec, clean)
    factors = _group_factors(spec, clean)
    dpars = _dpar_blocks(spec, clean)
    _check_structure(spec, factors, dpars)
    order, clusters = _cluster_order(spec, clean, factors)
    groups = tuple(
        GroupBlock(
            name=f.name, levels=f.levels, index=f.codes[order], Z=f.Z[order], terms=f.terms,
            term_matrices=f.term_matrices, correlated=f.correlated,
        )
        for f in factors
    )
    return Design(
        spec=spec,
        y=y[order],
        X=X[order],
        fixed_names=tuple(coef_names),
        groups=groups,
        rows=kept[order],
        n_input_rows=n_input,
        n_dropped=n_input - len(clean),
        correlation=spec.correlation,
        time=clusters.time,
        cluster=clusters.cluster,
        cluster_levels=clusters.levels,
        layout=clusters.layout,
        occasions=clusters.occasions,
        common_terms=common,
        trials=None if trials is None else trials[order],
        source=data,
        dpars={k: DparBlock(k, b.X[order], b.names, b.link, b.terms) for k, b in dpars.items()},
        response_levels=levels,
        censoring=None if cens is None else cens.take(order),
    )


def _check_arguments(data, na_action: str) -> None:
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if na_action not in ("drop", "raise"):
        raise ValueError(f"na_action must be 'drop' or 'raise', got {na_action!r}.")
    if len(data) == 0:
        raise ValueError("data is empty: it has no rows to fit.")


def _rows_used(data: pd.DataFrame, cols: list[str], na_action: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows without missing values in the used columns (counted and reported by
    :func:`_drop_missing`), re-indexed, and their positions in the user's data."""
    clean = _drop_missing(data, cols, na_action)
    if len(clean) == 0:
        raise ValueError("no rows are left after removing rows with missing values.")
    return clean.reset_index(drop=True), clean.index.to_numpy()


def _response(spec: ModelSpec, clean: pd.DataFrame, check_support: bool = True):
    """The response (and binomial trials) as floats, checked against the family's support,
    and the level labels of an ordered response (its codes 0 .. K-1 in ``y``; ``()`` for
    other families and for :func:`hierbayes.simulate`'s placeholder)."""
    y_raw = clean[spec.response]
    if spec.family.ordered_response:
        if not check_support:
            return np.zeros(len(clean)), None, ()
        y, levels = spec.family.encode(y_raw, spec.response)
        return y, None, levels
    binary = spec.family.name == "bernoulli" and pd.api.types.is_bool_dtype(y_raw)
    if not binary and (
        not pd.api.types.is_numeric_dtype(y_raw) or pd.api.types.is_bool_dtype(y_raw)
    ):
        raise ValueError(
            f"response column {spec.response!r} is not numeric (dtype {y_raw.dtype}); the "
            f"{spec.family.name} family needs {spec.family.support}: convert it with "
            "pd.to_numeric or choose a numeric column."
        )
    y = y_raw.to_numpy(dtype=float)
    trials = None
    if spec.trials is not None:
        t_raw = clean[spec.trials]
        if not pd.api.types.is_numeric_dtype(t_raw) or pd.api.types.is_bool_dtype(t_raw):
            raise ValueError(
                f"trials column {spec.trials!r} is not numeric (dtype {t_raw.dtype}); it must "
                "hold the number of trials of each row."
            )
        trials = t_raw.to_numpy(dtype=float)
    if check_support:
        spec.family.validate(y, spec.response, trials)
    elif trials is not None:
        spec.family.validate(np.zeros_like(trials), spec.response, trials)  # the trials' checks
    return y, trials, ()


def _check_finite(spec: ModelSpec, clean: pd.DataFrame, cols: list[str]) -> None:
    for c in cols:
        if c != spec.response and pd.api.types.is_numeric_dtype(clean[c]):
            if not np.all(np.isfinite(clean[c].to_numpy(dtype=float))):
                raise ValueError(f"column {c!r} has infinite values; replace or remove them.")


def _categories_in_user_order(clean: pd.DataFrame) -> pd.DataFrame:
    """Every pandas Categorical column with its category order honoured, as R honours a
    factor's level order: the first category is the reference level of treatment contrasts.

    formulae keeps the category order of *ordered* categoricals only and sorts the others
    alphabetically, so each is handed over as an ordered categorical with the user's order
    (ordered-ness changes no contrast in formulae). Categories with no row left (after
    missing-value removal) are dropped, as R's ``droplevels`` does: they would give
    all-zero design columns.
    """
    cats = [c for c in clean.columns if isinstance(clean[c].dtype, pd.CategoricalDtype)]
    if not cats:
        return clean
    out = clean.copy()
    for c in cats:
        out[c] = clean[c].cat.remove_unused_categories().cat.as_ordered()
    return out


def _fixed_effects(spec: ModelSpec, clean: pd.DataFrame):
    """The fixed-effect matrix (full column rank), its column labels and formulae's terms."""
    dm = formulae.design_matrices(spec.fixed, clean, extra_namespace=mundlak.NAMESPACE)
    if dm.common is None:
        raise ValueError(
            f"the formula {spec.formula!r} has no fixed effects; hierbayes needs at least one "
            "(write e.g. 'y ~ 1 + (1 | g)' for a random intercept around a fixed intercept)."
        )
    X = np.asarray(dm.common.design_matrix, dtype=float)
    coef_names = _term_labels(dm)
    if not spec.family.intercept:
        keep = fixed_columns(spec, dm.common)
        X, coef_names = X[:, keep], [coef_names[j] for j in keep]
        try:  # the cut-points act as the intercept: the columns must be free of a constant
            _check_rank(np.column_stack([np.ones(len(X)), X]), ["Intercept", *coef_names],
                        "fixed-effect")
        except ValueError as err:
            raise ValueError(
                f"{err} The {spec.family.name} family's cut-points take the intercept's place "
                "('Intercept' here): write the formula with an intercept (y ~ x, which "
                "hierbayes drops) so that categorical predictors get treatment contrasts."
            ) from None
        return X, coef_names, dm.common
    _check_rank(X, coef_names, "fixed-effect")
    return X, coef_names, dm.common


def fixed_columns(spec: ModelSpec, common) -> np.ndarray:
    """The columns of formulae's fixed-effect matrix (``common``) that the design keeps:
    all, less ``Intercept`` for a family without one (the cumulative family)."""
    labels = [lab for term in common.terms.values() for lab in term.labels]
    return np.array([j for j, lab in enumerate(labels)
                     if spec.family.intercept or lab != "Intercept"], dtype=np.int64)


def _dpar_blocks(spec: ModelSpec, clean: pd.DataFrame) -> dict[str, DparBlock]:
    """Each distributional parameter's design matrix (full column rank), before the sort."""
    out = {}
    for name, rhs in spec.dpars.items():
        dm = formulae.design_matrices(rhs, clean, extra_namespace=mundlak.NAMESPACE)
        if dm.common is None:
            raise ValueError(f"{name}={rhs!r} has no terms; write e.g. '~ 1 + Sex'.")
        X = np.asarray(dm.common.design_matrix, dtype=float)
        labels = _term_labels(dm)
        bad = ~np.isfinite(X).all(axis=0)
        if bad.any():  # varPower's np.log(np.abs(x)) at x = 0
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{name}={rhs!r}: column {labels[j]!r} is not finite in "
                f"{int((~np.isfinite(X[:, j])).sum())} row(s) (e.g. the log of 0); remove or "
                "shift those values (np.log(np.abs(x) + c)) or drop the rows."
            )
        _check_rank(X, labels, f"{name}-formula")
        out[name] = DparBlock(name, X, tuple(labels), spec.family.dpar_links[name], dm.common)
    return out


@dataclass(frozen=True)
class _Factor:
    """One grouping factor before the cluster sort: its terms merged over group terms."""

    name: str
    levels: tuple
    codes: np.ndarray
    Z: np.ndarray
    terms: tuple[str, ...]
    term_matrices: tuple
    correlated: bool


def _group_factors(spec: ModelSpec, clean: pd.DataFrame) -> list[_Factor]:
    """Group terms merged per factor (terms of one factor are correlated unless any of its
    terms is written with ``||``), each with its level codes and full-rank ``Z``."""
    blocks: dict[str, dict] = {}
    for gt in spec.group_terms:
        gdm = formulae.design_matrices(gt.expr, clean, extra_namespace=mundlak.NAMESPACE)
        Zt = np.asarray(gdm.common.design_matrix, dtype=float)
        labels = _term_labels(gdm)
        b = blocks.setdefault(
            gt.name, {"cols": gt.factor_columns, "Z": [], "terms": [], "dms": [], "corr": True}
        )
        b["dms"].append(gdm.common)
        b["corr"] = b["corr"] and gt.correlated
        for j, lab in enumerate(labels):
            if lab in b["terms"]:
                raise ValueError(f"term {lab!r} appears twice for grouping factor {gt.name!r}.")
            b["Z"].append(Zt[:, j])
            b["terms"].append(lab)
    factors = []
    for name, b in blocks.items():
        codes, levels = _factor_codes(clean, b["cols"])
        if len(levels) < 2:
            raise ValueError(
                f"grouping factor {name!r} has a single level ({levels[0]!r}); random effects "
                "need at least two groups: remove the group term or check the column."
            )
        Z = np.column_stack(b["Z"])
        _check_rank(Z, b["terms"], f"random-effect (| {name})")
        factors.append(_Factor(name, levels, codes, Z, tuple(b["terms"]), tuple(b["dms"]), b["corr"]))
    return factors


@dataclass(frozen=True)
class _Clusters:
    """The clusters rows are sorted by (the correlation's group, else the largest factor)."""

    cluster: np.ndarray | None = None
    levels: tuple = ()
    time: np.ndarray | None = None
    layout: ClusterLayout | None = None
    occasions: tuple = ()


def _check_structure(spec: ModelSpec, factors: list, dpars: dict) -> None:
    """Refuse what a dense correlation (compound symmetry, unstructured, ARMA) cannot take:
    a non-Gaussian family, a random intercept on the same group where it is not identified
    (``aliases_intercept``: not for ARMA), a sigma formula next to an sd per occasion."""
    corr = spec.correlation
    if corr is None or not corr.dense:
        return
    name = type(corr).__name__
    if not spec.family.collapsible:
        raise ValueError(
            f"hb.{name} is a residual correlation of the gaussian family; the {spec.family.name} "
            f"family has no residuals to correlate: use a random intercept (1 | {corr.group}) "
            "for exchangeable within-cluster dependence, or family='gaussian'."
        )
    for f in factors if getattr(corr, "aliases_intercept", True) else ():
        if f.name == corr.group and "Intercept" in f.terms:
            raise ValueError(
                f"hb.{name}(group={corr.group!r}) with a random intercept on {corr.group!r} is not "
                f"identified: the within-cluster residual correlation and the intercept variance "
                f"describe the same dependence: drop the (1 | {corr.group}) term, or the "
                f"correlation (slopes without an intercept, (0 + x | {corr.group}), are fine)."
            )
    if getattr(corr, "sd_by_occasion", False) and "sigma" in dpars:
        raise ValueError(
            "hb.Unstructured(sd_by_occasion=True) already gives each occasion its own residual "
            "sd; drop sigma=... or pass sd_by_occasion=False."
        )


def correlation_keys(frame: pd.DataFrame, corr, cluster: np.ndarray, occasions: tuple = (),
                     where: str = "") -> tuple[np.ndarray, tuple]:
    """The per-row key a residual correlation orders and relates rows by, and the occasion
    labels: times (AR1/CAR1, :func:`correlation_times`); the row's position within its
    cluster (CompSymm); the occasion's code among ``occasions`` (Unstructured; the sorted
    distinct values of the fitted data when ``occasions`` is empty)."""
    if corr.kind == "compsymm":
        pos = pd.Series(cluster).groupby(cluster, sort=False).cumcount().to_numpy(float)
        return pos, ()
    if corr.kind != "unstructured":  # AR1, CAR1, ARMA
        return correlation_times(frame, corr, where), ()
    if not occasions:
        codes, occasions = _factor_codes(frame, (corr.time,))
        if len(occasions) > MAX_OCCASIONS:
            raise ValueError(
                f"hb.Unstructured: {corr.time!r} has {len(occasions)} distinct values; an "
                f"unstructured correlation takes at most {MAX_OCCASIONS} occasions "
                f"({MAX_OCCASIONS * (MAX_OCCASIONS - 1) // 2} correlations). Use hb.AR1 or "
                "hb.CAR1 for many occasions, or bin them."
            )
        if len(occasions) < 2:
            raise ValueError(f"hb.Unstructured: {corr.time!r} has a single value; it needs "
                             "at least two occasions (drop the correlation).")
        return codes.astype(float), occasions
    pos = {v: i for i, v in enumerate(occasions)}
    labels = frame[corr.time].astype(str).to_numpy()
    unknown = sorted(set(labels) - set(pos))
    if unknown:
        raise ValueError(f"occasion(s) {unknown[:5]} of {corr.time!r}{where} were not in the "
                         f"fitted data (its occasions are {list(occasions)}).")
    return np.array([pos[v] for v in labels], dtype=float), occasions


def _cluster_order(spec: ModelSpec, clean: pd.DataFrame, factors: list[_Factor]):
    """The row order (by cluster, then time) and the sorted clusters with their padded
    layout; times within a cluster must be distinct under a residual correlation."""
    corr = spec.correlation
    time = cluster = None
    cluster_levels: tuple = ()
    occasions: tuple = ()
    if corr is not None:
        cluster, cluster_levels = _factor_codes(clean, (corr.group,))
        time, occasions = correlation_keys(clean, corr, cluster)
    elif factors:
        largest = max(factors, key=lambda f: len(f.levels))
        cluster, cluster_levels = largest.codes, largest.levels
    if cluster is None:
        return np.arange(len(clean)), _Clusters()
    order = _cluster_sort(cluster, time)
    cluster = cluster[order]
    if time is not None:
        time = time[order]
        _check_distinct_times(cluster, time, cluster_levels, corr)
        _check_spacing(cluster, time, corr)
    layout = cluster_layout(cluster, time, len(cluster_levels))
    return order, _Clusters(cluster, cluster_levels, time, layout, occasions)


def _check_distinct_times(cluster, time, cluster_levels, corr) -> None:
    dup = (np.diff(cluster) == 0) & (np.diff(time) == 0)
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        what = "occasion" if corr.kind == "unstructured" else "time"
        raise ValueError(
            f"duplicated {what} {time[i]:g} in cluster {cluster_levels[cluster[i]]!r} of "
            f"{corr.group!r} ({int(dup.sum())} duplicates in all); times within a "
            f"cluster must be distinct for {type(corr).__name__}."
        )


def _check_spacing(cluster, time, corr) -> None:
    """Warn (:class:`~hierbayes.spec.correlation.PhiSignWarning`) when the times leave the
    sign of ``phi`` unidentified (AR(1) with every gap a multiple of an even spacing)."""
    why = corr.sign_alias(time_spacing(cluster, time))
    if why:
        warnings.warn(f"{type(corr).__name__} residual correlation: {why}.", PhiSignWarning,
                      stacklevel=5)
