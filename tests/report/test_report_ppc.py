"""Posterior predictive figures that suit the response: bars for 0/1 and binomial data, a
rootogram for counts, densities only for continuous families."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hierbayes.report import plot_ppc, plot_ppc_bars, value_frequencies  # noqa: E402
from hierbayes.report.plots import ppc_caption  # noqa: E402


def _xrange(fig):
    ax = fig.axes[0]
    xs = [np.asarray(line.get_xdata(), float) for line in ax.lines if len(line.get_xdata())]
    return min(x.min() for x in xs), max(x.max() for x in xs)


def test_binary_ppc_shows_shares_not_a_density_beyond_0_and_1():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(float)
    rep = (rng.random((60, 400)) < 0.3).astype(float)
    fig = plot_ppc(y, rep, "bernoulli")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches]
    assert heights == pytest.approx([1 - y.mean(), y.mean()])
    lo, hi = _xrange(fig)
    assert lo >= 0 and hi <= 1  # nothing drawn outside the support
    assert ax.get_ylabel() == "share of rows"
    tab = value_frequencies(y, rep)
    share1 = rep.mean(axis=1)
    assert tab.loc[1, "replicated"] == pytest.approx(share1.mean())
    assert tab.loc[1, "lower"] == pytest.approx(np.quantile(share1, 0.03))
    assert tab.loc[1, "upper"] == pytest.approx(np.quantile(share1, 0.97))
    assert "share of rows" in ppc_caption("binomial")


def test_counts_get_a_rootogram_and_continuous_data_a_density():
    rng = np.random.default_rng(1)
    y = rng.poisson(1.5, 300).astype(float)
    rep = rng.poisson(1.5, (50, 300)).astype(float)
    fig = plot_ppc(y, rep, "poisson")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "sqrt(frequency)"
    tab = value_frequencies(y, rep)
    assert list(tab.index) == list(range(int(y.max()) + 1))
    obs = np.sqrt(tab["observed"].to_numpy() * y.size)
    assert [p.get_height() for p in ax.patches] == pytest.approx(obs)
    # hanging bars: each hangs from the replicated point
    bottoms = [p.get_y() for p in ax.patches]
    assert bottoms == pytest.approx(np.sqrt(tab["median"] * y.size) - obs)
    assert tab.attrs["tail"] and ax.get_xticklabels()[-1].get_text().endswith("+")
    dens = plot_ppc(rng.normal(size=200), rng.normal(size=(10, 200)), "gaussian")
    assert len(dens.axes[0].lines) == 11 and not dens.axes[0].patches
    with pytest.raises(ValueError, match="kind"):
        plot_ppc_bars(y, rep, kind="kde")


def test_fit_plot_ppc_of_a_bernoulli_fit_draws_bars():
    from fake_fits import fake_fit, frame

    import hierbayes as hb

    df = frame(n_ids=6)
    df["y"] = (df["y"] > 0.3).astype(float)
    fit = fake_fit(hb.Model("y ~ x + (1 | id)", df, family="bernoulli"))
    fig = fit.plot_ppc(n_draws=20)
    assert len(fig.axes[0].patches) == 2
    assert [p.get_height() for p in fig.axes[0].patches] == pytest.approx(
        [1 - df["y"].mean(), df["y"].mean()])
