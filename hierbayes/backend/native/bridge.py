"""nutpie models backed by the hand-written numba kernel (:mod:`hierbayes.backend.native.kernel`).

For a Gaussian model with one grouping factor integrated out, the log-density that NUTS
explores has a handful of parameters and, by cluster pattern, a few small dense matrices.
Compiled through PyTensor and JAX it costs ~300 microseconds per gradient, nearly all of it
dispatch overhead and Python's GIL; the kernel computes the same density (tested equal to
the PyMC model's log-density and gradient) in a few microseconds, called by nutpie as a C
function pointer. The kernel is compiled once per installation (numba's on-disk cache);
a model only packs its data into a float buffer.

:func:`unsupported` says why a model cannot use the kernel (then the JAX path is used).
"""

from __future__ import annotations

import threading

import numpy as np

from hierbayes.likelihood.collapsed import cross_products
from hierbayes import config
from hierbayes.design.build import Design
from hierbayes.likelihood.patterns import cluster_patterns, relative_times
from hierbayes.spec.priors import Prior, half_form, half_line, lkj_eta, lkj_log_normaliser
from hierbayes.backend import reparam
from hierbayes.backend.native import dual
from hierbayes.backend.native import kernel
from hierbayes import names

#: prior distributions and the order of their parameters in the kernel's (a, b, c)
PRIOR_PARAMETERS = {
    "Flat": (), "HalfFlat": (), "Normal": ("mu", "sigma"), "StudentT": ("nu", "mu", "sigma"),
    "Cauchy": ("alpha", "beta"), "HalfNormal": ("sigma",), "HalfStudentT": ("nu", None, "sigma"),
    "HalfCauchy": (None, "beta"), "Exponential": ("lam",), "Gamma": ("alpha", "beta"),
    "InverseGamma": ("alpha", "beta"), "LogNormal": ("mu", "sigma"),
    "Uniform": ("lower", "upper"), "Beta": ("alpha", "beta"), "Weibull": ("alpha", "beta"),
}
_DEFAULTS = {"Normal": {"mu": 0.0, "sigma": 1.0}, "StudentT": {"mu": 0.0, "sigma": 1.0},
             "HalfNormal": {"sigma": 1.0}, "HalfStudentT": {"sigma": 1.0},
             "Cauchy": {"alpha": 0.0}, "LogNormal": {"mu": 0.0, "sigma": 1.0},
             "Uniform": {"lower": 0.0, "upper": 1.0}}
_REAL = {"Flat", "Normal", "StudentT", "Cauchy"}
#: priors the kernels evaluate on an unbounded coefficient
REAL_LINE = frozenset(_REAL)


def prior_rows(prior: Prior, size: int) -> np.ndarray | None:
    """``(size, kernel.PRIOR_WIDTH)`` rows of (code, a, b, c, lower, log_mass) for a prior,
    or None if the kernel lacks it.

    The prior is taken in the form the backends build (:func:`hierbayes.spec.priors.half_form`:
    ``Normal(0, s)`` truncated at 0 is ``HalfNormal(s)``); a Normal, Student-t or Cauchy
    truncated at 0 otherwise keeps its code, with ``lower = 0`` and the log of its mass
    above 0 as PyMC's ``pm.Truncated`` computes it (:func:`_log_mass_above`).
    """
    prior = half_form(prior) or prior
    param_names = PRIOR_PARAMETERS.get(prior.dist)
    if param_names is None or prior.hyperpriors:
        return None
    if prior.truncated_at is not None and (prior.truncated_at != 0.0 or prior.dist not in _REAL):
        return None
    params = dict(_DEFAULTS.get(prior.dist, {}))
    for k, v in prior.params.items():
        params[k] = v
    if prior.dist == "Exponential" and "scale" in params:
        params["lam"] = 1.0 / np.asarray(params.pop("scale"), dtype=float)
    if prior.dist == "Gamma" and "mu" in params:
        mu, sd = (np.asarray(params.pop(k), dtype=float) for k in ("mu", "sigma"))
        params["alpha"], params["beta"] = mu**2 / sd**2, mu / sd**2
    if prior.dist in ("StudentT", "HalfStudentT") and "lam" in params:
        return None
    if set(params) - {n for n in param_names if n}:
        return None
    out = np.zeros((size, kernel.PRIOR_WIDTH))
    out[:, 0] = dual.PRIOR_CODES[prior.dist]
    for j, n in enumerate(param_names):
        if n is None:
            continue
        if n not in params:
            return None
        try:
            v = np.broadcast_to(np.asarray(params[n], dtype=float), (size,))
        except ValueError:
            return None
        out[:, 1 + j] = v
    out[:, 4] = -np.inf
    if prior.truncated_at is not None:
        out[:, 4] = prior.truncated_at
        out[:, 5] = _log_mass_above(prior, size)
    return out


def _log_mass_above(prior: Prior, size: int) -> np.ndarray:
    """``log P(X >= lower)`` of a truncated prior's base distribution, per element: the
    constant PyMC's ``pm.Truncated`` subtracts, read off PyMC's own graph (the base density
    less the truncated one at a point of the support), so that the kernel's density is the
    PyMC model's to rounding."""
    import pymc as pm
    import pytensor
    from pytensor.compile.mode import Mode

    from hierbayes.backend.params import make_dist

    base = make_dist("prior", Prior(prior.dist, **prior.params), shape=size)
    cut = make_dist("prior", prior, shape=size)
    at = np.full(size, prior.truncated_at + 1.0)
    fn = pytensor.function([], pm.logp(base, at) - pm.logp(cut, at),
                           mode=Mode(linker="py", optimizer="fast_run"))
    return np.asarray(fn(), dtype=float)


def kernel_patterns(design: Design, group, layout: str = "auto") -> dict:
    """The kernel's cluster patterns.

    Pooled: per pattern the cross-products ``K[s, t, i, j] = sum_c W_c[s, i] W_c[t, j]`` of
    ``W = [y, X]`` (cluster rows in time order). When pooling would not shrink the work
    (about as many patterns as clusters: unbalanced data), each cluster is its own pattern
    holding its rows ``W`` (``direct``: whitened, work linear in the rows; ``direct_dense``:
    the dense reference). With Z, times, sizes and counts.
    """
    lay = design.layout
    first, inverse = cluster_patterns(design, group)
    Z, times = lay.pad(group.Z), relative_times(design)
    C, T = lay.mask.shape
    G, m = first.size, 1 + design.p
    W = np.concatenate([lay.pad(design.y)[:, :, None], lay.pad(design.X)], axis=2)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {sorted(LAYOUTS)}, got {layout!r}.")
    if layout == "auto":
        layout = "pooled" if _pooled_cost(G, T, m) <= _whitened_cost(C, T, m, group.q) else "direct"
    if layout in ("direct", "direct_dense"):
        return {
            "K": W, "Z": Z, "times": times, "nobs": lay.sizes.astype(float),
            "count": np.ones(C), "T": T, "direct": LAYOUTS[layout],
        }
    return {
        "K": cross_products(W, inverse, G), "Z": Z[first], "times": times[first],
        "nobs": lay.sizes[first].astype(float),
        "count": np.bincount(inverse, minlength=G).astype(float), "T": T,
        "direct": kernel.POOLED,
    }


#: kernel layouts: "direct" (whitening + Woodbury per cluster, linear in its rows) is what
#: unbalanced data get; "direct_dense" (dense n x n algebra per cluster) is the reference
#: it replaced, kept for the benchmark and the tests
LAYOUTS = {"auto": None, "pooled": kernel.POOLED, "direct": kernel.DIRECT_WHITENED,
           "direct_dense": kernel.DIRECT_DENSE}


def _pooled_cost(G: int, T: int, m: int) -> float:
    """Flops per gradient of the pooled layout: per pattern the quadratic forms of its
    T x T x m x m cross-products and dense T x T algebra."""
    return G * (T * T * m * m + 4 * T**3)


def _whitened_cost(C: int, T: int, m: int, q: int) -> float:
    """Flops per gradient of the whitened layout: per cluster two passes over its rows
    (residual, whitening, q x q cross-products) and q x q algebra."""
    return C * (T * (3 * m + 4 * q * q) + 6 * q**3)


def dense_correlation_reason(design: Design, kernel: str = "the kernel") -> str | None:
    """Why ``kernel`` (the native kernels whiten AR(1)/CAR(1) only) cannot take the model's
    residual correlation, or None.

    Examples
    --------
    >>> import hierbayes as hb
    >>> m = hb.Model("y ~ time + (1 | id)", hb.datasets.load("clark_ar1"),
    ...              correlation=hb.ARMA(time="time", group="id", p=1))
    >>> dense_correlation_reason(m.design)
    "the kernel's residual correlations are AR(1)/CAR(1); hb.ARMA is not in it"
    """
    corr = design.correlation
    if corr is not None and getattr(corr, "dense", False):
        return (f"{kernel}'s residual correlations are AR(1)/CAR(1); "
                f"hb.{type(corr).__name__} is not in it")
    return None


def unsupported(design: Design, priors: dict[str, Prior], backend: str) -> str | None:
    """Why the kernel cannot compute this model's log-density (None when it can)."""
    why = dense_correlation_reason(design)
    if why is not None:
        return why
    if backend != "marginal":
        return "the kernel covers the marginal backend"
    if getattr(design.spec.family, "name", None) != "gaussian":
        return "the kernel covers the Gaussian family"
    if len(design.groups) != 1:
        return ("the one-factor kernel covers one grouping factor (several: "
                "hierbayes.backend.native.hybrid_bridge)")
    if design.dpars:
        return (f"the kernel has one residual sd; this model has a formula for "
                f"{', '.join(design.dpars)}")
    why = unsupported_priors(design, priors, design.groups, reparam.applies(design, priors))
    if why is not None:
        return why
    if design.layout is None:
        return "the design has no cluster layout"
    return None


def unsupported_priors(design: Design, priors: dict[str, Prior], groups, ridge: bool) -> str | None:
    """Which prior the kernels lack, if any: the fixed effects' (whole-line, untruncated),
    sigma's and each of ``groups``' sds (positive, known), their correlations (LKJ), and
    phi's (with ``ridge`` False, a ``Uniform`` or ``Beta``: PyMC's interval and log-odds
    transforms). None when the kernels know every one.

    Examples
    --------
    >>> import hierbayes as hb
    >>> m = hb.Model("y ~ time + (1 | id)", hb.datasets.load("clark_ar1"),
    ...              priors={"time": hb.Prior("Uniform", lower=-5, upper=5)})
    >>> unsupported_priors(m.design, m.priors, m.design.groups, False)
    "prior of 'time' (Uniform(lower=-5, upper=5)) is not in the kernel"
    """
    for n in design.fixed_names:
        p = priors[n]
        if p.dist not in _REAL or p.truncated_at is not None or prior_rows(p, 1) is None:
            return f"prior of {n!r} ({p}) is not in the kernel"
    if not half_line(priors["sigma"]) or prior_rows(priors["sigma"], 1) is None:
        return "prior of 'sigma' is not in the kernel"
    for g in groups:
        sd = priors[names.sd(g.name)]
        if not half_line(sd) or prior_rows(sd, g.q) is None:
            return f"prior of 'sd_{g.name}' is not in the kernel"
        cp = priors.get(names.corr(g.name))
        if g.q > 1 and g.correlated and cp is not None and cp.dist != "LKJ":
            return f"prior of 'corr_{g.name}' is not LKJ"
    if design.correlation is not None:
        ph = priors["phi"]
        if prior_rows(ph, 1) is None:
            return "prior of 'phi' is not in the kernel"
        if not ridge and ph.dist not in ("Uniform", "Beta"):
            return "prior of 'phi' is not in the kernel"
    return None


def _value_slices(model, point: dict) -> dict[str, tuple[int, int]]:
    """Offset and size of each free variable's value in the sampler's flat vector (nutpie's
    order: ``model.free_RVs``), from a transformed initial point."""
    out, k = {}, 0
    for rv in model.free_RVs:
        name = model.rvs_to_values[rv].name
        size = int(np.asarray(point[name]).size)
        out[name] = (k, size)
        k += size
    return out


def initial_point_fn(model, initial_points: dict | None = None):
    """PyMC's jittered, transformed starting points (as nutpie's own PyMC compiler makes
    them) and the flat layout of the sampled vector."""
    from pymc.initial_point import make_initial_point_fn

    ipfn = make_initial_point_fn(
        model=model, overrides=initial_points, jitter_rvs=set(model.free_RVs),
        return_transformed=True,
    )
    slices = _value_slices(model, ipfn(0))
    order = list(slices)
    # nutpie calls this from its chain threads; a compiled PyTensor function is not
    # thread-safe (nutpie's own PyMC compiler locks it the same way)
    lock = threading.Lock()

    def initial_point(seed):
        with lock:
            point = ipfn(seed)
        return np.ascontiguousarray(
            np.concatenate([np.asarray(point[k], dtype=float).ravel() for k in order])
        )

    return initial_point, slices


def pack(design: Design, priors: dict[str, Prior], slices: dict,
         layout: str = "auto") -> tuple[np.ndarray, dict]:
    """The kernel's float buffer for ``design`` and the layout of the sampled vector.

    Returns
    -------
    buf : ndarray
        float64 buffer: the header (:data:`kernel.HEADER` slots), then the data sections
        (priors, coefficient slots, term order, pattern cross-products) at the offsets the
        header records.
    info : dict
        ``n_dim``, ``expanded`` (names, shapes, dims) and ``slices``.
    """
    g = design.groups[0]
    q, p = g.q, design.p
    corr = design.correlation
    pat = kernel_patterns(design, g, layout)
    n_dim = sum(s for _, s in slices.values())
    correlated = q > 1 and g.correlated
    eta = lkj_eta(priors, g.name)
    mode, order, xr, xl, lo, hi = _coordinates(design, priors, slices)
    coef_names = list(design.fixed_names)
    sections = {
        kernel.O_BPRI: (np.concatenate([prior_rows(priors[n], 1) for n in coef_names])
                        if p else np.zeros((0, kernel.PRIOR_WIDTH))),
        kernel.O_BIDX: np.asarray(coefficient_slots(slices, coef_names), float),
        kernel.O_SIGPRI: prior_rows(priors["sigma"], 1),
        kernel.O_PHIPRI: prior_rows(priors["phi"], 1) if corr is not None else np.zeros((1, kernel.PRIOR_WIDTH)),
        kernel.O_SDPRI: prior_rows(priors[names.sd(g.name)], q)[order],
        kernel.O_ORDER: np.asarray(order, float),
        kernel.O_K: pat["K"], kernel.O_Z: pat["Z"], kernel.O_TT: pat["times"],
        kernel.O_NOBS: pat["nobs"], kernel.O_COUNT: pat["count"],
    }
    exp_names, exp_shapes, exp_dims = _expanded(design)
    head, k = section_offsets(sections)
    scalars = {
        kernel.H_LEN: k, kernel.H_NDIM: n_dim, kernel.H_P: p, kernel.H_Q: q,
        kernel.H_CORR: {None: 0, "ar1": 1, "car1": 2}[None if corr is None else corr.kind],
        kernel.H_G: pat["nobs"].size, kernel.H_T: pat["T"], kernel.H_MODE: mode,
        kernel.H_LO: lo, kernel.H_HI: hi, kernel.H_ETA: eta,
        kernel.H_NORM: lkj_log_normaliser(eta, q) if correlated else 0.0,
        kernel.H_CORRELATED: 1.0 if correlated else 0.0, kernel.H_XR: xr, kernel.H_XL: xl,
        kernel.H_NEXP: int(sum(int(np.prod(s)) for s in exp_shapes)),
        kernel.H_DIRECT: float(pat["direct"]),
        kernel.H_SHARE: config.RIDGE.share_power,
    }
    for slot, value in scalars.items():
        head[slot] = value
    data = [np.ravel(arr) for arr in sections.values()]
    buf = np.ascontiguousarray(np.concatenate([head, *data]), dtype=np.float64)
    info = {"n_dim": n_dim, "expanded": (exp_names, exp_shapes, exp_dims), "slices": slices}
    return buf, info


def section_offsets(sections: dict) -> tuple[np.ndarray, int]:
    """A zero header (:data:`kernel.HEADER` slots) holding each section's offset in its
    slot, the sections laid out in order after it; and the offset just past the last."""
    head = np.zeros(kernel.HEADER)
    k = kernel.HEADER
    for slot, arr in sections.items():
        head[slot] = k
        k += np.size(arr)
    return head, k


def coefficient_slots(slices: dict, coef_names: list[str]) -> list[int]:
    """Where each fixed-effect coefficient sits in the sampled vector."""
    if "beta" in slices:
        return [slices["beta"][0] + k for k in range(len(coef_names))]
    return [slices[f"beta_{n}"][0] for n in coef_names]


def _coordinates(design: Design, priors: dict[str, Prior], slices: dict):
    """The parameterisation the PyMC model samples (ridge coordinates or PyMC's default
    transforms): kernel mode, term order, the sampled vector's slots of the residual
    block (``xr``) and of the covariance factor (``xl``), and phi's support."""
    g = design.groups[0]
    q, corr = g.q, design.correlation
    lo = hi = 0.0
    if reparam.applies(design, priors):
        if config.RIDGE.ridge != "conditional" or config.RIDGE.variant != "rho_first":
            raise ValueError(f"the native kernel implements the default ridge coordinates, not {config.RIDGE}")
        order = reparam.term_order(g.terms)
        xr = slices[f"ridge_{g.name}"][0]
        xl = slices[names.chol_rest(g.name)][0] if q > 1 else 0
        lo = reparam.phi_support(design, priors)[0]
        return kernel.MODE_RIDGE, order, xr, xl, lo, hi
    xr = log_slot(slices, "sigma")
    if corr is not None:
        ph = priors["phi"]
        key = "phi_interval__" if ph.dist == "Uniform" else "phi_logodds__"
        if slices.get(key, (None,))[0] != xr + 1:
            raise ValueError("unexpected layout of the sampled vector (phi)")
        lo, hi = ((float(ph.params["lower"]), float(ph.params["upper"]))
                  if ph.dist == "Uniform" else (0.0, 1.0))
    if q > 1 and g.correlated:
        order = np.arange(q)[::-1]
        xl = slices[names.value_var(names.chol(g.name), "cholesky-cov-packed")][0]
    else:
        order = np.arange(q)
        xl = log_slot(slices, names.sd(g.name))
    return kernel.MODE_PLAIN, order, xr, xl, lo, hi


def log_slot(slices: dict, name: str) -> int:
    """Where the log of the positive ``name`` sits in the sampled vector: PyMC's log
    transform, or for a prior truncated at 0 (``pm.Truncated``) its interval transform with
    no upper bound, which is the same map ``x = log(value)``.

    Examples
    --------
    >>> log_slot({"beta": (0, 2), "sigma_log__": (2, 1)}, "sigma")
    2
    """
    for transform in ("log", "interval"):
        key = names.value_var(name, transform)
        if key in slices:
            return slices[key][0]
    raise ValueError(f"unexpected layout of the sampled vector ({name}: {sorted(slices)})")


def _expanded(design: Design):
    """Names, shapes and dims of the variables the kernel's ``expand`` returns per draw."""
    g = design.groups[0]
    q, p, corr = g.q, design.p, design.correlation
    tdim = names.term_dim(g.name)
    exp_names = ["beta", "sigma"] + (["phi"] if corr is not None else []) + [names.sd(g.name)]
    exp_shapes = [(p,), (), *([()] if corr is not None else []), (q,)]
    exp_dims = {"beta": ("coef",), names.sd(g.name): (tdim,)}
    if q > 1 and g.correlated:
        exp_names.append(names.corr(g.name))
        exp_shapes.append((q, q))
        exp_dims[names.corr(g.name)] = (tdim, names.bis(tdim))
    return exp_names, exp_shapes, exp_dims


def logp_and_grad(buf: np.ndarray, x: np.ndarray, logp_grad=kernel.logp_grad) -> tuple[float, np.ndarray]:
    """Evaluate the kernel (or another kernel's ``logp_grad`` on its buffer) from Python
    (tests, profiling)."""
    out = np.zeros(x.size)
    val = logp_grad(np.ascontiguousarray(x, dtype=float), buf, out)
    return float(val), out


def expand(buf: np.ndarray, x: np.ndarray, expand_fn=kernel.expand) -> np.ndarray:
    """The natural parameters at ``x`` (flat, in the order of ``info["expanded"]``)."""
    out = np.zeros(int(buf[kernel.H_NEXP]))
    expand_fn(np.ascontiguousarray(x, dtype=float), buf, out)
    return out


def compile_model(design: Design, priors: dict[str, Prior], model, initial_points: dict,
                  start=None, *, pack_fn=None, entry=None):
    """A nutpie compiled model that evaluates the log-density with the kernel.

    Parameters
    ----------
    design, priors
        A model for which :func:`unsupported` is None.
    model : pymc.Model
        The marginal backend's PyMC model: it fixes the sampled vector (names, order and
        transforms of the free variables) and the starting points.
    initial_points : dict
        Support points (as in :func:`hierbayes.sampling.nuts.compile_nutpie`), jittered per chain.
    start : tuple, optional
        ``(initial_point, slices)`` from :func:`initial_point_fn`, reused across refits of
        one model structure.
    pack_fn, entry : callables, optional
        Another kernel's ``pack(design, priors, slices)`` and ``cfuncs()`` (the GLMM
        callback, :mod:`hierbayes.backend.native.glmm_bridge`).

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
    """
    from nutpie.compile_pymc import CompiledPyMCModel

    initial_point, slices = start if start is not None else initial_point_fn(model, initial_points)
    buf, info = (pack_fn or pack)(design, priors, slices)
    logp_c, expand_c = (entry or kernel.cfuncs)()
    names, shapes, dims = info["expanded"]
    from hierbayes.backend.params import coords_for

    return CompiledPyMCModel(
        dims=dims,
        compiled_logp_func=logp_c,
        compiled_expand_func=expand_c,
        initial_point_func=initial_point,
        shared_data={},
        user_data=buf,
        n_expanded=int(buf[kernel.H_NEXP]),
        shape_info=(names, None, shapes),
        logp_func=None,
        expand_func=None,
        _n_dim=info["n_dim"],
        _shapes={n: tuple(s) for n, s in zip(names, shapes)},
        _coords=coords_for(design),
    )
