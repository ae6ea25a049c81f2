"""A self-contained HTML report: summary text, tables, and figures embedded as PNG.

Independent of how the content was produced: pass text, DataFrames and matplotlib
figures. Every figure is also written next to the report as a PNG file.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import re
from pathlib import Path

import pandas as pd

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; }
h1 { border-bottom: 2px solid #1b9e77; padding-bottom: .2em; }
h2 { margin-top: 1.6em; color: #1b6e57; }
pre { background: #f6f8fa; padding: 1em; overflow-x: auto; font-size: 90%; }
table { border-collapse: collapse; font-size: 90%; margin: .5em 0; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f0f0f0; }
td:last-child, td:nth-last-child(2) { text-align: left; }
figure { margin: 1em 0; }
figure img { max-width: 100%; }
figcaption { font-size: 90%; color: #555; }
.meta { color: #777; font-size: 85%; }
"""

# the page's only script: a figure the browser cannot decode is a console error, so that a
# broken report is visible to a headless browser (tests/report/test_report_browser.py)
_CHECK_FIGURES = (
    '<script>window.addEventListener("load", function () {'
    ' for (const img of document.images) {'
    ' if (!(img.complete && img.naturalWidth > 0)) {'
    ' console.error("figure did not render: " + img.alt); } } });</script>'
)


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()
    return s or "figure"


def _png_bytes(fig, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def write_report(
    out_dir,
    summary_text: str,
    tables: dict[str, pd.DataFrame] | None = None,
    figures: dict | None = None,
    title: str = "hierbayes report",
    dpi: int = 110,
    float_format: str = "{:.4g}",
) -> Path:
    """Write ``report.html`` (figures embedded as base64 PNG) and one PNG per figure.

    Parameters
    ----------
    out_dir : str or path-like
        Output folder, created if needed; existing files of the same names are replaced.
    summary_text : str
        Preformatted text shown first (e.g. the model summary and diagnostic verdicts).
    tables : dict of str to pandas.DataFrame, optional
        Section title -> table, in order.
    figures : dict of str to matplotlib.figure.Figure, optional
        Caption -> figure, in order; each is saved as ``<slug of caption>.png``.
    title : str
    dpi : int
        Resolution of the PNG files.
    float_format : str
        Format of floating-point table cells.

    Returns
    -------
    pathlib.Path
        Path of ``report.html``.

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> from matplotlib.figure import Figure
    >>> fig = Figure(); _ = fig.subplots().plot([0, 1], [1, 0])
    >>> out = write_report(tempfile.mkdtemp(), "all good", {"t": pd.DataFrame({"a": [1.0]})},
    ...                    {"A line": fig})
    >>> out.name, (out.parent / "a_line.png").exists()
    ('report.html', True)
    """
    tables = dict(tables or {})
    figures = dict(figures or {})
    for name, t in tables.items():
        if not isinstance(t, (pd.DataFrame, pd.Series)):
            raise TypeError(f"table {name!r} must be a pandas DataFrame, got {type(t).__name__}.")
    for name, f in figures.items():
        if not hasattr(f, "savefig"):
            raise TypeError(f"figure {name!r} must be a matplotlib Figure, got {type(f).__name__}.")
    files = {}
    for name in figures:
        stem, k = _slug(name), 2
        base = stem
        while stem in files.values():
            stem, k = f"{base}_{k}", k + 1
        files[name] = stem

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="meta">Written {_dt.datetime.now():%Y-%m-%d %H:%M} by hierbayes.</p>',
        "<h2>Summary</h2>",
        f"<pre>{esc(summary_text)}</pre>",
    ]
    for name, t in tables.items():
        frame = t.to_frame() if isinstance(t, pd.Series) else t
        parts.append(f"<h2>{esc(name)}</h2>")
        parts.append(frame.to_html(float_format=float_format.format, na_rep="NaN", border=0))
    if figures:
        parts.append("<h2>Figures</h2>")
    for name, fig in figures.items():
        png = _png_bytes(fig, dpi)
        fname = f"{files[name]}.png"
        (out / fname).write_bytes(png)
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(name)} ({esc(fname)})</figcaption></figure>"
        )
    parts.append(_CHECK_FIGURES)
    parts.append("</body></html>")
    path = out / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
