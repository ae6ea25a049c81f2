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
