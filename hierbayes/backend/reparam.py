"""Ridge-aligned coordinates for the residual sd, phi and the random-intercept variance.

With few occasions per cluster, the collapsed Gaussian likelihood with AR(1)/CAR(1)
residuals barely distinguishes a random intercept from a strongly autocorrelated
residual: along a ridge, ``v0 + sigma^2`` (lag-0 covariance) and ``v0 + sigma^2 phi``
(lag-1 covariance) stay nearly fixed while ``v0`` (the intercept's conditional variance)
moves. This module samples the *same prior* in coordinates that follow that ridge and
adds the prior density plus the exact log-Jacobian as a potential.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from hierbayes.design.build import Design
from hierbayes.spec.priors import Prior, lkj_eta, half_line
from hierbayes.backend import params
from hierbayes import config, names
from hierbayes.config import RidgeSettings




def applies(design: Design, priors: dict[str, Prior] | None = None) -> bool:
    """Whether :func:`ridge_parameters` can stand in for the usual hyperparameters.

    Parameters
    ----------
    design : Design
    priors : dict of str to Prior, optional
        When given, also require priors without hyperpriors, an LKJ correlation prior,
        positive-support sd priors and a phi prior whose support reaches 1 (see
        :func:`phi_support`; a narrower one, e.g. ``Uniform(0, 0.9)``, keeps PyMC's interval
        transform, which maps onto exactly its support).

    Returns
    -------
    bool
        True for a Gaussian model with one grouping factor whose terms include
        ``"Intercept"``, with AR(1) or CAR(1) residual correlation within that factor.
    """
    fam = design.spec.family
    if getattr(fam, "name", None) != "gaussian" or len(design.groups) != 1:
        return False
    if design.dpars:  # a residual sd per row has no single sigma^2 on the ridge
        return False
    g = design.groups[0]
    corr = design.correlation
    if corr is None or corr.kind not in ("ar1", "car1") or corr.group != g.name:
        return False
    if "Intercept" not in g.terms or (g.q > 1 and not g.correlated):
        return False
    if priors is not None:
        keys = ["sigma", "phi", names.sd(g.name)] + ([names.corr(g.name)] if g.q > 1 else [])
        for k in keys:
            p = priors.get(k)
            if p is None:
                if names.is_group_corr(k):
                    continue
                return False
            if p.hyperpriors:
                return False
        if not half_line(priors["sigma"]) or not half_line(priors[names.sd(g.name)]):
            return False
        cp = priors.get(names.corr(g.name))
        if cp is not None and cp.dist != "LKJ":
            return False
        if phi_support(design, priors)[1] < 1.0:
            return False
    return True


def phi_support(design: Design, priors: dict[str, Prior]) -> tuple[float, float]:
    """The support of phi: the correlation structure's bounds narrowed by the prior's
    (``Uniform(lower, upper)``, or ``(0, 1)`` for ``Beta``).

    The ridge coordinates map onto ``phi in (lo, 1)`` with ``lo`` the lower end of this
    support, so the sampler never steps outside the prior's support.

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.backend import reparam
    >>> m = hb.Model("y ~ time + (1 | id)", hb.datasets.load("clark_ar1"),
    ...              correlation=hb.AR1(time="time", group="id"),
    ...              priors={"phi": hb.Prior("Beta", alpha=2, beta=2)})
    >>> reparam.phi_support(m.design, m.priors)
    (0.0, 1.0)
    """
    lo, hi = (float(b) for b in design.phi_bounds)
    p = priors.get("phi")
    if p is not None and p.dist == "Uniform":
        lo = max(lo, float(p.params["lower"]))
        hi = min(hi, float(p.params["upper"]))
    elif p is not None and p.dist == "Beta":
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    return lo, hi


def term_order(terms) -> np.ndarray:
    """Order of the terms in the sampled Cholesky factor: the non-intercept terms in
    reverse order, then the intercept (so its conditional variance is the last pivot)."""
    terms = list(terms)
    k0 = terms.index("Intercept")
    others = [k for k in range(len(terms)) if k != k0][::-1]
    return np.array(others + [k0], dtype=int)


def _permute_params(prior: Prior, order: np.ndarray) -> Prior:
    q = len(order)
    out = {}
    for k, v in prior.params.items():
        arr = np.asarray(v) if not isinstance(v, (Prior, str)) else None
        out[k] = arr[order].copy() if arr is not None and arr.ndim == 1 and arr.size == q else v
    return prior.with_params(**out)


def _log_sigmoid(x):
    return -pt.softplus(-x)


def ridge_parameters(
    design: Design, priors: dict[str, Prior], settings: RidgeSettings = config.RIDGE,
):
    """Register sigma, phi and the random-effect covariance in ridge coordinates.

    Must be called inside a ``pm.Model`` whose coords come from
    :func:`hierbayes.backend.params.coords_for`. Registers free (flat, unconstrained)
    variables ``ridge_<g>`` (3 numbers) and, for ``q > 1``, ``chol_<g>_rest``
    (``(q - 1)(q + 2) / 2`` numbers), a potential ``prior_ridge_<g>`` holding the prior
    log-density of the original parameters plus the log-Jacobian, and the deterministics
    ``sigma``, ``phi``, ``sd_<g>`` (dims ``<g>__term``) and, for ``q > 1``, ``corr_<g>``
    (dims ``(<g>__term, <g>__term_bis)``), with the names and dims that
    :func:`~hierbayes.backend.params.re_covariance` gives them.

    Parameters
    ----------
    design : Design
        A design for which :func:`applies` is true.
    priors : dict of str to Prior
        Resolved priors; ``sigma``, ``phi``, ``sd_<g>`` and ``corr_<g>`` (LKJ) are used.
    settings : RidgeSettings, default :data:`hierbayes.config.RIDGE`
        ``variant`` (order of the bounded coordinates, see Notes), ``ridge`` (whether the
        intercept variance on the ridge is its variance given the other terms, the
        intercept's row of the factor below the diagonal sampled raw, or its total variance,
        that row as the sd times a unit vector of canonical partial correlations) and
        ``share_power`` (``k`` in ``w = w_+(rho) sigmoid(x_b)^k``, ``"rho_first"`` only).

    Returns
    -------
    sigma : TensorVariable
        Residual sd.
    phi : TensorVariable
        AR(1) / CAR(1) correlation parameter.
    F : TensorVariable, shape (q, q)
        A factor of the random-effect covariance, ``S = F F^T``, terms in design order.
    S : TensorVariable, shape (q, q)
        The random-effect covariance, terms in design order.

    Notes
    -----
    Order the terms as in :func:`term_order` (intercept last) and let ``L`` be the
    Cholesky factor of the covariance in that order,

    .. math::

        L = \\begin{pmatrix} L_o & 0 \\\\ l^T & \\sqrt{v_0} \\end{pmatrix},

    so :math:`v_0` is the variance of the intercept given the other terms. The sampled
    coordinates are

    .. math::

        \\tau^2 = v_0 + \\sigma^2, \\qquad w = v_0 / \\tau^2 \\in (0, 1), \\qquad
        \\rho = w + (1 - w)\\,\\phi,

    (:math:`\\tau^2\\rho = v_0 + \\sigma^2 \\phi` is the lag-1 covariance of the intercept
    plus residual part), so :math:`\\sigma^2 = (1 - w)\\tau^2`, :math:`v_0 = w\\tau^2` and
    :math:`\\phi = (\\rho - w)/(1 - w)`. With :math:`\\phi \\in (\\phi_-, 1)`
    (:math:`\\phi_- = -1` for AR(1), 0 for CAR(1)) the joint support is
    :math:`\\rho \\in (\\phi_-, 1)`, :math:`0 < w < w_+(\\rho) = (\\rho - \\phi_-)/(1 - \\phi_-)`.

    ``"rho_first"``: :math:`x = (\\log\\tau, \\operatorname{logit}\\frac{\\rho-\\phi_-}{1-\\phi_-},
    \\operatorname{logit}((w / w_+(\\rho))^{1/k}))`; ``"share_first"``:
    :math:`x = (\\log\\tau, \\operatorname{logit}\\frac{\\phi-\\phi_-}{1-\\phi_-},
    \\operatorname{logit} w)` (the logit of the scaled :math:`\\rho` on its interval
    :math:`(w + (1-w)\\phi_-, 1)` equals that of the scaled :math:`\\phi`). The rest of ``L``
    is sampled as ``log`` of the diagonal of :math:`L_o` and the raw off-diagonal entries
    of :math:`L_o` and :math:`l` (``ridge="conditional"``; with ``"total"``, :math:`v_0` is the
    intercept's total variance and its row of ``L`` is :math:`\\sqrt{v_0}` times a unit vector
    built from canonical partial correlations).

    Why these coordinates: the data pin down the lag-0 and lag-1 covariances
    (:math:`\\tau`, :math:`\\rho`), the slope sd and the intercept-slope covariance (so
    :math:`l`, not a correlation, which is unidentified as :math:`v_0 \\to 0`: a funnel), and
    leave :math:`v_0` loosely determined down to zero, where its posterior density in
    :math:`\\sqrt{v_0}` stays positive. ``k = 3`` thins the resulting exponential tail of
    :math:`x_b` (its posterior skewness -1.34 at ``k = 1``, -0.78 at ``k = 3``).

    The maps are triangular, so the log-Jacobian of ``x -> (sigma, phi, L)`` is a sum:

    .. math::

        \\log|J| = \\log(2\\tau^2) + \\log\\frac{\\tau^2}{1 - w}
          - \\log(2\\sigma) - \\log(2\\sqrt{v_0}) + \\sum \\log \\operatorname{diag} L_o
          + \\log|\\partial\\rho/\\partial x_\\rho| + \\log|\\partial w/\\partial x_w|,

    using :math:`|\\partial(v_0, \\sigma^2, \\phi)/\\partial(\\tau^2, w, \\rho)| =
    \\tau^2/(1-w)`. The potential adds the original prior density of ``sigma``, ``phi`` and of
    the packed ``L`` (PyMC's ``LKJCholeskyCov`` density with the sd prior permuted to the
    sampled term order; LKJ is invariant to permutations), so the prior over
    (beta, sigma, phi, sd, corr) is unchanged.
    """
    g = design.groups[0]
    name, q, tdim = g.name, g.q, names.term_dim(g.name)
    ridge = settings.ridge
    lo = phi_support(design, priors)[0]
    order = term_order(g.terms)
    inv = np.argsort(order)

    x = pm.Flat(f"ridge_{name}", shape=3)
    T, w, phi, logj = _ridge_block(x, lo, settings)
    sigma, r0, logj = _residual_and_intercept_sd(T, w, logj)
    sd_prior = priors[names.sd(name)]
    logp = pm.logp(params.make_dist("sigma", priors["sigma"]), sigma).sum()
    logp += pm.logp(params.make_dist("phi", priors["phi"]), phi).sum()
    if q == 1:
        L = r0.reshape((1, 1))
        logp += pm.logp(params.make_dist(names.sd(name), sd_prior), r0).sum()
    else:
        m = q - 1
        rest = pm.Flat(names.chol_rest(name), shape=(m * (m + 1)) // 2 + m)
        L, logj = _cholesky_factor(rest, r0, q, ridge, logj)
        eta = lkj_eta(priors, name)
        sd_dist = params.make_dist(names.sd(name), _permute_params(sd_prior, order), shape=q)
        prows, pcols = np.tril_indices(q)
        packed = L[prows, pcols]
        logp += pm.logp(pm.LKJCholeskyCov.dist(n=q, eta=eta, sd_dist=sd_dist, compute_corr=False), packed)
    pm.Potential(f"prior_ridge_{name}", logp + logj)
    return _deterministics(name, tdim, q, sigma, phi, L[inv, :])


def _ridge_block(x, lo: float, settings: RidgeSettings):
    """The ridge's three free coordinates -> its scale ``T`` (lag-0 covariance), the
    intercept's share ``w`` and ``phi``, with the log-Jacobian so far."""
    x_tau, x_a, x_b = x[0], x[1], x[2]
    T = pt.exp(2.0 * x_tau)
    logj = np.log(2.0) + 2.0 * x_tau
    if settings.variant == "rho_first":
        s_r = pt.sigmoid(x_a)
        rho = lo + (1.0 - lo) * s_r
        logj += np.log(1.0 - lo) + _log_sigmoid(x_a) + _log_sigmoid(-x_a)
        w_plus = s_r  # (rho - lo) / (1 - lo)
        k = float(settings.share_power)
        w = w_plus * pt.sigmoid(x_b) ** k if k != 1.0 else w_plus * pt.sigmoid(x_b)
        logj += _log_sigmoid(x_a) + np.log(k) + k * _log_sigmoid(x_b) + _log_sigmoid(-x_b)
        phi = (rho - w) / (1.0 - w)
    else:  # "share_first" (RidgeSettings validates the variant)
        w = pt.sigmoid(x_b)
        logj += _log_sigmoid(x_b) + _log_sigmoid(-x_b)
        s_p = pt.sigmoid(x_a)
        phi = lo + (1.0 - lo) * s_p
        # rho = w + (1 - w) phi on (w + (1 - w) lo, 1): d rho / d x_a = (1 - w)(1 - lo) s (1 - s)
        logj += pt.log1p(-w) + np.log(1.0 - lo) + _log_sigmoid(x_a) + _log_sigmoid(-x_a)
        # then (T, w, rho) -> phi contributes 1 / (1 - w) below
    return T, w, phi, logj


def _residual_and_intercept_sd(T, w, logj):
    """``sigma = sqrt(T (1 - w))`` and the intercept's (conditional or total) sd
    ``r0 = sqrt(T w)``, adding the Jacobian of (T, w) -> (sigma, r0)."""
    log1mw = pt.log1p(-w)
    sigma2 = T * (1.0 - w)
    v0 = T * w  # conditional ("conditional") or total ("total") intercept variance
    sigma = pt.sqrt(sigma2)
    r0 = pt.sqrt(v0)
    logj += pt.log(T) - log1mw - (np.log(2.0) + 0.5 * pt.log(sigma2)) - (np.log(2.0) + 0.5 * pt.log(v0))
    return sigma, r0, logj


def _cholesky_factor(rest, r0, q: int, ridge: str, logj):
    """The covariance's Cholesky factor in sampled term order (intercept last): the slopes'
    factor from ``rest`` (log-diagonal), the intercept's row below the diagonal raw
    (``"conditional"``) or as ``r0`` times a unit vector (``"total"``)."""
    m = q - 1
    rows, cols = np.tril_indices(m)
    diag = rows == cols
    lo_vals = rest[: len(rows)]
    vals = pt.where(diag, pt.exp(lo_vals), lo_vals)
    logj += lo_vals[np.flatnonzero(diag)].sum()
    L = pt.zeros((q, q))
    L = pt.set_subtensor(L[rows, cols], vals)
    y = rest[len(rows):]
    if ridge == "conditional":
        L = pt.set_subtensor(L[q - 1, :m], y)
        L = pt.set_subtensor(L[q - 1, q - 1], r0)
        return L, logj
    # "total": last row = r0 * unit vector from canonical partial correlations z = tanh(y)
    z = pt.tanh(y)
    row, left = [], 1.0
    for j in range(m):
        row.append(z[j] * pt.sqrt(left))
        logj += pt.log1p(-z[j] ** 2) + 0.5 * pt.log(left)
        left = left - row[-1] ** 2
    last = pt.sqrt(left)
    logj += m * pt.log(r0) - pt.log(last)
    return pt.set_subtensor(L[q - 1, :], r0 * pt.stack(row + [last])), logj


def _deterministics(name: str, tdim: str, q: int, sigma, phi, F):
    """Register ``sigma``, ``phi``, ``sd_<g>`` and ``corr_<g>`` from the factor ``F`` in the
    design's term order; returns ``(sigma, phi, F, S)``."""
    S = pt.dot(F, F.T)
    sigma = pm.Deterministic("sigma", sigma)
    phi = pm.Deterministic("phi", phi)
    sd = pt.sqrt(pt.diag(S))
    pm.Deterministic(names.sd(name), sd, dims=tdim)
    if q > 1:
        pm.Deterministic(names.corr(name), S / sd[:, None] / sd[None, :], dims=(tdim, names.bis(tdim)))
    return sigma, phi, F, S
