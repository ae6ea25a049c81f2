"""The session cache of compiled nutpie models: an object with a size bound and a reset.

A refit whose data change values but not shapes (prior sweeps, SBC, bootstrap, a second
fit of the same model) reuses the compiled model with new data instead of compiling again
(seconds through JAX, a minute through PyTensor's numba backend). Compiled models hold
their graph, compiled functions and data buffers (for large designs, hundreds of MB), so
the cache keeps the most recently used ``maxsize`` of them and drops the least recently
used beyond that.
"""

from __future__ import annotations

from collections import OrderedDict


class CompileCache:
    """A least-recently-used cache of compiled models keyed by model structure.

    Parameters
    ----------
    maxsize : int, default 16
        How many compiled models to keep (at least 1).

    Examples
    --------
    >>> cache = CompileCache(maxsize=2)
    >>> cache.put("a", 1); cache.put("b", 2); cache.get("a")
    1
    >>> cache.put("c", 3)        # "b" is the least recently used: dropped
    >>> "b" in cache, len(cache), cache.hits, cache.misses
    (False, 2, 1, 0)
    >>> cache.clear(); len(cache)
    0
    """

    def __init__(self, maxsize: int = 16):
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be a whole number >= 1, got {maxsize!r}.")
        self.maxsize = maxsize
        self._items: OrderedDict[str, object] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str):
        """The entry for ``key`` (now the most recently used), or None (a miss)."""
        if key not in self._items:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: str, value) -> None:
        """Store ``value`` under ``key``, dropping the least recently used beyond maxsize."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def clear(self) -> None:
        """Drop every entry and reset the hit and miss counts."""
        self._items.clear()
        self.hits = self.misses = 0

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return (f"CompileCache({len(self)} of {self.maxsize} models, "
                f"{self.hits} hits, {self.misses} misses)")


#: the process's cache of compiled nutpie models (:mod:`hierbayes.sampling.nuts` uses it)
COMPILED = CompileCache()


def clear_cache() -> None:
    """Forget every compiled model of this session: the next fit of each model compiles
    afresh (the numba kernel's on-disk compile cache is not touched).

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.clear_cache()
    >>> len(hb.sampling.cache.COMPILED)
    0
    """
    COMPILED.clear()
