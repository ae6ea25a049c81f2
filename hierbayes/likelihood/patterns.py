"""Cluster patterns: clusters whose likelihood terms share their factorisation.

Two clusters share a pattern when they have the same number of observations, the same
random-effect design ``Z`` row by row, and (with AR(1)/CAR(1) residuals) the same observation
times relative to their first observation: then their residual correlation matrix, its
whitening and the Woodbury factor ``Z' R^-1 Z`` are the same, and the collapsed likelihood,
the native kernel and the recovery of the random effects compute them once per pattern.
Balanced longitudinal data (every cluster observed at the same times with a time-only
random design) have one pattern, whatever the number of clusters.
"""

from __future__ import annotations

import numpy as np

from hierbayes.design.build import Design, GroupBlock


def relative_times(design: Design) -> np.ndarray:
    """Each padded row's time since its cluster's first observation (C, T): what the
    residual correlation depends on; zeros on padding and without a residual correlation."""
    lay = design.layout
    if design.correlation is None:
        return np.zeros(lay.mask.shape)
    return np.where(lay.mask, np.cumsum(lay.lag * lay.mask, axis=1), 0.0)


def cluster_patterns(design: Design, group: GroupBlock) -> tuple[np.ndarray, np.ndarray]:
    """The clusters of ``group`` (on the design's padded layout) sorted into patterns.

    Parameters
    ----------
    design : Design
    group : GroupBlock
        The factor whose clusters are the design's layout (the collapsed factor).

    Returns
    -------
    first : numpy.ndarray
        Index of the first cluster of each pattern (G,).
    inverse : numpy.ndarray
        Pattern of each cluster (C,), so that ``first[inverse]`` is a cluster of the same
        pattern.

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.design.build import build_design
    >>> from hierbayes.spec.formula import parse
    >>> spec = parse("y ~ time + (1 + time | id)", correlation=hb.AR1(time="time", group="id"))
    >>> d = build_design(spec, hb.datasets.load("clark_ar1"))
    >>> first, inverse = cluster_patterns(d, d.groups[0])
    >>> first.size, inverse.size          # balanced: 2,500 ids, one pattern
    (1, 2500)
    """
    lay = design.layout
    C = lay.mask.shape[0]
    key = np.concatenate(
        [lay.pad(group.Z).reshape(C, -1), relative_times(design), lay.sizes[:, None].astype(float)],
        axis=1,
    )
    _, first, inverse = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return first, inverse.ravel()
