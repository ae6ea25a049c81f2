"""Ordinal responses: the cumulative family (brms ``cumulative``, ordinal's ``clmm``).

K ordered levels, K - 1 increasing cut-points ``c_1 < ... < c_{K-1}`` and

    P(y <= k) = F(c_k - eta),   P(y = k) = F(c_k - eta) - F(c_{k-1} - eta),

with ``F`` the logistic (``link="logit"``, proportional odds) or the standard normal
(``link="probit"``) distribution function, ``c_0 = -inf`` and ``c_K = +inf``. A larger
linear predictor moves mass to higher levels. The cut-points play the intercept's part,
so the fixed-effect design has no intercept column: ``y ~ x`` (the intercept dropped) and
``y ~ 0 + x`` or ``y ~ x - 1`` give the same model. Write categorical predictors with the
intercept (``y ~ x + arm``: treatment contrasts); without it formulae codes every level,
which the cut-points already span, and the design refuses it.

Responses are coded ``0 .. K-1`` in the design (``Design.y``), in the order of
``Design.response_levels``; the cut-point labels are ``"1|2"``, ``"2|3"``, ... built from
those levels (:func:`hierbayes.names.cutpoint_labels`). Every numpy method takes ``params["cutpoints"]``
with the cut-points on its last axis and any leading axes broadcasting against ``eta``
(``(K-1,)`` against ``(N,)``; ``(D, 1, K-1)`` against ``(D, N)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from hierbayes import names
from hierbayes.spec.families.base import Family
from hierbayes.spec.priors import Prior

#: the family's parameter: the K - 1 cut-points (dims ``cutpoint``)
CUTPOINTS = names.CUTPOINTS


def _label(v) -> str:
    """A level's label: integral floats without their ``.0`` (``2.0`` -> ``"2"``)."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _order_hint(column: str, values) -> str:
    shown = ", ".join(repr(_label(v)) for v in list(values)[:3])
    return (
        f"give the order of the levels: data[{column!r}] = pd.Categorical(data[{column!r}], "
        f"categories=[{shown}, ...], ordered=True), or family=hb.families.Cumulative("
        f"levels=[{shown}, ...]), or integer codes"
    )


def encode_response(y: pd.Series, column: str, levels=None) -> tuple[np.ndarray, tuple[str, ...]]:
    """The ordinal response as codes ``0 .. K-1`` (floats) and the level labels in order.

    The order comes from ``levels`` (the family's ``levels=``, matched against the values'
    labels), else from an *ordered* pandas Categorical (its category order; categories
    without rows are dropped), else from the sorted values of an integer column. Strings,
    an unordered Categorical and booleans without ``levels`` have no order and are refused.

    Examples
    --------
    >>> import pandas as pd
    >>> encode_response(pd.Series([3, 1, 2, 3]), "rating")
    (array([2., 0., 1., 2.]), ('1', '2', '3'))
    >>> encode_response(pd.Series(["hi", "lo"]), "r", levels=["lo", "hi"])
    (array([1., 0.]), ('lo', 'hi'))
    >>> encode_response(pd.Series(["hi", "lo"]), "r")
    Traceback (most recent call last):
    ...
    ValueError: response column 'r' holds strings, whose order the cumulative family cannot guess: give the order of the levels: data['r'] = pd.Categorical(data['r'], categories=['hi', 'lo', ...], ordered=True), or family=hb.families.Cumulative(levels=['hi', 'lo', ...]), or integer codes.
    """
    if levels is not None:
        labels = tuple(str(v) for v in levels)
        values = y.map(_label).to_numpy(dtype=object)
        pos = {lab: k for k, lab in enumerate(labels)}
        bad = sorted({v for v in values if v not in pos})
        if bad:
            raise ValueError(
                f"response column {column!r} has value(s) {bad[:5]} that are not among the "
                f"levels given to the cumulative family, {list(labels)}; add them to levels= "
                "in their place in the order, or remove those rows."
            )
        codes = np.array([pos[v] for v in values], dtype=float)
        return _check_levels(codes, labels, column)
    if isinstance(y.dtype, pd.CategoricalDtype):
        if not y.cat.ordered:
            raise ValueError(
                f"response column {column!r} is an unordered Categorical, whose order the "
                f"cumulative family does not take silently: "
                f"{_order_hint(column, y.cat.categories)} (or y.cat.as_ordered() if its "
                "category order is the right one)."
            )
        y = y.cat.remove_unused_categories()
        codes = y.cat.codes.to_numpy().astype(float)
        return _check_levels(codes, tuple(_label(v) for v in y.cat.categories), column)
    if pd.api.types.is_bool_dtype(y) or not pd.api.types.is_numeric_dtype(y):
        what = "booleans" if pd.api.types.is_bool_dtype(y) else "strings"
        raise ValueError(
            f"response column {column!r} holds {what}, whose order the cumulative family "
            f"cannot guess: {_order_hint(column, pd.unique(y))}."
        )
    v = y.to_numpy(dtype=float)
    if not np.all(np.isfinite(v)) or np.any(v != np.round(v)):
        bad = v[~np.isfinite(v) | (v != np.round(v))]
        raise ValueError(
            f"response column {column!r} has non-integer values (e.g. {bad[0]:g}); the "
            "cumulative family needs ordered levels: integer codes, or an ordered pandas "
            "Categorical."
        )
    uniq, codes = np.unique(v, return_inverse=True)
    return _check_levels(codes.astype(float), tuple(_label(u) for u in uniq), column)


def _check_levels(codes: np.ndarray, labels: tuple[str, ...], column: str):
    if len(labels) < 2:
        raise ValueError(
            f"response column {column!r} has a single level ({labels[0] if labels else 'none'}); "
            "the cumulative family needs at least two ordered levels."
        )
    return codes, labels


def _log_diff_cdf(link: str, hi, lo):
    """``log(F(hi) - F(lo))`` for ``hi > lo`` (either may be infinite), without
    cancellation in the tails."""
    hi, lo = np.broadcast_arrays(np.asarray(hi, float), np.asarray(lo, float))
    if link == "logit":
        # F(a) - F(b) = e^a (1 - e^(b - a)) / ((1 + e^a)(1 + e^b))
        with np.errstate(invalid="ignore", over="ignore"):
            gap = np.log(-np.expm1(lo - hi))
            mid = hi + gap - np.logaddexp(0.0, hi) - np.logaddexp(0.0, lo)
        top = -np.logaddexp(0.0, lo)            # hi = +inf: 1 - F(lo)
        bottom = -np.logaddexp(0.0, -hi)        # lo = -inf: F(hi)
        out = np.where(np.isposinf(hi), top, np.where(np.isneginf(lo), bottom, mid))
        return out
    # probit: in the upper tail use the survival functions, Phi(-lo) - Phi(-hi)
    upper = lo > 0
    a = np.where(upper, -lo, hi)
    b = np.where(upper, -hi, lo)
    la, lb = special.log_ndtr(a), special.log_ndtr(b)
    with np.errstate(divide="ignore"):
        return la + np.log(-np.expm1(lb - la))


def _probit_p(eta, cutpoints, xp):
    """Ordered-probit level probabilities (``eta.shape + (K,)``) in ``xp`` (numpy or
    ``pytensor.tensor``) from ``erfc``: ``Phi(hi) - Phi(lo)`` as ``(erfc(-hi/r2) -
    erfc(-lo/r2)) / 2``, or in the upper tail (``lo > 0``) as ``(erfc(lo/r2) - erfc(hi/r2))
    / 2``, so that no level's probability is the difference of two numbers near 1."""
    erfc = special.erfc if xp is np else xp.erfc
    z = (cutpoints - eta[..., None]) / np.sqrt(2.0)
    edge = xp.ones_like(z[..., :1]) * np.inf
    hi = xp.concatenate([z, edge], axis=-1)
    lo = xp.concatenate([-edge, z], axis=-1)
    upper = 0.5 * (erfc(lo) - erfc(hi))
    lower = 0.5 * (erfc(-hi) - erfc(-lo))
    return xp.where(lo > 0, upper, lower)


@dataclass(frozen=True)
class Cumulative(Family):
    """Ordered categories: ``P(y <= k) = F(c_k - eta)`` with ``K - 1`` ordered cut-points
    (brms ``cumulative``, ordinal's ``clmm``), logit (default) or probit link.

    The response is integer codes (levels: the sorted values), an ordered pandas
    Categorical (its category order) or, with ``levels=`` (lowest first), values whose
    labels are among those levels; an unordered Categorical or strings without ``levels``
    are refused. The model has no intercept (the cut-points are one per level boundary):
    it is dropped from ``y ~ x``; ``y ~ 0 + x`` is the same model for numeric predictors
    (categoricals need the intercept in the formula for their contrasts). The cut-points
    (``cutpoints``, dims ``cutpoint``, labelled ``"1|2"``, ...) have brms' prior, an
    ordered vector of StudentT(3, 0, 2.5) (prior key ``cutpoints``); the latent backend
    only.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import get
    >>> fam = get("ordinal")
    >>> fam.name, fam.link, fam.extra_params
    ('cumulative', 'logit', ('cutpoints',))
    >>> fam.probabilities(np.array([0.0]), np.array([-1.0, 1.0])).round(3)
    array([[0.269, 0.462, 0.269]])
    """

    link: str = "logit"
    levels: tuple | None = None

    name = "cumulative"
    links = ("logit", "probit")
    support = "ordered levels (integer codes or an ordered pandas Categorical)"
    intercept = False
    ordered_response = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.levels is not None:
            levels = tuple(str(v) for v in self.levels)
            if len(set(levels)) != len(levels) or len(levels) < 2:
                raise ValueError(
                    f"levels of the cumulative family must be at least two distinct labels, "
                    f"lowest first; got {list(self.levels)}."
                )
            object.__setattr__(self, "levels", levels)

    @property
    def dist(self) -> str:
        # probit: a Categorical on probabilities built from erfc (:func:`_probit_p`), since
        # PyMC's OrderedProbit computes them with erfcx, which has no JAX implementation
        return "OrderedLogistic" if self.link == "logit" else "Categorical"

    @property
    def extra_params(self):
        return (CUTPOINTS,)

    def encode(self, y: pd.Series, column: str):
        """The response as codes and level labels (:func:`encode_response`)."""
        return encode_response(y, column, self.levels)

    def validate(self, y, column, trials=None):
        y = np.asarray(y, dtype=float)
        self._check(y, (y < 0) | (y != np.round(y)), column)

    def default_priors(self, s_y):
        return {CUTPOINTS: Prior("StudentT", nu=3, mu=0.0, sigma=2.5)}

    def initial_cutpoints(self, y: np.ndarray, n_levels: int) -> np.ndarray:
        """Starting values of the cut-points: ``F^-1`` of the observed cumulative
        frequencies (a level share floored at 1% so that the values strictly increase).

        Examples
        --------
        >>> import numpy as np
        >>> Cumulative().initial_cutpoints(np.array([0, 1, 1, 2]), 3).round(3)
        array([-1.099,  1.099])
        """
        counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=n_levels).astype(float)
        share = np.maximum(counts / counts.sum(), 0.01)
        cum = np.cumsum(share / share.sum())[:-1]
        return special.logit(cum) if self.link == "logit" else special.ndtri(cum)

    def check_params(self, params):
        if CUTPOINTS not in params:
            return
        c = np.asarray(params[CUTPOINTS], dtype=float)
        if c.ndim != 1 or c.size < 1:
            raise ValueError(
                f"cutpoints must be a vector of K - 1 values (K ordered levels), got {params[CUTPOINTS]!r}."
            )
        if self.levels is not None and c.size != len(self.levels) - 1:
            raise ValueError(
                f"cutpoints needs {len(self.levels) - 1} values for the {len(self.levels)} "
                f"levels {list(self.levels)}, got {c.size}."
            )
        if not np.all(np.isfinite(c)) or np.any(np.diff(c) <= 0):
            raise ValueError(f"cutpoints must be finite and strictly increasing, got {c.tolist()}.")

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        if self.link == "probit":
            return {"p": _probit_p(eta, params[CUTPOINTS], xp)}
        return {"eta": eta, "cutpoints": params[CUTPOINTS], "compute_p": False}

    # -- numpy ---------------------------------------------------------------------
    def cdf(self, x):
        """``F``: the logistic or standard normal distribution function."""
        return special.expit(x) if self.link == "logit" else special.ndtr(x)

    def probabilities(self, eta, cutpoints) -> np.ndarray:
        """Category probabilities ``P(y = k)``, shape ``eta.shape + (K,)``.

        Examples
        --------
        >>> import numpy as np
        >>> p = Cumulative(link="probit").probabilities(np.zeros(2), np.array([0.0]))
        >>> p.tolist()
        [[0.5, 0.5], [0.5, 0.5]]
        """
        eta = np.asarray(eta, dtype=float)[..., None]
        c = np.asarray(cutpoints, dtype=float)
        ext = np.concatenate([np.full(c.shape[:-1] + (1,), -np.inf), c,
                              np.full(c.shape[:-1] + (1,), np.inf)], axis=-1)
        # each level's probability to full relative precision, also far in the tails
        return np.exp(_log_diff_cdf(self.link, ext[..., 1:] - eta, ext[..., :-1] - eta))

    def logpdf(self, y, eta, params, trials=None):
        c = np.asarray(params[CUTPOINTS], dtype=float)
        eta = np.asarray(eta, dtype=float)
        y = np.asarray(y)
        shape = np.broadcast_shapes(y.shape, eta.shape, c.shape[:-1])
        k = np.broadcast_to(y, shape).astype(np.int64)
        ext = np.concatenate(
            [np.full(c.shape[:-1] + (1,), -np.inf), c, np.full(c.shape[:-1] + (1,), np.inf)],
            axis=-1,
        )
        ext = np.broadcast_to(ext, shape + ext.shape[-1:])
        hi = np.take_along_axis(ext, (k + 1)[..., None], axis=-1)[..., 0]
        lo = np.take_along_axis(ext, k[..., None], axis=-1)[..., 0]
        eta = np.broadcast_to(eta, shape)
        return _log_diff_cdf(self.link, hi - eta, lo - eta)

    def fitted(self, eta, params, trials=None):
        """The expected category index ``E[k] = sum_k k P(y = k)``, ``k = 0 .. K-1`` (the
        design's codes: 0 is the lowest level)."""
        p = self.probabilities(eta, params[CUTPOINTS])
        return p @ np.arange(p.shape[-1], dtype=float)

    def variance(self, eta, params, trials=None):
        p = self.probabilities(eta, params[CUTPOINTS])
        k = np.arange(p.shape[-1], dtype=float)
        return p @ (k * k) - (p @ k) ** 2

    def draw(self, rng, eta, params, trials=None):
        """Category codes ``0 .. K-1`` (floats) at ``eta``."""
        eta = np.asarray(eta, dtype=float)
        cum = self.cdf(np.asarray(params[CUTPOINTS], dtype=float) - eta[..., None])
        u = rng.random(np.broadcast_shapes(eta.shape, cum.shape[:-1]))
        return (u[..., None] > cum).sum(axis=-1).astype(float)

    def response_values(self, codes: np.ndarray, levels=()) -> np.ndarray:
        """Codes ``0 .. K-1`` as the response's values: the level labels when ``levels``
        are given (object array), else ``1 .. K`` (brms' codes; what :func:`hb.simulate`
        writes).

        Examples
        --------
        >>> import numpy as np
        >>> Cumulative().response_values(np.array([0.0, 2.0])).tolist()
        [1.0, 3.0]
        """
        codes = np.asarray(codes, dtype=float)
        if not len(levels):
            return codes + 1.0
        out = np.asarray(levels, dtype=object)[np.nan_to_num(codes).astype(np.int64)]
        return np.where(np.isnan(codes), None, out)
