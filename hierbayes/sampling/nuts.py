"""NUTS sampling: nutpie (default) or PyMC's own sampler.

nutpie evaluates the log-density with the hand-written numba kernel of
:mod:`hierbayes.backend.native.bridge` where it applies (collapsed Gaussian models with one grouping
factor: compiled once per installation, microseconds per gradient; with several factors the
hybrid kernel of :mod:`hierbayes.backend.native.hybrid_bridge`), otherwise with the
PyMC model compiled through JAX (or PyTensor's numba backend on request).

Compiled nutpie models are cached for the session by the structure of the model (shapes,
priors, backend) in a bounded cache (:mod:`hierbayes.sampling.cache`, reset by
``hb.clear_cache()``); a refit whose data values change but not their shapes (prior sweeps
refitting the same data, SBC, bootstrap) reuses the compiled model with new data.
"""

from __future__ import annotations

import hashlib
import pickle
import numbers
import time
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pymc as pm

from hierbayes.sampling.cache import COMPILED
from hierbayes.spec.keys import check_keys


@dataclass(frozen=True)
class SamplerOptions:
    """NUTS settings. ``mass_matrix="diag"`` is the classic diagonal metric;
    ``"low_rank"`` is nutpie's low-rank-modified metric (:meth:`hierbayes.Model.fit` picks
    it for models sampled in ridge coordinates). ``compiler`` is
    ``"auto"`` (the native kernel where it applies, else JAX), ``"native"``, ``"jax"`` or
    ``"numba"``."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    cores: int | None = None
    target_accept: float = 0.8
    max_treedepth: int = 10
    seed: int | None = None
    sampler: str = "nutpie"
    mass_matrix: str = "diag"
    compiler: str = "auto"
    progressbar: bool = True
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        _whole("draws", self.draws, 1)
        _whole("tune", self.tune, 0)
        _whole("chains", self.chains, 1)
        _whole("max_treedepth", self.max_treedepth, 1)
        if self.cores is not None:
            _whole("cores", self.cores, 1)
        if self.seed is not None:
            _whole("seed", self.seed, 0)
        ta = self.target_accept
        if isinstance(ta, bool) or not isinstance(ta, numbers.Real) or not 0 < ta < 1:
            raise ValueError(f"target_accept must be a number strictly between 0 and 1 (e.g. 0.8, "
                             f"0.95), got {ta!r}.")


def _whole(name: str, value, least: int) -> None:
    """``value`` must be a whole number >= ``least`` (numpy integers too, not booleans)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name} must be a whole number >= {least}, got {value!r}.")


#: what :func:`run` passes to nutpie.sample / pymc.sample itself (not accepted as extras)
_PASSED = {
    "nutpie": {"draws", "tune", "chains", "cores", "seed", "progress_bar", "save_warmup",
               "low_rank_modified_mass_matrix", "target_accept", "maxdepth"},
    "pymc": {"draws", "tune", "chains", "cores", "random_seed", "target_accept", "progressbar",
             "compute_convergence_checks", "model", "max_treedepth"},
}


#: fit()'s own sampling arguments
_FIT_ARGUMENTS = {"draws", "tune", "chains", "cores", "seed", "target_accept", "max_treedepth",
                  "progressbar", "sampler", "mass_matrix", "compiler", "recover_random_effects",
                  "recover_thin"}


def sampler_keywords(sampler: str) -> set[str]:
    """The keyword arguments ``Model.fit(**kwargs)`` may pass on to the sampler: nutpie's
    ``sample`` arguments and NUTS settings, or ``pymc.sample``'s, less those hierbayes sets."""
    import inspect

    if sampler == "nutpie":
        import nutpie
        from nutpie import _lib

        names_ = set(inspect.signature(nutpie.sample).parameters) - {"compiled_model", "kwargs"}
        for kind in ("Diag", "LowRank"):
            settings = getattr(_lib.PyNutsSettings, kind)(0)
            names_ |= {a for a in dir(settings) if not a.startswith("_") and a[0].islower()}
        names_ -= {"num_chains", "num_draws", "num_tune", "set_target_accept"}
    else:  # pm.sample's own arguments and those it hands to its NUTS step
        names_ = set(inspect.signature(pm.sample).parameters) - {"kwargs"}
        for cls in pm.NUTS.__mro__:
            if "__init__" in vars(cls):
                names_ |= set(inspect.signature(cls.__init__).parameters)
        names_ -= {"self", "kwargs", "vars", "model"}
    return names_ - _PASSED[sampler]


def _check_extra(opts: "SamplerOptions") -> None:
    if not opts.extra:
        return
    known = sampler_keywords(opts.sampler)
    taken = [k for k in opts.extra if k in _PASSED[opts.sampler]]
    if taken:
        raise ValueError(f"{taken} are set by hierbayes from fit()'s own arguments (draws, tune, "
                         "chains, cores, seed, target_accept, max_treedepth, progressbar); pass "
                         "those instead.")
    # fit()'s own arguments count as known, so a misspelt one is pointed at its right name
    check_keys(f"the keyword arguments for {opts.sampler}'s sampler", opts.extra, known | _FIT_ARGUMENTS)


def resolve_seed(seed: int | None) -> int:
    """``seed`` as an int, or a fresh one drawn from the OS when None (recorded in the fit's
    timing so that an unseeded run can be repeated bit for bit)."""
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    return int(seed)


def _data_values(model: pm.Model) -> dict[str, np.ndarray]:
    return {v.name: np.asarray(v.get_value()) for v in model.data_vars}


def _support_point(model: pm.Model) -> dict[str, np.ndarray]:
    """Numeric starting values (PyMC's support points, untransformed), so that chains start
    from jittered constants rather than from graphs that draw from the priors."""
    from pymc.initial_point import make_initial_point_fn

    fn = make_initial_point_fn(model=model, jitter_rvs=set(), return_transformed=False)
    return fn(0)


def compile_nutpie(model: pm.Model, key: str, timing: dict, compiler: str = "jax"):
    """Compile (or fetch from the session cache and refresh the data of) a nutpie model.

    ``compiler="jax"`` (what ``"auto"`` uses where the native kernel does not apply)
    compiles in seconds; ``"numba"`` compiles for a minute or
    more (cached on disk by PyTensor afterwards) but evaluates gradients several times
    faster and without holding Python's GIL: worth it for long runs and many refits.
    """
    if compiler not in ("jax", "numba"):
        raise ValueError(f"compiler must be 'jax' or 'numba', got {compiler!r}.")
    key = f"{key}-{compiler}"
    import nutpie

    data = _data_values(model)
    t0 = time.perf_counter()
    compiled = COMPILED.get(key)
    if compiled is None:
        compiled = nutpie.compile_pymc_model(
            model,
            backend=compiler,
            gradient_backend="jax" if compiler == "jax" else "pytensor",
            freeze_model=False,
            initial_points=_support_point(model),
            jitter_rvs=set(model.free_RVs),
        )
        COMPILED.put(key, compiled)
        timing["cache_hit"] = False
    else:
        # the compiled graph holds only the data its log-density uses (an AR layout array
        # of a model without correlation is pruned away): refresh those
        known = getattr(compiled, "_shared_data", None)
        if known is None:
            known = getattr(compiled, "shared_data", data)
        compiled = _relabel(compiled.with_data(**{k: v for k, v in data.items() if k in known}), model)
        timing["cache_hit"] = True
    timing["compile_s"] = time.perf_counter() - t0
    return compiled


def _relabel(compiled, model: pm.Model):
    """A cached compiled model with the coordinate labels of ``model``: the cache key holds
    shapes, not labels (a refit on other clusters of the same sizes reuses the graph), so
    the labels of the dims (group levels, coefficient names) come from the model at hand."""
    import dataclasses

    import pandas as pd

    coords = dict(compiled._coords or {})
    for name, vals in model.coords.items():
        if vals is not None:
            coords[name] = pd.Index(vals)
    return dataclasses.replace(compiled, _coords=coords)


def structure_key(*parts) -> str:
    """A hash of everything that fixes a compiled graph (not the data values): the parts
    are pickled, so numbers enter at full precision (priors as :meth:`Prior.key`).

    Examples
    --------
    >>> structure_key("marginal", 1.000001) == structure_key("marginal", 1.0)
    False
    """
    return hashlib.sha1(pickle.dumps(parts)).hexdigest()


def compile_native(model: pm.Model, key: str, timing: dict, native, kind: str = "gaussian"):
    """The nutpie model of the native kernel (``kind``: the Gaussian collapsed kernel or the
    GLMM quadrature callback); the starting-point function is cached per model structure,
    the data buffer is packed anew (cheap) on every call."""
    native_mod = native_module(kind)

    t0 = time.perf_counter()
    ckey = f"{key}-native"
    start = COMPILED.get(ckey)
    timing["cache_hit"] = start is not None
    if start is None:
        start = native_mod.initial_point_fn(model, _support_point(model))
        COMPILED.put(ckey, start)
    design, priors = native
    compiled = native_mod.compile_model(design, priors, model, None, start=start)
    timing["compile_s"] = time.perf_counter() - t0
    return compiled


def native_module(kind: str):
    """The bridge module of a native kernel: ``"gaussian"`` (one factor integrated out,
    :mod:`hierbayes.backend.native.bridge`), ``"hybrid"`` (one of several factors integrated
    out, the others sampled: :mod:`hierbayes.backend.native.hybrid_bridge`) or ``"glmm"``
    (adaptive quadrature: :mod:`hierbayes.backend.native.glmm_bridge`).

    Examples
    --------
    >>> native_module("hybrid").__name__
    'hierbayes.backend.native.hybrid_bridge'
    """
    from hierbayes.backend.native import bridge, glmm_bridge, hybrid_bridge

    mods = {"gaussian": bridge, "hybrid": hybrid_bridge, "glmm": glmm_bridge}
    if kind not in mods:
        raise ValueError(f"native kernel kind must be one of {sorted(mods)}, got {kind!r}.")
    return mods[kind]


@dataclass(frozen=True)
class NativeDecision:
    """Whether nutpie evaluates the log-density with the native kernel, and why not.

    ``use`` is True when it does (``design`` and ``priors`` are then what the kernel
    packs); otherwise ``reason`` says why (shown in the summary header)."""

    use: bool
    reason: str | None = None
    design: object = None
    priors: dict | None = None
    kind: str = "gaussian"  # which kernel (:func:`native_module`): "gaussian", "hybrid" or "glmm"


def decide_native(design, priors: dict, backend: str, opts: SamplerOptions) -> NativeDecision:
    """Decide, once per fit, whether the native kernel evaluates the log-density.

    It does with nutpie, ``compiler="auto"`` or ``"native"``, and a model the kernel
    supports (:func:`hierbayes.backend.native.bridge.unsupported`); ``compiler="native"``
    on a model it does not support is an error that names the reason.

    Examples
    --------
    >>> decide_native(None, {}, "latent", SamplerOptions(sampler="pymc")).reason
    "the sampler is PyMC's NUTS (the kernel is a nutpie callback)"
    """
    _check_options(opts)
    if opts.sampler != "nutpie":
        return NativeDecision(False, "the sampler is PyMC's NUTS (the kernel is a nutpie callback)")
    if opts.compiler not in ("auto", "native"):
        return NativeDecision(False, f"compiler={opts.compiler!r} was asked for")
    kind = "glmm" if backend == "quadrature" else "gaussian"
    if kind == "gaussian" and design is not None and len(design.groups) > 1:
        kind = "hybrid"  # several factors: one integrated out, the others sampled
    why = native_module(kind).unsupported(design, priors, backend)
    if why is None:
        return NativeDecision(True, None, design, priors, kind)
    if opts.compiler == "native":
        raise ValueError(f"compiler='native' does not apply to this model: {why}.")
    return NativeDecision(False, why)


def _check_options(opts: SamplerOptions) -> None:
    if opts.compiler not in ("auto", "native", "jax", "numba"):
        raise ValueError(
            f"compiler must be 'auto', 'native', 'jax' or 'numba', got {opts.compiler!r}."
        )
    if opts.mass_matrix not in ("diag", "low_rank"):
        raise ValueError(f"mass_matrix must be 'diag' or 'low_rank', got {opts.mass_matrix!r}.")
    if opts.sampler not in ("nutpie", "pymc"):
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', got {opts.sampler!r}.")
    _check_extra(opts)


def run(
    model: pm.Model, key: str, opts: SamplerOptions, native: NativeDecision | None = None
) -> tuple[az.InferenceData, dict]:
    """Sample ``model`` with NUTS; return the InferenceData and a timing dict.

    ``native`` is the fit's :func:`decide_native` (None: the kernel is not used); its
    reason is kept in ``timing["native_reason"]``.
    """
    timing: dict = {}
    seed = resolve_seed(opts.seed)
    _check_options(opts)
    native = native if native is not None else NativeDecision(False, "not decided")
    timing["native_reason"] = native.reason
    if opts.sampler == "nutpie":
        import nutpie

        if native.use:
            compiled = compile_native(model, key, timing, (native.design, native.priors), native.kind)
            timing["compiler"] = "native"
            timing["native_kind"] = native.kind
        else:
            # a model may need numba (hb_compiler: a graph with an Op JAX lacks, e.g. the
            # gradient of the t cdf in nu of a censored Student-t model)
            auto = getattr(model, "hb_compiler", "jax")
            compiler = auto if opts.compiler in ("auto", "native") else opts.compiler
            compiled = compile_nutpie(model, key, timing, compiler)
            timing["compiler"] = compiler
        t0 = time.perf_counter()
        idata = nutpie.sample(
            compiled,
            draws=opts.draws,
            tune=opts.tune,
            chains=opts.chains,
            cores=opts.cores,
            seed=seed,
            progress_bar=opts.progressbar,
            save_warmup=False,
            low_rank_modified_mass_matrix=opts.mass_matrix == "low_rank",
            target_accept=opts.target_accept,
            maxdepth=opts.max_treedepth,
            **opts.extra,
        )
        timing["sampling_s"] = time.perf_counter() - t0
    elif opts.sampler == "pymc":
        t0 = time.perf_counter()
        with model:
            idata = pm.sample(
                draws=opts.draws,
                tune=opts.tune,
                chains=opts.chains,
                cores=opts.cores,
                random_seed=seed,
                target_accept=opts.target_accept,
                max_treedepth=opts.max_treedepth,
                progressbar=opts.progressbar,
                compute_convergence_checks=False,
                **opts.extra,
            )
        timing["compile_s"] = float("nan")
        timing["sampling_s"] = time.perf_counter() - t0
    timing["seed"] = seed
    return idata, timing
