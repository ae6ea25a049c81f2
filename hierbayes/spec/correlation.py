"""Residual correlation structures within clusters: AR(1) and continuous-time AR(1).

These are plain, immutable specifications; the whitening maths lives in
:mod:`hierbayes.likelihood.arprocess` and the PyMC graph in :mod:`hierbayes.backend`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hierbayes.spec.keys import check_keys


class PhiSignWarning(UserWarning):
    """AR(1) times whose gaps are all multiples of an even spacing: ``phi`` and ``-phi``
    give the same likelihood, so the sign of ``phi`` is not identified by the data."""


def time_spacing(cluster: np.ndarray, time: np.ndarray) -> int | None:
    """The greatest common divisor of the gaps between successive times within clusters.

    Parameters
    ----------
    cluster, time : numpy.ndarray
        Rows sorted by cluster, then time (as a :class:`~hierbayes.design.build.Design`
        holds them); integer-valued times.

    Returns
    -------
    int or None
        None when no cluster has two rows.

    Examples
    --------
    >>> import numpy as np
    >>> time_spacing(np.array([0, 0, 0, 1, 1]), np.array([0., 2., 6., 4., 8.]))
    2
    """
    cluster, time = np.asarray(cluster), np.asarray(time, dtype=float)
    same = np.diff(cluster) == 0
    gaps = np.rint(np.diff(time)[same]).astype(np.int64)
    if gaps.size == 0:
        return None
    return int(math.gcd(*np.unique(np.abs(gaps)).tolist()))


@dataclass(frozen=True)
class AR1:
    """AR(1) residual correlation in an integer time index, within clusters.

    The correlation between two residuals of the same cluster ``lag`` time units apart
    is ``phi ** lag``; gaps in time are allowed (as ``nlme::corAR1(form = ~time | id)``
    on integer times, and brms ``ar(time, id)`` with gaps handled exactly).

    Parameters
    ----------
    time : str
        Column holding the integer time index.
    group : str
        Column holding the cluster identifier.

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.AR1(time="time", group="id")
    AR1(time='time', group='id')
    """

    time: str
    group: str

    kind = "ar1"
    integer_times = True
    phi_bounds = (-1.0, 1.0)

    def describe(self) -> str:
        return f"AR(1) in {self.time} within {self.group}"

    def sign_alias(self, spacing: int | None) -> str | None:
        """Why the data cannot tell ``phi`` from ``-phi``, or None when they can.

        With every gap in ``time`` a multiple of an even ``spacing`` (see
        :func:`time_spacing`) each correlation is an even power of ``phi``
        (``phi ** 2``, ``phi ** 4``, ...), so ``phi`` and ``-phi`` give the same likelihood
        and chains settle at either sign.

        Examples
        --------
        >>> AR1(time="week", group="id").sign_alias(2)[:43]
        "every gap in 'week' is a multiple of 2: phi"
        >>> AR1(time="week", group="id").sign_alias(1) is None
        True
        """
        if spacing is None or spacing % 2:
            return None
        return (
            f"every gap in {self.time!r} is a multiple of {spacing}: phi and -phi give the "
            f"same likelihood (the correlations are even powers of phi), so its sign is not "
            f"identified; use hb.CAR1(time={self.time!r}, group={self.group!r}) (phi in "
            f"(0, 1)), or {self.time} in units of the spacing ({self.time} / {spacing})"
        )


@dataclass(frozen=True)
class CAR1:
    """Continuous-time AR(1) (exponential) residual correlation for irregular times.

    The correlation between residuals of one cluster at times ``s`` and ``t`` is
    ``phi ** |t - s|`` with ``0 < phi < 1`` (``nlme::corCAR1``).

    Parameters
    ----------
    time : str
        Column holding real-valued observation times.
    group : str
        Column holding the cluster identifier.

    Examples
    --------
    >>> import hierbayes as hb
    >>> hb.CAR1(time="t", group="subject").describe()
    'continuous-time AR(1) in t within subject'
    """

    time: str
    group: str

    kind = "car1"
    integer_times = False
    phi_bounds = (0.0, 1.0)

    def describe(self) -> str:
        return f"continuous-time AR(1) in {self.time} within {self.group}"

    def sign_alias(self, spacing: int | None) -> None:
        """Never aliased: ``phi`` is in (0, 1)."""
        return None


Correlation = AR1 | CAR1


def from_dict(d: dict | None, where: str = "the correlation table") -> Correlation | None:
    """Build a correlation from a model-file table such as ``{type="ar1", time=..., group=...}``;
    an unknown key is an error naming it (``where`` says where it was written)."""
    if not d:
        return None
    check_keys(where, d, ("type", "time", "group"))
    kind = str(d.get("type", "")).lower()
    classes = {"ar1": AR1, "car1": CAR1}
    if kind not in classes:
        raise ValueError(
            f"correlation type {d.get('type')!r} is not known; use 'ar1' (integer times) "
            "or 'car1' (real-valued times)."
        )
    missing = [k for k in ("time", "group") if k not in d]
    if missing:
        raise ValueError(f"correlation table needs the keys {missing} (column names).")
    return classes[kind](time=str(d["time"]), group=str(d["group"]))
