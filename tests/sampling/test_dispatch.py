"""The native kernel is chosen once per fit, and the summary says why when it is not used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.sampling.nuts import SamplerOptions, decide_native


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    layout = pd.DataFrame({"id": np.repeat(np.arange(10), 4), "time": np.tile(np.arange(4), 10)})
    truth = {"beta": {"Intercept": 0.5, "time": 0.3}, "sigma": 0.8, "sd_id": [0.6]}
    return hb.simulate("y ~ time + (1 | id)", layout, truth, seed=2)


def test_decision_for_each_sampler_and_compiler(data):
    m = hb.Model("y ~ time + (1 | id)", data)
    use = decide_native(m.design, m.priors, m.backend, SamplerOptions())
    assert use.use and use.reason is None and use.design is m.design
    assert "PyMC" in decide_native(m.design, m.priors, m.backend, SamplerOptions(sampler="pymc")).reason
    assert "'jax'" in decide_native(m.design, m.priors, m.backend, SamplerOptions(compiler="jax")).reason
    lat = hb.Model("y ~ time + (1 | id)", data, backend="latent")
    why = decide_native(lat.design, lat.priors, lat.backend, SamplerOptions()).reason
    assert why == "the kernel covers the marginal backend"
    with pytest.raises(ValueError, match="compiler='native' does not apply"):
        decide_native(lat.design, lat.priors, lat.backend, SamplerOptions(compiler="native"))
    with pytest.raises(ValueError, match="sampler must be"):
        decide_native(m.design, m.priors, m.backend, SamplerOptions(sampler="stan"))


def test_header_names_why_the_kernel_was_not_used(data):
    fit = hb.Model("y ~ time + (1 | id)", data).fit(
        draws=20, tune=20, chains=1, seed=1, progressbar=False, compiler="jax")
    assert fit.timing["compiler"] == "jax"
    line = next(h for h in fit.header() if h.strip().startswith("Sampler:"))
    assert "log-density: PyMC model compiled with JAX (native kernel not used: compiler='jax'" in line
    native = hb.Model("y ~ time + (1 | id)", data).fit(
        draws=20, tune=20, chains=1, seed=1, progressbar=False)
    line = next(h for h in native.header() if h.strip().startswith("Sampler:"))
    assert line.endswith("log-density: native numba kernel")
