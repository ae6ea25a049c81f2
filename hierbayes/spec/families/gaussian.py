"""Continuous families on the real line: Gaussian (collapsible) and Student-t."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from hierbayes.spec.priors import Prior
from hierbayes.spec.families.base import Family, warn_if_discrete


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
    censorable = True
    dpar_links = {"sigma": "log"}

    @property
    def extra_params(self):
        return ("sigma",)

    def validate(self, y, column, trials=None):
        super().validate(y, column, trials)
        warn_if_discrete(y, column, self.name)

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

    def logcdf(self, y, eta, params):
        return stats.norm.logcdf(y, eta, params["sigma"])

    def logsf(self, y, eta, params):
        return stats.norm.logsf(y, eta, params["sigma"])


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

    def logcdf(self, y, eta, params):
        return stats.t.logcdf(y, params["nu"], eta, params["sigma"])

    def logsf(self, y, eta, params):
        return stats.t.logsf(y, params["nu"], eta, params["sigma"])
