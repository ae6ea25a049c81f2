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

Fits, the pointwise log-likelihood (LOO) and power-scaling use these terms.
:func:`hierbayes.simulate` and the prior predictive draw uncensored responses (what the
measurement would have been without the censoring); posterior predictive replicates of the
fitted rows are censored row by row as the data are (:func:`censor_like`), and
:class:`DetectionLimit` is a censoring process that ``hb.sbc(censor=...)`` applies to
every simulated data set.
"""

from __future__ import annotations

import dataclasses
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


def censor_like(y_rep, y, cens: Censoring) -> np.ndarray:
    """Replicates ``y_rep`` (..., N) censored as the data's rows are: a left-censored row's
    replicate at or below its bound ``y`` is reported at the bound, a right-censored row's
    above it likewise, an interval row's inside ``(y, y2]`` at ``y`` (the data's value);
    exact rows and replicates beyond the censored side are kept as drawn.

    Examples
    --------
    >>> import numpy as np
    >>> c = Censoring(np.array([0, -1, -1, 1, 2]), np.array([np.nan, np.nan, np.nan, np.nan, 3.0]))
    >>> censor_like(np.array([0.2, 0.4, 2.0, 5.0, 2.5]), np.array([9.0, 1.0, 1.0, 4.0, 2.0]), c).tolist()
    [0.2, 1.0, 2.0, 4.0, 2.0]
    """
    y_rep = np.asarray(y_rep, dtype=float)
    y = np.broadcast_to(np.asarray(y, dtype=float), y_rep.shape)
    hit = ((cens.code == LEFT) & (y_rep <= y)) | ((cens.code == RIGHT) & (y_rep > y))
    hit |= (cens.code == INTERVAL) & (y_rep > y) & (y_rep <= cens.upper)
    return np.where(hit, y, y_rep)


@dataclass(frozen=True)
class DetectionLimit:
    """A detection limit as a censoring process: a value below ``lower`` is reported at
    ``lower`` and marked ``"left"``, one above ``upper`` at ``upper`` and marked ``"right"``,
    the others ``"none"`` (brms' ``cens()`` codes). ``hb.sbc(model, ..., censor=
    hb.DetectionLimit(lower=0.5))`` applies it to every simulated data set of a censored
    model (``y | cens(c) ~ ...``), so that the simulations are censored as the data were.

    Parameters
    ----------
    lower, upper : float or str, optional
        The limits: a number for every row, or the name of a column holding each row's
        limit (NaN: no limit on that row). At least one.
    response, indicator : str, optional
        The response and censoring-indicator columns; ``hb.sbc`` fills them in from the
        model (:meth:`for_model`).

    Examples
    --------
    >>> import pandas as pd
    >>> lod = DetectionLimit(lower=1.0, response="y", indicator="c")
    >>> lod(pd.DataFrame({"y": [0.3, 2.0]})).to_dict("list")
    {'y': [1.0, 2.0], 'c': ['left', 'none']}
    """

    lower: float | str | None = None
    upper: float | str | None = None
    response: str | None = None
    indicator: str | None = None

    def __post_init__(self):
        if self.lower is None and self.upper is None:
            raise ValueError("DetectionLimit needs lower=, upper= or both (a number or a column name).")
        for k in ("lower", "upper"):
            v = getattr(self, k)
            if v is not None and not isinstance(v, str) and not np.isfinite(float(v)):
                raise ValueError(f"DetectionLimit {k}= must be a finite number or a column name, got {v!r}.")
        if (isinstance(self.lower, (int, float)) and isinstance(self.upper, (int, float))
                and not self.lower < self.upper):
            raise ValueError(f"DetectionLimit needs lower < upper, got lower={self.lower}, upper={self.upper}.")

    def for_model(self, spec) -> "DetectionLimit":
        """The limit with the response and indicator columns of ``spec`` (a censored
        model's spec), for :func:`hierbayes.sbc`.

        Examples
        --------
        >>> from hierbayes.spec.formula import parse
        >>> DetectionLimit(lower=0.5).for_model(parse("y | cens(c) ~ x")).indicator
        'c'
        """
        if spec.censored is None:
            raise ValueError(
                "DetectionLimit censors the response of a censored model; this model has no "
                "censoring column: write 'y | cens(c) ~ ...' (or censored='c')."
            )
        return dataclasses.replace(self, response=spec.response, indicator=spec.censored)

    def _bound(self, data: pd.DataFrame, value, default: float) -> np.ndarray:
        if value is None:
            return np.full(len(data), default)
        if isinstance(value, str):
            if value not in data.columns:
                raise KeyError(f"DetectionLimit's limit column {value!r} is not in the data.")
            out = pd.to_numeric(data[value], errors="raise").to_numpy(dtype=float)
            return np.where(np.isnan(out), default, out)
        return np.full(len(data), float(value))

    def __call__(self, data: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``data`` with the response censored at the limits and the indicator
        column set."""
        if self.response is None or self.indicator is None:
            raise ValueError(
                "DetectionLimit needs response= and indicator= (the columns to censor and to "
                "mark); hb.sbc fills them in from the model."
            )
        y = data[self.response].to_numpy(dtype=float)
        lo, hi = self._bound(data, self.lower, -np.inf), self._bound(data, self.upper, np.inf)
        out = data.copy()
        out[self.response] = np.clip(y, lo, hi)
        out[self.indicator] = np.where(y < lo, "left", np.where(y > hi, "right", "none"))
        return out
