"""Every model file under models/ fits through the command line (few draws), and the
simulated data sets the example files fit are what models/data/make_data.py writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from hierbayes.io import modelfile
from hierbayes.io.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODELS = sorted((ROOT / "models").glob("*.toml"))

#: a line of the summary each file's fit must print: its backend and one parameter row
EXPECTED = {
    "clark_ar1": ("Backend: marginal", "phi (AR(1) correlation)"),
    "psych_slopes": ("Backend: marginal", "condition"),
    "logistic_schools": ("adaptive Gauss-Hermite quadrature, 9 nodes", "hours"),
    "crossed_counts": ("site integrated out by adaptive Gauss-Hermite quadrature", "sd_year"),
    "irregular_visits": ("Backend: marginal", "CAR(1)"),
    "gls_panel": ("Backend: latent", "phi (AR(1) correlation)"),
    "growth_by_sex": ("Backend: marginal", "sigma_Sex[Male]"),
    "ordinal_ratings": ("Family: cumulative (logit link)", "cutpoint[2|3]"),
    "sbc_intercepts": ("Backend: marginal", "sd(Intercept | g)"),
}


def test_every_model_file_has_an_expectation():
    assert {p.stem for p in MODELS} == set(EXPECTED)


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_model_file_fits_from_the_command_line(path, capsys):
    assert main(["fit", str(path), "--draws", "100", "--tune", "150", "--chains", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    for line in EXPECTED[path.stem]:
        assert line in out, f"{path.name}: {line!r} not in the summary"
    mf = modelfile.read(path)
    assert len(mf.data) > 0 and mf.fit_kwargs["draws"] == 1000


def test_simulated_data_sets_are_what_the_script_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "models" / "data" / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    for written in make_data.write(tmp_path):
        committed = pd.read_csv(ROOT / "models" / "data" / written.name)
        pd.testing.assert_frame_equal(pd.read_csv(written), committed)
