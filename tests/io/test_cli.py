"""The command line and model files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import arviz as az
import pytest

from hierbayes.io import modelfile
from hierbayes.io.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_model_file_reads_acceptance_model():
    mf = modelfile.read(ROOT / "models" / "clark_ar1.toml")
    assert mf.formula == "y ~ time + treatment + (1 + time | id)"
    assert mf.correlation.kind == "ar1" and mf.correlation.group == "id"
    assert mf.data.shape == (10000, 4)
    assert mf.fit_kwargs["chains"] == 4


def test_model_file_errors(tmp_path):
    bad = tmp_path / "m.toml"
    bad.write_text('formula = "y ~ x + (1 | g)"\ndata = "nope.csv"\n')
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        modelfile.read(bad)
    bad.write_text('formula = "y ~ x"\ndata = "clark_ar1"\n[sampler]\nwarmup = 3\n')
    with pytest.raises(ValueError, match="warmup"):
        modelfile.read(bad)


GOOD = 'formula = "y ~ time + (1 | id)"\ndata = "clark_ar1"\n'
CORR = '[correlation]\ntype = "ar1"\ntime = "time"\ngroup = "id"\n'


@pytest.mark.parametrize(
    "text, where, key, hint",
    [
        (GOOD + 'familly = "bernoulli"\n', "top level", "familly", "family"),
        (GOOD + "seed = 4\n", "top level", "seed", None),
        (GOOD + '[corelation]\ntype = "ar1"\ntime = "time"\ngroup = "id"\n', "top level", "corelation", "correlation"),
        (GOOD + "[samplr]\ndraws = 10\n", "top level", "samplr", "sampler"),
        (GOOD + CORR + "lag = 2\n", "[correlation] table", "lag", None),
        (GOOD + '[correlation]\ntyp = "car1"\ntime = "time"\ngroup = "id"\n', "[correlation] table", "typ", "type"),
        (GOOD + "[sampler]\ndraw = 10\n", "[sampler] table", "draw", "draws"),
    ],
)
def test_model_file_unknown_keys_name_the_key_table_and_closest_match(tmp_path, text, where, key, hint):
    """No key of a model file is ignored: a typo would fit another model silently."""
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as err:
        modelfile.read(path)
    msg = str(err.value)
    assert f"unknown key {key!r}" in msg and where in msg and "known keys:" in msg
    if hint:
        assert f"did you mean {hint!r}?" in msg
    path.write_text(GOOD + CORR)  # the same file without the typo reads
    assert modelfile.read(path).correlation.kind == "ar1"


def test_cli_fit_writes_netcdf(tmp_path, capsys):
    csv = tmp_path / "d.csv"
    import numpy as np
    import pandas as pd

    import hierbayes as hb

    layout = pd.DataFrame({"g": np.repeat(np.arange(40), 5), "t": np.tile(np.arange(5), 40)})
    data = hb.simulate("y ~ t + (1 | g)", layout, {"beta": {"Intercept": 1.0, "t": 0.2},
                       "sigma": 1.0, "sd_g": [0.7], "phi": 0.5},
                       correlation=hb.AR1(time="t", group="g"), seed=1)
    data.to_csv(csv, index=False)
    mfile = tmp_path / "m.toml"
    mfile.write_text(
        'formula = "y ~ t + (1 | g)"\ndata = "d.csv"\n'
        '[correlation]\ntype = "ar1"\ntime = "t"\ngroup = "g"\n'
        '[sampler]\nchains = 2\ndraws = 100\ntune = 100\nseed = 1\n'
        '[priors]\nsigma = { dist = "HalfNormal", sigma = 2.0 }\n'
    )
    out = tmp_path / "fit.nc"
    assert main(["fit", str(mfile), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Fixed effects:" in printed and "phi (AR(1) correlation)" in printed
    idata = az.from_netcdf(out)
    assert {"beta", "sigma", "phi", "b_g"} <= set(idata.posterior.data_vars)
    saved = hb.load(out)  # the whole fit, not only its draws
    assert saved.priors["sigma"] == hb.Prior("HalfNormal", sigma=2.0)
    assert str(saved.summary()).split("Time:")[0] in printed
    # a saved fit is accepted by `summary` and `report`, and refused by `fit`
    assert main(["summary", str(out)]) == 0
    assert str(saved.summary()).split("Time:")[0] in capsys.readouterr().out
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "report.html").is_file()
    assert main(["fit", str(out)]) == 2
    assert "is a saved fit" in capsys.readouterr().err
    assert main(["summary", str(out), "--draws", "5"]) == 2
    assert "do not apply" in capsys.readouterr().err


def test_cli_reports_bad_input(tmp_path, capsys):
    mfile = tmp_path / "m.toml"
    mfile.write_text('formula = "y ~ nosuch + (1 | id)"\ndata = "clark_ar1"\n')
    assert main(["fit", str(mfile), "--quiet"]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "hierbayes", "fit", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "model file" in r.stdout


def test_cli_report_writes_html_and_png(tmp_path):
    mfile = tmp_path / "m.toml"
    import numpy as np
    import pandas as pd

    import hierbayes as hb

    layout = pd.DataFrame({"g": np.repeat(np.arange(30), 4), "t": np.tile(np.arange(4), 30)})
    data = hb.simulate("y ~ t + (1 + t | g)", layout, {"beta": {"Intercept": 1.0, "t": 0.2},
                       "sigma": 1.0, "sd_g": [0.7, 0.3], "phi": 0.4},
                       correlation=hb.AR1(time="t", group="g"), seed=2)
    data.to_csv(tmp_path / "d.csv", index=False)
    mfile.write_text(
        'formula = "y ~ t + (1 + t | g)"\ndata = "d.csv"\n'
        '[correlation]\ntype = "ar1"\ntime = "t"\ngroup = "g"\n'
        '[sampler]\nchains = 2\ndraws = 100\ntune = 100\nseed = 1\n'
    )
    out = tmp_path / "rep"
    assert main(["report", str(mfile), "--out", str(out), "--quiet"]) == 0
    html = (out / "report.html").read_text()
    assert "<img" in html and "Shrinkage" in html and "lag-1" in html
    assert len(list(out.glob("*.png"))) >= 4


def test_cli_names_a_file_that_is_neither_model_nor_fit(tmp_path, capsys):
    junk = tmp_path / "fit.nc"
    junk.write_bytes(bytes(range(256)))
    for cmd in (["summary", str(junk)], ["report", str(junk), "--out", str(tmp_path)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert err.startswith("hierbayes: error: ") and "neither a model file" in err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["summary", str(tmp_path / "missing.nc")]) == 2
    assert "no file" in capsys.readouterr().err


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    mfile = tmp_path / "m.toml"
    mfile.write_text('formula = "y ~ time + (1 + | id)"\ndata = "clark_ar1"\n')
    assert main(["fit", str(mfile), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "'y ~ time + (1 + | id)' at character 17" in err
    with pytest.raises(ValueError, match="cannot read the formula"):
        main(["--debug", "fit", str(mfile), "--quiet"])
    with pytest.raises(ValueError, match="cannot read the formula"):
        main(["fit", str(mfile), "--quiet", "--debug"])


def test_model_file_sets_the_quadrature_nodes(tmp_path):
    import numpy as np
    import pandas as pd

    df = pd.DataFrame({"g": np.repeat(np.arange(8), 3), "x": np.tile([0.0, 1.0, 2.0], 8)})
    df["y"] = np.random.default_rng(0).poisson(2.0, len(df))
    df.to_csv(tmp_path / "d.csv", index=False)
    path = tmp_path / "m.toml"
    path.write_text('formula = "y ~ x + (1 | g)"\ndata = "d.csv"\nfamily = "poisson"\nnagq = 3\n')
    model = modelfile.read(path).model()
    assert model.backend == "quadrature" and model.nagq == 3
    path.write_text('formula = "y ~ x + (1 | g)"\ndata = "d.csv"\nnagq = 3\n')  # Gaussian
    with pytest.raises(ValueError, match="nagq sets the quadrature"):
        modelfile.read(path).model()
