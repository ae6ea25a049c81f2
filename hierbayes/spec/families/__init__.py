"""Response families: each one an object that knows its likelihood, link and support.

A family holds no PyMC objects (only ``backend/`` builds graphs): it names its PyMC
distribution (``dist``) and turns a linear predictor and its extra parameters into that
distribution's keyword arguments (:meth:`Family.dist_kwargs`, which works on PyTensor
tensors); in numpy it gives the mean, the pointwise log density and replicated draws.

=============================  ============  =================  ===============================================
family                         link          extra parameters   default priors of the extra parameters
=============================  ============  =================  ===============================================
``gaussian``                   identity      ``sigma``          HalfStudentT(3, 2.5 sd(y))
``student``                    identity      ``sigma``,         HalfStudentT(3, 2.5 sd(y)),
                                             ``nu``             Gamma(2, 0.1) (brms' default)
``bernoulli``                  logit/probit  none
``binomial``                   logit/probit  none (trials:      ``successes | trials(n)`` on the left of ``~``)
``poisson``                    log           none
``negbinomial``                log           ``alpha``          Gamma(0.01, 0.01) on the size (brms' default)
``zero_inflated_poisson``      log           ``zi``             Beta(1, 1) (alias ``zip``)
``zero_inflated_negbinomial``  log           ``alpha``, ``zi``  Gamma(0.01, 0.01), Beta(1, 1) (alias ``zinb``)
``hurdle_poisson``             log           ``hu``             Beta(1, 1)
``hurdle_negbinomial``         log           ``alpha``, ``hu``  Gamma(0.01, 0.01), Beta(1, 1)
``gamma``                      log           ``shape``          Gamma(0.01, 0.01) (brms' default)
``lognormal``                  identity      ``sigma``          HalfStudentT(3, 2.5 sd(log y))
                               (of log y)
``cumulative``                 logit/probit  ``cutpoints``      ordered StudentT(3, 0, 2.5) on each (brms'
(alias ``ordinal``)                          (K - 1 values)     default); no intercept
=============================  ============  =================  ===============================================

The negative binomial has mean ``mu`` and variance ``mu + mu^2 / alpha`` (PyMC's
``NegativeBinomial(mu, alpha)``): small ``alpha`` is strong overdispersion, large
``alpha`` approaches the Poisson. The Gamma family has mean ``mu = exp(eta)`` and variance
``mu^2 / shape`` (PyMC's ``Gamma(alpha=shape, beta=shape / mu)``); the lognormal one models
``log y ~ N(eta, sigma)``, so its mean is ``exp(eta + sigma^2 / 2)``. Both need strictly
positive responses (:mod:`hierbayes.spec.families.positive`).

The cumulative family (:mod:`hierbayes.spec.families.ordinal`) models K ordered levels,
``P(y <= k) = F(c_k - eta)``, with K - 1 increasing cut-points in place of the intercept
(brms ``cumulative``, ordinal's ``clmm``); its response is integer codes, an ordered pandas
Categorical or values with ``Cumulative(levels=[...])``, coded 0 .. K-1 in the design.

The zero-inflated families add structural zeros, ``P(0) = zi + (1 - zi) f(0)`` and
``P(y) = (1 - zi) f(y)``; the hurdle families model zero against positive counts apart,
``P(0) = hu`` and ``P(y) = (1 - hu) f(y) / (1 - f(0))`` (brms' parameterisation, ``f`` the
Poisson or negative binomial; :mod:`hierbayes.spec.families.zeroinflated`). ``zi`` or
``hu`` takes a formula on the logit scale like ``sigma`` does: ``hb.Model(..., zi="~ x")``
(brms' ``zi ~ x``, glmmTMB's ``ziformula = ~ x``). They fit on the latent backend only.

For the marginal GLMM likelihood (:mod:`hierbayes.likelihood.quadrature`) the non-Gaussian
families give their log density with its first three derivatives in the linear predictor
(:meth:`Family.eta_derivatives`), and the derivatives of the log density and of its first
two eta-derivatives in their own parameters (:meth:`Family.param_derivatives`); numpy, stable
at extreme linear predictors (``|eta|`` of 30 and more).
"""

from __future__ import annotations

from hierbayes.spec.families.base import Family, FamilyWarning, inverse_link
from hierbayes.spec.families.binary import Bernoulli, Binomial
from hierbayes.spec.families.counts import NegativeBinomial, Poisson
from hierbayes.spec.families.gaussian import Gaussian, StudentT
from hierbayes.spec.families.ordinal import Cumulative
from hierbayes.spec.families.positive import Gamma, LogNormal
from hierbayes.spec.families.zeroinflated import (
    HurdleNegativeBinomial, HurdlePoisson, ZeroInflatedNegativeBinomial, ZeroInflatedPoisson,
)

__all__ = [
    "FAMILIES", "Bernoulli", "Binomial", "Cumulative", "Family", "FamilyWarning", "Gamma",
    "Gaussian", "HurdleNegativeBinomial", "HurdlePoisson", "LogNormal", "NegativeBinomial",
    "Poisson", "StudentT", "ZeroInflatedNegativeBinomial", "ZeroInflatedPoisson", "get",
    "inverse_link",
]

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
    "cumulative": Cumulative,
    "ordinal": Cumulative,
    "zero_inflated_poisson": ZeroInflatedPoisson,
    "zip": ZeroInflatedPoisson,
    "zero_inflated_negbinomial": ZeroInflatedNegativeBinomial,
    "zero_inflated_negative_binomial": ZeroInflatedNegativeBinomial,
    "zinb": ZeroInflatedNegativeBinomial,
    "hurdle_poisson": HurdlePoisson,
    "hurdle_negbinomial": HurdleNegativeBinomial,
    "hurdle_negative_binomial": HurdleNegativeBinomial,
    "gamma": Gamma,
    "lognormal": LogNormal,
    "log_normal": LogNormal,
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
