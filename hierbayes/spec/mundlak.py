"""Cluster-mean centring for the within/between (Mundlak) decomposition, as formula functions.

A random-intercept model assumes the predictors are uncorrelated with the random effects;
when a predictor ``x`` varies between clusters as well as within them and its cluster
means correlate with the cluster effects, the single slope on ``x`` mixes the within-cluster
effect with that correlation. Splitting ``x`` into its cluster mean and the deviation from
it separates the two: the coefficient of ``cdev(x, id)`` is the within-cluster effect (what
a fixed-effects regression estimates), the one of ``cmean(x, id)`` the between effect.

Both functions are available inside every hierbayes formula::

    y ~ cmean(x, id) + cdev(x, id) + (1 | id)

The cluster means are those of the rows the model uses (after missing rows are dropped).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _check(x, group, fname: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    group = np.asarray(group)
    if x.shape != group.shape or x.ndim != 1:
        raise ValueError(
            f"{fname}(x, group) needs a predictor column and a grouping column of equal length, "
            f"got shapes {x.shape} and {group.shape}."
        )
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_):
        raise ValueError(
            f"{fname}(x, group): the predictor must be numeric (dtype {x.dtype}); cluster means "
            "of a categorical predictor need its indicator columns as numbers."
        )
    return x.astype(float), group


def cmean(x, group) -> np.ndarray:
    """The mean of ``x`` within each level of ``group``, repeated on every row.

    Parameters
    ----------
    x : array_like
        A numeric predictor.
    group : array_like
        Cluster labels of the same rows.

    Returns
    -------
    ndarray
        Row-wise cluster means.

    Examples
    --------
    >>> from hierbayes.spec.mundlak import cmean
    >>> cmean([1.0, 3.0, 10.0], ["a", "a", "b"]).tolist()
    [2.0, 2.0, 10.0]
    """
    x, group = _check(x, group, "cmean")
    return pd.Series(x).groupby(pd.Series(group)).transform("mean").to_numpy()


def cdev(x, group) -> np.ndarray:
    """The deviation of ``x`` from its cluster mean: ``x - cmean(x, group)``.

    Parameters
    ----------
    x : array_like
        A numeric predictor.
    group : array_like
        Cluster labels of the same rows.

    Returns
    -------
    ndarray
        Within-cluster deviations (they sum to zero within each cluster).

    Examples
    --------
    >>> from hierbayes.spec.mundlak import cdev
    >>> cdev([1.0, 3.0, 10.0], ["a", "a", "b"]).tolist()
    [-1.0, 1.0, 0.0]
    """
    x, group = _check(x, group, "cdev")
    return x - cmean(x, group)


NAMESPACE = {"cmean": cmean, "cdev": cdev}
