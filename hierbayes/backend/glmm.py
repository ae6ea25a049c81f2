"""The marginal GLMM backend: one grouping factor's random effects integrated out by
adaptive Gauss-Hermite quadrature (DESIGN.md, "The marginal GLMM likelihood").

NUTS explores the fixed effects, the effects' covariance (sds and LKJ correlation, the same
variables and priors as the latent backend) and the family's own parameter (:func:`hierbayes.likelihood.quadrature.family_param`: the
negative binomial's ``alpha``, the Gamma's ``shape``, the lognormal's ``sigma``; the Op's
``alpha`` input whatever its name); the marginal
log-likelihood and its exact gradient come from the numba kernel of
:mod:`hierbayes.likelihood.quadrature` through one PyTensor Op (:class:`MarginalLogLik`),
which also lowers to JAX for nutpie (a host callback that returns value and gradient
together). The effects are drawn back after sampling
(:func:`hierbayes.likelihood.recover_glmm.draw_random_effects`).

Each evaluation starts Newton's method from zero in every cluster: a warm start shared
between chains that run in parallel would make the draws depend on thread timing, and
from zero the canonical links converge in a few steps.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from hierbayes.backend import params
from hierbayes.design.build import Design
from hierbayes.likelihood import quadrature
from hierbayes.likelihood.recover import covariance_cholesky
from hierbayes.spec.priors import Prior

#: families the quadrature kernel evaluates
FAMILIES = ("bernoulli", "binomial", "poisson", "negbinomial", "gamma", "lognormal")
#: families whose derivatives (Family.eta_derivatives) the numpy reference takes but the
#: numba kernel has no case for: they fit on the latent backend (none at present)
NO_KERNEL: tuple[str, ...] = ()


def unavailable(design: Design) -> str | None:
    """Why the quadrature backend cannot take ``design`` (None when it can).

    Examples
    --------
    >>> import hierbayes as hb
    >>> data = hb.datasets.load("clark_ar1")
    >>> data["k"] = (data["y"] > 0).astype(int)
    >>> unavailable(hb.Model("k ~ time + (1 | id)", data, family="bernoulli").design) is None
    True
    """
    fam = design.spec.family
    if fam.name in NO_KERNEL:
        return (f"the {fam.name} family has no marginal backend: the quadrature kernel is numba "
                f"code per family and has no {fam.name} case (it takes {', '.join(FAMILIES)})")
    if design.censoring is not None:
        return "a censored response has no marginal backend"
    if fam.name not in FAMILIES:
        why = f": {fam.no_marginal}" if fam.no_marginal else ""
        return (f"the {fam.name} family has no marginal backend{why} (integrated exactly: "
                f"gaussian; by quadrature: {', '.join(FAMILIES)})")
    if design.dpars:
        return (f"a formula for the family's parameter ({', '.join(design.dpars)}) has no "
                f"marginal backend")
    if len(design.groups) != 1:
        return (f"the quadrature backend integrates out one grouping factor; this model has "
                f"{len(design.groups)}")
    if design.correlation is not None:
        return "a residual correlation of a non-Gaussian family is a latent process"
    if not 1 <= design.groups[0].q <= 3:
        return f"the quadrature backend takes 1 to 3 effects per cluster, not {design.groups[0].q}"
    return None


def _reversed(group) -> bool:
    """Whether the sampler's covariance factor has the terms in reverse order
    (:func:`hierbayes.backend.params.re_covariance`: correlated terms, q > 1)."""
    return group.q > 1 and group.correlated


def likelihood(design: Design, nagq: int | None = None) -> quadrature.MarginalGLMM:
    """The kernel-backed marginal likelihood of ``design``'s rows, with ``Z``'s columns in
    the order of the sampler's lower-triangular covariance factor."""
    g = design.groups[0]
    Z = g.Z[:, ::-1] if _reversed(g) else g.Z
    rows, _ = quadrature.cluster_rows(design.y, design.X, Z, g.index, g.n_levels,
                                      trials=design.trials)
    return quadrature.marginal_glmm(design.spec.family, rows, nagq=nagq)


def fingerprint(design: Design) -> str:
    """A hash of the data the Op holds: compiled models reuse it only for the same data."""
    h = hashlib.sha1()
    g = design.groups[0]
    for a in (design.y, design.X, g.Z, g.index, design.trials):
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _evaluate(mg: quadrature.MarginalGLMM, beta, L, alpha, grad: bool) -> dict:
    cold = dataclasses.replace(mg, modes=np.zeros_like(mg.modes))  # see the module docstring
    return cold.value_and_grad(np.asarray(beta, dtype=float), np.asarray(L, dtype=float),
                               float(alpha), grad=grad)


def _inputs(beta, L, alpha) -> list:
    return [pt.as_tensor_variable(v, dtype="float64") for v in (beta, L, alpha)]


class MarginalLogLik(Op):
    """``ll(beta, L, alpha)``: the marginal log-likelihood (scalar); its gradient is
    :class:`MarginalLogLikGrad` of the same kernel evaluation."""

    def __init__(self, mg: quadrature.MarginalGLMM):
        self.mg = mg

    def make_node(self, beta, L, alpha):
        return Apply(self, _inputs(beta, L, alpha), [pt.dscalar()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(_evaluate(self.mg, *inputs, grad=False)["ll"], dtype=float)

    def grad(self, inputs, output_grads):
        gb, gL, ga = MarginalLogLikGrad(self.mg)(*inputs)
        (g,) = output_grads
        return [g * gb, g * gL, g * ga]


class MarginalLogLikGrad(Op):
    """The gradient of :class:`MarginalLogLik` in ``beta`` (p), ``L`` (q x q, lower) and
    ``alpha``."""

    def __init__(self, mg: quadrature.MarginalGLMM):
        self.mg = mg

    def make_node(self, beta, L, alpha):
        return Apply(self, _inputs(beta, L, alpha), [pt.dvector(), pt.dmatrix(), pt.dscalar()])

    def perform(self, node, inputs, outputs):
        out = _evaluate(self.mg, *inputs, grad=True)
        outputs[0][0] = np.asarray(out["beta"], dtype=float)
        outputs[1][0] = np.tril(np.asarray(out["L"], dtype=float))
        outputs[2][0] = np.asarray(out["param"], dtype=float)


def _register_jax() -> None:
    """Lower both Ops to JAX: a host callback returning value and gradient together, with a
    custom VJP (nutpie differentiates the JAX graph)."""
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    def host(mg):
        def both(beta, L, alpha):
            out = _evaluate(mg, beta, L, alpha, grad=True)
            return (np.float64(out["ll"]), np.asarray(out["beta"], dtype=np.float64),
                    np.tril(np.asarray(out["L"], dtype=np.float64)), np.float64(out["param"]))

        def call(beta, L, alpha):
            shapes = (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct(beta.shape, jnp.float64),
                      jax.ShapeDtypeStruct(L.shape, jnp.float64), jax.ShapeDtypeStruct((), jnp.float64))
            return jax.pure_callback(both, shapes, beta, L, alpha)

        @jax.custom_vjp
        def ll(beta, L, alpha):
            return call(beta, L, alpha)[0]

        def fwd(beta, L, alpha):
            v, gb, gL, ga = call(beta, L, alpha)
            return v, (gb, gL, ga)

        def bwd(res, g):
            gb, gL, ga = res
            return g * gb, g * gL, g * ga

        ll.defvjp(fwd, bwd)
        return ll, call

    @jax_funcify.register(MarginalLogLik)
    def _ll(op, **kwargs):
        return host(op.mg)[0]

    @jax_funcify.register(MarginalLogLikGrad)
    def _grad(op, **kwargs):
        call = host(op.mg)[1]

        def grads(beta, L, alpha):
            _, gb, gL, ga = call(beta, L, alpha)
            return gb, gL, ga

        return grads


try:  # JAX is optional for the PyMC sampler
    _register_jax()
except ImportError:  # pragma: no cover
    pass


def build(design: Design, priors: dict[str, Prior], nagq: int | None = None) -> pm.Model:
    """PyMC model: the latent backend's priors on ``beta``, ``sd_<g>``/``corr_<g>`` and the
    family's parameter, and the quadrature marginal log-likelihood as a potential."""
    g = design.groups[0]
    mg = likelihood(design, nagq)
    with pm.Model(coords=params.coords_for(design)) as model:
        beta = params.fixed_effects(design, priors)
        if not design.p:
            beta = pt.zeros(0)
        fp = params.family_params(design, priors)
        F, _ = params.re_covariance(g, priors)
        L = F[::-1, :] if _reversed(g) else F  # lower triangular, Z's columns reversed to match
        name = quadrature.family_param(design.spec.family)
        alpha = pt.constant(1.0) if name is None else fp[name]
        pm.Potential("loglik", MarginalLogLik(mg)(beta, L, alpha))
    model.hb_marginal_glmm = mg  # what recovery evaluates the kernel with
    return model


def term_order(group) -> np.ndarray:
    """Column ``k`` of the kernel's ``Z`` is the design's term ``term_order(g)[k]``."""
    return np.arange(group.q)[::-1] if _reversed(group) else np.arange(group.q)


def kernel_factors(group, sd: np.ndarray, corr: np.ndarray | None) -> np.ndarray:
    """Lower Cholesky factors of the effects' covariance in the kernel's term order, from
    draws of ``sd`` (D, q) and ``corr`` (D, q, q; None without correlations), as the
    design orders the terms: the ``L`` that :func:`likelihood`'s kernel takes per draw."""
    L = covariance_cholesky(sd, corr)
    order = term_order(group)
    return np.linalg.cholesky((L @ np.swapaxes(L, -1, -2))[:, order][:, :, order])


__all__ = ["FAMILIES", "MarginalLogLik", "MarginalLogLikGrad", "build", "fingerprint",
           "kernel_factors", "likelihood", "term_order", "unavailable"]
