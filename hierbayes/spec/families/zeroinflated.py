"""Counts with extra zeros: zero-inflated and hurdle Poisson and negative binomial (log link).

brms' names and parameterisation, with ``f`` the Poisson or negative binomial
probability of the count part (mean ``mu = exp(eta)``; the negative binomial's shape
``alpha`` as in :class:`~hierbayes.spec.families.NegativeBinomial`):

- zero-inflated (``zero_inflated_poisson``, ``zero_inflated_negbinomial``; aliases ``zip``,
  ``zinb``): a structural zero with probability ``zi``, else a draw of ``f``:
  ``P(0) = zi + (1 - zi) f(0)``, ``P(y) = (1 - zi) f(y)`` for ``y > 0``. Mean ``(1 - zi) mu``.
- hurdle (``hurdle_poisson``, ``hurdle_negbinomial``): zero with probability ``hu``, else a
  draw of ``f`` truncated to ``y > 0``: ``P(0) = hu``,
  ``P(y) = (1 - hu) f(y) / (1 - f(0))``. Mean ``(1 - hu) mu / (1 - f(0))``.

``zi`` (``hu``) is one probability with the prior Beta(1, 1) unless it gets a formula on
the logit scale: ``hb.Model(..., family="zip", zi="~ x")`` is
``logit zi_i = x_i' beta_zi`` (brms' ``bf(y ~ ..., zi ~ x)``, glmmTMB's
``ziformula = ~ x``); ``hu="~ x"`` likewise (brms' ``hu ~ x``). The coefficients are
``beta_zi`` (dims ``coef_zi``), prior keys ``zi_Intercept`` (StudentT(3, 0, 2.5)) and
``zi_x`` (``beta_zi`` sets every slope). glmmTMB's default ``ziformula = ~ 0`` (no zero
inflation) is the plain ``poisson`` family; its ``ziformula = ~ 1`` is the default here.

These families have no marginal backend: the quadrature kernel integrates one-part
families, so they fit on the latent backend (``backend="auto"`` picks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import special, stats

from hierbayes.spec.priors import Prior
from hierbayes.spec.families.base import Family, numeric_response
from hierbayes.spec.families.counts import NegativeBinomial, Poisson

#: why the marginal backends do not take these families (``backend/glmm.unavailable``)
_NO_MARGINAL = ("its likelihood is a two-part mixture (zeros and counts) that the quadrature "
                "kernel, written for one-part families, does not integrate")


def log1mexp(x: np.ndarray) -> np.ndarray:
    """``log(1 - exp(x))`` for ``x <= 0``, accurate at both ends (Maechler 2012).

    Examples
    --------
    >>> import numpy as np
    >>> float(log1mexp(np.array(-1e-20))), float(log1mexp(np.array(-50.0)))
    (-46.051701859880914, -1.9287498479639178e-22)
    """
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore"):
        return np.where(x > -np.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


@dataclass(frozen=True)
class _ZeroPart(Family):
    """A count family ``count`` with a separate probability of zero ``part``."""

    link: str = "log"
    links = ("log",)
    support = "non-negative integers"
    no_marginal: ClassVar[str] = _NO_MARGINAL
    #: the count distribution ``f`` (set by _PoissonPart / _NegBinPart) and the name of
    #: the zero probability
    count: ClassVar[Family]
    part: ClassVar[str] = "zi"

    @property
    def extra_params(self):
        return (*self.count.extra_params, self.part)

    def validate(self, y, column, trials=None):
        y = numeric_response(y, column, self.name, self.support)
        self._check(y, (y < 0) | (y != np.round(y)), column)

    def working_response(self, y, trials=None):
        return self.count.working_response(y, trials)

    def default_priors(self, s_y):
        return {**self.count.default_priors(s_y), self.part: Prior("Beta", alpha=1.0, beta=1.0)}

    def check_params(self, params):
        """Finite values, ``alpha > 0`` and ``zi`` (``hu``) in ``[0, 1)``.

        Examples
        --------
        >>> from hierbayes.spec.families import get
        >>> get("zip").check_params({"zi": 1.0})
        Traceback (most recent call last):
        ...
        ValueError: zi must lie in [0, 1) (the zero-inflation probability), got 1.0.
        """
        super().check_params(params)
        if self.part in params:
            p = np.asarray(params[self.part], dtype=float)
            if np.any(p < 0) or np.any(p >= 1):
                raise ValueError(
                    f"{self.part} must lie in [0, 1) (the {self.what}), got {params[self.part]!r}."
                )

    # the count part: log f(y), log f(0) and the inverse survival function (_PoissonPart,
    # _NegBinPart)
    def count_logpdf(self, y, eta, params) -> np.ndarray:
        raise NotImplementedError

    def log_f0(self, eta, params) -> np.ndarray:
        raise NotImplementedError

    def count_isf(self, v, eta, params) -> np.ndarray:
        raise NotImplementedError

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        # PyMC's psi is the probability of the count part
        return {"psi": 1.0 - params[self.part], **self.count.dist_kwargs(eta, params, trials, xp)}

    def eta_derivatives(self, y, eta, params, trials=None):
        raise NotImplementedError(f"the {self.name} family has no marginal backend: {self.no_marginal}.")

    def _moments(self, eta, params):
        """``E[y]`` and ``E[y^2]`` of the count part ``f``."""
        mu = np.exp(np.asarray(eta, dtype=float))
        return mu, self.count.variance(eta, params) + mu**2


@dataclass(frozen=True)
class _ZeroInflated(_ZeroPart):
    what: ClassVar[str] = "zero-inflation probability"

    def logpdf(self, y, eta, params, trials=None):
        y = np.asarray(y, dtype=float)
        zi = np.asarray(params["zi"], dtype=float)
        lf = self.count_logpdf(y, eta, params)
        with np.errstate(divide="ignore"):
            zero = np.logaddexp(np.log(zi), np.log1p(-zi) + self.log_f0(eta, params))
        return np.where(y == 0, zero, np.log1p(-zi) + lf)

    def draw(self, rng, eta, params, trials=None):
        counts = self.count.draw(rng, eta, params)
        inflated = rng.random(counts.shape) < params["zi"]
        return np.where(inflated, 0.0, counts)

    def fitted(self, eta, params, trials=None):
        return (1.0 - np.asarray(params["zi"])) * np.exp(eta)

    def variance(self, eta, params, trials=None):
        m1, m2 = self._moments(eta, params)
        keep = 1.0 - np.asarray(params["zi"])
        return keep * m2 - (keep * m1) ** 2


@dataclass(frozen=True)
class _Hurdle(_ZeroPart):
    part: ClassVar[str] = "hu"
    what: ClassVar[str] = "hurdle (zero) probability"

    def logpdf(self, y, eta, params, trials=None):
        y = np.asarray(y, dtype=float)
        hu = np.asarray(params["hu"], dtype=float)
        positive = np.log1p(-hu) + self.count_logpdf(y, eta, params) - log1mexp(self.log_f0(eta, params))
        with np.errstate(divide="ignore"):
            return np.where(y == 0, np.log(hu), positive)

    def draw(self, rng, eta, params, trials=None):
        """Zero with probability ``hu``, else the count part truncated at 1 by its inverse
        survival function at ``v ~ U(0, 1 - f(0))`` (exact for small ``mu``, where
        rejection of zeros would take ``1 / mu`` tries)."""
        eta = np.asarray(eta, dtype=float)
        shape = np.broadcast_shapes(eta.shape, np.shape(params["hu"]),
                                    *[np.shape(params[k]) for k in self.count.extra_params])
        eta = np.broadcast_to(eta, shape)
        s0 = -np.expm1(self.log_f0(eta, params))  # P(count > 0)
        v = (1.0 - rng.random(shape)) * s0  # in (0, s0]
        y = np.maximum(self.count_isf(v, eta, params), 1.0)  # v = s0 exactly (probability ~1e-16) returns 0
        return np.where(rng.random(shape) < params["hu"], 0.0, y)

    def fitted(self, eta, params, trials=None):
        return (1.0 - np.asarray(params["hu"])) * np.exp(eta) / -np.expm1(self.log_f0(eta, params))

    def variance(self, eta, params, trials=None):
        m1, m2 = self._moments(eta, params)
        scale = (1.0 - np.asarray(params["hu"])) / -np.expm1(self.log_f0(eta, params))
        return scale * m2 - (scale * m1) ** 2


class _PoissonPart:
    """The Poisson count part: ``log f(0) = -mu``."""

    count: ClassVar[Family] = Poisson()

    def count_logpdf(self, y, eta, params):
        return self.count.logpdf(y, eta, params)

    def log_f0(self, eta, params):
        return -np.exp(np.asarray(eta, dtype=float))

    def count_isf(self, v, eta, params):
        return stats.poisson.isf(v, np.exp(eta))


class _NegBinPart:
    """The negative binomial count part, in ``z = eta - log alpha`` so that small means
    keep full precision: ``log f(y) = lgamma(y + alpha) - lgamma(alpha) - lgamma(y + 1)
    + y z - (alpha + y) log(1 + e^z)``, ``log f(0) = -alpha log(1 + mu / alpha)``."""

    count: ClassVar[Family] = NegativeBinomial()

    def count_logpdf(self, y, eta, params):
        y = np.asarray(y, dtype=float)
        a = np.asarray(params["alpha"], dtype=float)
        z = np.asarray(eta, dtype=float) - np.log(a)
        return (special.gammaln(y + a) - special.gammaln(a) - special.gammaln(y + 1)
                + y * z - (a + y) * np.logaddexp(0.0, z))

    def log_f0(self, eta, params):
        a = np.asarray(params["alpha"], dtype=float)
        return -a * np.log1p(np.exp(np.asarray(eta, dtype=float)) / a)

    def count_isf(self, v, eta, params):
        a = np.broadcast_to(params["alpha"], np.shape(v))
        return stats.nbinom.isf(v, a, special.expit(np.log(a) - eta))


@dataclass(frozen=True)
class ZeroInflatedPoisson(_PoissonPart, _ZeroInflated):
    """Zero-inflated Poisson (``zip``): ``P(0) = zi + (1 - zi) e^-mu``.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import get
    >>> fam = get("zip")
    >>> fam.name, fam.extra_params, fam.dpar_links
    ('zero_inflated_poisson', ('zi',), {'zi': 'logit'})
    >>> float(np.exp(fam.logpdf(np.array(0.0), np.array(0.0), {"zi": 0.5})).round(6))
    0.68394
    """

    name = "zero_inflated_poisson"
    dist = "ZeroInflatedPoisson"
    dpar_links = {"zi": "logit"}


@dataclass(frozen=True)
class ZeroInflatedNegativeBinomial(_NegBinPart, _ZeroInflated):
    """Zero-inflated negative binomial (``zinb``): ``P(0) = zi + (1 - zi) f(0)`` with
    ``f(0) = (alpha / (alpha + mu))^alpha``.

    Examples
    --------
    >>> from hierbayes.spec.families import get
    >>> get("zinb").extra_params
    ('alpha', 'zi')
    """

    name = "zero_inflated_negbinomial"
    dist = "ZeroInflatedNegativeBinomial"
    dpar_links = {"zi": "logit"}


@dataclass(frozen=True)
class HurdlePoisson(_PoissonPart, _Hurdle):
    """Hurdle Poisson: ``P(0) = hu``, ``P(y) = (1 - hu) f(y) / (1 - e^-mu)`` for ``y > 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import get
    >>> fam = get("hurdle_poisson")
    >>> float(fam.fitted(np.array(0.0), {"hu": 0.5}).round(6))
    0.790988
    """

    name = "hurdle_poisson"
    dist = "HurdlePoisson"
    dpar_links = {"hu": "logit"}


@dataclass(frozen=True)
class HurdleNegativeBinomial(_NegBinPart, _Hurdle):
    """Hurdle negative binomial: ``P(0) = hu``, ``P(y) = (1 - hu) f(y) / (1 - f(0))``.

    Examples
    --------
    >>> from hierbayes.spec.families import get
    >>> get("hurdle_negbinomial").extra_params
    ('alpha', 'hu')
    """

    name = "hurdle_negbinomial"
    dist = "HurdleNegativeBinomial"
    dpar_links = {"hu": "logit"}
