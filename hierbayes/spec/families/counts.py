"""Count responses: Poisson and negative binomial (log link)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from hierbayes.spec.priors import Prior
from hierbayes.spec.families.base import Family, numeric_response


@dataclass(frozen=True)
class Poisson(Family):
    """Counts with a log link.

    Examples
    --------
    >>> from hierbayes.spec.families import Poisson
    >>> Poisson().link
    'log'
    """

    link: str = "log"
    name = "poisson"
    dist = "Poisson"
    links = ("log",)
    support = "non-negative integers"

    def validate(self, y, column, trials=None):
        y = numeric_response(y, column, self.name, self.support)
        self._check(y, (y < 0) | (y != np.round(y)), column)

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        return {"mu": xp.exp(eta)}

    def logpdf(self, y, eta, params, trials=None):
        return stats.poisson.logpmf(y, np.exp(eta))

    def variance(self, eta, params, trials=None):
        return np.exp(eta)

    def working_response(self, y, trials=None):
        return np.log(np.asarray(y, dtype=float) + 0.5)

    def draw(self, rng, eta, params, trials=None):
        return rng.poisson(np.exp(eta)).astype(float)

    def eta_derivatives(self, y, eta, params, trials=None):
        """``l = y eta - e^eta - log y!``; ``l' = y - mu``, ``l'' = l''' = -mu``.

        Examples
        --------
        >>> import numpy as np
        >>> from hierbayes.spec.families import Poisson
        >>> [float(v[0]) for v in Poisson().eta_derivatives(np.array([2.0]), np.array([0.0]), {})]
        [-1.6931471805599454, 1.0, -1.0, -1.0]
        """
        y = np.asarray(y, dtype=float)
        eta = np.asarray(eta, dtype=float)
        mu = np.exp(eta)
        return y * eta - mu - special.gammaln(y + 1), y - mu, -mu, -mu


@dataclass(frozen=True)
class NegativeBinomial(Poisson):
    """Overdispersed counts, log link: variance ``mu + mu^2 / alpha``.

    ``alpha`` has brms' default prior on the negative binomial shape, Gamma(0.01, 0.01).

    Examples
    --------
    >>> from hierbayes.spec.families import get
    >>> get("negbinomial").extra_params
    ('alpha',)
    """

    name = "negbinomial"
    dist = "NegativeBinomial"

    @property
    def extra_params(self):
        return ("alpha",)

    def default_priors(self, s_y):
        return {"alpha": Prior("Gamma", alpha=0.01, beta=0.01)}

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        return {"mu": xp.exp(eta), "alpha": params["alpha"]}

    def logpdf(self, y, eta, params, trials=None):
        mu, a = np.exp(eta), params["alpha"]
        return stats.nbinom.logpmf(y, a, a / (a + mu))

    def variance(self, eta, params, trials=None):
        mu = np.exp(eta)
        return mu + mu**2 / params["alpha"]

    def draw(self, rng, eta, params, trials=None):
        mu = np.exp(eta)
        a = np.broadcast_to(params["alpha"], mu.shape)
        return rng.poisson(rng.gamma(a, mu / a)).astype(float)

    def eta_derivatives(self, y, eta, params, trials=None):
        """With ``z = eta - log alpha`` and ``p = mu / (alpha + mu) = expit(z)``:
        ``l = lgamma(y + alpha) - lgamma(alpha) - lgamma(y + 1) + y z - (alpha + y) log(1 + e^z)``,
        ``l' = y - (alpha + y) p``, ``l'' = -(alpha + y) p (1 - p)`` and
        ``l''' = -(alpha + y) p (1 - p)(1 - 2p)``.

        Examples
        --------
        >>> import numpy as np
        >>> from hierbayes.spec.families import NegativeBinomial
        >>> out = NegativeBinomial().eta_derivatives(np.array([1.0]), np.array([0.0]), {"alpha": 1.0})
        >>> [round(float(v[0]), 6) for v in out]
        [-1.386294, 0.0, -0.5, -0.0]
        """
        y = np.asarray(y, dtype=float)
        a = float(params["alpha"])
        z = np.asarray(eta, dtype=float) - np.log(a)
        p = special.expit(z)
        w = (a + y) * p * (1 - p)
        const = special.gammaln(y + a) - special.gammaln(a) - special.gammaln(y + 1)
        return const + y * z - (a + y) * np.logaddexp(0.0, z), y - (a + y) * p, -w, -w * (1 - 2 * p)

    def param_derivatives(self, y, eta, params, trials=None):
        """Derivatives in ``alpha`` of ``l``, ``l'`` and ``l''``:
        ``psi(y + alpha) - psi(alpha) - log(1 + mu / alpha) + (mu - y) / (alpha + mu)``,
        ``p (y (1 - p) - alpha p) / alpha`` and ``-p (1 - p)(2 p + y (2 p - 1) / alpha)``.

        Examples
        --------
        >>> import numpy as np
        >>> from hierbayes.spec.families import NegativeBinomial
        >>> d = NegativeBinomial().param_derivatives(np.array([1.0]), np.array([0.0]), {"alpha": 1.0})
        >>> [round(float(v[0]), 6) for v in d["alpha"]]
        [0.306853, 0.0, -0.25]
        """
        y = np.asarray(y, dtype=float)
        a = float(params["alpha"])
        z = np.asarray(eta, dtype=float) - np.log(a)
        p = special.expit(z)
        dl = special.digamma(y + a) - special.digamma(a) - np.logaddexp(0.0, z) + p - y * (1 - p) / a
        d1 = p * (y * (1 - p) - a * p) / a
        d2 = -p * (1 - p) * (2 * p + y * (2 * p - 1) / a)
        return {"alpha": (dl, d1, d2)}
