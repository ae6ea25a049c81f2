"""The compile cache: bounded, least recently used first out, cleared by hb.clear_cache()."""

from __future__ import annotations

import pytest

import hierbayes as hb
from hierbayes.sampling.cache import COMPILED, CompileCache


def test_least_recently_used_entry_goes_first():
    cache = CompileCache(maxsize=3)
    for k in "abc":
        cache.put(k, k.upper())
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("d", "D")
    assert "b" not in cache and {"a", "c", "d"} == {k for k in "abcd" if k in cache}
    cache.put("c", "C2")  # an update refreshes too
    cache.put("e", "E")
    assert "a" not in cache and cache.get("c") == "C2" and len(cache) == 3
    assert cache.get("zzz") is None and (cache.hits, cache.misses) == (2, 1)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, None])
def test_bound_is_validated(bad):
    with pytest.raises(ValueError, match="maxsize"):
        CompileCache(maxsize=bad)


def test_clear_cache_empties_the_session_cache():
    COMPILED.put("probe", object())
    assert "probe" in COMPILED
    hb.clear_cache()
    assert len(COMPILED) == 0 and COMPILED.hits == COMPILED.misses == 0


# ------------------------------------------ exact keys and labels (issue 15 item 5)


def _frame(seed=0, n=8, prefix="c"):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"g": np.repeat([f"{prefix}{k}" for k in range(n)], 5),
                       "x": rng.normal(size=5 * n)})
    df["y"] = rng.poisson(2, size=len(df)).astype(float)
    return df


def test_a_prior_differing_in_the_6th_digit_is_a_new_model():
    """The cache key is exact: a refit whose prior differs past the 4th significant digit
    compiles its own model and samples its own prior (on the JAX path, where the prior's
    numbers are constants of the compiled graph). The prior is tight enough (sd 1e-4) for
    the draws to show which mean, 1000.01 or 1000.02, was sampled."""
    import numpy as np

    hb.clear_cache()
    df = _frame()
    df["y"] = 1000.0 + np.random.default_rng(1).normal(size=len(df))
    fits = {}
    for mu in (1000.01, 1000.02):
        m = hb.Model("y ~ x + (1 | g)", df, backend="latent",
                     priors={"Intercept": hb.Prior("Normal", mu=mu, sigma=1e-4)})
        fits[mu] = (m.structure_key(), m.fit(draws=60, tune=150, chains=1, seed=1, progressbar=False))
    (ka, fa), (kb, fb) = fits[1000.01], fits[1000.02]
    assert ka != kb and fb.timing["cache_hit"] is False
    assert fb.priors["Intercept"] == hb.Prior("Normal", mu=1000.02, sigma=1e-4)
    for mu, (_, f) in fits.items():
        draws = f.posterior["beta"].sel(coef="Intercept").values
        assert np.abs(draws.mean() - mu) < 2e-3, (mu, draws.mean())


def test_a_cached_refit_labels_the_new_clusters():
    """Data of the same shape with other cluster labels reuse the compiled model; the
    random effects carry the new data's labels, not those of the first fit."""
    hb.clear_cache()
    a = hb.Model("y ~ x + (1 | g)", _frame(prefix="c"), family="poisson")
    b = hb.Model("y ~ x + (1 | g)", _frame(prefix="zz"), family="poisson")
    assert a.structure_key() == b.structure_key()
    a.fit(draws=20, tune=20, chains=1, seed=1, progressbar=False)
    fb = b.fit(draws=20, tune=20, chains=1, seed=1, progressbar=False)
    assert fb.timing["cache_hit"] is True
    assert list(fb.posterior["b_g"]["g"].values) == list(b.design.groups[0].levels)
    assert all(str(v).startswith("zz") for v in fb.posterior["b_g"]["g"].values)
