"""The censored likelihood of the latent backend (:mod:`hierbayes.design.censoring`).

Each kind of row enters as its own term, on its rows only (static indices): exact rows the
family's ``logp``; the censored ones the log cdf ``F`` of the family's standardised variable
``z`` (``(y - mu) / sigma``, on ``log y`` for the lognormal): ``F(z)`` for left-censored rows,
``F(-z)`` for right-censored ones (the standard normal and t are symmetric, so no
``log(1 - cdf)`` cancellation), and ``log (F(z2) - F(z))`` for intervals, from the upper tail
above the median. One ``pm.Potential`` named ``loglik`` holds their sum; there is no
observed variable (hierbayes' predictive draws are numpy, :mod:`hierbayes.predict`).

The normal log cdf is written with ``erfc`` (:func:`normal_logcdf`), which JAX compiles
(PyMC's uses ``erfcx``, which it does not); the t cdf's gradient in ``nu`` needs a
``ScalarLoop``, which only numba compiles: a censored Student-t model sets
``model.hb_compiler = "numba"`` for the sampler.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierbayes.design import censoring

LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)
#: below this z the log cdf is the asymptotic series (erfc would underflow near -38)
Z_TAIL = -30.0


def normal_logcdf(z):
    """``log Phi(z)`` of a tensor: ``log1p(-erfc(z / sqrt 2) / 2)`` above 0, ``log(erfc(-z /
    sqrt 2) / 2)`` down to -30, Mills' asymptotic series below (relative error < 1e-11); each
    branch gets an input inside its range, so that no gradient is NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> z = np.array([-40.0, -5.0, 0.3, 8.0])
    >>> bool(np.allclose(normal_logcdf(z).eval(), stats.norm.logcdf(z), rtol=1e-11))
    True
    """
    z = pt.as_tensor_variable(z)
    hi = pt.maximum(z, 0.0)
    mid = pt.clip(z, Z_TAIL, 0.0)
    lo = pt.minimum(z, Z_TAIL)
    r = 1.0 / (lo * lo)
    series = pt.log1p(r * (-1.0 + r * (3.0 + r * (-15.0 + r * (105.0 - 945.0 * r)))))
    tail = -0.5 * lo * lo - pt.log(-lo) - LOG_SQRT_2PI + series
    return pt.switch(pt.ge(z, 0.0), pt.log1p(-0.5 * pt.erfc(hi / np.sqrt(2.0))),
                     pt.switch(pt.ge(z, Z_TAIL), pt.log(0.5 * pt.erfc(-mid / np.sqrt(2.0))), tail))


def _standard(dist_name: str, kw: dict):
    """The standardised variable ``z(y)`` and the log cdf ``F`` of its (symmetric) law."""
    if dist_name == "Normal":
        return (lambda y: (y - kw["mu"]) / kw["sigma"]), normal_logcdf
    if dist_name == "LogNormal":
        return (lambda y: (pt.log(y) - kw["mu"]) / kw["sigma"]), normal_logcdf
    if dist_name == "StudentT":
        unit = pm.StudentT.dist(nu=kw["nu"], mu=0.0, sigma=1.0)
        return (lambda y: (y - kw["mu"]) / kw["sigma"]), (lambda z: pm.logcdf(unit, z, warn_rvs=False))
    raise ValueError(f"no censored likelihood for the PyMC distribution {dist_name!r}.")


def log_interval(F, z_lo, z_hi):
    """``log (F(z_hi) - F(z_lo))`` for ``z_lo < z_hi`` and a symmetric law: from the lower
    tail below the median, from ``F(-z_lo) - F(-z_hi)`` above it; the branch not taken gets
    a finite argument, so that its gradient is not NaN."""
    upper = pt.gt(z_lo, 0.0)
    a, b = F(z_hi), F(z_lo)
    c, d = F(-z_lo), F(-z_hi)
    from_cdf = a + pt.log1mexp(pt.switch(upper, -1.0, b - a))
    from_sf = c + pt.log1mexp(pt.switch(upper, d - c, -1.0))
    return pt.switch(upper, from_sf, from_cdf)


def _take(v, i):
    return v[i] if getattr(v, "ndim", 0) else v


def add_likelihood(model, design, dist, kwargs: dict, data) -> None:
    """Add the censored log-likelihood of ``design``'s rows as ``pm.Potential("loglik")``.

    ``dist`` is the PyMC distribution class, ``kwargs`` its parameters per row (length-N
    tensors or scalars; random variables, which the model's logp replaces by their values)
    and ``data(name, value)`` makes a ``pm.Data`` of a static shape.
    """
    cens = design.censoring
    total = pt.constant(0.0)
    for key, code in censoring.CODES.items():
        idx = cens.rows(code)
        if idx.size == 0:
            continue
        i = data(f"cens_{key}_rows", idx)
        kw = {k: _take(v, i) for k, v in kwargs.items()}
        y = data(f"y_{key}", design.y[idx])
        if code == censoring.NONE:
            term = pm.logp(dist.dist(**kw), y, warn_rvs=False)
        else:
            z, F = _standard(dist.__name__, kw)
            if code == censoring.LEFT:
                term = F(z(y))
            elif code == censoring.RIGHT:
                term = F(-z(y))
            else:
                term = log_interval(F, z(y), z(data("y_upper", cens.upper[idx])))
        total = total + term.sum()
    pm.Potential("loglik", total)
    if dist.__name__ == "StudentT":
        model.hb_compiler = "numba"
