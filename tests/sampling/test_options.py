"""Every argument of fit() is checked before anything is sampled: an error names the
argument and its valid range; an unknown sampler keyword names itself and the known ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.sampling.nuts import SamplerOptions, sampler_keywords


@pytest.fixture(scope="module")
def model() -> hb.Model:
    layout = pd.DataFrame({"id": np.repeat(np.arange(8), 3), "time": np.tile(np.arange(3), 8)})
    truth = {"beta": {"Intercept": 0.5, "time": 0.3}, "sigma": 0.8, "sd_id": [0.6]}
    return hb.Model("y ~ time + (1 | id)", hb.simulate("y ~ time + (1 | id)", layout, truth, seed=3))


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"target_accept": 1.5}, "target_accept must be a number strictly between 0 and 1"),
        ({"target_accept": 0.0}, "target_accept"),
        ({"draws": -5}, "draws must be a whole number >= 1, got -5"),
        ({"draws": 2.5}, "draws must be a whole number"),
        ({"chains": 0}, "chains must be a whole number >= 1, got 0"),
        ({"tune": -1}, "tune must be a whole number >= 0"),
        ({"cores": 0}, "cores must be a whole number >= 1"),
        ({"max_treedepth": 0}, "max_treedepth must be a whole number >= 1"),
        ({"seed": -3}, "seed must be a whole number >= 0"),
        ({"targetaccept": 0.9}, r"unknown key 'targetaccept' \(did you mean 'target_accept'\?\) in the keyword arguments for nutpie"),
        ({"sampler": "pymc", "targetaccept": 0.9}, "keyword arguments for pymc"),
        ({"maxdepth": 12}, "set by hierbayes"),
        ({"sampler": "stan"}, "sampler must be 'nutpie' or 'pymc'"),
        ({"compiler": "cuda"}, "compiler must be"),
    ],
)
def test_bad_fit_arguments_are_named(model, kw, match):
    with pytest.raises(ValueError, match=match):
        model.fit(progressbar=False, **kw)


def test_sampler_keywords_are_the_samplers_own():
    nut = sampler_keywords("nutpie")
    assert {"mindepth", "max_energy_error", "store_gradient", "init_mean"} <= nut
    assert not {"target_accept", "draws", "maxdepth"} & nut
    pymc = sampler_keywords("pymc")
    assert {"init", "step_scale", "nuts_sampler"} <= pymc and "max_treedepth" not in pymc


def test_valid_options_pass_and_numpy_integers_count():
    opts = SamplerOptions(draws=np.int64(10), chains=np.int32(2), seed=np.uint32(5), target_accept=0.9)
    assert opts.draws == 10
