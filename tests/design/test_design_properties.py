"""Property-based tests (hypothesis) of the design stage: for any row order, any level labels
(strings, strings with spaces, integers, categoricals), unbalanced clusters, gaps in time and
missing values, the design maps back to the user's rows exactly, and it does not depend on
the order of the input rows."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from hierbayes.spec.correlation import AR1, CAR1
from hierbayes.design.build import build_design
from hierbayes.spec.formula import parse

PROPS = settings(max_examples=40, deadline=None, derandomize=True, database=None)

LABELS = {
    "int": st.integers(-10**6, 10**6),
    "text": st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=6),
    "spaces": st.lists(st.sampled_from(["a", "b", " ", "x y"]), min_size=1, max_size=4).map("".join),
}


@st.composite
def frames(draw):
    """A long-format frame: clusters ``g`` with drawn labels and sizes, distinct times ``t``
    with gaps (integers, or reals for CAR1), predictors, response; rows in a drawn order,
    a drawn index, and a few missing values."""
    kind = draw(st.sampled_from(sorted(LABELS)))
    labels = draw(st.lists(LABELS[kind], min_size=2, max_size=6, unique_by=str))
    corr = draw(st.sampled_from([None, "ar1", "car1"]))
    rows = []
    for lab in labels:
        size = draw(st.integers(1, 5))
        if corr == "car1":
            t = draw(st.lists(st.floats(0, 50, allow_nan=False).map(lambda v: round(v, 3)),
                              min_size=size, max_size=size, unique=True))
        else:
            t = draw(st.lists(st.integers(-5, 40), min_size=size, max_size=size, unique=True))
        rows += [(lab, float(tt)) for tt in t]
    n = len(rows)
    order = draw(st.permutations(range(n)))
    df = pd.DataFrame([rows[i] for i in order], columns=["g", "t"])
    if kind == "int":
        df["g"] = df["g"].astype(np.int64)
    elif draw(st.booleans()):
        df["g"] = df["g"].astype("category")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    df["x"] = rng.normal(size=n)
    df["y"] = rng.normal(size=n)
    # missing values only in repeated rows of a cluster: every cluster keeps a row
    spare = np.flatnonzero(df["g"].duplicated().to_numpy())
    n_missing = draw(st.integers(0, min(2, spare.size)))
    df.loc[rng.choice(spare, size=n_missing, replace=False), "x"] = np.nan
    index = draw(st.sampled_from(["range", "shuffled", "strings"]))
    if index == "shuffled":
        df.index = rng.permutation(n) * 3 + 11
    elif index == "strings":
        df.index = [f"row {i}" for i in rng.permutation(n)]
    correlation = {"ar1": AR1("t", "g"), "car1": CAR1("t", "g"), None: None}[corr]
    return df, correlation


def _build(df, correlation):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dropped-rows warning
        return build_design(parse("y ~ x + (1 + x | g)", correlation=correlation), df)


def _sorted_labels(values: pd.Series) -> list[str]:
    """The user's distinct labels in the order a model lists them (the values' own order:
    numbers numerically, strings by code point, categoricals by category), as strings."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return [str(c) for c in values.cat.categories if c in set(values)]
    return [str(v) for v in sorted(set(values))]


@PROPS
@given(frames())
def test_design_maps_back_to_user_rows(case):
    df, correlation = case
    d = _build(df, correlation)
    kept = np.flatnonzero(df["x"].notna().to_numpy())
    # every kept user row once, dropped ones never
    assert d.n_input_rows == len(df) and d.n == kept.size and d.n_dropped == len(df) - kept.size
    np.testing.assert_array_equal(np.sort(d.rows), kept)
    # values and labels of each design row are those of its user row
    np.testing.assert_array_equal(d.y, df["y"].to_numpy()[d.rows])
    np.testing.assert_array_equal(d.X[:, 1], df["x"].to_numpy()[d.rows])
    g = d.group("g")
    user_labels = df["g"].astype(str).to_numpy()
    np.testing.assert_array_equal(np.asarray(g.levels, dtype=object)[g.index], user_labels[d.rows])
    assert list(g.levels) == _sorted_labels(df["g"].iloc[kept])
    np.testing.assert_array_equal(np.asarray(d.cluster_levels, dtype=object)[d.cluster], user_labels[d.rows])
    # back to the user's order, NaN where a row was dropped
    expect = np.where(df["x"].notna(), df["y"].to_numpy(), np.nan)
    np.testing.assert_array_equal(d.to_user_order(d.y), expect)
    # the padded layout: each cluster's slots are its user rows, in time order
    lay = d.layout
    for c, lab in enumerate(d.cluster_levels):
        mine = kept[user_labels[kept] == lab]
        slots = d.rows[lay.pos[c, : lay.sizes[c]]]
        assert sorted(slots) == sorted(mine)
        if correlation is not None:
            t = df["t"].to_numpy()[slots]
            assert np.all(np.diff(t) > 0)
            np.testing.assert_array_equal(lay.lag[c, 1 : lay.sizes[c]], np.diff(t))


@PROPS
@given(frames(), st.randoms(use_true_random=False))
def test_design_does_not_depend_on_row_order(case, rnd):
    df, correlation = case
    if correlation is None:
        # without times, rows keep the input order within a cluster; give them one
        correlation = AR1("t", "g") if np.all(df["t"] == np.round(df["t"])) else CAR1("t", "g")
    perm = list(range(len(df)))
    rnd.shuffle(perm)
    a, b = _build(df, correlation), _build(df.iloc[perm], correlation)
    for attr in ("y", "X", "time", "cluster"):
        np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert a.group("g").levels == b.group("g").levels
    # the same design row comes from the same user row, however the rows were ordered
    np.testing.assert_array_equal(np.asarray(perm)[b.rows], a.rows)
