"""Likelihoods the latent backend builds itself where PyMC's own does not serve.

PyMC 5's ``HurdlePoisson`` and ``HurdleNegativeBinomial`` have the right density, but
they truncate the count part with ``pm.Truncated``, whose normalising constant is the
count distribution's log CDF at 0: for the negative binomial a regularised incomplete
beta function, whose gradient in ``alpha`` JAX does not provide (nutpie's JAX compiler
fails: "Betainc gradient with respect to a and b not supported"), and which is costly in
PyTensor. Here ``log(1 - f(0))`` is written in closed form (``f(0) = e^-mu`` or
``(alpha / (alpha + mu))^alpha``) through ``log1mexp``: exact, cheap and differentiable
everywhere. The keyword arguments are PyMC's (``psi = 1 - hu``, ``mu``, ``alpha``), so
:meth:`hierbayes.spec.families.Family.dist_kwargs` does not change; draws come from the
family (:meth:`~hierbayes.spec.families.Family.draw`).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt


def _hurdle_logp(value, psi, count, log_f0):
    """``log(1 - psi)`` at 0; ``log psi + log f(y) - log(1 - f(0))`` above."""
    zero = pt.eq(value, 0)
    safe = pt.switch(zero, 1, value)  # f's density at a valid count, so no NaN gradient
    positive = pt.log(psi) + pm.logp(count, safe) - pt.log1mexp(log_f0)
    return pt.switch(zero, pt.log1p(-psi), positive)


def _draw(family_name: str):
    def random(*args, rng=None, size=None):
        from hierbayes.spec.families import get

        fam = get(family_name)
        psi, mu, *alpha = (np.asarray(a, dtype=float) for a in args)
        params = {"hu": 1.0 - psi, **({"alpha": alpha[0]} if alpha else {})}
        shape = size if size is not None else np.broadcast_shapes(*(np.shape(a) for a in args))
        return fam.draw(rng, np.broadcast_to(np.log(mu), shape), params).astype(np.int64)

    return random


def hurdle_poisson(name: str, psi, mu, **kwargs):
    """Hurdle Poisson likelihood ``name`` (PyMC's ``HurdlePoisson(psi, mu)``).

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> with pm.Model() as m:
    ...     y = hurdle_poisson("y", 0.6, np.array([1.0, 2.0]), observed=np.array([0, 3]))
    >>> [round(float(v), 6) for v in m.compile_logp(sum=False)({})[0]]
    [-0.916291, -2.07773]
    """
    def logp(value, psi, mu):
        return _hurdle_logp(value, psi, pm.Poisson.dist(mu=mu), -mu)

    return pm.CustomDist(name, psi, mu, logp=logp, random=_draw("hurdle_poisson"),
                         dtype="int64", **kwargs)


def hurdle_negbinomial(name: str, psi, mu, alpha, **kwargs):
    """Hurdle negative binomial likelihood ``name`` (PyMC's
    ``HurdleNegativeBinomial(psi, mu, alpha)``).

    Examples
    --------
    >>> import numpy as np, pymc as pm
    >>> with pm.Model() as m:
    ...     y = hurdle_negbinomial("y", 0.6, np.array([1.0, 2.0]), 2.0, observed=np.array([0, 3]))
    >>> [round(float(v), 6) for v in m.compile_logp(sum=False)({})[0]]
    [-0.916291, -2.302585]
    """
    def logp(value, psi, mu, alpha):
        return _hurdle_logp(value, psi, pm.NegativeBinomial.dist(mu=mu, alpha=alpha),
                            -alpha * pt.log1p(mu / alpha))

    return pm.CustomDist(name, psi, mu, alpha, logp=logp, random=_draw("hurdle_negbinomial"),
                         dtype="int64", **kwargs)


#: the family's ``dist`` names this module builds, in place of PyMC's class of that name
DENSITIES = {"HurdlePoisson": hurdle_poisson, "HurdleNegativeBinomial": hurdle_negbinomial}


def likelihood(dist: str):
    """The builder of a family's likelihood ``dist``: this module's, else ``pm.<dist>``.

    Examples
    --------
    >>> likelihood("HurdlePoisson").__name__, likelihood("Poisson").__name__
    ('hurdle_poisson', 'Poisson')
    """
    return DENSITIES.get(dist) or getattr(pm, dist)
