"""The collapsed (marginal) Gaussian likelihood: random effects integrated out.

For cluster c with whitened data (``*``), ``M_c = sigma^2 S^-1 + Z*^T Z*`` and
``r = y* - X* beta``:

    log p(y_c) = -1/2 [ n_c log 2 pi + (n_c - q) log sigma^2 + log|S| + log|M_c|
                        + (r^T r - (Z*^T r)^T M_c^-1 (Z*^T r)) / sigma^2 ] - sum_k log s_k

(Woodbury identity and the matrix determinant lemma; ``s_k`` the AR(1) whitening scale).
Two exact layouts compute it:

- ``padded``: a (cluster x occasion) array per column; whitening, cross-products and the
  q x q algebra are elementwise over cluster vectors. Cost O(N q^2) per gradient.
- ``pooled``: clusters that share their random-effect design and time pattern (balanced
  longitudinal data: one pattern) share ``M_c``. With ``P = R(phi)^-1`` the AR precision
  and ``E = sum_c e_c e_c^T`` (``e_c = y_c - X_c beta``), the sums over clusters are
  ``sum r^T r = tr(P E)`` and ``sum (Z^T P e)(Z^T P e)^T = Z^T P E P Z``, and ``E`` is a
  quadratic form in ``(1, -beta)`` over cross-products precomputed once. Cost per gradient
  does not depend on the number of clusters.

Functions take an array namespace ``xp`` (numpy, or ``pytensor.tensor`` from the backend).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hierbayes.likelihood import arprocess, smallmat, structured
from hierbayes.design.build import Design
from hierbayes.likelihood.patterns import cluster_patterns

LOG_2PI = float(np.log(2 * np.pi))


@dataclass(frozen=True)
class CollapsedData:
    """Precomputed arrays for the collapsed likelihood of one grouping factor."""

    layout: str  # "padded" or "pooled"
    corr: str | None  # None, "ar1", "car1", "compsymm", "unstructured", "arma"
    q: int
    arrays: dict[str, np.ndarray]
    n_clusters: int
    #: unstructured / ARMA residuals: the occasion patterns and the structure's settings
    #: (:func:`hierbayes.likelihood.structured.layout_arrays`); None otherwise
    dense: dict | None = None

    def signature(self) -> tuple:
        """Everything that fixes the compiled graph (shapes and structure)."""
        pats = () if self.dense is None else (
            tuple((tuple(p.occasions), tuple(p.clusters)) for p in self.dense["patterns"]),
            self.dense.get("order"), self.dense.get("max_lag"))
        return (self.layout, self.corr, self.q) + tuple(
            (k, v.shape, str(v.dtype)) for k, v in sorted(self.arrays.items())
        ) + pats


def padded_arrays(design: Design, group) -> dict[str, np.ndarray]:
    """The design on the padded (cluster x occasion) layout of ``group``: ``Y``, ``X``,
    ``Z``, the time lags and masks the AR whitening uses, and ``nobs`` per cluster."""
    lay = design.layout
    out = {
        "Y": lay.pad(design.y),
        "X": lay.pad(design.X),
        "Z": lay.pad(group.Z),
        **arprocess.layout_arrays(lay),
        "nobs": lay.sizes.astype(float),
    }
    kind = design.correlation.kind if design.correlation is not None else None
    if kind in ("compsymm", "unstructured", "arma"):
        out["mask"] = lay.mask.astype(float)  # the whitening's cluster means (no lags)
        for k in ("lag", "inner", "odd"):
            out.pop(k)
    if design.sd_by_occasion:  # hb.Unstructured(sd_by_occasion=True): the occasion of each slot
        out["occ"] = lay.pad(design.occasion_index.astype(float)).astype(np.int64)
    return out


def cross_products(W: np.ndarray, inverse: np.ndarray, G: int) -> np.ndarray:
    """Per pattern ``K[g, s, t, i, j] = sum_c W_c[s, i] W_c[t, j]`` over the clusters ``c`` of
    pattern ``g`` (``inverse[c]``), for padded cluster rows ``W`` (C, T, m) = ``[y, X]``."""
    T, m = W.shape[1:]
    K = np.zeros((G, T, T, m, m))
    for g in range(G):
        Wg = W[inverse == g]
        K[g] = np.einsum("csi,ctj->stij", Wg, Wg)
    return K


def collapsed_group(design: Design):
    """The grouping factor the collapsed likelihood integrates out.

    The factor the residual correlation is within, if any; otherwise the factor with the
    most levels (the rows' clustering factor). With several factors the others stay latent.

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.likelihood.collapsed import collapsed_group
    >>> m = hb.Model("y ~ time + (1 | id) + (1 | treatment)", hb.datasets.load("clark_ar1"))
    >>> collapsed_group(m.design).name
    'id'
    """
    if not design.groups:
        raise ValueError(
            "the collapsed backend integrates out a grouping factor, and this model has none. "
            "Use backend='latent'."
        )
    corr = design.correlation
    if corr is not None:
        for g in design.groups:
            if g.name == corr.group:
                return g
        raise ValueError(
            f"residual correlation is within {corr.group!r} but the random effects are on "
            f"{', '.join(repr(g.name) for g in design.groups)}; the collapsed backend needs the correlation "
            "within one of the grouping factors. Use backend='latent'."
        )
    return max(design.groups, key=lambda g: g.n_levels)


def prepare(design: Design, layout: str = "auto") -> CollapsedData:
    """Precompute the arrays of the collapsed likelihood.

    Parameters
    ----------
    design : Design
        With a residual correlation, its group must be one of the grouping factors. With
        several factors, :func:`collapsed_group` is integrated out (padded layout) and the
        others enter the likelihood as an offset (the backend keeps them latent).
    layout : {"auto", "padded", "pooled"}
        ``"auto"`` picks the cheaper exact layout by counting the work per gradient.

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.likelihood.collapsed import prepare
    >>> m = hb.Model("y ~ time + treatment + (1 + time | id)", hb.datasets.load("clark_ar1"),
    ...              correlation=hb.AR1(time="time", group="id"))
    >>> cd = prepare(m.design)
    >>> cd.layout, cd.arrays["K"].shape
    ('pooled', (1, 4, 4, 4, 4))
    """
    group = collapsed_group(design)
    corr = design.correlation
    pad = padded_arrays(design, group)
    if "sigma" in design.dpars:
        # a residual sd per row (sigma="~ x"): R = diag(sigma_i) R(phi) diag(sigma_i) is not
        # shared by clusters, so the padded layout, with the sigma-formula rows padded by 0
        if layout == "pooled":
            raise ValueError(
                "the pooled layout needs one residual sd for every row; with a sigma formula "
                "the collapsed likelihood uses the padded layout (layout='padded' or 'auto')."
            )
        layout = "padded"
        pad["Xs"] = design.layout.pad(design.dpars["sigma"].X)
        if corr is None:  # unused arrays would be data the compiled graph lacks (cache refits)
            for k in ("lag", "inner", "odd"):
                pad.pop(k)
    if corr is not None and corr.kind == "compsymm":
        # compound symmetry whitens each cluster by its mean (structured.compsymm_whiten):
        # the padded layout
        if layout == "pooled":
            raise ValueError("compound symmetry uses the padded layout (layout='padded' or 'auto').")
        layout = "padded"
    if corr is not None and corr.kind in ("unstructured", "arma") or design.sd_by_occasion:
        # one Cholesky factor of R per occasion pattern, whitening each cluster's rows
        if layout == "pooled":
            raise ValueError(f"hb.{type(corr).__name__} uses the padded layout (layout='padded' or 'auto').")
        dense = structured.layout_arrays(design)
        dense.pop("sizes")
        pad["pos"] = np.where(design.layout.mask, design.layout.pos, 0)
        if len(design.groups) > 1:
            pad["mask"] = design.layout.mask.astype(float)
        return CollapsedData("padded", corr.kind, group.q, pad, design.layout.n_clusters, dense)
    if len(design.groups) > 1:
        # hybrid: the other factors stay latent and enter as a per-draw offset, which the
        # pooled layout's precomputed cross-products cannot take
        if layout == "pooled":
            raise ValueError(
                "the pooled layout needs a single grouping factor; with several factors the "
                "collapsed likelihood uses the padded layout (layout='padded' or 'auto')."
            )
        lay = design.layout
        pad["pos"] = np.where(lay.mask, lay.pos, 0)
        pad["mask"] = lay.mask.astype(float)
        kind = corr.kind if corr is not None else None
        return CollapsedData("padded", kind, group.q, pad, lay.n_clusters)
    C, T = pad["Y"].shape
    q, p = group.q, design.p
    m = 1 + p
    first, inverse = cluster_patterns(design, group)
    G = first.size
    pooled_cost = G * T * T * (m * m + T + q)
    padded_cost = design.n * (p + 2 * q + q * q) + C * q * q * q
    if layout == "auto":
        layout = "pooled" if pooled_cost < padded_cost and G * T * T * m * m < 5e7 else "padded"
    kind = corr.kind if corr is not None else None
    if layout == "padded":
        return CollapsedData("padded", kind, q, pad, C)
    if layout != "pooled":
        raise ValueError(f"layout must be 'auto', 'padded' or 'pooled', got {layout!r}.")
    W = np.concatenate([pad["Y"][:, :, None], pad["X"]], axis=2)  # (C, T, m)
    arrays = {
        "K": cross_products(W, inverse, G),
        "Z": pad["Z"][first],
        "lag": pad["lag"][first],
        "inner": pad["inner"][first],
        "odd": pad["odd"][first],
        "nobs": pad["nobs"][first],
        "count": np.bincount(inverse, minlength=G).astype(float),
    }
    return CollapsedData("pooled", kind, q, arrays, C)


# ----------------------------------------------------------------------- whitening


# ----------------------------------------------------------------------- log-density


def _S_inverse(xp, S, q: int):
    """Entries of ``S^-1`` and ``log|S|`` for one q x q covariance matrix ``S``.

    Cofactors for q <= 3 (one division, so the symbolic graph stays shallow); an unrolled
    Cholesky beyond.
    """
    A = [[S[..., i, j] for j in range(q)] for i in range(q)]
    if q <= 3:
        inv, det = smallmat.inverse_sym(A)
        return inv, xp.log(det)
    L = smallmat.cholesky(A, xp.sqrt)
    return smallmat.gram(smallmat.tri_inverse(L)), 2 * smallmat.log_diag_sum(L, xp.log)


def _logdet_and_quad(xp, M, rhs):
    """``log|M|`` and ``tr(M^-1 R)`` for symmetric q x q entries ``M``.

    ``rhs`` is a vector ``v`` (then ``R = v v^T``) or a matrix of entries ``R``. Cofactors
    for q <= 3; an unrolled Cholesky beyond.
    """
    q = len(M)
    is_vec = not isinstance(rhs[0], list)
    if q <= 3:
        inv, det = smallmat.inverse_sym(M)
        if is_vec:
            quad = sum(inv[i][j] * rhs[i] * rhs[j] for i in range(q) for j in range(q))
        else:
            quad = sum(inv[i][j] * rhs[j][i] for i in range(q) for j in range(q))
        return xp.log(det), quad
    L = smallmat.cholesky(M, xp.sqrt)
    logdet = 2 * smallmat.log_diag_sum(L, xp.log)
    if is_vec:
        w = smallmat.forward_solve(L, rhs)
        return logdet, sum(wi * wi for wi in w)
    Linv = smallmat.tri_inverse(L)
    Minv = smallmat.gram(Linv)
    return logdet, sum(Minv[i][j] * rhs[j][i] for i in range(q) for j in range(q))


def _const_terms(xp, nobs, count, sigma, logdet_S, logdet_M, q):
    return -0.5 * count * (
        nobs * LOG_2PI + (nobs - q) * 2 * xp.log(sigma) + logdet_S + logdet_M
    )


def loglik_padded(xp, arrays, corr, beta, sigma, phi, S, q: int, offset=None, row_sigma=None,
                  dense=None, total: bool = False):
    """Per-cluster collapsed log-likelihood on the padded layout (returns shape (C,)).

    The q x q algebra per cluster is unrolled (:mod:`hierbayes.likelihood.smallmat`) into
    elementwise operations on cluster-length vectors. ``offset`` (C, T), zero in padded
    slots, is subtracted from the response: the other factors' ``Z b`` of a hybrid model.

    ``row_sigma`` (C, T), 1 in padded slots, is a residual sd per row (``sigma="~ x"``;
    ``sigma`` is then ignored): the residual covariance is ``D R(phi) D`` with
    ``D = diag(sigma_i)`` (nlme's variance function with a correlation), so ``e`` and ``Z``
    are divided by ``sigma_i`` before the whitening, the Woodbury step runs at unit residual
    variance, and ``log|D| = sum log sigma_i`` enters the determinant.

    Unstructured and ARMA residuals (``corr`` ``"unstructured"`` / ``"arma"``; ``phi`` is
    then the K x K correlation matrix / the packed partial autocorrelations, ``dense`` the
    :attr:`CollapsedData.dense` patterns) whiten each cluster by ``L^-1``, ``L`` the
    Cholesky factor of ``R`` shared by the clusters of one occasion pattern
    (:func:`loglik_dense`).

    ``total=True`` returns the sum over clusters (what the sampler needs; for the dense
    structures it saves scattering each pattern's values into a per-cluster vector).
    """
    Y, X, Z = arrays["Y"], arrays["X"], arrays["Z"]
    e = Y - (X * beta).sum(axis=-1)
    if offset is not None:
        e = e - offset
    if row_sigma is not None:
        e = e / row_sigma
        Z = Z / row_sigma[:, :, None]
        sigma = 1.0
    if corr in ("unstructured", "arma"):
        ll = loglik_dense(xp, e, Z, dense, corr, phi, sigma, S, q, total=total)
        if row_sigma is None:
            return ll
        log_rs = xp.log(row_sigma).sum(axis=1)
        return ll - (log_rs.sum() if total else log_rs)
    ew, Zw, jac = _whitened(xp, arrays, corr, phi, e, Z, q)
    rr = (ew * ew).sum(axis=1)
    v = [(Zw[:, :, i] * ew).sum(axis=1) for i in range(q)]
    s2 = sigma * sigma
    S_inv, logdet_S = _S_inverse(xp, S, q)
    M = [
        [s2 * S_inv[i][j] + (Zw[:, :, i] * Zw[:, :, j]).sum(axis=1) if j <= i else None for j in range(q)]
        for i in range(q)
    ]
    logdet_M, quad = _logdet_and_quad(xp, M, v)
    ll = _const_terms(xp, arrays["nobs"], 1.0, sigma, logdet_S, logdet_M, q)
    ll = ll - 0.5 * (rr - quad) / s2
    if jac is not None:
        ll = ll + jac
    if row_sigma is not None:
        ll = ll - xp.log(row_sigma).sum(axis=1)
    return ll.sum() if total else ll


def dense_entry(corr: str, theta, dense: dict):
    """``entry(a, b)``: the residual correlation between pattern keys ``a`` and ``b`` (occasion
    codes of hb.Unstructured, with ``theta`` the K x K correlation; times since the cluster's
    first of hb.ARMA, with ``theta`` the packed partial autocorrelations)."""
    if corr == "unstructured":
        return lambda a, b: theta[a, b]
    from hierbayes.likelihood import arma

    ar, ma = structured.arma_pacfs(theta, dense["order"])
    r = arma.acf(ar, ma, dense["max_lag"])
    return lambda a, b: r[abs(a - b)]


def loglik_dense(xp, e, Z, dense: dict, corr: str, theta, sigma, S, q: int, total: bool = False):
    """Per-cluster collapsed log-likelihood (C,) under an unstructured or ARMA residual
    correlation: ``log N(e_c; 0, sigma^2 R_c + Z_c S Z_c')``.

    Per occasion pattern one Cholesky factor ``L`` of ``R`` (unrolled, n <= 10 slots), the
    cluster's residuals and random-effect columns whitened by forward substitution, then the
    Woodbury / determinant-lemma step of :func:`loglik_padded`:
    ``log|V| = n log sigma^2 + log|R| + log|S| + log|S^-1 + Q / sigma^2|`` and
    ``e' V^-1 e = (e~'e~ - v' M^-1 v) / sigma^2`` with ``Q = Z~'Z~``, ``v = Z~'e~``,
    ``M = sigma^2 S^-1 + Q``. ``total=True``: their sum (no scatter into a per-cluster vector).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from hierbayes.likelihood.structured import Pattern
    >>> C = np.array([[1.0, 0.5], [0.5, 1.0]])
    >>> dense = {"patterns": [Pattern(np.array([0, 1]), np.array([0]))], "n_clusters": 1}
    >>> e, Z, S = np.array([[0.3, -0.4]]), np.ones((1, 2, 1)), np.array([[0.25]])
    >>> ll = loglik_dense(np, e, Z, dense, "unstructured", C, 1.5, S, 1)
    >>> bool(np.isclose(ll[0], stats.multivariate_normal(np.zeros(2), 2.25 * C + 0.25).logpdf(e[0])))
    True
    """
    entry = dense_entry(corr, theta, dense)
    s2 = sigma * sigma
    S_inv, logdet_S = _S_inverse(xp, S, q)
    out = 0.0 if total else xp.zeros(dense["n_clusters"])
    for p in dense["patterns"]:
        o = [int(k) for k in p.occasions]
        n = len(o)
        L = smallmat.cholesky([[entry(o[i], o[j]) if j <= i else None for j in range(n)]
                               for i in range(n)], xp.sqrt)
        every = p.clusters.size == dense["n_clusters"]
        E = e if every else e[p.clusters]
        ZZ = Z if every else Z[p.clusters]
        w = smallmat.forward_solve(L, [E[:, k] for k in range(n)])
        zw = [smallmat.forward_solve(L, [ZZ[:, k, i] for k in range(n)]) for i in range(q)]
        rr = sum(wk * wk for wk in w)
        v = [sum(zw[i][k] * w[k] for k in range(n)) for i in range(q)]
        M = [[s2 * S_inv[i][j] + sum(zw[i][k] * zw[j][k] for k in range(n)) if j <= i else None
              for j in range(q)] for i in range(q)]
        logdet_M, quad = _logdet_and_quad(xp, M, v)
        logdet_R = 2.0 * smallmat.log_diag_sum(L, xp.log)
        ll = (_const_terms(xp, float(n), 1.0, sigma, logdet_S, logdet_M, q) - 0.5 * logdet_R
              - 0.5 * (rr - quad) / s2)
        if total:
            out = out + ll.sum()
        elif every:
            out = out + ll
        elif xp is np:
            out[p.clusters] = ll
        else:
            out = xp.set_subtensor(out[p.clusters], ll)
    return out


def _whitened(xp, arrays, corr, phi, e, Z, q: int):
    """The residuals (C, T) and random-effect columns (C, T, q) whitened within cluster,
    and the log-Jacobian per cluster (None without a correlation): the AR(1)/CAR(1) map, or
    compound symmetry's ``R^-1/2`` (:func:`hierbayes.likelihood.structured.compsymm_whiten`)."""
    if corr == "compsymm":
        mask, nobs = arrays["mask"], arrays["nobs"]
        ew, jac = structured.compsymm_whiten(xp, e, mask, nobs, phi)
        cols = [structured.compsymm_whiten(xp, Z[:, :, i], mask, nobs, phi)[0] for i in range(q)]
        return ew, xp.stack(cols, axis=2), jac
    a, inv_s2 = arprocess.coefficients(xp, corr, phi, arrays.get("lag"), arrays.get("inner"),
                                       arrays.get("odd"))
    ew = arprocess.whiten(xp, e, a, inv_s2)
    Zw = arprocess.whiten(xp, Z, a, inv_s2)
    return ew, Zw, (None if a is None else 0.5 * xp.log(inv_s2).sum(axis=1))


def row_sigma(xp, arrays, beta_sigma):
    """The padded (C, T) residual sds ``exp(X_sigma beta_sigma)`` of a sigma formula
    (``arrays["Xs"]``, zero rows in padded slots, where the sd is then 1)."""
    return xp.exp((arrays["Xs"] * beta_sigma).sum(axis=-1))


def precision_matrix(xp, a, inv_s2, T):
    """The AR(1) precision ``P = L^T L`` of each pattern, shape (G, T, T)."""
    c = a * inv_s2
    diag = inv_s2 + _shift_left(xp, a * c)
    up = np.eye(T, k=1)
    return (
        diag[:, :, None] * np.eye(T)[None]
        - c[:, None, :] * up[None]
        - c[:, :, None] * up.T[None]
    )


def _bmm(A, B):
    """Batched ``A @ B`` for tiny (G, T, T) x (G, T, q) arrays, as broadcast-and-sum."""
    return (A[:, :, :, None] * B[:, None, :, :]).sum(axis=2)


def _shift_left(xp, v):
    return xp.concatenate([v[:, 1:], xp.zeros_like(v[:, :1])], axis=1)


def loglik_pooled(xp, arrays, corr, beta, sigma, phi, S, q: int, T: int | None = None):
    """Collapsed log-likelihood summed over all clusters, by shared pattern (returns (G,)).

    ``T`` (the padded pattern length) is needed when the arrays are symbolic.
    """
    K, Z, count, nobs = arrays["K"], arrays["Z"], arrays["count"], arrays["nobs"]
    T = int(Z.shape[1]) if T is None else T
    u = xp.concatenate([xp.ones_like(beta[:1]), -beta])
    # E[g] = sum_c e_c e_c^T as a quadratic form in u (broadcast-and-sum, not a dot: on
    # CPU, XLA runs a tiny fused reduction far faster than a tiny matrix product)
    E = (K * u[:, None] * u[None, :]).sum(axis=(3, 4))  # (G, T, T)
    a, inv_s2 = arprocess.coefficients(xp, corr, phi, arrays["lag"], arrays["inner"], arrays["odd"])
    if a is None:
        trPE = (E * np.eye(T)).sum(axis=(1, 2))  # P = I: the trace of E
        PZ = Z
    else:
        P = precision_matrix(xp, a, inv_s2, T)
        trPE = (P * E).sum(axis=(1, 2))
        PZ = _bmm(P, Z)
    ZPZ = (Z[:, :, :, None] * PZ[:, :, None, :]).sum(axis=1)  # (G, q, q)
    EPZ = _bmm(E, PZ)  # (G, T, q)
    V = (PZ[:, :, :, None] * EPZ[:, :, None, :]).sum(axis=1)  # (G, q, q)
    s2 = sigma * sigma
    S_inv, logdet_S = _S_inverse(xp, S, q)
    M = [[s2 * S_inv[i][j] + ZPZ[:, i, j] if j <= i else None for j in range(q)] for i in range(q)]
    logdet_M, quad = _logdet_and_quad(xp, M, [[V[:, i, j] for j in range(q)] for i in range(q)])
    ll = _const_terms(xp, nobs, count, sigma, logdet_S, logdet_M, q)
    ll = ll - 0.5 * (trPE - quad) / s2
    if a is not None:
        ll = ll + 0.5 * count * xp.log(inv_s2).sum(axis=1)
    return ll


def loglik(xp, data: CollapsedData, beta, sigma, phi, S, beta_sigma=None):
    """Total collapsed log-likelihood (a scalar) in either layout; ``S`` the q x q
    random-effect covariance; ``beta_sigma`` the sigma formula's coefficients, if any
    (``sigma`` is then ignored)."""
    if data.layout == "pooled":
        T = data.arrays["Z"].shape[1]
        return loglik_pooled(xp, data.arrays, data.corr, beta, sigma, phi, S, data.q, T).sum()
    rs = None if beta_sigma is None else row_sigma(xp, data.arrays, beta_sigma)
    return loglik_padded(xp, data.arrays, data.corr, beta, sigma, phi, S, data.q, row_sigma=rs,
                         dense=data.dense).sum()
