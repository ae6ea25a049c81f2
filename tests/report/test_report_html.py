"""Figures and the self-contained HTML report."""

from __future__ import annotations

import base64
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hierbayes.report import (  # noqa: E402
    plot_ppc_density,
    plot_shrinkage_arrows,
    plot_shrinkage_densities,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _frame(n_levels=200, seed=0):
    """A shrinkage_frame-like table: OLS spread wide, posterior pulled halfway in."""
    rng = np.random.default_rng(seed)
    levels = [f"L{i:03d}" for i in range(n_levels)]
    idx = pd.MultiIndex.from_product([levels, ["Intercept", "time"]], names=["id", "term"])
    ols = rng.normal(0, 1.0, size=2 * n_levels)
    ols[:2] = np.nan  # first level has no OLS fit
    pop = np.tile([0.2, 0.5], n_levels)
    post = pop + 0.5 * (np.nan_to_num(ols) - pop)
    return pd.DataFrame(
        {
            "n": 4,
            "status": "ok",
            "ols": ols,
            "ols_se": 0.3,
            "posterior": post,
            "population": pop,
            "shrinkage": 0.5,
        },
        index=idx,
    )


def test_shrinkage_densities_one_panel_per_term():
    fig = plot_shrinkage_densities(_frame())
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["Intercept", "time"]
    ols_line, post_line = fig.axes[0].lines
    # the posterior density (shrunk) is taller and narrower than the OLS one
    assert post_line.get_ydata().max() > 1.5 * ols_line.get_ydata().max()
    for line in (ols_line, post_line):  # each integrates to about 1
        x, y = line.get_xdata(), line.get_ydata()
        assert np.sum(y) * (x[1] - x[0]) == pytest.approx(1.0, abs=0.03)
    with pytest.raises(KeyError, match="not in the shrinkage frame"):
        plot_shrinkage_densities(_frame(), terms=["slope"])


def test_shrinkage_arrows_sample_clusters_reproducibly():
    fr = _frame()
    fig = plot_shrinkage_arrows(fr, max_clusters=25, seed=3)
    ax = fig.axes[0]
    assert len(ax.texts) == 25  # one arrow per sampled cluster
    again = plot_shrinkage_arrows(fr, max_clusters=25, seed=3).axes[0]
    ends = lambda a: sorted(t.xy for t in a.texts)  # noqa: E731
    assert ends(ax) == ends(again)
    assert ends(ax) != ends(plot_shrinkage_arrows(fr, max_clusters=25, seed=4).axes[0])
    # arrows end at the posterior means of sampled clusters (the level without OLS is never drawn)
    post = set(np.round(fr.xs("Intercept", level="term")["posterior"].iloc[1:], 12))
    assert {round(x, 12) for x, _ in ends(ax)} <= post
    small = plot_shrinkage_arrows(_frame(n_levels=10), max_clusters=60)
    assert len(small.axes[0].texts) == 9


def test_ppc_density_checks_shapes():
    rng = np.random.default_rng(1)
    fig = plot_ppc_density(rng.normal(size=300), rng.normal(size=(4, 10, 300)), n_draws=20)
    assert len(fig.axes[0].lines) == 21
    with pytest.raises(ValueError, match="last axis"):
        plot_ppc_density(np.zeros(10), np.zeros((3, 9)))


def test_write_report_embeds_figures_and_writes_pngs(tmp_path):
    figs = {
        "Shrinkage densities": plot_shrinkage_densities(_frame()),
        "Shrinkage: arrows": plot_shrinkage_arrows(_frame(), max_clusters=10),
    }
    table = pd.DataFrame({"mean": [0.133, 0.507], "sd": [0.03, 0.009]}, index=["Intercept", "time"])
    out = write_report(
        tmp_path / "rep", "sigma = 0.95 <ok>", {"Fixed effects": table}, figs, title="Seed & fit"
    )
    assert out == tmp_path / "rep" / "report.html"
    text = out.read_text(encoding="utf-8")
    assert text.count("<img") == 2
    assert "<title>Seed &amp; fit</title>" in text and "sigma = 0.95 &lt;ok&gt;" in text
    assert "Fixed effects" in text and "0.507" in text and "<table" in text
    for stem in ("shrinkage_densities", "shrinkage_arrows"):
        png = (tmp_path / "rep" / f"{stem}.png").read_bytes()
        assert png.startswith(PNG_MAGIC)
    # the embedded images are the PNG files themselves: the report needs nothing else
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert (
        base64.b64decode(embedded[0]) == (tmp_path / "rep" / "shrinkage_densities.png").read_bytes()
    )
    assert 'src="http' not in text and "<link" not in text


def test_write_report_rejects_wrong_inputs(tmp_path):
    with pytest.raises(TypeError, match="must be a matplotlib Figure"):
        write_report(tmp_path, "x", {}, {"f": "not a figure"})
    with pytest.raises(TypeError, match="must be a pandas DataFrame"):
        write_report(tmp_path, "x", {"t": [1, 2]}, {})
    # two captions with the same slug get distinct files
    a, b = Figure(), Figure()
    a.subplots(), b.subplots()
    write_report(tmp_path, "x", None, {"A b": a, "a-b": b})
    assert (tmp_path / "a_b.png").exists() and (tmp_path / "a_b_2.png").exists()
