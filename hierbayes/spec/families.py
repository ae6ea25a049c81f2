"""Response families: each one an object that knows its likelihood, link and support.

A family holds no PyMC objects (only ``backend/`` builds graphs): it names its PyMC
distribution (``dist``) and turns a linear predictor and its extra parameters into that
distribution's keyword arguments (:meth:`Family.dist_kwargs`, which works on PyTensor
tensors); in numpy it gives the mean, the pointwise log density and replicated draws.

================  ===========  ===============  =====================================
family            link         extra parameters default priors of the extra parameters
================  ===========  ===============  =====================================
``gaussian``      identity     ``sigma``        HalfStudentT(3, 2.5 sd(y))
``student``       identity     ``sigma``,       HalfStudentT(3, 2.5 sd(y)),
                               ``nu``           Gamma(2, 0.1) (brms' default)
``bernoulli``     logit/probit none
``binomial``      logit/probit none (trials:    ``successes | trials(n)`` on the left of ``~``)
``poisson``       log          none
``negbinomial``   log          ``alpha``        Gamma(0.01, 0.01) on the size (brms' default)
================  ===========  ===============  =====================================

The negative binomial has mean ``mu`` and variance ``mu + mu^2 / alpha`` (PyMC's
``NegativeBinomial(mu, alpha)``): small ``alpha`` is strong overdispersion, large
``alpha`` approaches the Poisson.

For the marginal GLMM likelihood (:mod:`hierbayes.likelihood.quadrature`) the non-Gaussian
families give their log density with its first three derivatives in the linear predictor
(:meth:`Family.eta_derivatives`), and the derivatives of the log density and of its first
two eta-derivatives in their own parameters (:meth:`Family.param_derivatives`); numpy, stable
at extreme linear predictors (``|eta|`` of 30 and more).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from hierbayes.spec.priors import Prior

_LINKS = {"identity", "log", "logit", "probit"}


def inverse_link(link: str, eta, xp=np):
    """The inverse link applied to ``eta``; ``xp`` is numpy or ``pytensor.tensor``.

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import inverse_link
    >>> float(inverse_link("logit", np.array(0.0)))
    0.5
    """
    if link == "identity":
        return eta
    if link == "log":
        return xp.exp(eta)
    if link == "logit":
        return special.expit(eta) if xp is np else xp.sigmoid(eta)
    if link == "probit":
        erf = special.erf if xp is np else xp.erf
        return 0.5 * (1.0 + erf(eta / np.sqrt(2.0)))
    raise ValueError(f"unknown link {link!r}; links are {sorted(_LINKS)}.")


def _numeric(y: np.ndarray, column: str, name: str, what: str) -> np.ndarray:
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.number):
        raise ValueError(
            f"response column {column!r} is not numeric; the {name} family needs {what} "
            "(convert it, e.g. with pd.to_numeric)."
        )
    if not np.all(np.isfinite(y)):
        raise ValueError(
            f"response column {column!r} has infinite values; the {name} family needs {what}."
        )
    return y.astype(float)


def _first_bad(y: np.ndarray, bad: np.ndarray) -> str:
    idx = np.flatnonzero(bad)
    shown = ", ".join(f"{v:g}" for v in y[idx[:3]])
    return f"{idx.size} value(s) outside it, e.g. {shown}"


@dataclass(frozen=True)
class Family:
    """Base class: a likelihood with a link. Subclasses set the class attributes."""

    link: str = "identity"

    name = "family"
    dist = ""
    links = ("identity",)
    collapsible = False
    needs_trials = False
    support = "real numbers"

    def __post_init__(self) -> None:
        if self.link not in self.links:
            raise ValueError(
                f"the {self.name} family takes link {' or '.join(map(repr, self.links))}, "
                f"not {self.link!r}."
            )

    # -- parameters ---------------------------------------------------------------
    @property
    def extra_params(self) -> tuple[str, ...]:
        """Names of the family's own parameters (beyond the linear predictor)."""
        return ()

    def response_scale(self, y: np.ndarray) -> tuple[float, float]:
        """(centre, scale) of the response on the link scale, for the default priors:
        the data's mean and sd for identity links (rstanarm's rule), (0, 1) otherwise."""
        return 0.0, 1.0

    def default_priors(self, s_y: float) -> dict[str, Prior]:
        """Default priors of :attr:`extra_params` given the response scale ``s_y``."""
        return {}

    # -- support ------------------------------------------------------------------
    def validate(self, y: np.ndarray, column: str, trials: np.ndarray | None = None) -> None:
        """Raise a ValueError naming ``column`` and the family if ``y`` is outside the support."""
        _numeric(y, column, self.name, self.support)

    def _check(self, y, bad, column) -> None:
        if np.any(bad):
            raise ValueError(
                f"response column {column!r} has values outside the support of the {self.name} "
                f"family ({self.support}): {_first_bad(y, bad)}. Check the column or choose "
                "another family."
            )

    # -- likelihood ---------------------------------------------------------------
    def mean(self, eta, xp=np):
        """The response mean given the linear predictor ``eta``."""
        return inverse_link(self.link, eta, xp)

    def dist_kwargs(self, eta, params: dict, trials=None, xp=np) -> dict:
        """Keyword arguments of the PyMC distribution ``pymc.<dist>`` at ``eta``."""
        raise NotImplementedError

    def fitted(self, eta, params: dict, trials=None) -> np.ndarray:
        """Expected response ``E[y]`` (numpy): ``n p`` for the binomial."""
        return self.mean(eta)

    def variance(self, eta, params: dict, trials=None) -> np.ndarray:
        """``Var[y]`` at ``eta`` (numpy), for Pearson residuals."""
        raise NotImplementedError

    def working_response(self, y, trials=None) -> np.ndarray:
        """The response carried to the link scale with a continuity correction (the
        "empirical logit" ``log((y + 0.5) / (n - y + 0.5))``, ``log(y + 0.5)``): what the
        per-cluster least squares of the shrinkage report are fitted to."""
        return np.asarray(y, dtype=float)

    def logpdf(self, y, eta, params: dict, trials=None) -> np.ndarray:
        """Pointwise log density (numpy/scipy) of ``y`` given ``eta`` and the parameters."""
        raise NotImplementedError

    def draw(self, rng: np.random.Generator, eta, params: dict, trials=None) -> np.ndarray:
        """Replicated responses at ``eta`` (numpy)."""
        raise NotImplementedError

    # -- derivatives in the linear predictor (marginal GLMM likelihood) -------------
    def eta_derivatives(self, y, eta, params: dict, trials=None) -> tuple[np.ndarray, ...]:
        """Pointwise log density ``l`` (equal to :meth:`logpdf`) and its first three
        derivatives in ``eta``: ``(l, dl/deta, d2l/deta2, d3l/deta3)``."""
        raise NotImplementedError(
            f"the {self.name} family gives no derivatives in the linear predictor; the "
            "marginal GLMM likelihood covers bernoulli, binomial, poisson and negbinomial."
        )

    def param_derivatives(self, y, eta, params: dict, trials=None) -> dict[str, tuple]:
        """For each of :attr:`extra_params`, the derivatives in that parameter of ``l``,
        ``dl/deta`` and ``d2l/deta2``: ``{name: (dl/dp, d2l/deta dp, d3l/deta2 dp)}``."""
        return {}


class FamilyWarning(UserWarning):
    """A response that looks like it wants another family (a 0/1 or count response given
    a Gaussian one). Silence it with
    ``warnings.filterwarnings("ignore", category=hb.families.FamilyWarning)``."""


def _warn_if_discrete(y: np.ndarray, column: str, family: str) -> None:
    """Warn when a continuous family is given a 0/1 response or counts: non-negative
    integers with at least 5% zeros (scores and ratings without zeros stay quiet)."""
    y = np.asarray(y, dtype=float)
    values = np.unique(y)
    if values.size == 0 or np.any(values != np.round(values)) or values[0] < 0:
        return
    if set(values.tolist()) <= {0.0, 1.0}:
        use = "family='bernoulli' (or 'binomial' with k | trials(n) for aggregated counts)"
        what = "only the values 0 and 1"
    elif values[0] == 0 and np.mean(y == 0) >= 0.05 and values.size >= 3:
        use = "family='poisson' or family='negbinomial'"
        what = f"non-negative integers ({np.mean(y == 0):.0%} zeros), like counts"
    else:
        return
    warnings.warn(
        f"response column {column!r} holds {what}, but the family is {family!r}: a {family} "
        f"model of it can predict impossible values; use {use}. (Silence with "
        "warnings.filterwarnings('ignore', category=hb.families.FamilyWarning).)",
        FamilyWarning, stacklevel=6,
    )


@dataclass(frozen=True)
class Gaussian(Family):
    """Normal likelihood with identity link (the only family with a collapsed backend).

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.spec.families import Gaussian
    >>> Gaussian().validate(np.array([0.1, 2.0]), "y")
    """

    name = "gaussian"
    dist = "Normal"
    collapsible = True

    @property
    def extra_params(self):
        return ("sigma",)

    def validate(self, y, column, trials=None):
        super().validate(y, column, trials)
        _warn_if_discrete(y, column, self.name)

    def response_scale(self, y):
        s = float(np.std(y))
        return float(np.mean(y)), s if s > 0 else 1.0

    def default_priors(self, s_y):
        return {"sigma": Prior("HalfStudentT", nu=3, sigma=float(2.5 * s_y))}

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        return {"mu": eta, "sigma": params["sigma"]}

    def logpdf(self, y, eta, params, trials=None):
        return stats.norm.logpdf(y, eta, params["sigma"])

    def variance(self, eta, params, trials=None):
        return np.broadcast_to(np.asarray(params["sigma"]) ** 2, np.shape(eta))

    def draw(self, rng, eta, params, trials=None):
        return eta + rng.standard_normal(np.shape(eta)) * params["sigma"]


@dataclass(frozen=True)
class StudentT(Gaussian):
    """Student-t likelihood (identity link): robust to outlying observations.

    ``nu`` (degrees of freedom) has brms' default prior Gamma(2, 0.1) (mean 20).

    Examples
    --------
    >>> from hierbayes.spec.families import get
    >>> get("student").extra_params
    ('sigma', 'nu')
    """

    name = "student"
    dist = "StudentT"
    collapsible = False

    @property
    def extra_params(self):
        return ("sigma", "nu")

    def default_priors(self, s_y):
        out = super().default_priors(s_y)
        out["nu"] = Prior("Gamma", alpha=2.0, beta=0.1)
        return out

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        return {"mu": eta, "sigma": params["sigma"], "nu": params["nu"]}

    def logpdf(self, y, eta, params, trials=None):
        return stats.t.logpdf(y, params["nu"], eta, params["sigma"])

    def variance(self, eta, params, trials=None):
        nu = np.asarray(params["nu"], dtype=float)
        v = np.asarray(params["sigma"]) ** 2 * np.where(nu > 2, nu / np.maximum(nu - 2, 1e-12), np.inf)
        return np.broadcast_to(v, np.shape(eta))

    def draw(self, rng, eta, params, trials=None):
        nu = np.broadcast_to(params["nu"], np.shape(eta))
        return eta + rng.standard_t(nu) * params["sigma"]


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
        y = _numeric(y, column, self.name, self.support)
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
        y = _numeric(y, column, self.name, self.support)
        if trials is None:
            raise ValueError(
                f"the binomial family needs the number of trials: write the response as "
                f"'{column} | trials(n)' with n a column of trial counts."
            )
        n = np.asarray(trials, dtype=float)
        if np.any((n < 1) | (n != np.round(n))):
            raise ValueError(
                "the trials column of the binomial family must hold positive integers: "
                f"{_first_bad(n, (n < 1) | (n != np.round(n)))}."
            )
        self._check(y, (y < 0) | (y > n) | (y != np.round(y)), column)

    def dist_kwargs(self, eta, params, trials=None, xp=np):
        return {"n": trials, **super().dist_kwargs(eta, params, trials, xp)}

    def logpdf(self, y, eta, params, trials=None):
        return stats.binom.logpmf(y, trials, self.mean(eta))

    def draw(self, rng, eta, params, trials=None):
        p = self.mean(eta)
        return rng.binomial(np.broadcast_to(trials, p.shape).astype(np.int64), p).astype(float)


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
        y = _numeric(y, column, self.name, self.support)
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


FAMILIES = {
    "gaussian": Gaussian,
    "normal": Gaussian,
    "student": StudentT,
    "studentt": StudentT,
    "student_t": StudentT,
    "bernoulli": Bernoulli,
    "binomial": Binomial,
    "poisson": Poisson,
    "negbinomial": NegativeBinomial,
    "negative_binomial": NegativeBinomial,
}


def get(family: str | Family) -> Family:
    """Return the family object for a name such as ``"poisson"``; a family object passes
    through (``Bernoulli(link="probit")``).

    Examples
    --------
    >>> from hierbayes.spec.families import get
    >>> get("bernoulli").link, get("poisson").name
    ('logit', 'poisson')
    """
    if isinstance(family, Family):
        return family
    if not isinstance(family, str):
        raise TypeError(
            f"family must be a name such as 'poisson' or a family object, got {type(family).__name__}."
        )
    key = family.lower()
    if key not in FAMILIES:
        raise ValueError(
            f"family {family!r} is not available; available families: {sorted(FAMILIES)}."
        )
    return FAMILIES[key]()
