"""nutpie models of Gaussian hybrid (crossed or nested) models backed by the native callback
(:mod:`hierbayes.backend.native.hybrid_kernel`): the buffer, and why a model cannot use it.

Through PyMC's graph and JAX a hybrid's gradient is a graph over every row and every sampled
effect, dispatched from Python; the callback computes the same density (tested equal to the
PyMC model's log-density and gradient) in two passes over the rows, with no Python and no GIL.
"""

from __future__ import annotations

import numpy as np

from hierbayes import names
from hierbayes.backend.native import bridge, hybrid_kernel as hk, kernel
from hierbayes.design.build import Design
from hierbayes.likelihood.collapsed import collapsed_group
from hierbayes.spec.priors import Prior, lkj_eta, lkj_log_normaliser

initial_point_fn = bridge.initial_point_fn  # the same jittered, transformed starting points


def unsupported(design: Design, priors: dict[str, Prior], backend: str) -> str | None:
    """Why the hybrid callback cannot compute this model's log-density (None when it can).

    Examples
    --------
    >>> import hierbayes as hb
    >>> m = hb.Model("y ~ time + (1 | id) + (1 | treatment)", hb.datasets.load("clark_ar1"))
    >>> unsupported(m.design, m.priors, m.backend) is None
    True
    >>> unsupported(m.design, m.priors, "latent")
    'the hybrid kernel covers the marginal backend'
    """
    why = bridge.dense_correlation_reason(design, "the hybrid kernel")
    if why is not None:
        return why
    if backend != "marginal":
        return "the hybrid kernel covers the marginal backend"
    if getattr(design.spec.family, "name", None) != "gaussian":
        return "the hybrid kernel covers the Gaussian family"
    if len(design.groups) < 2:
        return "the hybrid kernel covers several grouping factors"
    if design.dpars:
        return (f"the hybrid kernel has one residual sd; this model has a formula for "
                f"{', '.join(design.dpars)}")
    if design.layout is None:
        return "the design has no cluster layout"
    return bridge.unsupported_priors(design, priors, design.groups, ridge=False)


def _cov_slot(g, slices: dict) -> tuple[int, np.ndarray]:
    """Where a factor's covariance sits in the sampled vector and its sampled term order
    (the LKJ factor has the terms reversed: :func:`hierbayes.backend.params.re_covariance`)."""
    if g.q > 1 and g.correlated:
        return (slices[names.value_var(names.chol(g.name), "cholesky-cov-packed")][0],
                np.arange(g.q)[::-1])
    return bridge.log_slot(slices, names.sd(g.name)), np.arange(g.q)


def _effect_slot(g, slices: dict) -> tuple[int, bool]:
    """Where a sampled factor's effects sit in the sampled vector (``z_<g>`` non-centred,
    ``b_<g>`` centred) and whether they are centred."""
    if names.offsets(g.name) in slices:
        return slices[names.offsets(g.name)][0], False
    if names.effects(g.name) in slices:
        return slices[names.effects(g.name)][0], True
    raise ValueError(f"unexpected layout of the sampled vector (effects of {g.name!r}: {sorted(slices)})")


def _collapsed_coordinates(design: Design, priors: dict[str, Prior], g, slices: dict):
    """PyMC's default transforms of the collapsed factor's hyperparameters (a hybrid has no
    ridge coordinates): term order, slots of sigma (phi right after it) and of the factor."""
    lo = hi = 0.0
    xr = bridge.log_slot(slices, "sigma")
    if design.correlation is not None:
        ph = priors["phi"]
        key = "phi_interval__" if ph.dist == "Uniform" else "phi_logodds__"
        if slices.get(key, (None,))[0] != xr + 1:
            raise ValueError("unexpected layout of the sampled vector (phi)")
        lo, hi = ((float(ph.params["lower"]), float(ph.params["upper"]))
                  if ph.dist == "Uniform" else (0.0, 1.0))
    xl, order = _cov_slot(g, slices)
    return order, xr, xl, lo, hi


def _expanded(design: Design, cg, others):
    """Names, shapes and dims of what the callback's ``expand`` returns per draw."""
    p, corr = design.p, design.correlation
    exp_names = ["beta", "sigma"] + (["phi"] if corr is not None else [])
    exp_shapes: list[tuple] = [(p,), ()] + ([()] if corr is not None else [])
    exp_dims = {"beta": ("coef",)}
    for g in [cg, *others]:
        tdim = names.term_dim(g.name)
        exp_names.append(names.sd(g.name))
        exp_shapes.append((g.q,))
        exp_dims[names.sd(g.name)] = (tdim,)
        if g.q > 1 and g.correlated:
            exp_names.append(names.corr(g.name))
            exp_shapes.append((g.q, g.q))
            exp_dims[names.corr(g.name)] = (tdim, names.bis(tdim))
        if g is not cg:
            exp_names.append(names.effects(g.name))
            exp_shapes.append((g.n_levels, g.q))
            exp_dims[names.effects(g.name)] = (g.name, tdim)
    return exp_names, exp_shapes, exp_dims


def _hybrid_section(design: Design, priors: dict[str, Prior], cg, others, slices: dict,
                    start: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The hybrid section (scalars with absolute offsets from ``start``, then its arrays):
    rows in cluster (then time) order and the sampled factors' table."""
    lay = design.layout
    perm = lay.pos[lay.mask]  # row-major over (cluster, occasion): cluster order, time within
    rows = np.concatenate([design.y[perm, None], design.X[perm]], axis=1)
    starts = np.concatenate([[0], np.cumsum(lay.sizes)]).astype(float)
    arrays = {
        hk.Y_ROWS: rows, hk.Y_ZC: cg.Z[perm], hk.Y_LAG: lay.lag[lay.mask].astype(float),
        hk.Y_STARTS: starts,
    }
    head = np.zeros(hk.Y_LEN)
    k = start + hk.Y_LEN
    for slot, arr in arrays.items():
        head[slot] = k
        k += np.size(arr)
    table = np.zeros((len(others), hk.F_WIDTH))
    head[hk.Y_FACTORS] = k
    k += table.size
    extra = []
    wb = 0
    for f, g in enumerate(others):
        xl, order = _cov_slot(g, slices)
        xb, centred = _effect_slot(g, slices)
        correlated = g.q > 1 and g.correlated
        eta = lkj_eta(priors, g.name)
        parts = {hk.F_SDPRI: bridge.prior_rows(priors[names.sd(g.name)], g.q)[order],
                 hk.F_ORDER: np.asarray(order, float), hk.F_IDX: g.index[perm].astype(float),
                 hk.F_Z: g.Z[perm]}
        row = table[f]
        for slot, arr in parts.items():
            row[slot] = k
            k += np.size(arr)
            extra.append(np.ravel(arr))
        row[hk.F_Q], row[hk.F_J] = g.q, g.n_levels
        row[hk.F_CENTRED], row[hk.F_CORRELATED] = float(centred), float(correlated)
        row[hk.F_XL], row[hk.F_XB], row[hk.F_WB] = xl, xb, wb
        row[hk.F_ETA] = eta
        row[hk.F_NORM] = lkj_log_normaliser(eta, g.q) if correlated else 0.0
        wb += g.n_levels * g.q
    head[hk.Y_N] = design.n
    head[hk.Y_C] = lay.n_clusters
    head[hk.Y_TMAX] = int(lay.sizes.max())
    head[hk.Y_NF] = len(others)
    head[hk.Y_WORK] = wb
    data = [np.ravel(np.asarray(a, dtype=float)) for a in arrays.values()]
    return head, data + [table.ravel()] + extra


def pack(design: Design, priors: dict[str, Prior], slices: dict) -> tuple[np.ndarray, dict]:
    """The callback's float buffer: the one-factor kernel's header and prior sections for the
    collapsed factor, then the hybrid section (see :mod:`hierbayes.backend.native.hybrid_kernel`).

    Returns
    -------
    buf : ndarray
    info : dict
        ``n_dim``, ``expanded`` (names, shapes, dims) and ``slices``.
    """
    cg = collapsed_group(design)
    others = [g for g in design.groups if g.name != cg.name]
    q, p = cg.q, design.p
    corr = design.correlation
    correlated = q > 1 and cg.correlated
    order, xr, xl, lo, hi = _collapsed_coordinates(design, priors, cg, slices)
    coef = list(design.fixed_names)
    sections = {
        kernel.O_BPRI: (np.concatenate([bridge.prior_rows(priors[n], 1) for n in coef])
                        if p else np.zeros((0, kernel.PRIOR_WIDTH))),
        kernel.O_BIDX: np.asarray(bridge.coefficient_slots(slices, coef), float),
        kernel.O_SIGPRI: bridge.prior_rows(priors["sigma"], 1),
        kernel.O_PHIPRI: (bridge.prior_rows(priors["phi"], 1) if corr is not None
                          else np.zeros((1, kernel.PRIOR_WIDTH))),
        kernel.O_SDPRI: bridge.prior_rows(priors[names.sd(cg.name)], q)[order],
        kernel.O_ORDER: np.asarray(order, float),
    }
    head, k = bridge.section_offsets(sections)
    yhead, yarrays = _hybrid_section(design, priors, cg, others, slices, k)
    head[hk.O_HYBRID] = k
    total = k + yhead.size + sum(a.size for a in yarrays)
    exp_names, exp_shapes, exp_dims = _expanded(design, cg, others)
    eta = lkj_eta(priors, cg.name)
    n_dim = sum(s for _, s in slices.values())
    scalars = {
        kernel.H_LEN: total, kernel.H_NDIM: n_dim, kernel.H_P: p, kernel.H_Q: q,
        kernel.H_CORR: {None: 0, "ar1": 1, "car1": 2}[None if corr is None else corr.kind],
        kernel.H_MODE: kernel.MODE_PLAIN, kernel.H_LO: lo, kernel.H_HI: hi, kernel.H_ETA: eta,
        kernel.H_NORM: lkj_log_normaliser(eta, q) if correlated else 0.0,
        kernel.H_CORRELATED: 1.0 if correlated else 0.0, kernel.H_XR: xr, kernel.H_XL: xl,
        kernel.H_NEXP: int(sum(int(np.prod(s)) for s in exp_shapes)),
        kernel.H_G: yhead[hk.Y_C], kernel.H_T: yhead[hk.Y_TMAX],
    }
    for slot, value in scalars.items():
        head[slot] = value
    data = [np.ravel(a) for a in sections.values()]
    buf = np.ascontiguousarray(np.concatenate([head, *data, yhead, *yarrays]), dtype=np.float64)
    assert buf.size == total
    return buf, {"n_dim": n_dim, "expanded": (exp_names, exp_shapes, exp_dims), "slices": slices}


def logp_and_grad(buf: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Evaluate the callback's density from Python (tests, profiling)."""
    return bridge.logp_and_grad(buf, x, hk.logp_grad)


def expand(buf: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The natural parameters at ``x`` (flat, in the order of ``info["expanded"]``)."""
    return bridge.expand(buf, x, hk.expand)


def compile_model(design: Design, priors: dict[str, Prior], model, initial_points: dict, start=None):
    """A nutpie compiled model whose log-density is the hybrid callback (see
    :func:`hierbayes.backend.native.bridge.compile_model`)."""
    return bridge.compile_model(design, priors, model, initial_points, start=start,
                                pack_fn=pack, entry=hk.cfuncs)
