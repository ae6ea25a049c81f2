"""The marginal GLMM backend: one grouping factor's random effects integrated out by
adaptive Gauss-Hermite quadrature (DESIGN.md, "The marginal GLMM likelihood").

With several grouping factors (crossed or nested) the model is a hybrid: the factor of
:func:`integrated_group` (the one with the most levels, the Gaussian hybrid's rule,
:func:`hierbayes.likelihood.collapsed.collapsed_group`) is integrated out, and the other
factors' effects are sampled (:func:`hierbayes.backend.latent.random_part`, centred or
non-centred per factor by :mod:`hierbayes.backend.centring`), entering the quadrature as
each row's offset ``o_i = sum_f z_fi b_f[level_f(i)]``: the kernel's gradient in the
offsets (:mod:`hierbayes.likelihood.quadrature`) chains into the sampled effects. The most
levels because the integrated factor's effects are the ones NUTS no longer has to explore:
integrating the larger factor removes the most coordinates (and the most funnels), and its
clusters are the smallest, so the quadrature's cost per cluster is lowest.

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
from hierbayes.likelihood.collapsed import collapsed_group
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
    if not design.groups:
        return "the model has no grouping factor to integrate out"
    if design.correlation is not None:
        return "a residual correlation of a non-Gaussian family is a latent process"
    g = integrated_group(design)
    if not 1 <= g.q <= 3:
        which = f" of {g.name!r} (the factor with the most levels)" if len(design.groups) > 1 else ""
        return f"the quadrature backend takes 1 to 3 effects per cluster, not {g.q}{which}"
    return None


def integrated_group(design: Design):
    """The grouping factor the quadrature integrates out: the one with the most levels (the
    first of those tied), the rule of the Gaussian hybrid
    (:func:`hierbayes.likelihood.collapsed.collapsed_group`); the others are sampled.

    Examples
    --------
    >>> import pandas as pd
    >>> import hierbayes as hb
    >>> df = pd.DataFrame({"y": [1, 0, 1, 1, 0, 0, 1, 0], "s": list("abcdabcd"), "i": list("uuvvuuvv")})
    >>> m = hb.Model("y ~ 1 + (1 | s) + (1 | i)", df, family="bernoulli")
    >>> integrated_group(m.design).name, [g.name for g in sampled_groups(m.design)]
    ('s', ['i'])
    """
    return collapsed_group(design)


def sampled_groups(design: Design) -> list:
    """The grouping factors whose effects NUTS samples in the quadrature backend: all but
    :func:`integrated_group` (none for one factor).

    Examples
    --------
    >>> import pandas as pd
    >>> import hierbayes as hb
    >>> df = pd.DataFrame({"y": [1, 0, 1, 1], "s": list("abcd"), "i": list("uuvv")})
    >>> m = hb.Model("y ~ 1 + (1 | s) + (1 | i)", df, family="bernoulli")
    >>> [g.name for g in sampled_groups(m.design)], hybrid(m.design)
    (['i'], True)
    """
    g = integrated_group(design)
    return [h for h in design.groups if h.name != g.name]


def hybrid(design: Design) -> bool:
    """Whether the quadrature model samples some factors' effects (several factors); see
    :func:`sampled_groups` for an example."""
    return len(design.groups) > 1


def _reversed(group) -> bool:
    """Whether the sampler's covariance factor has the terms in reverse order
    (:func:`hierbayes.backend.params.re_covariance`: correlated terms, q > 1)."""
    return group.q > 1 and group.correlated


def likelihood(design: Design, nagq: int | None = None) -> quadrature.MarginalGLMM:
    """The kernel-backed marginal likelihood of ``design``'s rows, with ``Z``'s columns in
    the order of the sampler's lower-triangular covariance factor."""
    return likelihood_and_order(design, nagq)[0]


def likelihood_and_order(design: Design, nagq: int | None = None):
    """:func:`likelihood` and the design row of each of its rows (its rows are sorted by
    the integrated factor's clusters): an offset in design order ``o`` enters as
    ``o[order]``, and the kernel's offset gradient ``r`` goes back as ``out[order] = r``.

    Examples
    --------
    >>> import pandas as pd
    >>> import hierbayes as hb
    >>> df = pd.DataFrame({"y": [1, 0, 1, 1], "s": list("abac"), "i": list("uuvv")})
    >>> mg, order = likelihood_and_order(hb.Model("y ~ 1 + (1 | s) + (1 | i)", df, family="bernoulli").design)
    >>> mg.rows.starts.tolist(), order.tolist()  # s (3 levels) integrated out
    ([0, 2, 3, 4], [0, 1, 2, 3])

    (The design already sorts its rows by the factor with the most levels, so ``order`` is
    usually the identity; the Op does not rely on it.)
    """
    g = integrated_group(design)
    Z = g.Z[:, ::-1] if _reversed(g) else g.Z
    rows, order = quadrature.cluster_rows(design.y, design.X, Z, g.index, g.n_levels,
                                          trials=design.trials)
    return quadrature.marginal_glmm(design.spec.family, rows, nagq=nagq), order


def fingerprint(design: Design) -> str:
    """A hash of the data the Op holds: compiled models reuse it only for the same data."""
    h = hashlib.sha1()
    arrays = [design.y, design.X, design.trials]
    for g in design.groups:
        h.update(g.name.encode())
        arrays += [g.Z, g.index]
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _evaluate(mg: quadrature.MarginalGLMM, beta, L, alpha, grad: bool, offset=None) -> dict:
    cold = dataclasses.replace(mg, modes=np.zeros_like(mg.modes))  # see the module docstring
    return cold.value_and_grad(np.asarray(beta, dtype=float), np.asarray(L, dtype=float),
                               float(alpha), offset=offset, grad=grad)


def _inputs(*values) -> list:
    return [pt.as_tensor_variable(v, dtype="float64") for v in values]


class MarginalLogLik(Op):
    """``ll(beta, L, alpha)``: the marginal log-likelihood (scalar); its gradient is
    :class:`MarginalLogLikGrad` of the same kernel evaluation.

    With ``order`` (a hybrid model, :func:`likelihood_and_order`) the Op takes a fourth
    input, each design row's offset (N,, design order): ``ll(beta, L, alpha, offset)``.
    """

    def __init__(self, mg: quadrature.MarginalGLMM, order: np.ndarray | None = None):
        self.mg = mg
        self.order = order

    def make_node(self, *inputs):
        return Apply(self, _inputs(*inputs), [pt.dscalar()])

    def perform(self, node, inputs, outputs):
        outputs[0][0] = np.asarray(_call(self.mg, self.order, inputs, grad=False)["ll"], dtype=float)

    def grad(self, inputs, output_grads):
        grads = MarginalLogLikGrad(self.mg, self.order)(*inputs)
        (g,) = output_grads
        return [g * v for v in grads]


class MarginalLogLikGrad(Op):
    """The gradient of :class:`MarginalLogLik` in ``beta`` (p), ``L`` (q x q, lower),
    ``alpha`` and, for a hybrid model, the offsets (N, design order)."""

    def __init__(self, mg: quadrature.MarginalGLMM, order: np.ndarray | None = None):
        self.mg = mg
        self.order = order

    def make_node(self, *inputs):
        outs = [pt.dvector(), pt.dmatrix(), pt.dscalar()] + ([pt.dvector()] if self.order is not None else [])
        return Apply(self, _inputs(*inputs), outs)

    def perform(self, node, inputs, outputs):
        for slot, value in zip(outputs, _value_and_gradients(self.mg, self.order, inputs)[1:]):
            slot[0] = value


def _call(mg, order, inputs, grad: bool) -> dict:
    beta, L, alpha = inputs[:3]
    offset = None if order is None else np.asarray(inputs[3], dtype=float)[order]
    return _evaluate(mg, beta, L, alpha, grad=grad, offset=offset)


def _value_and_gradients(mg, order, inputs) -> list:
    """The value of :func:`_call` and its gradients in its inputs' order and shapes (design
    row order for the offsets)."""
    out = _call(mg, order, inputs, grad=True)
    grads = [np.asarray(out["ll"], dtype=np.float64), np.asarray(out["beta"], dtype=np.float64),
             np.tril(np.asarray(out["L"], dtype=np.float64)), np.asarray(out["param"], dtype=np.float64)]
    if order is not None:
        g_off = np.empty(order.size)
        g_off[order] = out["offset"]
        grads.append(g_off)
    return grads


def _register_jax() -> None:
    """Lower both Ops to JAX: a host callback returning value and gradient together, with a
    custom VJP (nutpie differentiates the JAX graph)."""
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    def host(mg, order):
        def both(*inputs):
            return tuple(_value_and_gradients(mg, order, inputs))

        def call(*inputs):
            shapes = (jax.ShapeDtypeStruct((), jnp.float64),) + tuple(
                jax.ShapeDtypeStruct(jnp.shape(v), jnp.float64) for v in inputs)
            return jax.pure_callback(both, shapes, *inputs)

        @jax.custom_vjp
        def ll(*inputs):
            return call(*inputs)[0]

        def fwd(*inputs):
            v, *grads = call(*inputs)
            return v, tuple(grads)

        def bwd(res, g):
            return tuple(g * v for v in res)

        ll.defvjp(fwd, bwd)
        return ll, call

    @jax_funcify.register(MarginalLogLik)
    def _ll(op, **kwargs):
        return host(op.mg, op.order)[0]

    @jax_funcify.register(MarginalLogLikGrad)
    def _grad(op, **kwargs):
        call = host(op.mg, op.order)[1]

        def grads(*inputs):
            return tuple(call(*inputs)[1:])

        return grads


try:  # JAX is optional for the PyMC sampler
    _register_jax()
except ImportError:  # pragma: no cover
    pass


def build(design: Design, priors: dict[str, Prior], nagq: int | None = None,
          centering=None) -> pm.Model:
    """PyMC model: the latent backend's priors on ``beta``, ``sd_<g>``/``corr_<g>`` and the
    family's parameter, and the quadrature marginal log-likelihood as a potential.

    A hybrid model (several factors) also samples the other factors' effects, centred or
    not per ``centering`` (:func:`hierbayes.backend.latent.random_part`), whose ``Z b``
    is the Op's offset input."""
    g = integrated_group(design)
    mg, order = likelihood_and_order(design, nagq)
    with pm.Model(coords=params.coords_for(design)) as model:
        beta = params.fixed_effects(design, priors)
        if not design.p:
            beta = pt.zeros(0)
        fp = params.family_params(design, priors)
        F, _ = params.re_covariance(g, priors)
        L = F[::-1, :] if _reversed(g) else F  # lower triangular, Z's columns reversed to match
        name = quadrature.family_param(design.spec.family)
        alpha = pt.constant(1.0) if name is None else fp[name]
        if hybrid(design):
            from hierbayes.backend.latent import random_part

            offset = random_part(design, priors, sampled_groups(design), centering)
            ll = MarginalLogLik(mg, order)(beta, L, alpha, offset)
        else:
            ll = MarginalLogLik(mg)(beta, L, alpha)
        pm.Potential("loglik", ll)
    model.hb_marginal_glmm = mg  # what recovery evaluates the kernel with
    model.hb_row_order = order  # design row of each of the kernel's rows
    return model


def sampled_offsets(design: Design, posterior, order: np.ndarray):
    """The hybrid model's offsets per posterior draw, a chunk of draws at a time: a function
    ``offset(draws)`` -> (len(draws), N), ``sum_f Z_f b_f[level_f]`` of the sampled factors
    at the flat draw indices ``draws`` (``chain * n_draws + draw``), in the kernel's row
    order (``order`` of :func:`likelihood_and_order`). None for one factor.

    ``posterior`` holds ``b_<f>`` of every sampled factor (dims chain, draw, level, term).

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> import hierbayes as hb
    >>> df = pd.DataFrame({"y": [1, 0, 1, 1, 0, 0, 1, 0], "s": list("abcdabcd"), "i": list("uuvvuuvv")})
    >>> m = hb.Model("y ~ 1 + (1 | s) + (1 | i)", df, family="bernoulli")
    >>> b = xr.DataArray(np.array([[[[1.0], [-1.0]]]]), dims=("chain", "draw", "i", "i__term"))
    >>> _, order = likelihood_and_order(m.design)
    >>> sampled_offsets(m.design, xr.Dataset({"b_i": b}), order)(np.array([0])).tolist()  # rows by s
    [[1.0, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]]
    """
    from hierbayes import names

    others = sampled_groups(design)
    if not others:
        return None
    effects = {}
    for h in others:
        v = posterior[names.effects(h.name)].transpose("chain", "draw", ...).values
        effects[h.name] = v.reshape((-1, h.n_levels, h.q))

    def offset(draws):
        out = np.zeros((len(draws), design.n))
        for h in others:
            out += np.einsum("nq,dnq->dn", h.Z, effects[h.name][draws][:, h.index, :])
        return out[:, order]

    return offset


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


__all__ = ["FAMILIES", "MarginalLogLik", "MarginalLogLikGrad", "build", "fingerprint", "hybrid",
           "integrated_group", "kernel_factors", "sampled_offsets", "likelihood", "likelihood_and_order",
           "sampled_groups", "term_order", "unavailable"]
