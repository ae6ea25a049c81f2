"""Design: arrays in cluster/time order, the map back to the user's rows, the padded
layout, and validation errors that name the column to fix."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hierbayes.spec.correlation import AR1, CAR1
from hierbayes.design.build import build_design, cluster_layout
from hierbayes.spec.formula import parse

FAST = settings(max_examples=30, deadline=None, derandomize=True, database=None)


@pytest.fixture()
def df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    d = pd.DataFrame(
        {
            "g": np.repeat(list("edcba"), 4),
            "t": np.tile([0.0, 1.0, 3.0, 4.0], 5),
            "x": rng.normal(size=20),
            "y": rng.normal(size=20),
        }
    )
    return d.sample(frac=1.0, random_state=1)  # shuffled, index not 0..n-1


def _build(formula, data, correlation=None, **kw):
    return build_design(parse(formula, correlation=correlation), data, **kw)


# ----------------------------------------------------------------------- row order


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    times=st.sampled_from([None, "ar1", "car1"]),
    n_missing=st.integers(0, 3),
)
def test_rows_map_back_to_user_order(ref, seed, times, n_missing):
    rng = np.random.default_rng(seed)
    df = ref.random_frame(rng, n_clusters=int(rng.integers(3, 7)), min_size=2, times=times)
    if n_missing:
        hit = rng.choice(len(df), size=n_missing, replace=False)
        df.iloc[hit, df.columns.get_loc("x")] = np.nan
    corr = {"ar1": AR1("t", "g"), "car1": CAR1("t", "g"), None: None}[times]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = _build("y ~ x + w + (1 + x | g)", df, corr)
    user_y = df["y"].to_numpy()
    # every design row is a user row, each kept row once, the dropped ones absent
    assert d.n_input_rows == len(df) and d.n_dropped == n_missing
    kept = np.flatnonzero(df["x"].notna().to_numpy())
    np.testing.assert_array_equal(np.sort(d.rows), kept)
    np.testing.assert_array_equal(d.y, user_y[d.rows])
    np.testing.assert_array_equal(d.X[:, 1], df["x"].to_numpy()[d.rows])
    np.testing.assert_array_equal(d.X[:, 2], df["w"].to_numpy()[d.rows])
    g = d.group("g")
    np.testing.assert_array_equal(g.Z[:, 1], df["x"].to_numpy()[d.rows])
    np.testing.assert_array_equal(np.asarray(g.levels)[g.index], df["g"].to_numpy()[d.rows])
    # round trip to the user's order, NaN where a row was dropped
    back = d.to_user_order(d.y)
    expect = np.where(df["x"].notna(), user_y, np.nan)
    np.testing.assert_array_equal(back, expect)
    stacked = d.to_user_order(np.stack([d.y, 2 * d.y]), axis=1)
    np.testing.assert_array_equal(stacked, np.stack([expect, 2 * expect]))
    stacked0 = d.to_user_order(np.stack([d.y, -d.y], axis=1), axis=0)
    np.testing.assert_array_equal(stacked0, np.stack([expect, -expect], axis=1))
    # sorted by cluster (label order), then by time within cluster
    assert np.all(np.diff(d.cluster) >= 0)
    assert list(d.cluster_levels) == sorted(df["g"][df["x"].notna()].unique())
    if times is not None:
        same = np.diff(d.cluster) == 0
        assert np.all(np.diff(d.time)[same] > 0)
        np.testing.assert_array_equal(d.time, df["t"].to_numpy()[d.rows])


@FAST
@given(seed=st.integers(0, 2**32 - 1), times=st.sampled_from(["ar1", "car1"]))
def test_padded_layout_with_gaps(ref, seed, times):
    rng = np.random.default_rng(seed)
    df = ref.random_frame(rng, n_clusters=int(rng.integers(2, 7)), max_size=6, times=times)
    corr = AR1("t", "g") if times == "ar1" else CAR1("t", "g")
    d = _build("y ~ x + (1 | g)", df, corr)
    lay = d.layout
    sizes = df.groupby("g").size()
    assert lay.n_clusters == len(sizes) and lay.width == sizes.max()
    np.testing.assert_array_equal(lay.sizes, sizes.loc[list(d.cluster_levels)].to_numpy())
    np.testing.assert_array_equal(lay.mask, lay.pos >= 0)
    np.testing.assert_array_equal(lay.mask.sum(axis=1), lay.sizes)
    for c, lab in enumerate(d.cluster_levels):
        part = df[df["g"] == lab]
        t = np.sort(part["t"].to_numpy())
        n = len(t)
        rows = lay.pos[c, :n]
        assert np.all(lay.pos[c, n:] == -1)
        # the k-th slot is the k-th observation in time, the user's row of that time
        np.testing.assert_array_equal(d.time[rows], t)
        np.testing.assert_array_equal(d.y[rows], part.set_index("t").loc[t, "y"].to_numpy())
        expect_lag = np.zeros(lay.width)
        expect_lag[1:n] = np.diff(t)
        np.testing.assert_allclose(lay.lag[c], expect_lag, rtol=0, atol=1e-12)
    padded = lay.pad(d.y, fill=-99.0)
    np.testing.assert_array_equal(padded[lay.mask], d.y[lay.pos[lay.mask]])
    assert np.all(padded[~lay.mask] == -99.0)
    assert lay.pad(d.X).shape == lay.pos.shape + (d.p,)


def test_cluster_layout_by_hand():
    cluster = np.array([0, 0, 0, 1, 2, 2])
    time = np.array([0.0, 2.0, 5.0, 7.0, 1.0, 2.0])
    lay = cluster_layout(cluster, time, 3)
    np.testing.assert_array_equal(lay.pos, [[0, 1, 2], [3, -1, -1], [4, 5, -1]])
    np.testing.assert_array_equal(lay.lag, [[0, 2, 3], [0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(lay.sizes, [3, 1, 2])
    no_time = cluster_layout(cluster, None, 3)
    assert np.all(no_time.lag == 0)


def test_without_correlation_clusters_are_the_largest_factor(df):
    df = df.assign(h=np.where(np.arange(len(df)) % 2, "u", "v"))
    d = _build("y ~ x + (1 | h) + (1 | g)", df)
    assert d.cluster_levels == d.group("g").levels  # 5 levels beat 2
    assert np.all(np.diff(d.cluster) >= 0)
    np.testing.assert_array_equal(d.cluster, d.group("g").index)
    assert d.layout is not None and d.correlation is None and d.time is None


def test_nested_factor_levels(df):
    df = df.assign(school=df["g"].map({"a": "s1", "b": "s1", "c": "s2", "d": "s2", "e": "s3"}))
    d = _build("y ~ x + (1 | school/g)", df)
    inner = d.group("school:g")
    assert inner.n_levels == 5 and inner.levels[0] == "s1:a"
    user = df.iloc[d.rows]
    np.testing.assert_array_equal(
        np.asarray(inner.levels)[inner.index], (user["school"] + ":" + user["g"]).to_numpy()
    )
    assert d.group("school").n_levels == 3
    with pytest.raises(KeyError, match="'nope'"):
        d.group("nope")


def test_integer_group_labels_are_strings(df):
    df = df.assign(g=df["g"].map({"a": 10, "b": 2, "c": 3, "d": 4, "e": 5}))
    d = _build("y ~ x + (1 | g)", df, AR1("t", "g"))
    assert d.group("g").levels == ("2", "3", "4", "5", "10")  # numeric sort, then str
    assert d.cluster_levels == d.group("g").levels


# ----------------------------------------------------------------------- errors


def test_unknown_column_is_named(df):
    with pytest.raises(KeyError, match="'z'"):
        _build("y ~ x + z + (1 | g)", df)
    with pytest.raises(KeyError, match="'when'"):
        _build("y ~ x + (1 | g)", df, AR1("when", "g"))


@pytest.mark.parametrize("dtype", [str, bool])
def test_non_numeric_response(df, dtype):
    df = df.assign(y=(df["y"] > 0).astype(dtype))
    with pytest.raises(ValueError, match="response column 'y' is not numeric"):
        _build("y ~ x + (1 | g)", df)


def test_missing_values_warn_with_count(df):
    df = df.copy()
    df.iloc[[1, 5], df.columns.get_loc("x")] = np.nan
    df.iloc[7, df.columns.get_loc("y")] = np.nan
    df.iloc[9, df.columns.get_loc("t")] = np.nan  # 't' is not used without correlation
    with pytest.warns(UserWarning, match=r"dropped 3 of 20 rows.*'x': 2.*'y': 1"):
        d = _build("y ~ x + (1 | g)", df)
    assert d.n == 17 and d.n_dropped == 3 and d.n_input_rows == 20
    with pytest.raises(ValueError, match=r"missing values.*'x': 2.*3 rows"):
        _build("y ~ x + (1 | g)", df, na_action="raise")
    with pytest.warns(UserWarning, match=r"dropped 4 of 20.*'t': 1"):
        _build("y ~ x + (1 | g)", df, AR1("t", "g"))


def test_missing_everywhere_and_bad_na_action(df):
    with pytest.raises(ValueError, match="no rows are left"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _build("y ~ x + (1 | g)", df.assign(y=np.nan))
    with pytest.raises(ValueError, match="na_action"):
        _build("y ~ x + (1 | g)", df, na_action="omit")


def test_infinite_values_are_named(df):
    bad_y = df.copy()
    bad_y.iloc[3, bad_y.columns.get_loc("y")] = np.inf
    with pytest.raises(ValueError, match="'y' has infinite values"):
        _build("y ~ x + (1 | g)", bad_y)
    bad_x = df.copy()
    bad_x.iloc[3, bad_x.columns.get_loc("x")] = -np.inf
    with pytest.raises(ValueError, match="'x' has infinite values"):
        _build("y ~ x + (1 | g)", bad_x)


def test_single_level_grouping_factor(df):
    with pytest.raises(ValueError, match="grouping factor 'g' has a single level"):
        _build("y ~ x + (1 | g)", df.assign(g="a"))


def test_duplicated_times_for_ar1(df):
    df = df.copy()
    rows_b = np.flatnonzero(df["g"].to_numpy() == "b")
    df.iloc[rows_b[:2], df.columns.get_loc("t")] = 3.0
    with pytest.raises(ValueError, match=r"duplicated time 3 in cluster 'b' of 'g'"):
        _build("y ~ x + (1 | g)", df, AR1("t", "g"))
    with pytest.raises(ValueError, match="duplicated time"):
        _build("y ~ x + (1 | g)", df, CAR1("t", "g"))
    _build("y ~ x + (1 | g)", df)  # without a correlation duplicates are fine


def test_non_integer_times_for_ar1_suggest_car1(df):
    df = df.copy()
    df.iloc[2, df.columns.get_loc("t")] = 2.5
    with pytest.raises(ValueError, match=r"time column 't' has non-integer.*CAR1"):
        _build("y ~ x + (1 | g)", df, AR1("t", "g"))
    d = _build("y ~ x + (1 | g)", df, CAR1("t", "g"))
    assert 2.5 in d.time


def test_non_integer_large_times_for_ar1(df):
    df = df.assign(t=df["t"] + 1000.0)
    df.iloc[2, df.columns.get_loc("t")] += 0.003
    with pytest.raises(ValueError, match=r"time column 't' has non-integer.*CAR1"):
        _build("y ~ x + (1 | g)", df, AR1("t", "g"))


def test_non_numeric_time(df):
    with pytest.raises(ValueError, match="time column 't' must be numeric"):
        _build("y ~ x + (1 | g)", df.assign(t=df["t"].astype(str)), AR1("t", "g"))


def test_empty_data_and_wrong_type(df):
    with pytest.raises(ValueError, match="empty"):
        _build("y ~ x + (1 | g)", df.iloc[:0])
    with pytest.raises(TypeError, match="DataFrame"):
        _build("y ~ x + (1 | g)", df.to_dict())


def test_constant_predictor_is_named(df):
    with pytest.raises(ValueError, match="column 'c' is constant"):
        _build("y ~ x + c + (1 | g)", df.assign(c=2.0))


def test_collinear_predictor_is_named(df):
    with pytest.raises(ValueError, match=r"column 'x2' is collinear with \['Intercept', 'x'\]"):
        _build("y ~ x + x2 + (1 | g)", df.assign(x2=2 * df["x"] + 1))
