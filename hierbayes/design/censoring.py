"""Censored responses (brms' ``y | cens(c)`` and ``y | cens(c, y2)``): the indicator's codes,
their checks, and the censored log density in numpy.

Each row's code says what its response ``y`` is (brms' coding):

=========  ====  =================================  ==========================
value      code  the true value ``Y``               log-likelihood term
=========  ====  =================================  ==========================
"none"     0     ``Y = y``                          ``log f(y)``
"left"     -1    ``Y <= y`` (``y`` an upper bound)  ``log F(y)``
"right"    1     ``Y > y`` (``y`` a lower bound)    ``log (1 - F(y))``
"interval" 2     ``y < Y <= y2``                    ``log (F(y2) - F(y))``
=========  ====  =================================  ==========================

Fits, the pointwise log-likelihood (LOO) and power-scaling use these terms; posterior and
prior predictive draws and :func:`hierbayes.simulate` draw uncensored responses (what the
measurement would have been without the censoring).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NONE, LEFT, RIGHT, INTERVAL = 0, -1, 1, 2
CODES = {"none": NONE, "left": LEFT, "right": RIGHT, "interval": INTERVAL}


@dataclass(frozen=True, eq=False)
class Censoring:
    """The codes of the rows (design order) and the interval's upper bounds (NaN on the
    other rows)."""

    code: np.ndarray
    upper: np.ndarray

    def take(self, order: np.ndarray) -> "Censoring":
        return Censoring(self.code[order], self.upper[order])

    def rows(self, code: int) -> np.ndarray:
        """Positions of the rows with ``code``."""
        return np.flatnonzero(self.code == code)

    def counts(self) -> dict[str, int]:
        """Rows per kind: ``{"none": ..., "left": ..., "right": ..., "interval": ...}``."""
        return {k: int(np.sum(self.code == c)) for k, c in CODES.items()}


def codes(values, column: str) -> np.ndarray:
    """Integer codes of a censoring column: strings ``"left"``, ``"none"``, ``"right"``,
    ``"interval"`` (any case) or the numbers -1, 0, 1, 2.

    Examples
    --------
    >>> codes(["none", "Right", "left", "interval"], "c").tolist()
    [0, 1, -1, 2]
    >>> codes([0, 1, -1], "c").tolist()
    [0, 1, -1]
    """
    s = pd.Series(values)
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        v = s.to_numpy(dtype=float)
        bad = ~np.isin(v, [-1, 0, 1, 2])
        out = np.where(bad, 0, v).astype(int)
    else:
        key = s.astype(str).str.strip().str.lower()
        bad = ~key.isin(list(CODES)).to_numpy()
        out = key.map(CODES).fillna(0).to_numpy(dtype=int)
    if np.any(bad):
        shown = ", ".join(map(repr, pd.unique(s[bad])[:3]))
        raise ValueError(
            f"censoring column {column!r} has values other than 'left', 'none', 'right', "
            f"'interval' (or -1, 0, 1, 2): {shown}."
        )
    return out


def build(spec, clean: pd.DataFrame, y: np.ndarray) -> Censoring | None:
    """The :class:`Censoring` of the rows of ``clean`` (user order; None without
    censoring), checked: interval rows need an upper bound above ``y``."""
    if spec.censored is None:
        return None
    if spec.correlation is not None:
        raise ValueError(
            "censored responses with a residual correlation are not available: the censored "
            "likelihood of correlated residuals has no closed form. Drop correlation= or the "
            "censoring."
        )
    code = codes(clean[spec.censored].to_numpy(), spec.censored)
    upper = np.full(y.shape, np.nan)
    interval = code == INTERVAL
    if spec.censored_upper is None:
        if np.any(interval):
            raise ValueError(
                f"censoring column {spec.censored!r} marks {int(interval.sum())} row(s) "
                f"'interval' but no upper bound is given: write "
                f"'{spec.response} | cens({spec.censored}, upper_column) ~ ...'."
            )
        return Censoring(code, upper)
    u_raw = clean[spec.censored_upper]
    if not pd.api.types.is_numeric_dtype(u_raw) or pd.api.types.is_bool_dtype(u_raw):
        raise ValueError(f"upper-bound column {spec.censored_upper!r} is not numeric.")
    u = u_raw.to_numpy(dtype=float)
    bad = interval & ~(np.isfinite(u) & (u > y))
    if np.any(bad):
        i = np.flatnonzero(bad)[0]
        raise ValueError(
            f"upper-bound column {spec.censored_upper!r} must be finite and above "
            f"{spec.response!r} on the interval-censored rows; row {i} has "
            f"{spec.response}={y[i]:g}, {spec.censored_upper}={u[i]:g}."
        )
    upper[interval] = u[interval]
    return Censoring(code, upper)


def log_interval(family, lo, hi, eta, params) -> np.ndarray:
    """``log (F(hi) - F(lo))`` for ``lo < hi``, from the cdf below the median and from the
    survival function above it (no cancellation in either tail).

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import Gaussian
    >>> round(float(log_interval(Gaussian(), 9.0, 10.0, 0.0, {"sigma": 1.0})), 4)
    -43.6282
    """
    a, b = family.logcdf(hi, eta, params), family.logcdf(lo, eta, params)
    c, d = family.logsf(lo, eta, params), family.logsf(hi, eta, params)
    with np.errstate(divide="ignore", invalid="ignore"):
        from_cdf = a + np.log(-np.expm1(b - a))
        from_sf = c + np.log(-np.expm1(d - c))
    return np.where(b > np.log(0.5), from_sf, from_cdf)


def logpdf(family, y, cens: Censoring, eta, params: dict) -> np.ndarray:
    """The censored log density of every row: the family's ``logpdf`` on exact rows, its
    ``logcdf`` on left-censored, ``logsf`` on right-censored and :func:`log_interval` on
    interval-censored ones. ``eta`` and the parameters broadcast against ``y`` (rows last).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from hierbayes.spec.families import Gaussian
    >>> c = Censoring(np.array([0, -1, 1, 2]), np.array([np.nan, np.nan, np.nan, 2.0]))
    >>> out = logpdf(Gaussian(), np.array([0.5, 0.5, 0.5, 0.5]), c, 0.0, {"sigma": 1.0})
    >>> bool(np.isclose(out[1], stats.norm.logcdf(0.5)) and np.isclose(out[2], stats.norm.logsf(0.5)))
    True
    """
    y = np.asarray(y, dtype=float)
    eta = np.asarray(eta, dtype=float)
    shape = np.broadcast_shapes(y.shape, eta.shape, *(np.shape(v) for v in params.values()))
    yb, eb = np.broadcast_to(y, shape), np.broadcast_to(eta, shape)
    pb = {k: np.broadcast_to(v, shape) for k, v in params.items()}
    out = np.empty(shape)
    for code, f in ((NONE, None), (LEFT, family.logcdf), (RIGHT, family.logsf), (INTERVAL, None)):
        i = cens.rows(code)
        if i.size == 0:
            continue
        p = {k: v[..., i] for k, v in pb.items()}
        if code == NONE:
            out[..., i] = family.logpdf(yb[..., i], eb[..., i], p)
        elif code == INTERVAL:
            out[..., i] = log_interval(family, yb[..., i], np.broadcast_to(cens.upper[i], shape[:-1] + (i.size,)),
                                       eb[..., i], p)
        else:
            out[..., i] = f(yb[..., i], eb[..., i], p)
    return out
