"""Strictly positive continuous responses: Gamma (log link) and lognormal.

Gamma: mean ``mu = exp(eta)``, variance ``mu^2 / shape`` (PyMC's
``Gamma(alpha=shape, beta=shape / mu)``; brms' ``Gamma(link = "log")``), ``shape`` with brms'
default prior Gamma(0.01, 0.01).

Lognormal: ``log y ~ N(eta, sigma)`` (PyMC's ``LogNormal(mu=eta, sigma)``), so ``eta`` is the
mean of ``log y`` (identity link on the log scale) and the response-scale mean is
``exp(eta + sigma^2 / 2)``; ``sigma`` has the Gaussian family's rule on ``log y``,
HalfStudentT(3, 2.5 sd(log y)).

With one grouping factor (1 to 3 effects) both fit on the quadrature backend
(:mod:`hierbayes.backend.glmm`; the kernel's cases in
:mod:`hierbayes.likelihood.quadrature_kernel`), which ``backend="auto"`` chooses as for the
other GLMM families; otherwise on the latent backend. (The collapsed Gaussian backend reads
the response from the design as it is: a lognormal model would need ``log y`` there.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from hierbayes.spec.families.base import Family, numeric_response
from hierbayes.spec.families.gaussian import Gaussian
from hierbayes.spec.priors import Prior

LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


@dataclass(frozen=True)
class Positive(Family):
    """Shared support check and working response of the positive families."""

    support = "strictly positive finite real numbers"

    def validate(self, y, column, trials=None):
        y = numeric_response(y, column, self.name, self.support)
        self._check(y, ~(y > 0), column)

    def working_response(self, y, trials=None):
        return np.log(np.asarray(y, dtype=float))


@dataclass(frozen=True)
class Gamma(Positive):
    """Positive continuous responses with a log link: mean ``mu``, variance ``mu^2 / shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import get
    >>> fam = get("gamma")
    >>> fam.link, fam.extra_params
    ('log', ('shape',))
    >>> float(fam.variance(np.log(2.0), {"shape": 4.0}))
    1.0
    """

    link: str = "log"
    name = "gamma"
    dist = "Gamma"
    links = ("log",)

    @property
    def extra_params(self):
        return ("shape",)

    def response_scale(self, y):
        """``(log mean(y), 1)``: the intercept's prior is centred at the log of the mean."""
        return float(np.log(np.mean(y))), 1.0

    def default_priors(self, s_y):
        return {"shape": Prior("Gamma", alpha=0.01, beta=0.01)}

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        k = params["shape"]
        return {"alpha": k, "beta": k * xp.exp(-eta)}

    def logpdf(self, y, eta, params, trials=None):
        k = params["shape"]
        return stats.gamma.logpdf(y, k, scale=np.exp(eta) / k)

    def variance(self, eta, params, trials=None):
        return np.exp(2 * np.asarray(eta, dtype=float)) / params["shape"]

    def draw(self, rng, eta, params, trials=None):
        mu = np.exp(np.asarray(eta, dtype=float))
        k = np.broadcast_to(params["shape"], mu.shape)
        return rng.gamma(k, mu / k)

    def eta_derivatives(self, y, eta, params, trials=None):
        """With ``v = shape y e^-eta``: ``l = shape log shape - lgamma(shape) + (shape - 1)
        log y - shape eta - v``, ``l' = v - shape``, ``l'' = -v``, ``l''' = v``.

        Examples
        --------
        >>> import numpy as np
        >>> from hierbayes.spec.families import Gamma
        >>> out = Gamma().eta_derivatives(np.array([1.0]), np.array([0.0]), {"shape": 1.0})
        >>> [float(v[0]) for v in out]
        [-1.0, 0.0, -1.0, 1.0]
        """
        y = np.asarray(y, dtype=float)
        eta = np.asarray(eta, dtype=float)
        k = params["shape"]
        v = k * y * np.exp(-eta)
        l = k * np.log(k) - special.gammaln(k) + (k - 1) * np.log(y) - k * eta - v
        return l, v - k, -v, v

    def param_derivatives(self, y, eta, params, trials=None):
        """Derivatives in ``shape`` of ``l``, ``l'`` and ``l''``, with ``w = y e^-eta``:
        ``log shape + 1 - psi(shape) + log y - eta - w``, ``w - 1`` and ``-w``.

        Examples
        --------
        >>> import numpy as np
        >>> from hierbayes.spec.families import Gamma
        >>> d = Gamma().param_derivatives(np.array([1.0]), np.array([0.0]), {"shape": 1.0})
        >>> [round(float(v[0]), 6) for v in d["shape"]]
        [0.577216, 0.0, -1.0]
        """
        y = np.asarray(y, dtype=float)
        eta = np.asarray(eta, dtype=float)
        k = params["shape"]
        w = y * np.exp(-eta)
        dl = np.log(k) + 1 - special.digamma(k) + np.log(y) - eta - w
        return {"shape": (dl, w - 1, -w)}


@dataclass(frozen=True)
class LogNormal(Positive):
    """``log y ~ N(eta, sigma)``: a Gaussian model of the log response, reported on both scales.

    ``eta`` is the mean (and median) of ``log y``; the mean of ``y`` is
    ``exp(eta + sigma^2 / 2)`` (:meth:`fitted`, what ``predict(kind="mean")`` gives).

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import get
    >>> fam = get("lognormal")
    >>> fam.link, fam.extra_params
    ('identity', ('sigma',))
    >>> round(float(fam.fitted(0.0, {"sigma": 1.0})), 6)   # exp(1/2)
    1.648721
    """

    name = "lognormal"
    dist = "LogNormal"
    links = ("identity",)
    censorable = True
    dpar_links = {"sigma": "log"}

    @property
    def extra_params(self):
        return ("sigma",)

    def response_scale(self, y):
        """Mean and sd of ``log y``: the Gaussian family's rule on the scale of ``eta``."""
        return Gaussian.response_scale(self, np.log(np.asarray(y, dtype=float)))

    #: ``sigma`` ~ HalfStudentT(3, 2.5 sd(log y)), the Gaussian family's rule on ``log y``
    default_priors = Gaussian.default_priors

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        return {"mu": eta, "sigma": params["sigma"]}

    def logpdf(self, y, eta, params, trials=None):
        return stats.lognorm.logpdf(y, params["sigma"], scale=np.exp(eta))

    def fitted(self, eta, params, trials=None):
        s = np.asarray(params["sigma"], dtype=float)
        return np.exp(np.asarray(eta, dtype=float) + s**2 / 2)

    def variance(self, eta, params, trials=None):
        s2 = np.asarray(params["sigma"], dtype=float) ** 2
        return np.expm1(s2) * np.exp(2 * np.asarray(eta, dtype=float) + s2)

    def draw(self, rng, eta, params, trials=None):
        eta = np.asarray(eta, dtype=float)
        return np.exp(eta + rng.standard_normal(eta.shape) * params["sigma"])

    def logcdf(self, y, eta, params):
        return stats.norm.logcdf(np.log(y), eta, params["sigma"])

    def logsf(self, y, eta, params):
        return stats.norm.logsf(np.log(y), eta, params["sigma"])

    def eta_derivatives(self, y, eta, params, trials=None):
        """With ``r = log y - eta``: ``l = -log y - log sigma - log(2 pi) / 2 - r^2 / (2 sigma^2)``,
        ``l' = r / sigma^2``, ``l'' = -1 / sigma^2``, ``l''' = 0``.

        Examples
        --------
        >>> import numpy as np
        >>> from hierbayes.spec.families import LogNormal
        >>> out = LogNormal().eta_derivatives(np.array([1.0]), np.array([1.0]), {"sigma": 1.0})
        >>> [round(float(v[0]), 6) for v in out]
        [-1.418939, -1.0, -1.0, 0.0]
        """
        ly = np.log(np.asarray(y, dtype=float))
        eta = np.asarray(eta, dtype=float)
        s = params["sigma"]
        r = ly - eta
        l = -ly - np.log(s) - LOG_SQRT_2PI - r**2 / (2 * s**2)
        return l, r / s**2, np.broadcast_to(-1.0 / s**2, r.shape), np.zeros_like(r)

    def param_derivatives(self, y, eta, params, trials=None):
        """Derivatives in ``sigma`` of ``l``, ``l'`` and ``l''``: ``r^2 / sigma^3 - 1 / sigma``,
        ``-2 r / sigma^3`` and ``2 / sigma^3``.

        Examples
        --------
        >>> import numpy as np
        >>> from hierbayes.spec.families import LogNormal
        >>> d = LogNormal().param_derivatives(np.array([np.e]), np.array([0.0]), {"sigma": 1.0})
        >>> [round(float(v[0]), 6) for v in d["sigma"]]
        [0.0, -2.0, 2.0]
        """
        r = np.log(np.asarray(y, dtype=float)) - np.asarray(eta, dtype=float)
        s = params["sigma"]
        return {"sigma": (r**2 / s**3 - 1 / s, -2 * r / s**3, np.broadcast_to(2 / s**3, r.shape))}
