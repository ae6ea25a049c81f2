"""Per-cluster OLS (lmList) against numpy.linalg.lstsq, cluster by cluster."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest

from hierbayes.spec.correlation import AR1
from hierbayes.datasets import load
from hierbayes.design.build import build_design
from hierbayes.report import cluster_ols
from hierbayes.spec.formula import parse


def _random_data(seed: int = 1, n_ids: int = 40) -> pd.DataFrame:
    """Clusters of 1..7 rows with random times; id 'a' has 1 row, 'b' a constant time
    (rank deficient), 'c' two rows at distinct times (no residual df)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_ids):
        n = int(rng.integers(3, 8))
        t = rng.choice(10, size=n, replace=False)
        rows += [{"id": f"g{i:02d}", "time": float(tt)} for tt in t]
    rows += [{"id": "a", "time": 2.0}]
    rows += [{"id": "b", "time": 3.0}] * 3
    rows += [{"id": "c", "time": 1.0}, {"id": "c", "time": 4.0}]
    df = pd.DataFrame(rows)
    df["y"] = 1.0 + 0.3 * df["time"] + rng.normal(size=len(df))
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # rows shuffled


def _lstsq_reference(df: pd.DataFrame, label: str):
    part = df[df["id"] == label]
    Z = np.column_stack([np.ones(len(part)), part["time"].to_numpy()])
    y = part["y"].to_numpy()
    coef, _, rank, _ = np.linalg.lstsq(Z, y, rcond=None)
    resid = y - Z @ coef
    dof = len(y) - 2
    se = np.sqrt(resid @ resid / dof * np.diag(np.linalg.inv(Z.T @ Z))) if dof > 0 else None
    return coef, se, rank


@pytest.fixture(scope="module")
def random_fit():
    df = _random_data()
    d = build_design(parse("y ~ time + (1 + time | id)"), df)
    with pytest.warns(UserWarning, match=r"2 of 43 levels of 'id' have NaN coefficients"):
        ols = cluster_ols(d)
    return df, d, ols


def test_matches_lstsq_per_cluster(random_fit):
    df, _, ols = random_fit
    n_checked = 0
    for label, row in ols.iterrows():
        if row["status"] not in ("ok", "no residual df"):
            continue
        coef, se, rank = _lstsq_reference(df, label)
        assert rank == 2
        np.testing.assert_allclose(
            row[["Intercept", "time"]].to_numpy(float), coef, rtol=1e-9, atol=1e-10
        )
        if se is None:
            assert np.isnan(row["Intercept_se"]) and np.isnan(row["time_se"])
        else:
            np.testing.assert_allclose(
                row[["Intercept_se", "time_se"]].to_numpy(float), se, rtol=1e-8
            )
            n_checked += 1
        assert row["n"] == (df["id"] == label).sum()
    assert n_checked == 40


def test_degenerate_clusters_are_nan_and_counted(random_fit):
    _, _, ols = random_fit
    assert ols.loc["a", "status"] == "too few rows"
    assert ols.loc["b", "status"] == "rank deficient"
    assert ols.loc["c", "status"] == "no residual df"
    assert ols.loc[["a", "b"], ["Intercept", "time", "Intercept_se", "time_se"]].isna().all().all()
    assert np.isfinite(ols.loc["c", ["Intercept", "time"]].to_numpy(float)).all()
    assert ols.attrs["n_nan"] == 2 and ols.attrs["n_nan_se"] == 3
    assert ols.attrs["status_counts"] == {
        "ok": 40,
        "no residual df": 1,
        "too few rows": 1,
        "rank deficient": 1,
    }
    # nothing dropped: one row per level, labelled, in the design's level order
    assert len(ols) == 43 and ols.index.name == "id"
    assert list(ols.columns) == ["Intercept", "Intercept_se", "time", "time_se", "n", "status"]


def test_rank_check_ignores_column_units():
    df = _random_data(seed=3)
    df = df[~df["id"].isin(["a", "b", "c"])].copy()
    df["time"] = df["time"] * 1e6
    d = build_design(parse("y ~ time + (1 + time | id)"), df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ols = cluster_ols(d)
    assert (ols["status"] == "ok").all()
    coef, _, _ = _lstsq_reference(df, "g00")
    np.testing.assert_allclose(
        ols.loc["g00", ["Intercept", "time"]].to_numpy(float), coef, rtol=1e-7
    )


def test_seed_data_is_fast_and_exact():
    df = load("clark_ar1")
    d = build_design(
        parse("y ~ time + treatment + (1 + time | id)", correlation=AR1("time", "id")), df
    )
    t0 = time.perf_counter()
    ols = cluster_ols(d)
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, f"cluster_ols took {elapsed:.2f} s for 2,500 clusters"
    assert ols.shape == (2500, 6) and (ols["status"] == "ok").all()
    part = df[df["id"] == 1737]
    Z = np.column_stack([np.ones(len(part)), part["time"]])
    coef = np.linalg.lstsq(Z, part["y"].to_numpy(), rcond=None)[0]
    np.testing.assert_allclose(
        ols.loc["1737", ["Intercept", "time"]].to_numpy(float), coef, rtol=1e-9
    )


def test_group_errors():
    df = _random_data()
    d = build_design(parse("y ~ time + (1 + time | id)"), df)
    with pytest.raises(KeyError, match="no grouping factor 'school'"):
        cluster_ols(d, group="school")
    d0 = build_design(parse("y ~ time"), df)
    with pytest.raises(ValueError, match="no grouping factor"):
        cluster_ols(d0)
