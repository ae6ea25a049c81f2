"""What a user's script prints: no PyTensor BLAS warning, no PyMC "Sampling: [...]" line."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pandas as pd

import hierbayes as hb

_C_COMPILE = (
    "import hierbayes, pytensor, pytensor.tensor as pt\n"
    "x = pt.dmatrix('x')\n"
    "f = pytensor.function([x], x.dot(x), mode='FAST_RUN')\n"
    "print(pytensor.config.blas__ldflags == '')\n"
)


def test_no_blas_warning_when_pytensor_compiles_to_c():
    out = subprocess.run([sys.executable, "-c", _C_COMPILE], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert "could not link to a BLAS" not in out.stderr, out.stderr


def test_prior_predictive_logs_no_sampling_line(caplog):
    df = pd.DataFrame({"id": np.repeat(np.arange(5), 3), "time": np.tile(np.arange(3), 5)})
    df["y"] = np.random.default_rng(0).normal(size=len(df))
    model = hb.Model("y ~ time + (1 | id)", df)
    caplog.set_level(logging.INFO, logger="pymc")
    model.sample_prior_predictive(draws=20, seed=1)
    assert not [r for r in caplog.records if r.getMessage().startswith("Sampling:")]
    assert logging.getLogger("pymc.sampling.forward").level == logging.NOTSET  # restored
