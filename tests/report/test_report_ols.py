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


# ------------------------------------------------- lmList(y ~ t | id) and per-cluster GLMs


def _trend_data(seed=0, n_ids=30):
    """y = a_c + 0.5 t + noise, t varying within clusters around cluster-specific levels."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n_ids)
    rows = []
    for i in range(n_ids):
        start = rng.uniform(0, 10)
        for t in start + np.arange(6):
            rows.append({"id": f"i{i:02d}", "t": t, "x": rng.normal()})
    df = pd.DataFrame(rows)
    level = df["id"].str[1:].astype(int).to_numpy()
    df["y"] = a[level] + 0.5 * df["t"] + 0.01 * rng.normal(size=len(df))
    return df, dict(zip([f"i{i:02d}" for i in range(n_ids)], a))


def test_within_varying_fixed_columns_enter_every_cluster_fit():
    """In y ~ t + (1 | id) the per-cluster intercept is lm(y ~ t)'s, not the mean of y."""
    df, a = _trend_data()
    d = build_design(parse("y ~ t + (1 | id)"), df)
    ols = cluster_ols(d)
    assert ols.attrs["adjusted_for"] == ["t"] and (ols["status"] == "ok").all()
    for label, part in df.groupby("id"):
        Z = np.column_stack([np.ones(len(part)), part["t"]])
        coef, *_ = np.linalg.lstsq(Z, part["y"].to_numpy(), rcond=None)
        assert ols.loc[label, "Intercept"] == pytest.approx(coef[0], rel=1e-9, abs=1e-9)
        assert ols.loc[label, "Intercept"] == pytest.approx(a[label], abs=0.2)
        assert abs(part["y"].mean() - a[label]) > 1.0  # the raw mean is far off
    # a random slope without intercept: the fixed intercept enters each cluster's fit
    d0 = build_design(parse("y ~ t + (0 + t | id)"), df)
    ols0 = cluster_ols(d0)
    assert ols0.attrs["adjusted_for"] == ["Intercept"]
    np.testing.assert_allclose(ols0["t"], 0.5, atol=0.05)


def test_cluster_constant_extra_columns_are_left_out_of_that_cluster():
    df, _ = _trend_data()
    df["x"] = df["id"].str[1:].astype(int) % 3  # constant within clusters: absorbed
    d = build_design(parse("y ~ t + x + (1 + t | id)"), df)
    ols = cluster_ols(d)
    assert ols.attrs["adjusted_for"] == [] and (ols["status"] == "ok").all()


def _binary(seed=0, n=400):
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=0.8, size=8)
    rows = []
    for i, ai in enumerate(a):
        x = rng.normal(size=n)
        p = 1 / (1 + np.exp(-(ai + 0.7 * x)))
        rows += [{"id": f"c{i}", "x": xx, "y": float(yy)} for xx, yy in zip(x, rng.random(n) < p)]
    rows += [{"id": "zero", "x": rng.normal(), "y": 0.0} for _ in range(10)]
    rows += [{"id": "one", "x": rng.normal(), "y": 1.0} for _ in range(10)]
    xs = rng.normal(size=20)
    rows += [{"id": "sep", "x": xx, "y": float(xx > 0)} for xx in xs]
    return pd.DataFrame(rows), dict(zip([f"c{i}" for i in range(8)], a))


def _logistic_mle(part):
    from scipy import optimize

    X = np.column_stack([np.ones(len(part)), part["x"]])
    y = part["y"].to_numpy()

    def nll(b):
        eta = X @ b
        return np.sum(np.logaddexp(0, eta) - y * eta)

    return optimize.minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-10}).x


def test_bernoulli_clusters_are_fitted_by_irls_with_counted_statuses():
    df, a = _binary()
    d = build_design(parse("y ~ x + (1 | id)", family="bernoulli"), df)
    with pytest.warns(UserWarning, match=r"3 of 11 levels of 'id' have NaN coefficients"):
        ols = cluster_ols(d)
    assert ols.attrs["method"] == "IRLS (logit link)" and ols.attrs["adjusted_for"] == ["x"]
    assert ols.loc["zero", "status"] == "all 0" and ols.loc["one", "status"] == "all 1"
    assert ols.loc["sep", "status"] == "separation"
    assert ols.loc[["zero", "one", "sep"], "Intercept"].isna().all()
    counts = ols.attrs["status_counts"]
    assert counts["ok"] == 8 and counts["all 0"] == counts["all 1"] == counts["separation"] == 1
    for label in a:
        part = df[df["id"] == label]
        assert ols.loc[label, "Intercept"] == pytest.approx(_logistic_mle(part)[0], abs=1e-5)
        assert abs(ols.loc[label, "Intercept"] - a[label]) < 4 * ols.loc[label, "Intercept_se"]
    # intercept only: the MLE is the logit of the cluster's proportion (not +-1.0986)
    d1 = build_design(parse("y ~ 1 + (1 | id)", family="bernoulli"), df[df["id"].isin(list(a))])
    ols1 = cluster_ols(d1)
    p = df[df["id"].isin(list(a))].groupby("id")["y"].mean()
    np.testing.assert_allclose(ols1.loc[p.index, "Intercept"], np.log(p / (1 - p)), rtol=1e-8)


def test_binomial_and_poisson_clusters():
    rng = np.random.default_rng(3)
    n = rng.integers(1, 6, size=60)
    df = pd.DataFrame({"id": np.repeat(["a", "b", "c"], 20), "n": n})
    df["k"] = rng.binomial(df["n"], np.repeat([0.2, 0.5, 0.8], 20))
    d = build_design(parse("k | trials(n) ~ 1 + (1 | id)", family="binomial"), df)
    ols = cluster_ols(d)
    s = df.groupby("id")[["k", "n"]].sum()
    np.testing.assert_allclose(ols["Intercept"], np.log(s["k"] / (s["n"] - s["k"])), rtol=1e-8)
    counts = pd.DataFrame({"id": np.repeat(["a", "b", "none"], 15)})
    counts["y"] = np.r_[rng.poisson(2.0, 15), rng.poisson(6.0, 15), np.zeros(15)]
    d = build_design(parse("y ~ 1 + (1 | id)", family="poisson"), counts)
    with pytest.warns(UserWarning, match="1 with every response 0"):
        ols = cluster_ols(d)
    m = counts.groupby("id")["y"].mean()
    np.testing.assert_allclose(ols.loc[["a", "b"], "Intercept"], np.log(m[["a", "b"]]), rtol=1e-8)
    assert ols.loc["none", "status"] == "all 0" and np.isnan(ols.loc["none", "Intercept"])
    np.testing.assert_allclose(ols.loc[["a", "b"], "Intercept_se"], 1 / np.sqrt(15 * m[["a", "b"]]),
                               rtol=1e-6)


def _truncated_poisson_mle(part):
    from scipy import optimize

    pos = part[part["y"] > 0]
    X = np.column_stack([np.ones(len(pos)), pos["x"]])
    y = pos["y"].to_numpy()

    def nll(b):
        eta = X @ b
        return np.sum(np.exp(eta) + np.log(-np.expm1(-np.exp(eta))) - y * eta)

    return optimize.minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-10}).x


def test_hurdle_clusters_fit_the_count_part_and_zero_inflated_ones_say_what_they_fit():
    rng = np.random.default_rng(7)
    df = pd.DataFrame({"id": np.repeat([f"c{i}" for i in range(6)] + ["zeros"], 30),
                       "x": rng.normal(size=210)})
    a = np.r_[rng.normal(1.5, 0.3, 6), 0.0]  # count means ~4.5: the hurdle's bias dominates
    mu = np.exp(a[np.repeat(np.arange(7), 30)] + 0.4 * df["x"].to_numpy())
    y = rng.poisson(mu)
    for i in np.flatnonzero(y == 0):  # a zero-truncated Poisson count part
        while y[i] == 0:
            y[i] = rng.poisson(mu[i])
    y[rng.random(210) < 0.4] = 0  # the hurdle
    y[df["id"] == "zeros"] = 0
    df["y"] = y
    d = build_design(parse("y ~ x + (1 | id)", family="hurdle_poisson"), df)
    with pytest.warns(UserWarning, match="1 with every response 0"):
        ols = cluster_ols(d)
    assert ols.attrs["method"].startswith("IRLS (log link): a zero-truncated Poisson")
    assert ols.loc["zeros", "status"] == "all 0" and np.isnan(ols.loc["zeros", "Intercept"])
    assert (ols["n"] == 30).all()
    for i in range(6):
        part = df[df["id"] == f"c{i}"]
        assert ols.loc[f"c{i}", "Intercept"] == pytest.approx(_truncated_poisson_mle(part)[0], abs=1e-5)
    # the count part's intercepts, which a Poisson GLM of every row misses (the hurdle's zeros)
    plain = cluster_ols(build_design(parse("y ~ x + (1 | id)", family="poisson"), df[df["id"] != "zeros"]))
    err, err_plain = np.abs(ols["Intercept"].iloc[:6] - a[:6]), np.abs(plain["Intercept"] - a[:6])
    assert (err < 3 * ols["Intercept_se"].iloc[:6]).all() and err.mean() < 0.5 * err_plain.mean()
    d = build_design(parse("y ~ x + (1 | id)", family="hurdle_negbinomial"), df)
    with pytest.warns(UserWarning):
        assert "approximate its count part" in cluster_ols(d).attrs["method"]
    d = build_design(parse("y ~ x + (1 | id)", family="zip"), df)
    with pytest.warns(UserWarning):
        zi = cluster_ols(d)
    assert "log E[y] = eta + log(1 - zi)" in zi.attrs["method"]
    np.testing.assert_allclose(zi["Intercept"].iloc[:6], plain["Intercept"], rtol=1e-10)
