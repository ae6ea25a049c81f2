"""Residual correlation structures within clusters: AR(1) and continuous-time AR(1).

These are plain, immutable specifications; the whitening maths lives in
:mod:`hierbayes.likelihood.arprocess` and the PyMC graph in :mod:`hierbayes.backend`.
"""

from __future__ import annotations

from dataclasses import dataclass

from hierbayes.spec.keys import check_keys


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
