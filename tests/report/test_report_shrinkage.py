"""Cluster coefficients (absorption of cluster-level fixed effects) and shrinkage,
on fake posteriors where the right answer is known."""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest

from hierbayes.design.build import build_design
from hierbayes.report import (
    absorption_matrix,
    cluster_coefficient_draws,
    cluster_coefficients,
    cluster_ols,
    hdi_bounds,
    shrinkage_by_size,
    shrinkage_frame,
    shrinkage_table,
)
from hierbayes.spec.formula import parse

FORMULA = "y ~ time * treatment + x + age + (1 + time | id)"


def _data(seed: int = 0, n_ids: int = 30) -> pd.DataFrame:
    """Ids with 2..7 rows (sizes vary), cluster-level treatment and age, row-level x."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_ids):
        n = 3 + i % 6  # 3..8 rows
        treated = "yes" if i % 2 else "no"
        age = float(20 + i)
        for t in range(n):
            rows.append({"id": f"i{i:02d}", "time": float(t), "treatment": treated, "age": age})
    df = pd.DataFrame(rows)
    df["x"] = rng.normal(size=len(df))
    df["y"] = (
        1
        + 0.5 * df["time"]
        + rng.normal(size=len(df))
        + np.repeat(rng.normal(size=n_ids), df.groupby("id").size().to_numpy())
    )
    return df


def _idata(design, beta_draws, b_draws, level_order=None):
    """Fake posterior with the fit's naming convention (chains x draws from the arrays)."""
    g = design.groups[0]
    levels = list(g.levels) if level_order is None else [g.levels[i] for i in level_order]
    b = b_draws if level_order is None else b_draws[:, :, level_order]
    return az.from_dict(
        posterior={"beta": beta_draws, "b_id": b, "sigma": np.ones(beta_draws.shape[:2])},
        dims={"beta": ["coef"], "b_id": ["id", "id__term"]},
        coords={"coef": list(design.fixed_names), "id": levels, "id__term": list(g.terms)},
    )


@pytest.fixture(scope="module")
def design():
    return build_design(parse(FORMULA), _data())


def test_absorption_matrix_known(design):
    assert design.fixed_names == (
        "Intercept",
        "time",
        "treatment[yes]",
        "time:treatment[yes]",
        "x",
        "age",
    )
    A = absorption_matrix(design)
    g = design.groups[0]
    treated = np.array([int(lv[1:]) % 2 for lv in g.levels], dtype=float)
    age = np.array([20.0 + int(lv[1:]) for lv in g.levels])
    expected = np.zeros((g.n_levels, 2, 6))
    expected[:, 0, 0] = 1  # intercept
    expected[:, 0, 2] = treated  # treatment joins the intercept of treated ids
    expected[:, 0, 5] = age  # a cluster-level covariate joins the intercept
    expected[:, 1, 1] = 1  # time slope
    expected[:, 1, 3] = treated  # time:treatment joins the slope of treated ids
    np.testing.assert_array_equal(A, expected)  # x (row-level) is absorbed nowhere


def test_undetermined_multiplier_is_nan_with_warning():
    df = _data()
    extra = pd.DataFrame(
        {
            "id": ["z0", "z1"],
            "time": [0.0, 0.0],
            "treatment": ["yes", "no"],
            "age": [50.0, 51.0],
            "x": [0.1, 0.2],
            "y": [1.0, 2.0],
        }
    )
    d = build_design(parse(FORMULA), pd.concat([df, extra], ignore_index=True))
    with pytest.warns(UserWarning, match="2 cluster coefficient"):
        A = absorption_matrix(d)
    z = [d.groups[0].levels.index("z0"), d.groups[0].levels.index("z1")]
    # time into time is 1 in every cluster, so the time-0-only clusters get 1 too
    assert (A[z, 1, 1] == 1).all()
    # the interaction's share in a cluster never observed at time != 0 is unknown
    assert np.isnan(A[z, 1, 3]).all()
    assert (A[z, 0, 2] == [1, 0]).all()


def test_cluster_coefficient_draws_match_nlme_coef(design):
    rng = np.random.default_rng(1)
    g = design.groups[0]
    beta = rng.normal(size=(2, 50, 6))
    b = rng.normal(size=(2, 50, g.n_levels, 2))
    perm = rng.permutation(g.n_levels)  # posterior stored in another level order
    draws = cluster_coefficient_draws(_idata(design, beta, b, perm), design)
    assert draws.dims == ("chain", "draw", "level", "term")
    assert list(draws["level"].values) == list(g.levels)
    # independent reference: coef() written out per cluster from the data
    df = _data().groupby("id").first()
    treated = (df.loc[list(g.levels), "treatment"] == "yes").to_numpy(float)
    age = df.loc[list(g.levels), "age"].to_numpy()
    j = {name: [k] for k, name in enumerate(design.fixed_names)}
    intercept = (
        beta[..., j["Intercept"]]
        + treated * beta[..., j["treatment[yes]"]]
        + age * beta[..., j["age"]]
        + b[..., 0]
    )
    slope = beta[..., j["time"]] + treated * beta[..., j["time:treatment[yes]"]] + b[..., 1]
    np.testing.assert_allclose(draws.sel(term="Intercept").values, intercept, rtol=1e-12)
    np.testing.assert_allclose(draws.sel(term="time").values, slope, rtol=1e-12)


def test_cluster_coefficients_summary(design):
    rng = np.random.default_rng(2)
    g = design.groups[0]
    idata = _idata(design, rng.normal(size=(2, 200, 6)), rng.normal(size=(2, 200, g.n_levels, 2)))
    tab = cluster_coefficients(idata, design, hdi_prob=0.9)
    assert list(tab.columns) == ["mean", "sd", "hdi_5%", "hdi_95%"]
    assert tab.index.names == ["id", "term"] and len(tab) == 2 * g.n_levels
    draws = cluster_coefficient_draws(idata, design).sel(level="i07", term="time").values.ravel()
    row = tab.loc[("i07", "time")]
    assert row["mean"] == pytest.approx(draws.mean()) and row["sd"] == pytest.approx(
        draws.std(ddof=1)
    )
    np.testing.assert_allclose([row["hdi_5%"], row["hdi_95%"]], az.hdi(draws, hdi_prob=0.9))


def test_hdi_bounds_matches_arviz():
    x = np.random.default_rng(3).gamma(2.0, size=(1001, 3))
    lo, hi = hdi_bounds(x, 0.8)
    for k in range(3):
        np.testing.assert_allclose([lo[k], hi[k]], az.hdi(x[:, k], hdi_prob=0.8))


def test_mismatched_posterior_labels_raise(design):
    g = design.groups[0]
    idata = az.from_dict(
        posterior={"beta": np.zeros((1, 5, 6)), "b_id": np.zeros((1, 5, g.n_levels, 2))},
        dims={"beta": ["coef"], "b_id": ["id", "id__term"]},
        coords={
            "coef": list(design.fixed_names),
            "id": [f"other{i}" for i in range(g.n_levels)],
            "id__term": list(g.terms),
        },
    )
    with pytest.raises(ValueError, match="do not match the design"):
        cluster_coefficient_draws(idata, design)
    no_b = az.from_dict(
        posterior={"beta": np.zeros((1, 5, 6))},
        dims={"beta": ["coef"]},
        coords={"coef": list(design.fixed_names)},
    )
    with pytest.raises(KeyError, match="b_id"):
        cluster_coefficient_draws(no_b, design)


def _shrunk_idata(design, lam: np.ndarray, seed: int = 4):
    """Posterior whose cluster means sit exactly at pop + (1 - lam) (ols - pop)."""
    rng = np.random.default_rng(seed)
    g = design.groups[0]
    beta_mean = np.array([1.0, 0.5, -0.4, 0.1, 0.2, 0.01])
    beta = beta_mean + rng.normal(scale=0.1, size=(2, 100, 6))
    beta += beta_mean - beta.mean(axis=(0, 1))
    pop = np.einsum("ckj,j->ck", absorption_matrix(design), beta_mean)
    ols = cluster_ols(design)[list(g.terms)].to_numpy()
    target = (1 - lam) * (ols - pop)
    noise = rng.normal(scale=0.3, size=(2, 100, g.n_levels, 2))
    b = target + noise - noise.mean(axis=(0, 1))
    return _idata(design, beta, b), ols, pop


def test_known_shrinkage_factor_depends_on_size(design):
    n = cluster_ols(design)["n"].to_numpy()
    lam = np.repeat((1.0 / (1.0 + n))[:, None], 2, axis=1)  # smaller clusters shrink more
    idata, ols, pop = _shrunk_idata(design, lam)
    fr = shrinkage_frame(idata, design)
    assert fr.index.names == ["id", "term"]
    np.testing.assert_allclose(fr["shrinkage"].to_numpy(), lam.ravel(), rtol=1e-8)
    np.testing.assert_allclose(fr["population"].to_numpy(), pop.ravel(), rtol=1e-10)
    tab = shrinkage_table(idata, design)
    post = pop + (1 - lam) * (ols - pop)
    for k, term in enumerate(["Intercept", "time"]):
        row = tab.loc[term]
        assert row["n_clusters"] == 30
        # spread around each cluster's population value, not the raw variance
        assert row["var_ols"] == pytest.approx(np.mean((ols[:, k] - pop[:, k]) ** 2))
        assert row["var_posterior"] == pytest.approx(np.mean((post[:, k] - pop[:, k]) ** 2))
        assert row["var_ratio"] * row["corr_dev"] ** 2 == pytest.approx((1 - row["shrinkage"]) ** 2)
        assert row["median_factor"] == pytest.approx(np.median(lam[:, k]))
        assert row["corr_size"] < -0.9  # ties in n are broken by rounding noise
        assert 0 < row["shrinkage"] < 1
    by = shrinkage_by_size(fr)
    assert list(by.index.get_level_values("size")[:6]) == ["3", "4", "5", "6", "7", "8"]
    for s in range(3, 9):
        assert by.loc[("time", str(s)), "shrinkage"] == pytest.approx(1 / (1 + s))
        assert by.loc[("time", str(s)), "n_clusters"] == 5


@pytest.mark.parametrize("lam", [0.0, 1.0, 0.4, 0.21])
def test_constant_shrinkage(design, lam):
    """One factor for every cluster: shrinkage lambda and variance ratio (1 - lambda)^2,
    although the population values differ between clusters (treatment, age)."""
    idata, ols, pop = _shrunk_idata(design, np.full((30, 2), lam))
    assert np.ptp(pop[:, 0]) > 0.5
    tab = shrinkage_table(idata, design)
    np.testing.assert_allclose(tab["shrinkage"], lam, atol=1e-10)
    np.testing.assert_allclose(tab["var_ratio"], (1 - lam) ** 2, atol=1e-10)
    if lam < 1:
        np.testing.assert_allclose(tab["corr_dev"], 1.0)
    else:  # complete pooling: posterior means are the population values
        np.testing.assert_allclose(tab["var_posterior"], 0.0, atol=1e-20)


def test_clusters_without_ols_are_kept_but_not_used(design):
    df = _data()
    df = pd.concat(
        [
            df,
            pd.DataFrame(
                {
                    "id": ["solo"],
                    "time": [1.0],
                    "treatment": ["no"],
                    "age": [30.5],
                    "x": [0.0],
                    "y": [0.0],
                }
            ),
        ],
        ignore_index=True,
    )
    d = build_design(parse(FORMULA), df)
    rng = np.random.default_rng(5)
    idata = _idata(d, rng.normal(size=(1, 20, 6)), rng.normal(size=(1, 20, 31, 2)))
    with pytest.warns(UserWarning, match="1 of 31 levels"):
        fr = shrinkage_frame(idata, d)
    assert fr.loc["solo"]["ols"].isna().all() and fr.loc["solo"]["posterior"].notna().all()
    tab = shrinkage_table(idata, d, frame=fr)
    assert (tab["n_clusters"] == 30).all()
