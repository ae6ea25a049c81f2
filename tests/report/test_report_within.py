"""The within (fixed-effects) estimator against least squares with cluster dummies, and the
FE-vs-RE table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fake_fits import fake_fit, frame

import hierbayes as hb
from hierbayes.design.build import build_design
from hierbayes.report import fixed_vs_random, within_estimator
from hierbayes.spec.formula import parse


def _panel(seed=0, n_ids=40, n_t=5, confound=2.0):
    """x varies within id; the id effects u are correlated with the id means of x."""
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(n_ids), n_t)
    xbar = rng.normal(size=n_ids)
    u = confound * xbar + rng.normal(scale=0.3, size=n_ids)
    x = xbar[ids] + rng.normal(size=ids.size)
    sizes = rng.integers(2, n_t + 1, size=n_ids)  # unbalanced: drop late rows
    keep = np.tile(np.arange(n_t), n_ids) < sizes[ids]
    df = pd.DataFrame({"id": ids, "time": np.tile(np.arange(n_t), n_ids), "x": x,
                       "grp": np.where(ids % 2 == 0, "a", "b")})
    df["y"] = 1.0 + 0.5 * df["x"] + 0.2 * df["time"] + u[ids] + rng.normal(size=ids.size)
    return df[keep].sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_within_estimator_equals_least_squares_with_cluster_dummies():
    df = _panel()
    d = build_design(parse("y ~ x + time + grp + (1 | id)"), df)
    w = within_estimator(d)
    assert list(w.index) == ["x", "time"]
    assert w.attrs["absorbed"] == ["Intercept", "grp[b]"]
    # LSDV from the user's frame: one dummy per id plus x, time
    D = pd.get_dummies(df["id"]).to_numpy(dtype=float)
    A = np.column_stack([df["x"], df["time"], D])
    coef, *_ = np.linalg.lstsq(A, df["y"].to_numpy(), rcond=None)
    resid = df["y"].to_numpy() - A @ coef
    n, k = A.shape
    s2 = resid @ resid / (n - k)
    se = np.sqrt(s2 * np.diag(np.linalg.inv(A.T @ A))[:2])
    np.testing.assert_allclose(w["estimate"], coef[:2], rtol=1e-10)
    np.testing.assert_allclose(w["se"], se, rtol=1e-8)
    # cluster-robust (CR1) by hand, cluster by cluster, on the demeaned columns
    Xd = df[["x", "time"]] - df.groupby("id")[["x", "time"]].transform("mean")
    bread = np.linalg.inv(Xd.T.to_numpy() @ Xd.to_numpy())
    meat = np.zeros((2, 2))
    for _, rows in df.groupby("id").groups.items():
        s = Xd.loc[rows].to_numpy().T @ resid[rows]
        meat += np.outer(s, s)
    G, N = df["id"].nunique(), len(df)
    V = G / (G - 1) * (N - 1) / (N - 2) * bread @ meat @ bread
    np.testing.assert_allclose(w["se_cluster"], np.sqrt(np.diag(V)), rtol=1e-8)
    # consistent under cluster effects correlated with x, where pooled OLS is not
    pooled = np.linalg.lstsq(np.column_stack([np.ones(N), df["x"], df["time"]]), df["y"], rcond=None)[0]
    assert abs(w.loc["x", "estimate"] - 0.5) < 3 * w.loc["x", "se_cluster"]
    assert abs(pooled[1] - 0.5) > 5 * w.loc["x", "se_cluster"]


def test_within_estimator_needs_a_time_varying_column():
    df = frame()
    df["z"] = df["id"].map({f"s{k}": float(k) for k in range(6)})
    d = build_design(parse("y ~ z + (1 | id)"), df)
    with pytest.raises(ValueError, match="no fixed-effect column varies within clusters of 'id'"):
        within_estimator(d)


def test_fe_vs_re_table_reads_the_posterior():
    df = _panel(confound=0.0)
    fit = fake_fit(hb.Model("y ~ x + time + grp + (1 | id)", df), draws=100)
    res = fit.fe_vs_re()
    t = res.table
    assert list(t.index) == ["x", "time"]
    beta = fit.posterior["beta"]
    assert t.loc["x", "mixed_mean"] == pytest.approx(float(beta.sel(coef="x").mean()))
    assert t.loc["time", "mixed_sd"] == pytest.approx(float(beta.sel(coef="time").std()))
    np.testing.assert_allclose(t["z"], (t["within"] - t["mixed_mean"]) / t["within_se"])
    text = repr(res)
    assert "Mundlak" in text and "cluster mean" in text
    assert "['Intercept', 'grp[b]']" in text
    # fake posterior means are random normals: far from the within estimates -> flagged
    assert ("|z| > 2" in text) == bool((t["z"].abs() > 2).any())
