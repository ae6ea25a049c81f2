"""The family base class, links and the support checks every family shares."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import special

from hierbayes import names
from hierbayes.spec.priors import Prior



LINKS = {"identity", "log", "logit", "probit"}


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
    raise ValueError(f"unknown link {link!r}; links are {sorted(LINKS)}.")


def numeric_response(y: np.ndarray, column: str, name: str, what: str) -> np.ndarray:
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


def first_bad(y: np.ndarray, bad: np.ndarray) -> str:
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
    #: whether censored responses are available (:meth:`logcdf` and :meth:`logsf`)
    censorable = False
    support = "real numbers"
    #: whether the linear predictor has an intercept (the cumulative family's cut-points
    #: take its place: the design drops the column)
    intercept = True
    #: whether the response is ordered levels that the family codes 0 .. K-1
    #: (``encode``; ``Design.response_levels``)
    ordered_response = False
    #: the parameters that may take a formula (``hb.Model(..., sigma="~ Sex")``) and the
    #: link each is modelled on: ``{"sigma": "log"}`` for the Gaussian family
    dpar_links: ClassVar[dict[str, str]] = {}
    #: why no marginal backend takes the family ("": not said), for the backend's refusal
    no_marginal: ClassVar[str] = ""

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

    def check_params(self, params: dict) -> None:
        """Raise a ValueError naming the parameter when a value of :attr:`extra_params`
        given to :func:`hierbayes.simulate` is outside its range: finite, and positive for
        the positive ones (``sigma``, ``nu``, ``alpha``). Families with other ranges
        (probabilities, ordered vectors) extend it. A parameter with a formula
        (``sigma="~ Sex"``) is not among ``params``: its coefficients are unbounded."""
        for name in self.extra_params:
            if name not in params:
                continue
            value = np.asarray(params[name], dtype=float)
            if not np.all(np.isfinite(value)):
                raise ValueError(f"{name} must be finite, got {params[name]!r}.")
            if names.is_positive(name) and np.any(value <= 0):
                raise ValueError(f"{name} must be positive, got {params[name]!r}.")

    # -- support ------------------------------------------------------------------
    def validate(self, y: np.ndarray, column: str, trials: np.ndarray | None = None) -> None:
        """Raise a ValueError naming ``column`` and the family if ``y`` is outside the support."""
        numeric_response(y, column, self.name, self.support)

    def _check(self, y, bad, column) -> None:
        if np.any(bad):
            raise ValueError(
                f"response column {column!r} has values outside the support of the {self.name} "
                f"family ({self.support}): {first_bad(y, bad)}. Check the column or choose "
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

    def logcdf(self, y, eta, params: dict) -> np.ndarray:
        """``log P(Y <= y)`` (numpy), for left- and interval-censored rows."""
        raise NotImplementedError(f"the {self.name} family takes no censored responses.")

    def logsf(self, y, eta, params: dict) -> np.ndarray:
        """``log P(Y > y)`` (numpy), for right- and interval-censored rows."""
        raise NotImplementedError(f"the {self.name} family takes no censored responses.")

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


def warn_if_discrete(y: np.ndarray, column: str, family: str) -> None:
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
