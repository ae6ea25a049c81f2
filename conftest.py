"""Doctests of the package's docstrings (``--doctest-modules`` over ``hierbayes/``).

Examples that use a fitted model (``fit``, ``idata``, ``design``, ``model``) get a small one
fitted once per session: 40 ids x 4 occasions of the bundled data (20 of each arm), the acceptance model,
2 chains x 200 draws. Each doctest runs in its own temporary directory, so examples that
write files (``fit.save("fit.nc")``) leave nothing behind. Examples that need a full-size fit
or many fits (SBC, prior sweeps) are skipped explicitly with ``# doctest: +SKIP``.
"""

from __future__ import annotations

import re

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(scope="session")
def doctest_objects():
    import numpy as np
    import pandas as pd

    import hierbayes as hb

    data = hb.datasets.load("clark_ar1")
    ids = data["id"].unique()
    data = data[data["id"].isin([*ids[:20], *ids[-20:]])].reset_index(drop=True)  # both arms
    model = hb.Model("y ~ time + treatment + (1 + time | id)", data,
                     correlation=hb.AR1(time="time", group="id"))
    fit = model.fit(draws=200, tune=200, chains=2, seed=1, progressbar=False)
    new_rows = data[data["id"] == data["id"].iloc[0]].assign(time=lambda d: d["time"] + 4)
    return {"hb": hb, "np": np, "pd": pd, "data": data, "model": model, "fit": fit,
            "idata": fit.idata, "design": fit.design, "new_rows": new_rows, "new": new_rows}


@pytest.fixture(autouse=True)
def _doctest_setup(request, tmp_path, monkeypatch):
    if not isinstance(request.node, DoctestItem):
        return
    monkeypatch.chdir(tmp_path)
    text = "\n".join(ex.source for ex in request.node.dtest.examples)
    if re.search(r"\b(fit|idata|design|model|new_rows|new)\b", text):
        objects = request.getfixturevalue("doctest_objects")
        globs = request.node.dtest.globs  # the module's own names win (``new_rows``)
        globs.update({k: v for k, v in objects.items()
                      if k not in globs and re.search(rf"\b{k}\b", text)})
