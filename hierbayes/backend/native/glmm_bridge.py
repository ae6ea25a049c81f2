"""nutpie models of the quadrature backend backed by the native GLMM callback
(:mod:`hierbayes.backend.native.glmm_kernel`): the buffer, and why a model cannot use it.

Through PyMC's graph and JAX every gradient of a quadrature model goes through a Python
host callback (about a millisecond); the callback computes the same density (tested equal
to the PyMC model's log-density and gradient) with no Python and no GIL, so the chains run
in parallel.
"""

from __future__ import annotations

import numpy as np

from hierbayes import names
from hierbayes.backend import glmm
from hierbayes.backend.native import bridge, glmm_kernel, kernel
from hierbayes.design.build import Design
from hierbayes.likelihood import quadrature
from hierbayes.spec.priors import Prior, half_line, lkj_eta, lkj_log_normaliser


initial_point_fn = bridge.initial_point_fn  # the same jittered, transformed starting points


def unsupported(design: Design, priors: dict[str, Prior], backend: str) -> str | None:
    """Why the GLMM callback cannot compute this model's log-density (None when it can)."""
    if backend != "quadrature":
        return "the GLMM callback covers the quadrature backend"
    g = glmm.integrated_group(design)
    for h in glmm.sampled_groups(design):
        sd = priors[names.sd(h.name)]
        if not half_line(sd) or bridge.prior_rows(sd, h.q) is None:
            return f"prior of 'sd_{h.name}' is not in the kernel"
        cp = priors.get(names.corr(h.name))
        if h.q > 1 and h.correlated and cp is not None and cp.dist != "LKJ":
            return f"prior of 'corr_{h.name}' is not LKJ"
    for n in design.fixed_names:
        p = priors[n]
        if p.dist not in bridge.REAL_LINE or p.truncated_at is not None or bridge.prior_rows(p, 1) is None:
            return f"prior of {n!r} ({p}) is not in the kernel"
    sd = priors[names.sd(g.name)]
    if not half_line(sd) or bridge.prior_rows(sd, g.q) is None:
        return f"prior of 'sd_{g.name}' is not in the kernel"
    fp = quadrature.family_param(design.spec.family)
    if fp is not None:
        a = priors[fp]
        if not half_line(a) or bridge.prior_rows(a, 1) is None:
            return f"prior of {fp!r} is not in the kernel"
    cp = priors.get(names.corr(g.name))
    if g.q > 1 and g.correlated and cp is not None and cp.dist != "LKJ":
        return f"prior of 'corr_{g.name}' is not LKJ"
    return None


def _glmm_section(mg, start: int, records: list | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """The GLMM section's scalars (with absolute offsets of its arrays from ``start``) and
    its arrays, then the sampled factors' records (:func:`_factor_record`: functions of
    their own start offset)."""
    rows = mg.rows
    arrays = {
        glmm_kernel.G_Y: rows.y, glmm_kernel.G_TRIALS: rows.trials, glmm_kernel.G_X: rows.X,
        glmm_kernel.G_Z: rows.Z, glmm_kernel.G_OFFSET: rows.offset,
        glmm_kernel.G_STARTS: rows.starts.astype(float), glmm_kernel.G_CONSTS: mg.constants,
        glmm_kernel.G_NODES: mg.nodes, glmm_kernel.G_LOGW: mg.log_weights,
    }
    head = np.zeros(glmm_kernel.G_LEN)
    head[glmm_kernel.G_CODE] = mg.code
    head[glmm_kernel.G_N] = rows.y.size
    head[glmm_kernel.G_C] = rows.n_clusters
    head[glmm_kernel.G_K] = mg.nodes.shape[0]
    head[glmm_kernel.G_CENTER] = mg.center
    head[glmm_kernel.G_TOL] = mg.tol
    head[glmm_kernel.G_MAXIT] = mg.max_iter
    head[glmm_kernel.G_ALPHA] = 0.0 if quadrature.family_param(mg.family) is None else 1.0
    k = start + glmm_kernel.G_LEN
    for slot, arr in arrays.items():
        head[slot] = k
        k += np.size(arr)
    out = [np.ravel(np.asarray(a, dtype=float)) for a in arrays.values()]
    records = records or []
    head[glmm_kernel.G_NLAT] = len(records)
    head[glmm_kernel.G_LAT] = k
    table = np.zeros(len(records))
    out.append(table)
    k += table.size
    for f, record in enumerate(records):
        table[f] = k
        arr = record(k)
        out.append(arr)
        k += arr.size
    return head, out


def _factor_record(group, priors: dict[str, Prior], slices: dict, order: np.ndarray):
    """One sampled factor's record (:mod:`hierbayes.backend.native.glmm_kernel`, ``R_*``)
    as a function of its absolute start: the scalars, its level index and ``Z`` in the
    kernel's row order, and a prior sub-header (the Gaussian kernel's header slots
    ``H_ETA``, ``H_NORM``, ``O_SDPRI`` and the sd priors, in PyMC's factor term order)."""
    q = group.q
    correlated = q > 1 and group.correlated
    if correlated:
        xs = slices[names.value_var(names.chol(group.name), "cholesky-cov-packed")][0]
        terms = np.arange(q)[::-1]  # the LKJ factor's reversed terms
    else:
        xs = _positive_slot(slices, names.sd(group.name))
        terms = np.arange(q)
    centred = names.effects(group.name) in slices
    xb = slices[names.effects(group.name) if centred else names.offsets(group.name)][0]
    eta = lkj_eta(priors, group.name)
    sub = np.zeros(kernel.HEADER)
    sub[kernel.H_ETA] = eta
    sub[kernel.H_NORM] = lkj_log_normaliser(eta, q) if correlated else 0.0
    sub[kernel.O_SDPRI] = kernel.HEADER
    sd_rows = bridge.prior_rows(priors[names.sd(group.name)], q)[terms]
    idx = np.asarray(group.index, dtype=float)[order]
    Z = np.asarray(group.Z, dtype=float)[order]

    def record(start: int) -> np.ndarray:
        head = np.zeros(glmm_kernel.R_LEN)
        head[glmm_kernel.R_Q] = q
        head[glmm_kernel.R_LEVELS] = group.n_levels
        head[glmm_kernel.R_CENTRED] = float(centred)
        head[glmm_kernel.R_CORRELATED] = float(correlated)
        head[glmm_kernel.R_XS] = xs
        head[glmm_kernel.R_XB] = xb
        k = start + glmm_kernel.R_LEN
        head[glmm_kernel.R_IDX] = k
        head[glmm_kernel.R_Z] = k + idx.size
        head[glmm_kernel.R_SUB] = k + idx.size + Z.size
        return np.concatenate([head, idx, Z.ravel(), sub, sd_rows.ravel()])

    return record


def _positive_slot(slices: dict, name: str) -> int:
    """Where the log of the positive ``name`` sits in the sampled vector (PyMC's log
    transform, or the interval transform of a prior truncated at 0: the same map)."""
    for transform in ("log", "interval"):
        key = names.value_var(name, transform)
        if key in slices:
            return slices[key][0]
    raise ValueError(f"unexpected layout of the sampled vector ({name}: {sorted(slices)})")


def _expanded(design: Design):
    g = glmm.integrated_group(design)
    tdim = names.term_dim(g.name)
    fp = quadrature.family_param(design.spec.family)
    exp_names = ["beta"] + ([fp] if fp else []) + [names.sd(g.name)]
    exp_shapes = [(design.p,)] + ([()] if fp else []) + [(g.q,)]
    exp_dims = {"beta": ("coef",), names.sd(g.name): (tdim,)}
    if g.q > 1 and g.correlated:
        exp_names.append(names.corr(g.name))
        exp_shapes.append((g.q, g.q))
        exp_dims[names.corr(g.name)] = (tdim, names.bis(tdim))
    for h in glmm.sampled_groups(design):
        hdim = names.term_dim(h.name)
        exp_names.append(names.sd(h.name))
        exp_shapes.append((h.q,))
        exp_dims[names.sd(h.name)] = (hdim,)
        if h.q > 1 and h.correlated:
            exp_names.append(names.corr(h.name))
            exp_shapes.append((h.q, h.q))
            exp_dims[names.corr(h.name)] = (hdim, names.bis(hdim))
        exp_names.append(names.effects(h.name))
        exp_shapes.append((h.n_levels, h.q))
        exp_dims[names.effects(h.name)] = (h.name, hdim)
    return exp_names, exp_shapes, exp_dims


def pack(design: Design, priors: dict[str, Prior], slices: dict, mg,
         order: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """The callback's float buffer: the Gaussian kernel's header and prior sections, then
    the GLMM section (see :mod:`hierbayes.backend.native.glmm_kernel`) with, for a hybrid
    model, a record per sampled factor (``order``: the design row of each of ``mg``'s rows,
    the model's ``hb_row_order``)."""
    g = glmm.integrated_group(design)
    others = glmm.sampled_groups(design)
    if others and order is None:
        raise ValueError("a hybrid model's buffer needs the kernel's row order (model.hb_row_order).")
    records = [_factor_record(h, priors, slices, order) for h in others]
    q, p = g.q, design.p
    correlated = q > 1 and g.correlated
    order = glmm.term_order(g)
    coef = list(design.fixed_names)
    if correlated:
        xl = slices[names.value_var(names.chol(g.name), "cholesky-cov-packed")][0]
    else:
        xl = slices[names.value_var(names.sd(g.name), "log")][0]
    fp = quadrature.family_param(design.spec.family)
    xr = slices[names.value_var(fp, "log")][0] if fp else 0
    sections = {
        kernel.O_BPRI: (np.concatenate([bridge.prior_rows(priors[n], 1) for n in coef])
                        if p else np.zeros((0, kernel.PRIOR_WIDTH))),
        kernel.O_BIDX: np.asarray(bridge.coefficient_slots(slices, coef), float),
        kernel.O_SIGPRI: bridge.prior_rows(priors[fp], 1) if fp else np.zeros((1, kernel.PRIOR_WIDTH)),
        kernel.O_SDPRI: bridge.prior_rows(priors[names.sd(g.name)], q)[order],
        kernel.O_ORDER: np.asarray(order, float),
    }
    head, k = bridge.section_offsets(sections)
    ghead, garrays = _glmm_section(mg, k, records)
    head[kernel.O_GLMM] = k
    total = k + ghead.size + sum(a.size for a in garrays)
    exp_names, exp_shapes, exp_dims = _expanded(design)
    eta = lkj_eta(priors, g.name)
    n_dim = sum(s for _, s in slices.values())
    scalars = {
        kernel.H_LEN: total, kernel.H_NDIM: n_dim, kernel.H_P: p, kernel.H_Q: q,
        kernel.H_ETA: eta, kernel.H_NORM: lkj_log_normaliser(eta, q) if correlated else 0.0,
        kernel.H_CORRELATED: 1.0 if correlated else 0.0, kernel.H_XR: xr, kernel.H_XL: xl,
        kernel.H_NEXP: int(sum(int(np.prod(s)) for s in exp_shapes)),
    }
    for slot, value in scalars.items():
        head[slot] = value
    data = [np.ravel(a) for a in sections.values()]
    buf = np.ascontiguousarray(np.concatenate([head, *data, ghead, *garrays]), dtype=np.float64)
    assert buf.size == total
    return buf, {"n_dim": n_dim, "expanded": (exp_names, exp_shapes, exp_dims), "slices": slices}


def logp_and_grad(buf: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """Evaluate the callback's density from Python (tests, profiling)."""
    return bridge.logp_and_grad(buf, x, glmm_kernel.logp_grad)


def expand(buf: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The natural parameters at ``x`` (flat, in the order of ``info["expanded"]``)."""
    return bridge.expand(buf, x, glmm_kernel.expand)


def compile_model(design: Design, priors: dict[str, Prior], model, initial_points: dict, start=None):
    """A nutpie compiled model whose log-density is the GLMM callback (see
    :func:`hierbayes.backend.native.bridge.compile_model`)."""
    return bridge.compile_model(
        design, priors, model, initial_points, start=start,
        pack_fn=lambda d, p, s: pack(d, p, s, model.hb_marginal_glmm, getattr(model, "hb_row_order", None)),
        entry=glmm_kernel.cfuncs,
    )
