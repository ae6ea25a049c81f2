"""The HTML report of a real fit, rendered by headless Chromium (issue 19): the page loads
with no console message (its one script logs an error for any figure the browser cannot
decode), and the screenshot is not blank. `.ci/run` installs Debian's chromium; without it
the browser test skips and says so."""

from __future__ import annotations

import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib import image  # noqa: E402

import hierbayes as hb  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (.ci/run installs Debian's chromium)")


def render(page, tmp_path, width=1200, height=2400):
    """Screenshot of ``page`` and the console messages Chromium logged while loading it."""
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
           "--v=0", f"--window-size={width},{height}", f"--screenshot={shot}",
           page.resolve().as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    console = [line for line in out.stderr.splitlines() if ":CONSOLE" in line]
    return image.imread(shot), console


def not_blank(pixels) -> bool:
    """More than 2% of the pixels differ from white and the page has more than 20 colours."""
    rgb = np.asarray(pixels)[..., :3]
    ink = np.any(rgb < 0.95, axis=-1).mean()
    colours = np.unique((rgb.reshape(-1, 3) * 255).astype(np.uint8), axis=0).shape[0]
    return ink > 0.02 and colours > 20


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    data = hb.datasets.load("clark_ar1")
    ids = data["id"].unique()
    data = data[data["id"].isin([*ids[:15], *ids[-15:]])].reset_index(drop=True)
    model = hb.Model("y ~ time + treatment + (1 + time | id)", data)
    fit = model.fit(draws=200, tune=200, chains=2, seed=3, progressbar=False)
    return fit.report(tmp_path_factory.mktemp("report"))


def test_report_holds_loo_caterpillar_trace_and_rank(report):
    html = report.read_text()
    assert "Leave-one-out cross-validation (PSIS-LOO)" in html and "elpd_loo" in html
    for caption in ("Random effects of id", "Trace plots", "Rank plots"):
        assert caption in html
    assert (report.parent / "trace_plots_of_the_hyperparameters.png").exists()


@needs_chromium
def test_report_renders_in_chromium(report, tmp_path):
    pixels, console = render(report, tmp_path)
    assert console == []
    assert not_blank(pixels)


@needs_chromium
def test_browser_check_sees_a_broken_figure_and_a_blank_page(report, tmp_path):
    """The checks above can fail: a figure that cannot be decoded is a console error, an
    empty page is blank."""
    broken = tmp_path / "broken.html"
    broken.write_text(report.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    _, console = render(broken, tmp_path / "a")
    assert any("figure did not render" in line for line in console)
    empty = tmp_path / "empty.html"
    empty.write_text("<!DOCTYPE html><html><body></body></html>")
    pixels, console = render(empty, tmp_path / "b")
    assert console == [] and not not_blank(pixels)
