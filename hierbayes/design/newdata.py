"""New rows for prediction: the fitted model's design evaluated on new data.

The fixed-effect columns ``X`` and each factor's random-effect columns ``Z`` are evaluated
through the formulae design information kept from fitting (``evaluate_new_data``), so
categorical codings and stateful transforms (``scale(x)``, ``center(x)``) are those of the
fit, not recomputed from the new rows. Cluster labels are matched against the fitted
levels; a level of a fixed-effect categorical predictor the model never saw is an error
that names the column and the level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import formulae
import numpy as np
import pandas as pd

from hierbayes.design.build import Design, correlation_keys, fixed_columns

#: How random effects are used for new rows (see :func:`hierbayes.predict.prediction.predict`).
GROUP_MODES = ("existing", "new", "none")


@dataclass(frozen=True)
class NewGroup:
    """One grouping factor evaluated on the new rows.

    Attributes
    ----------
    name : str
        Grouping factor (as in :class:`~hierbayes.design.build.GroupBlock`).
    labels : ndarray of str, shape (M,)
        Level label of every new row.
    index : ndarray of int, shape (M,)
        Position of the label among the fitted levels, -1 for a level not seen in fitting.
    Z : ndarray, shape (M, q)
        Random-effect design columns of the new rows.
    """

    name: str
    labels: np.ndarray
    index: np.ndarray
    Z: np.ndarray

    @property
    def seen(self) -> np.ndarray:
        return self.index >= 0


@dataclass(frozen=True)
class NewRows:
    """The new data as numeric arrays, in the new data's row order.

    Attributes
    ----------
    X : ndarray, shape (M, p)
        Fixed-effect design columns.
    groups : tuple of NewGroup
        Random-effect blocks (empty when predicting with ``groups="none"``).
    row_labels : pandas.Index
        The new data's index.
    time : ndarray or None
        Times of the residual correlation (None without a correlation, or when the new
        data has no time / cluster column and only population-level predictions are made).
    cluster : ndarray of str or None
        Cluster label of the residual correlation for every row.
    """

    X: np.ndarray
    groups: tuple[NewGroup, ...]
    row_labels: pd.Index
    time: np.ndarray | None = None
    cluster: np.ndarray | None = None
    #: the design matrix of each parameter formula on the new rows (``{"sigma": X}``)
    dpars: dict = field(default_factory=dict)

    @property
    def m(self) -> int:
        return self.X.shape[0]


def _var_names(expr: str) -> set[str]:
    return set(formulae.model_description(expr).var_names) - {""}


def _labels(data: pd.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """Cluster labels as strings, built as :func:`hierbayes.design.build._factor_codes` does."""
    if len(columns) == 1:
        key = data[columns[0]]
    else:
        key = data[list(columns)].astype(str).agg(":".join, axis=1)
    return key.astype(str).to_numpy()


def _check_levels(terms, data: pd.DataFrame, what: str) -> None:
    """Raise naming the column and level when a categorical predictor has unseen levels."""
    for term in terms.values():
        for comp in getattr(term, "components", []):
            levels = getattr(comp, "levels", None)
            if levels is None or getattr(comp, "kind", None) != "categoric":
                continue
            if comp.name not in data.columns:
                continue  # a call such as C(k): formulae's own check runs on evaluation
            new = set(data[comp.name].unique()) - set(levels)
            if new:
                shown = sorted(map(str, new))
                raise ValueError(
                    f"column {comp.name!r} has level(s) {shown} in the new data that the "
                    f"fitted model never saw (fitted levels: {[str(v) for v in levels]}); "
                    f"the {what} has no coefficient for them. Remove those rows or recode "
                    "them to a fitted level (or refit with data that contains them)."
                )


def _evaluate(matrix, data: pd.DataFrame, what: str) -> np.ndarray:
    _check_levels(matrix.terms, data, what)
    try:
        return np.asarray(matrix.evaluate_new_data(data).design_matrix, dtype=float)
    except ValueError as err:
        raise ValueError(
            f"the {what} could not be evaluated on the new data: {err} Remove those rows or "
            "recode them to a level seen in fitting."
        ) from err


def _required_columns(design: Design, groups: str) -> tuple[list[str], list[str]]:
    """(columns that must be present, correlation columns used when present)."""
    spec = design.spec
    need = set(_var_names(spec.fixed)) if design.p else set()
    for rhs in spec.dpars.values():
        need |= _var_names(rhs)
    if groups != "none":
        for gt in spec.group_terms:
            need |= _var_names(gt.expr) | set(gt.factor_columns)
    corr = []
    if design.correlation is not None:
        corr = [c for c in (design.correlation.time, design.correlation.group) if c is not None]
        if groups != "none":
            need |= set(corr)
    need.discard(spec.response)
    return sorted(need), corr


def new_rows(design: Design, data: pd.DataFrame, groups: str = "existing") -> NewRows:
    """Evaluate the fitted model's design on ``data`` (rows to predict).

    Parameters
    ----------
    design : Design
        The fitted model's design.
    data : pandas.DataFrame
        New rows: every predictor of the formula, the grouping columns (unless
        ``groups="none"``) and, with a residual correlation, its time and cluster columns
        (needed unless ``groups="none"``). The response column is not needed.
    groups : {"existing", "new", "none"}
        How random effects will be used; decides which columns are required.

    Returns
    -------
    NewRows

    Raises
    ------
    KeyError
        A required column is missing.
    ValueError
        Missing values in a required column, a level of a fixed-effect categorical
        predictor the model never saw, non-numeric or (AR1) non-integer times, or a time
        repeated within a cluster.

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.spec.formula import parse
    >>> from hierbayes.design.build import build_design
    >>> d = build_design(parse("y ~ time + treatment + (1 + time | id)"), hb.datasets.load("clark_ar1"))
    >>> import pandas as pd
    >>> new = new_rows(d, pd.DataFrame({"id": [1, 99999], "time": [4, 0],
    ...                                 "treatment": ["control", "treatment"]}))
    >>> new.X.tolist(), new.groups[0].index.tolist()
    ([[1.0, 4.0, 0.0], [1.0, 0.0, 1.0]], [0, -1])
    """
    corr_cols = _check_new_data(design, data, groups)
    frame = data.reset_index(drop=True)
    X = _fixed_rows(design, frame)
    new_groups = [] if groups == "none" else [_group_rows(design, g, frame) for g in design.groups]
    time, cluster = _correlation_rows(design, frame, corr_cols)
    dpars = {}
    for k, blk in design.dpars.items():  # the parameter formulas on the new rows
        Xk = _evaluate(blk.terms, frame, f"{k} formula")
        dpars[k] = Xk[:, None] if Xk.ndim == 1 else Xk
    return NewRows(X=X, groups=tuple(new_groups), row_labels=data.index, time=time,
                   cluster=cluster, dpars=dpars)


def _check_new_data(design: Design, data, groups: str) -> list[str]:
    """Refuse what cannot be predicted (not a frame, an unknown mode, no rows, missing
    columns or values); returns the correlation's columns."""
    if not isinstance(data, pd.DataFrame):
        raise TypeError(f"new data must be a pandas DataFrame, got {type(data).__name__}.")
    if groups not in GROUP_MODES:
        raise ValueError(f"groups must be one of {GROUP_MODES}, got {groups!r}.")
    if len(data) == 0:
        raise ValueError("the new data has no rows to predict.")
    need, corr_cols = _required_columns(design, groups)
    missing = [c for c in need if c not in data.columns]
    if missing:
        raise KeyError(_missing_message(design, missing, groups, list(data.columns)))
    nan = {c: int(n) for c, n in data[need].isna().sum().items() if n}
    if nan:
        raise ValueError(
            f"missing values in the new data's columns {nan}; predictions need every "
            "predictor: fill or remove those rows."
        )
    return corr_cols


def _missing_message(design: Design, missing: list[str], groups: str, have: list[str]) -> str:
    """Name the missing columns by role: fixed-effect columns are needed whatever
    ``groups`` is; only for missing cluster/time columns does ``groups='none'`` help."""
    fixed = set(_var_names(design.spec.fixed)) - {design.spec.response} if design.p else set()
    for rhs in design.spec.dpars.values():  # a parameter formula's columns: needed too
        fixed |= _var_names(rhs)
    need_fixed = [c for c in missing if c in fixed]
    other = [c for c in missing if c not in fixed]
    parts = []
    if need_fixed:
        parts.append(f"fixed-effect column(s) {need_fixed} (every prediction needs them)")
    if other:
        why = "" if groups == "none" else (
            "; pass groups='none' for population-level predictions without them")
        parts.append(f"random-effect/cluster column(s) {other}{why}")
    return (f"the new data lacks {' and '.join(parts)}; it has columns {have}.")


def _fixed_rows(design: Design, frame: pd.DataFrame) -> np.ndarray:
    """The fixed-effect matrix of the new rows (the fitted terms, levels and transforms)."""
    if not design.p:
        return np.zeros((len(frame), 0))
    X = _evaluate(design.common_terms, frame, "fixed-effect part of the formula")
    X = X[:, None] if X.ndim == 1 else X
    return X[:, fixed_columns(design.spec, design.common_terms)]


def _group_rows(design: Design, g, frame: pd.DataFrame) -> NewGroup:
    """One factor's random-effect design and level labels on the new rows (index -1 for a
    level the fit never saw)."""
    if not g.term_matrices:
        raise ValueError(
            f"the design of grouping factor {g.name!r} carries no formula information "
            "for new data (a design built by an older hierbayes); refit the model."
        )
    Z = np.column_stack(
        [_evaluate(m, frame, f"group term of {g.name!r}") for m in g.term_matrices]
    )
    cols = next(gt.factor_columns for gt in design.spec.group_terms if gt.name == g.name)
    lab = _labels(frame, cols)
    pos = {level: i for i, level in enumerate(g.levels)}
    index = np.array([pos.get(v, -1) for v in lab], dtype=np.int64)
    return NewGroup(name=g.name, labels=lab, index=index, Z=Z)


def _correlation_rows(design: Design, frame: pd.DataFrame, corr_cols: list[str]):
    """Times and clusters of the new rows for the residual correlation (None when the model
    has none or the new data lack its columns); a (cluster, time) may appear once."""
    corr = design.correlation
    if corr is None or not all(c in frame.columns for c in corr_cols):
        return None, None
    if frame[corr_cols].isna().any().any():
        raise ValueError(f"missing values in the new data's columns {corr_cols}.")
    cluster = _labels(frame, (corr.group,))
    time, _ = correlation_keys(frame, corr, np.asarray(cluster), design.occasions, " in the new data")
    if corr.kind == "compsymm":  # new rows are other rows than the fitted ones: keys < 0
        time = -1.0 - time
    dup = pd.DataFrame({"c": cluster, "t": time}).duplicated()
    if dup.any():
        i = int(np.flatnonzero(dup.to_numpy())[0])
        raise ValueError(
            f"time {time[i]:g} appears twice for cluster {cluster[i]!r} of {corr.group!r} "
            "in the new data; predict each (cluster, time) once."
        )
    return time, cluster
