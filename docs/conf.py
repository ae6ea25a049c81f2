"""Sphinx configuration of the hierbayes documentation.

Build: ``sphinx-build -b html docs docs/_build/html`` (``-W --keep-going`` as
tests/test_docs.py does: every warning is an error).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import hierbayes  # noqa: E402

project = "hierbayes"
author = "hierbayes developers"
copyright = "2026, hierbayes developers"
release = hierbayes.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_nb",
]

# notebooks/ is executed by the test run (tests/test_notebooks.py); the site shows them as
# they are stored
nb_execution_mode = "off"
myst_enable_extensions = ["colon_fence", "dollarmath"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()

intersphinx_mapping = {}

html_theme = "pydata_sphinx_theme"
html_title = "hierbayes"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}

exclude_patterns = ["_build", "**.ipynb_checkpoints", "api/generated/*.md"]
templates_path = ["_templates"]

# The gallery: the executed notebooks of notebooks/, copied at every build into
# docs/gallery/ (git-ignored) so that the site and the test run share one copy.
GALLERY = HERE / "gallery"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _copy_notebooks() -> None:
    GALLERY.mkdir(exist_ok=True)
    for old in GALLERY.glob("*.ipynb"):
        if not (ROOT / "notebooks" / old.name).exists():
            old.unlink()
    for nb in NOTEBOOKS:
        target = GALLERY / nb.name
        if not target.exists() or target.read_bytes() != nb.read_bytes():
            shutil.copyfile(nb, target)


_copy_notebooks()
