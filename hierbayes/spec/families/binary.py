"""Binary and binomial responses (logit or probit link)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from hierbayes.spec.families.base import Family, first_bad, numeric_response


@dataclass(frozen=True)
class Bernoulli(Family):
    """Binary response (0/1 or True/False) with a logit (default) or probit link.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import Bernoulli
    >>> Bernoulli(link="probit").validate(np.array([0, 1, 1]), "passed")
    """

    link: str = "logit"
    name = "bernoulli"
    dist = "Bernoulli"
    links = ("logit", "probit")
    support = "0 or 1"

    def validate(self, y, column, trials=None):
        y = numeric_response(y, column, self.name, self.support)
        self._check(y, (y != 0) & (y != 1), column)

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        if self.link == "logit":
            return {"logit_p": eta}
        return {"p": self.mean(eta, xp)}

    def logpdf(self, y, eta, params, trials=None):
        return stats.bernoulli.logpmf(y, self.mean(eta))

    def fitted(self, eta, params, trials=None):
        p = self.mean(eta)
        return p if trials is None else trials * p

    def variance(self, eta, params, trials=None):
        p = self.mean(eta)
        return p * (1 - p) * (1.0 if trials is None else trials)

    def working_response(self, y, trials=None):
        n = 1.0 if trials is None else np.asarray(trials, dtype=float)
        y = np.asarray(y, dtype=float)
        if self.link == "probit":
            return stats.norm.ppf((y + 0.5) / (n + 1.0))
        return np.log((y + 0.5) / (n - y + 0.5))

    def draw(self, rng, eta, params, trials=None):
        return (rng.random(np.shape(eta)) < self.mean(eta)).astype(float)

    def eta_derivatives(self, y, eta, params, trials=None):
        """Log density and its eta-derivatives, ``trials`` n (1 for the Bernoulli).

        Logit: ``l = log C(n, y) + y eta - n log(1 + e^eta)``, ``l' = y - n p``,
        ``l'' = -n p (1 - p)``, ``l''' = -n p (1 - p)(1 - 2p)``. Probit:
        ``l = log C(n, y) + y log Phi(eta) + (n - y) log Phi(-eta)``, with the inverse Mills
        ratios ``a = phi(eta) / Phi(eta)`` and ``b = phi(eta) / Phi(-eta)``.

        Examples
        --------
        >>> import numpy as np
        >>> from hierbayes.spec.families import Bernoulli
        >>> l, d1, d2, d3 = Bernoulli().eta_derivatives(np.array([1.0]), np.array([0.0]), {})
        >>> float(l[0]), float(d1[0]), float(d2[0]), float(d3[0])
        (-0.6931471805599453, 0.5, -0.25, -0.0)
        """
        y = np.asarray(y, dtype=float)
        eta = np.asarray(eta, dtype=float)
        n = np.ones_like(y) if trials is None else np.asarray(trials, dtype=float)
        logc = special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)
        if self.link == "logit":
            p = special.expit(eta)
            w = p * (1 - p)
            return logc + y * eta - n * np.logaddexp(0.0, eta), y - n * p, -n * w, -n * w * (1 - 2 * p)
        lphi = stats.norm.logpdf(eta)
        up, lo = special.log_ndtr(eta), special.log_ndtr(-eta)
        a, b = np.exp(lphi - up), np.exp(lphi - lo)
        m = n - y
        d1 = y * a - m * b
        d2 = -y * a * (eta + a) - m * b * (b - eta)
        d3 = y * a * ((eta + a) * (eta + 2 * a) - 1) - m * b * ((b - eta) * (2 * b - eta) - 1)
        return logc + y * up + m * lo, d1, d2, d3


@dataclass(frozen=True)
class Binomial(Bernoulli):
    """Successes out of a known number of trials, per row: write the response as
    ``successes | trials(n)`` with ``n`` a column of positive integers.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import Binomial
    >>> Binomial().validate(np.array([0, 3]), "hits", trials=np.array([2, 2]))
    Traceback (most recent call last):
    ...
    ValueError: response column 'hits' has values outside the support of the binomial family (integers from 0 to the number of trials): 1 value(s) outside it, e.g. 3. Check the column or choose another family.
    """

    name = "binomial"
    dist = "Binomial"
    needs_trials = True
    support = "integers from 0 to the number of trials"

    def validate(self, y, column, trials=None):
        y = numeric_response(y, column, self.name, self.support)
        if trials is None:
            raise ValueError(
                f"the binomial family needs the number of trials: write the response as "
                f"'{column} | trials(n)' with n a column of trial counts."
            )
        n = np.asarray(trials, dtype=float)
        if np.any((n < 1) | (n != np.round(n))):
            raise ValueError(
                "the trials column of the binomial family must hold positive integers: "
                f"{first_bad(n, (n < 1) | (n != np.round(n)))}."
            )
        self._check(y, (y < 0) | (y > n) | (y != np.round(y)), column)

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        return {"n": trials, **super().dist_kwargs(eta, params, trials, xp)}

    def logpdf(self, y, eta, params, trials=None):
        return stats.binom.logpmf(y, trials, self.mean(eta))

    def draw(self, rng, eta, params, trials=None):
        p = self.mean(eta)
        return rng.binomial(np.broadcast_to(trials, p.shape).astype(np.int64), p).astype(float)
