"""Diagnostics verdicts on fake posteriors, residual summaries and the lag-1 PPC statistic."""

from __future__ import annotations

import arviz as az
import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from hierbayes.spec.correlation import AR1  # noqa: E402
from hierbayes.design.build import build_design  # noqa: E402
from hierbayes.report import (  # noqa: E402
    diagnose,
    hyper_posterior,
    ppc_lag1_autocorr,
    rank_plot,
    residual_summary,
    standardized_residuals,
    trace_plot,
    verdict_lines,
    within_group_residuals,
)
from hierbayes.spec.formula import parse  # noqa: E402

CHAINS, DRAWS = 4, 1000


def _posterior(seed=0, stuck_sigma=False, stats=None, pymc_names=False):
    """iid normal draws with the fit's naming; ``b_id`` is deliberately unmixed (one chain
    far away), so it must stay out of the default checks."""
    rng = np.random.default_rng(seed)
    sigma = rng.normal(1.0, 0.05, (CHAINS, DRAWS))
    if stuck_sigma:
        sigma[3] += 0.5  # one chain stuck elsewhere
    off = rng.normal(0.1, 0.1, (CHAINS, DRAWS))
    corr = np.ones((CHAINS, DRAWS, 2, 2))
    corr[..., 0, 1] = corr[..., 1, 0] = off
    b = rng.normal(size=(CHAINS, DRAWS, 5, 2))
    b[0] += 10
    if stats is None:
        stats = {
            "diverging": np.zeros((CHAINS, DRAWS), bool),
            "energy": rng.normal(size=(CHAINS, DRAWS)),
            ("reached_max_treedepth" if pymc_names else "maxdepth_reached"): np.zeros(
                (CHAINS, DRAWS), bool
            ),
        }
    return az.from_dict(
        posterior={
            "beta": rng.normal(size=(CHAINS, DRAWS, 3)),
            "sigma": sigma,
            "phi": rng.normal(0.7, 0.02, (CHAINS, DRAWS)),
            "sd_id": np.abs(rng.normal(0.5, 0.05, (CHAINS, DRAWS, 2))),
            "corr_id": corr,
            "b_id": b,
        },
        sample_stats=stats,
        dims={
            "beta": ["coef"],
            "sd_id": ["id__term"],
            "corr_id": ["id__term", "id__term_bis"],
            "b_id": ["id", "id__term"],
        },
        coords={
            "coef": ["Intercept", "time", "treatment[treatment]"],
            "id__term": ["Intercept", "time"],
            "id__term_bis": ["Intercept", "time"],
            "id": list("abcde"),
        },
    )


def _by_check(df):
    return df.set_index("check")


def test_well_mixed_draws_pass_every_check():
    df = diagnose(_posterior())
    assert list(df["check"]) == [
        "R-hat",
        "bulk ESS",
        "tail ESS",
        "MCSE",
        "divergences",
        "E-BFMI",
        "tree depth",
    ]
    assert df["ok"].all(), df[["check", "verdict"]]
    assert (df["advice"] == "").all()
    d = _by_check(df)
    assert d.loc["bulk ESS", "threshold"] == 400 and d.loc["MCSE", "threshold"] == pytest.approx(
        0.05
    )
    assert d.loc["R-hat", "value"] < 1.01
    assert verdict_lines(df).endswith("All checks passed.")


def test_stuck_chain_fails_rhat_and_names_the_variable():
    df = diagnose(_posterior(stuck_sigma=True))
    d = _by_check(df)
    assert not d.loc["R-hat", "ok"] and d.loc["R-hat", "value"] > 1.1
    assert "sigma" in d.loc["R-hat", "verdict"] and "disagree" in d.loc["R-hat", "verdict"]
    assert "longer" in d.loc["R-hat", "advice"]
    assert d.loc["divergences", "ok"]  # sampler checks are unaffected
    text = verdict_lines(df)
    assert "[FAIL] R-hat" in text and "->" in text


def test_default_excludes_random_effects_but_explicit_names_include_them():
    ds = hyper_posterior(_posterior())
    assert set(ds.data_vars) == {"beta", "sigma", "phi", "sd_id", "corr_id"}
    assert list(ds["corr_id"]["corr_id__pair"].values) == ["Intercept, time"]
    np.testing.assert_allclose(
        ds["corr_id"].values[..., 0], _posterior()["posterior"]["corr_id"].values[..., 1, 0]
    )
    d = _by_check(diagnose(_posterior(), var_names=["b_id"]))
    assert not d.loc["R-hat", "ok"]
    with pytest.raises(KeyError, match="not in the posterior"):
        diagnose(_posterior(), var_names=["tau"])


def test_divergences_fail():
    rng = np.random.default_rng(1)
    div = np.zeros((CHAINS, DRAWS), bool)
    div[2, [5, 50, 500]] = True
    stats = {
        "diverging": div,
        "energy": rng.normal(size=(CHAINS, DRAWS)),
        "maxdepth_reached": np.zeros((CHAINS, DRAWS), bool),
    }
    d = _by_check(diagnose(_posterior(stats=stats)))
    assert d.loc["divergences", "value"] == 3 and not d.loc["divergences", "ok"]
    assert "3 of 4000" in d.loc["divergences", "verdict"]
    assert "target_accept" in d.loc["divergences", "advice"]
    assert d.loc["R-hat", "ok"]


def test_low_ebfmi_and_tree_depth_with_pymc_names():
    rng = np.random.default_rng(2)
    energy = rng.normal(size=(CHAINS, DRAWS))
    energy[1] = np.cumsum(rng.normal(size=DRAWS))  # slowly wandering energy in chain 1
    depth = rng.random((CHAINS, DRAWS)) < 0.05
    stats = {
        "diverging": np.zeros((CHAINS, DRAWS), bool),
        "energy": energy,
        "reached_max_treedepth": depth,
    }
    idata = _posterior(stats=stats)
    d = _by_check(diagnose(idata))
    assert not d.loc["E-BFMI", "ok"] and "[1]" in d.loc["E-BFMI", "verdict"]
    assert d.loc["E-BFMI", "value"] == pytest.approx(np.min(az.bfmi(idata)))
    assert not d.loc["tree depth", "ok"] and d.loc["tree depth", "value"] == pytest.approx(
        depth.mean()
    )


def test_missing_sample_stats_are_not_checked():
    idata = az.from_dict(posterior={"sigma": np.random.default_rng(3).normal(1, 0.1, (2, 500))})
    df = diagnose(idata)
    d = _by_check(df)
    assert d.loc["bulk ESS", "threshold"] == 200 and d.loc["R-hat", "ok"]
    for check in ("divergences", "E-BFMI", "tree depth"):
        assert pd.isna(d.loc[check, "ok"]) and d.loc[check, "verdict"].startswith("not checked")
    assert "[--]   divergences: not checked" in verdict_lines(df)


def test_rank_and_trace_plots_return_figures():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    idata = _posterior()
    rank = rank_plot(idata, var_names=["sigma", "corr_id"])
    assert isinstance(rank, Figure)
    # one panel per scalar hyperparameter: the correlation's diagonal (all ones) is left out
    assert [a.get_title() for a in rank.axes] == ["sigma", "corr_id\nIntercept, time"]
    trace = trace_plot(idata, var_names=["phi"])
    assert isinstance(trace, Figure)
    # a density and a trace panel, one line per chain in each
    assert [a.get_title() for a in trace.axes] == ["phi", "phi"]
    assert [len(a.lines) for a in trace.axes] == [CHAINS, CHAINS]
    plt.close("all")  # arviz draws through pyplot


# --------------------------------------------------------------------------- residuals


def _panel(seed=0, n_ids=300, T=6, phi=0.7):
    rng = np.random.default_rng(seed)
    e = np.empty((n_ids, T))
    e[:, 0] = rng.normal(size=n_ids)
    for t in range(1, T):
        e[:, t] = phi * e[:, t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=n_ids)
    df = pd.DataFrame({"id": np.repeat(np.arange(n_ids), T), "time": np.tile(np.arange(T), n_ids)})
    df["y"] = 0.3 + 0.2 * df["time"] + np.repeat(rng.normal(size=n_ids), T) + e.ravel()
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True), e


def test_within_group_residuals_at_posterior_means():
    df, _ = _panel(n_ids=20, T=3)
    d = build_design(parse("y ~ time + (1 + time | id)", correlation=AR1("time", "id")), df)
    rng = np.random.default_rng(4)
    beta = rng.normal(size=(2, 30, 2))
    b = rng.normal(size=(2, 30, 20, 2))
    sigma = np.abs(rng.normal(1.5, 0.1, (2, 30)))
    idata = az.from_dict(
        posterior={"beta": beta, "b_id": b, "sigma": sigma},
        dims={"beta": ["coef"], "b_id": ["id", "id__term"]},
        coords={
            "coef": ["Intercept", "time"],
            "id": list(d.groups[0].levels),
            "id__term": ["Intercept", "time"],
        },
    )
    r = within_group_residuals(idata, d)
    bm, betam = b.mean(axis=(0, 1)), beta.mean(axis=(0, 1))
    # reference in the user's row order, straight from the data frame
    level = df["id"].astype(str).map({lv: i for i, lv in enumerate(d.groups[0].levels)}).to_numpy()
    fitted = betam[0] + betam[1] * df["time"] + bm[level, 0] + bm[level, 1] * df["time"]
    expected = (df["y"] - fitted).to_numpy() / sigma.mean()
    np.testing.assert_allclose(d.to_user_order(r), expected, rtol=1e-10)
    raw = within_group_residuals(idata, d, standardize=False)
    np.testing.assert_allclose(raw / sigma.mean(), r)


def test_residual_summary_like_nlme():
    v = np.random.default_rng(5).normal(size=1001)
    s = residual_summary(np.append(v, np.nan))
    assert list(s.index) == ["Min", "Q1", "Med", "Q3", "Max"]
    np.testing.assert_allclose(s.to_numpy(), np.quantile(v, [0, 0.25, 0.5, 0.75, 1]))
    with pytest.raises(ValueError, match="no finite"):
        residual_summary([np.nan])
    np.testing.assert_allclose(standardized_residuals([2.0, -4.0], 2.0), [1.0, -2.0])
    with pytest.raises(ValueError, match="positive"):
        standardized_residuals([1.0], 0.0)


def test_lag1_autocorrelation_recovers_phi_and_stays_within_clusters():
    df, e = _panel(n_ids=2000, T=6, phi=0.7)
    d = build_design(parse("y ~ time + (1 | id)", correlation=AR1("time", "id")), df)
    # design rows are sorted by (id, time): e in design order is e.ravel() in id order
    order = np.argsort([int(lv) for lv in d.cluster_levels])
    e_design = e[order][d.cluster, np.asarray(d.time, int)]
    assert ppc_lag1_autocorr(e_design, d) == pytest.approx(0.7, abs=0.03)
    iid = np.random.default_rng(6).normal(size=(3, 2, d.n))
    stat = ppc_lag1_autocorr(iid, d)
    assert stat.shape == (3, 2) and np.all(np.abs(stat) < 0.05)
    # a residual constant within each cluster: pairs never cross clusters, so exactly 1
    per_cluster = np.random.default_rng(7).normal(size=len(d.cluster_levels))[d.cluster]
    assert ppc_lag1_autocorr(per_cluster, d) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="design has"):
        ppc_lag1_autocorr(np.zeros(5), d)


def test_one_verdict_for_summary_diagnose_and_report():
    """The summary footer, diagnose() and the report's verdict lines come from one function
    and one set of thresholds: a stuck chain fails all three; few draws fail the ESS rule;
    divergences fail it even when R-hat and ESS pass."""
    from hierbayes.report.diagnostics import THRESHOLDS, convergence_verdict

    rng = np.random.default_rng(5)
    good = az.from_dict(posterior={"sigma": rng.normal(1, 0.1, (4, 500))},
                        sample_stats={"diverging": np.zeros((4, 500), bool)})
    stuck = az.from_dict(posterior={"sigma": np.r_[rng.normal(0, 1, (2, 500)), rng.normal(4, 1, (2, 500))]},
                         sample_stats={"diverging": np.zeros((4, 500), bool)})
    short = az.from_dict(posterior={"sigma": rng.normal(1, 0.1, (4, 60))},
                         sample_stats={"diverging": np.zeros((4, 60), bool)})
    div = np.zeros((4, 500), bool)
    div[0, :3] = True
    diverged = az.from_dict(posterior={"sigma": rng.normal(1, 0.1, (4, 500))},
                            sample_stats={"diverging": div})
    expect = {"good": True, "stuck": False, "short": False, "diverged": False}
    for name, idata in {"good": good, "stuck": stuck, "short": short, "diverged": diverged}.items():
        diag = diagnose(idata)
        v = convergence_verdict(diag)
        assert v.converged is expect[name], name
        footer = v.lines("advice")
        assert footer[1].startswith("  Converged" if v.converged else "  NOT CONVERGED"), name
        assert ("Converged (R-hat" if v.converged else "NOT CONVERGED (") in verdict_lines(diag)
    assert convergence_verdict(diagnose(short)).ess_min == 4 * THRESHOLDS.ess_per_chain
    assert "3 divergences" in convergence_verdict(diagnose(diverged)).problems
