"""Keys of user-written tables (model files, correlation tables): an unknown key is an error
that names it, where it was found, the known keys and the closest match, never ignored."""

from __future__ import annotations

import difflib


def check_keys(where: str, given, known) -> None:
    """Raise a ValueError for keys of ``given`` that are not in ``known``.

    Parameters
    ----------
    where : str
        Where the keys were written (``"the [correlation] table of models/x.toml"``).
    given : iterable of str
    known : iterable of str

    Examples
    --------
    >>> check_keys("the top level", ["formula", "familly"], ["formula", "family", "data"])
    Traceback (most recent call last):
    ...
    ValueError: unknown key 'familly' (did you mean 'family'?) in the top level; known keys: data, family, formula.
    """
    known = sorted(known)
    unknown = [k for k in given if k not in known]
    if not unknown:
        return
    parts = []
    for k in unknown:
        close = difflib.get_close_matches(str(k), known, n=1)
        parts.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(unknown) > 1 else ""
    raise ValueError(f"unknown key{plural} {', '.join(parts)} in {where}; known keys: {', '.join(known)}.")
