"""Shrinkage: what the hierarchy did to the cluster estimates, against per-cluster OLS.

For cluster ``c`` and term ``k`` let ``ols`` be the by-cluster least-squares estimate
(:func:`~hierbayes.report.ols.cluster_ols`), ``post`` the posterior mean of the cluster
coefficient (:func:`~hierbayes.report.coefficients.cluster_coefficient_draws`) and ``pop``
the population value the cluster is pulled towards, the fixed part
``sum_j A[c, k, j] E[beta_j]`` (so a treated id is pulled towards intercept + treatment).
The shrinkage factor is

    lambda = (ols - post) / (ols - pop)

0 means no pooling (the posterior keeps the OLS estimate), 1 complete pooling (the
posterior sits at the population value). In a Gaussian random-intercept model with known
variances it is ``sigma^2 / n / (sigma^2 / n + tau^2)``, larger for smaller clusters.

Every statistic of :func:`shrinkage_table` is written in the deviations from that
population value, ``d_ols = ols - pop`` and ``d_post = post - pop``, so they describe the
same pull and agree: with every cluster shrunk by the same factor ``lambda`` the pooled
shrinkage is ``lambda`` and the variance ratio ``(1 - lambda)^2``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hierbayes.report.coefficients import align, posterior_var, absorption_matrix
from hierbayes.report.ols import group_block, cluster_ols
from hierbayes import names


def shrinkage_frame(
    idata, design, group: str | None = None, *, ols: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per-cluster OLS estimate, posterior mean, population value and shrinkage factor.

    Parameters
    ----------
    idata : arviz.InferenceData
        Posterior with ``beta`` and ``b_{group}``.
    design : hierbayes.design.build.Design
    group : str, optional
        Grouping factor; default the only one (or the one with the most levels).
    ols : pandas.DataFrame, optional
        A precomputed :func:`cluster_ols` result for this design and group.

    Returns
    -------
    pandas.DataFrame
        Index (level, term); columns ``n``, ``status`` (of the per-cluster fit: least
        squares, or IRLS for binary and count families, see :func:`cluster_ols`), ``ols``,
        ``ols_se``, ``posterior`` (posterior mean), ``population`` and ``shrinkage``
        (``(ols - posterior) / (ols - population)``; NaN where OLS is NaN or equals the
        population value). Clusters without an OLS estimate are kept, with NaN.

    Examples
    --------
    >>> fr = shrinkage_frame(idata, design)
    >>> fr.xs("time", level="term")["shrinkage"].median()  # doctest: +SKIP
    """
    g = group_block(design, group)
    if ols is None:
        ols = cluster_ols(design, g.name)
    b = posterior_var(idata, names.effects(g.name), " (random-effect draws)")
    b = align(b, g.name, g.levels, names.effects(g.name))
    b = align(b, names.term_dim(g.name), g.terms, names.effects(g.name))
    b_mean = b.mean(("chain", "draw")).transpose(g.name, names.term_dim(g.name)).values
    if design.X.shape[1]:
        beta = align(posterior_var(idata, "beta"), "coef", design.fixed_names, "beta")
        pop = np.einsum(
            "ckj,j->ck", absorption_matrix(design, g.name), beta.mean(("chain", "draw")).values
        )
    else:
        pop = np.zeros_like(b_mean)
    post = pop + b_mean

    terms = list(g.terms)
    o = ols.reindex([str(v) for v in g.levels])
    o_coef = o[terms].to_numpy(dtype=float)
    o_se = o[[f"{t}_se" for t in terms]].to_numpy(dtype=float)
    dev = o_coef - pop
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(dev != 0, (o_coef - post) / dev, np.nan)

    q = len(terms)
    index = pd.MultiIndex.from_product([list(g.levels), terms], names=[g.name, "term"])
    return pd.DataFrame(
        {
            "n": np.repeat(o["n"].to_numpy(), q),
            "status": np.repeat(o["status"].to_numpy(), q),
            "ols": o_coef.ravel(),
            "ols_se": o_se.ravel(),
            "posterior": post.ravel(),
            "population": pop.ravel(),
            "shrinkage": factor.ravel(),
        },
        index=index,
    )


def _deviations(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """``d_ols = ols - population`` and ``d_post = posterior - population``."""
    pop = f["population"].to_numpy(float)
    return f["ols"].to_numpy(float) - pop, f["posterior"].to_numpy(float) - pop


def _pooled_factor(f: pd.DataFrame) -> float:
    """``1 - sum(d_post d_ols) / sum(d_ols^2)``: one factor fitted to all clusters.

    The least-squares slope of the posterior deviations on the OLS deviations (from the
    population value); unlike the mean of per-cluster ratios it is not thrown by clusters
    whose OLS estimate happens to lie near the population value.
    """
    d_ols, d_post = _deviations(f)
    ss = np.sum(d_ols**2)
    return float(1 - np.sum(d_post * d_ols) / ss) if ss > 0 else np.nan


def _spread(f: pd.DataFrame) -> dict:
    """``var_ols``, ``var_posterior`` (mean squared deviations from the population value),
    their ratio and ``corr_dev``, the uncentred correlation of the two deviations."""
    d_ols, d_post = _deviations(f)
    v_ols, v_post = float(np.mean(d_ols**2)), float(np.mean(d_post**2))
    cross = float(np.mean(d_ols * d_post))
    return {
        "var_ols": v_ols,
        "var_posterior": v_post,
        "var_ratio": v_post / v_ols if v_ols > 0 else np.nan,
        "corr_dev": cross / np.sqrt(v_ols * v_post) if v_ols > 0 and v_post > 0 else np.nan,
    }


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return np.nan
    ra = pd.Series(a[ok]).rank().to_numpy()
    rb = pd.Series(b[ok]).rank().to_numpy()
    if np.ptp(ra) == 0 or np.ptp(rb) == 0:
        return np.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _used(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[np.isfinite(frame["ols"]) & np.isfinite(frame["posterior"])]


def shrinkage_table(
    idata, design, group: str | None = None, *, frame: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per term: how much the hierarchy pulled the cluster estimates together.

    Parameters
    ----------
    idata : arviz.InferenceData
    design : hierbayes.design.build.Design
    group : str, optional
        Grouping factor; default the only one (or the one with the most levels).
    frame : pandas.DataFrame, optional
        A precomputed :func:`shrinkage_frame` (then ``idata`` and ``design`` are unused).

    Returns
    -------
    pandas.DataFrame
        Index ``term``; columns

        - ``n_clusters``: clusters with an OLS estimate (the others are left out here);
        - ``var_ols`` = ``mean(d_ols^2)`` and ``var_posterior`` = ``mean(d_post^2)``: the
          spread of the OLS estimates and of the posterior means around each cluster's
          population value (``d_ols = ols - population``, ``d_post = posterior -
          population``; a population value that differs between clusters, e.g. with a
          treatment, is not counted as spread); ``var_ratio`` = their ratio (< 1: shrunk);
        - ``shrinkage``: pooled factor ``1 - sum(d_post d_ols) / sum(d_ols^2)`` (0 no
          pooling, 1 complete pooling);
        - ``corr_dev``: ``sum(d_post d_ols) / sqrt(sum(d_post^2) sum(d_ols^2))``, how
          closely the posterior deviations follow the OLS ones. The three agree by
          ``var_ratio * corr_dev^2 == (1 - shrinkage)^2``: when every cluster is shrunk
          by one factor ``lambda`` (``corr_dev`` 1), ``shrinkage`` is ``lambda`` and
          ``var_ratio`` is ``(1 - lambda)^2``; a ``var_ratio`` above ``(1 - shrinkage)^2``
          says the posterior reorders the clusters (``corr_dev`` < 1);
        - ``median_factor``: median of the per-cluster factors;
        - ``corr_size``: Spearman correlation of the per-cluster factor with cluster
          size (negative: small clusters are shrunk more; NaN when all sizes are equal).

    Examples
    --------
    >>> shrinkage_table(idata, design)  # doctest: +SKIP
    """
    if frame is None:
        frame = shrinkage_frame(idata, design, group)
    rows = {}
    for term, f in _used(frame).groupby(level="term", sort=False):
        spread = _spread(f)
        rows[term] = {
            "n_clusters": len(f),
            "var_ols": spread["var_ols"],
            "var_posterior": spread["var_posterior"],
            "var_ratio": spread["var_ratio"],
            "shrinkage": _pooled_factor(f),
            "corr_dev": spread["corr_dev"],
            "median_factor": float(np.nanmedian(f["shrinkage"]))
            if f["shrinkage"].notna().any()
            else np.nan,
            "corr_size": _spearman(f["n"].to_numpy(float), f["shrinkage"].to_numpy(float)),
        }
    terms = list(dict.fromkeys(frame.index.get_level_values("term")))
    return pd.DataFrame.from_dict(rows, orient="index").reindex(terms).rename_axis("term")


def shrinkage_by_size(frame: pd.DataFrame, bins: int = 4) -> pd.DataFrame:
    """Pooled shrinkage factor per term and cluster-size class.

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`shrinkage_frame`.
    bins : int
        With at most ``2 * bins`` distinct cluster sizes each size is its own class;
        otherwise sizes are cut into ``bins`` quantile classes.

    Returns
    -------
    pandas.DataFrame
        Index (term, size); columns ``n_clusters``, ``shrinkage`` (pooled factor, see
        :func:`shrinkage_table`) and ``median_factor``.

    Examples
    --------
    >>> shrinkage_by_size(shrinkage_frame(idata, design))  # doctest: +SKIP
    """
    f = _used(frame)
    sizes = f["n"].astype(int)
    if sizes.nunique() <= 2 * bins:
        size = sizes.astype(str).rename("size")
        order = [str(s) for s in sorted(sizes.unique())]
    else:
        size = pd.qcut(sizes, bins, duplicates="drop").astype(str).rename("size")
        order = list(dict.fromkeys(size.iloc[np.argsort(sizes.to_numpy(), kind="stable")]))
    out = []
    for (term, s), part in f.groupby(
        [f.index.get_level_values("term"), size.to_numpy()], sort=False
    ):
        out.append(
            {
                "term": term,
                "size": s,
                "n_clusters": len(part),
                "shrinkage": _pooled_factor(part),
                "median_factor": float(np.nanmedian(part["shrinkage"]))
                if part["shrinkage"].notna().any()
                else np.nan,
            }
        )
    res = pd.DataFrame(out)
    terms = list(dict.fromkeys(frame.index.get_level_values("term")))
    res["term"] = pd.Categorical(res["term"], terms, ordered=True)
    res["size"] = pd.Categorical(res["size"], order, ordered=True)
    res = res.sort_values(["term", "size"])
    res["term"] = res["term"].astype(str)
    res["size"] = res["size"].astype(str)
    return res.set_index(["term", "size"])
