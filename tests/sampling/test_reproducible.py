"""Reproducibility: the same data, model and seed give bit-identical draws, for each sampler
and backend, whether or not the compiled model comes from the session cache; a different
seed gives different draws; a saved real fit loads back bit for bit.

(``tests/test_fit.py::test_same_seed_same_draws`` covers nutpie + JAX on the marginal backend
with a cache hit, on a larger data set.)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hierbayes as hb

FORMULA = "y ~ time + (1 | id)"
AR = hb.AR1(time="time", group="id")
KW = dict(draws=30, tune=30, chains=2, progressbar=False)


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    layout = pd.DataFrame({"id": np.repeat(np.arange(12), 4), "time": np.tile(np.arange(4), 12)})
    truth = {"beta": {"Intercept": 0.5, "time": 0.3}, "sigma": 0.8, "sd_id": [0.6], "phi": 0.5}
    return hb.simulate(FORMULA, layout, truth, correlation=AR, seed=4)


def _draws(fit) -> dict[str, np.ndarray]:
    return {k: v.values for k, v in fit.posterior.data_vars.items()}


def _assert_identical(a, b):
    da, db = _draws(a), _draws(b)
    assert da.keys() == db.keys()
    for k in da:
        np.testing.assert_array_equal(da[k], db[k], err_msg=k)
    for k in ("diverging", "step_size"):
        if k in a.idata.sample_stats:
            np.testing.assert_array_equal(a.idata.sample_stats[k].values, b.idata.sample_stats[k].values)


@pytest.mark.parametrize(
    "sampler, backend, compiler",
    [
        ("nutpie", "marginal", "auto"),  # the native kernel
        ("nutpie", "marginal", "jax"),
        ("nutpie", "latent", "auto"),  # JAX
        ("pymc", "latent", "auto"),
        # PyMC's sampler recompiles on every fit (~30 s a pair here): the marginal case is slow
        pytest.param("pymc", "marginal", "auto", marks=pytest.mark.slow),
    ],
)
def test_same_seed_bit_identical(data, sampler, backend, compiler):
    hb.clear_cache()  # the first fit compiles afresh, the second may hit the cache
    kw = dict(KW, sampler=sampler, seed=11, cores=1 if sampler == "pymc" else None,
              compiler=compiler)
    a = hb.Model(FORMULA, data, correlation=AR, backend=backend).fit(**kw)
    b = hb.Model(FORMULA, data, correlation=AR, backend=backend).fit(**kw)
    if sampler == "nutpie":
        assert not a.timing["cache_hit"] and b.timing["cache_hit"]
        want = "native" if (backend, compiler) == ("marginal", "auto") else "jax"
        assert a.timing["compiler"] == b.timing["compiler"] == want
    assert "b_id" in a.posterior
    _assert_identical(a, b)
    if (sampler, backend, compiler) == ("nutpie", "marginal", "auto"):
        # the seed is what fixes them: another seed moves every chain
        c = hb.Model(FORMULA, data, correlation=AR, backend=backend).fit(**dict(kw, seed=12))
        assert not np.array_equal(a.posterior["sigma"].values, c.posterior["sigma"].values)
        assert not np.array_equal(a.posterior["b_id"].values, c.posterior["b_id"].values)


def test_unseeded_fit_is_reproduced_from_its_recorded_seed(data, tmp_path):
    model = hb.Model(FORMULA, data, correlation=AR)
    a = model.fit(**KW)  # no seed: one is drawn and recorded
    seed = a.timing["seed"]
    assert isinstance(seed, int) and f"seed {seed}" in str(a.summary())
    b = model.fit(seed=seed, **KW)
    _assert_identical(a, b)
    # and a real fit saved to disk comes back bit for bit
    again = hb.load(a.save(tmp_path / "fit.nc"))
    for group in a.idata.groups():
        xr.testing.assert_identical(a.idata[group], again.idata[group])
    assert again.timing["seed"] == seed
    pd.testing.assert_frame_equal(a.summary().table, again.summary().table)


@pytest.mark.slow
def test_numba_compiler_same_seed_bit_identical(data):
    """numba compiles for a minute or more; the JAX path above covers the same behaviour."""
    hb.clear_cache()
    a = hb.Model(FORMULA, data, correlation=AR).fit(compiler="numba", seed=5, **KW)
    hb.clear_cache()  # compile again (PyTensor's disk cache makes this one quicker)
    b = hb.Model(FORMULA, data, correlation=AR).fit(compiler="numba", seed=5, **KW)
    _assert_identical(a, b)
