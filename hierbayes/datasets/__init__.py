"""Data sets bundled with hierbayes."""

from __future__ import annotations

from importlib import resources

import pandas as pd

_DATASETS = {
    "clark_ar1": (
        "clark_ar1.csv",
        "2,500 individuals x 4 occasions (time 0..3), cluster-level treatment, AR(1) "
        "residuals (rho = 0.7); the acceptance data set.",
    ),
}


def available() -> dict[str, str]:
    """Names and one-line descriptions of the bundled data sets.

    Examples
    --------
    >>> import hierbayes as hb
    >>> "clark_ar1" in hb.datasets.available()
    True
    """
    return {name: desc for name, (_, desc) in _DATASETS.items()}


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as a DataFrame.

    Parameters
    ----------
    name : str
        One of :func:`available`.

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.datasets.load("clark_ar1").shape
    (10000, 4)
    """
    if name not in _DATASETS:
        raise KeyError(
            f"Unknown data set {name!r}; bundled data sets are {sorted(_DATASETS)}. "
            "To use your own data, pass a DataFrame or a CSV path."
        )
    fname = _DATASETS[name][0]
    with resources.files(__name__).joinpath(fname).open("rb") as fh:
        return pd.read_csv(fh)
