"""Fixed effects vs random effects: the within (cluster-demeaned) estimator next to the
mixed model's coefficients.

The within estimator (econometrics' "fixed effects", Stata ``xtreg, fe``, R ``plm(model =
"within")``) removes every cluster's mean from ``y`` and from the fixed-effect columns and
regresses the demeaned response on the demeaned columns. It estimates only coefficients of
columns that vary within clusters (``time``); cluster-constant columns (the intercept, a
cluster-level treatment) are absorbed by the cluster effects. It stays consistent when the
cluster effects are correlated with the predictors, which the mixed model assumes away:
a large gap between the two on a time-varying coefficient is the classic warning (the
Hausman comparison). The Mundlak alternative keeps the mixed model and adds the cluster
mean of each time-varying predictor as a predictor; its coefficient on the predictor is
then the within effect.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hierbayes.report.ols import group_block

# a demeaned column whose norm is below this fraction of the raw column's counts as
# constant within every cluster
_WITHIN_RTOL = 1e-10


def _demean(v: np.ndarray, idx: np.ndarray, C: int) -> np.ndarray:
    """Subtract each cluster's mean from the rows of ``v`` (N,) or (N, k)."""
    n = np.bincount(idx, minlength=C).astype(float)
    if v.ndim == 1:
        return v - (np.bincount(idx, weights=v, minlength=C) / n)[idx]
    means = np.column_stack([np.bincount(idx, weights=v[:, j], minlength=C) for j in range(v.shape[1])])
    return v - (means / n[:, None])[idx]


def within_estimator(design, group: str | None = None) -> pd.DataFrame:
    """Within (fixed-effects) least squares of the model's time-varying fixed effects.

    Parameters
    ----------
    design : hierbayes.design.build.Design
    group : str, optional
        The clustering factor whose effects are removed; default the only grouping factor
        (or the one with the most levels).

    Returns
    -------
    pandas.DataFrame
        One row per time-varying fixed-effect column: ``estimate``, ``se`` (conventional,
        residual df ``N - C - k``), ``se_cluster`` (cluster-robust CR1, as Stata's ``xtreg,
        fe vce(cluster id)``). ``df.attrs``: ``absorbed`` (columns constant within every
        cluster, not estimable), ``dropped`` (time-varying columns collinear with earlier
        ones), ``group``, ``n``, ``n_clusters``, ``df_resid``.

    Raises
    ------
    ValueError
        The model has no fixed-effect column that varies within clusters.

    Notes
    -----
    With ``~`` denoting within-cluster demeaning, ``beta_w = (X~'X~)^-1 X~'y~``, residuals
    ``u = y~ - X~ beta_w``. Conventional: ``V = s^2 (X~'X~)^-1``, ``s^2 = u'u / (N - C - k)``
    (the least-squares-with-dummies variance). Cluster-robust:
    ``V = G/(G-1) (N-1)/(N-k) (X~'X~)^-1 (sum_c X~_c' u_c u_c' X~_c) (X~'X~)^-1``, which
    stays valid with correlated residuals within cluster (AR(1)) and heteroscedasticity.

    Examples
    --------
    >>> from hierbayes import datasets
    >>> from hierbayes.spec.formula import parse
    >>> from hierbayes.design.build import build_design
    >>> d = build_design(parse("y ~ time + treatment + (1 + time | id)"), datasets.load("clark_ar1"))
    >>> w = within_estimator(d)
    >>> list(w.index), w.attrs["absorbed"]
    (['time'], ['Intercept', 'treatment[treatment]'])
    """
    g = group_block(design, group)
    idx, C = np.asarray(g.index, dtype=np.int64), g.n_levels
    X = np.asarray(design.X, dtype=float)
    names = list(design.fixed_names)
    Xw = _demean(X, idx, C)
    yw = _demean(np.asarray(design.y, dtype=float), idx, C)
    scale = np.linalg.norm(X, axis=0)
    varies = np.linalg.norm(Xw, axis=0) > _WITHIN_RTOL * np.maximum(scale, 1.0)
    absorbed = [n for n, v in zip(names, varies) if not v]
    keep, dropped = [], []
    for j in np.flatnonzero(varies):
        trial = keep + [j]
        if np.linalg.matrix_rank(Xw[:, trial]) == len(trial):
            keep = trial
        else:
            dropped.append(names[j])
    if not keep:
        raise ValueError(
            f"no fixed-effect column varies within clusters of {g.name!r} ({names} are all "
            "constant within every cluster): the within estimator has nothing to estimate."
        )
    A = Xw[:, keep]
    N, k = A.shape
    AtA_inv = np.linalg.inv(A.T @ A)
    beta = AtA_inv @ (A.T @ yw)
    u = yw - A @ beta
    df_resid = N - C - k
    s2 = float(u @ u) / df_resid if df_resid > 0 else np.nan
    se = np.sqrt(s2 * np.diag(AtA_inv))
    # cluster-robust: per-cluster scores X~_c' u_c, summed outer products
    scores = np.column_stack([np.bincount(idx, weights=A[:, j] * u, minlength=C) for j in range(k)])
    meat = scores.T @ scores
    G = int(np.sum(np.bincount(idx, minlength=C) > 0))
    adj = G / (G - 1) * (N - 1) / (N - k) if G > 1 and N > k else np.nan
    V = adj * AtA_inv @ meat @ AtA_inv
    out = pd.DataFrame(
        {"estimate": beta, "se": se, "se_cluster": np.sqrt(np.diag(V))},
        index=pd.Index([names[j] for j in keep], name="coef"),
    )
    out.attrs.update(
        absorbed=absorbed, dropped=dropped, group=g.name, n=N, n_clusters=C, df_resid=df_resid
    )
    return out


@dataclass(frozen=True)
class FixedVsRandom:
    """The within estimator next to the mixed model, with the notes that read it.

    Attributes
    ----------
    table : pandas.DataFrame
        Per time-varying coefficient: ``within`` and ``within_se`` (cluster-robust),
        ``mixed_mean`` and ``mixed_sd`` (posterior), ``difference`` (within - mixed) and
        ``z`` (difference / within_se).
    notes : list of str
    """

    table: pd.DataFrame
    notes: list = field(default_factory=list)

    def __repr__(self) -> str:
        return self.table.round(4).to_string() + "\n" + "\n".join(self.notes)

    def _repr_html_(self) -> str:
        return self.table.round(4).to_html() + "".join(f"<p>{n}</p>" for n in self.notes)


def fixed_vs_random(idata, design, group: str | None = None) -> FixedVsRandom:
    """The within (fixed-effects) estimates of the time-varying coefficients next to the
    mixed model's posterior, in one table.

    Parameters
    ----------
    idata : arviz.InferenceData
        With ``beta`` (dims ``coef``) in the posterior.
    design : hierbayes.design.build.Design
    group : str, optional
        Clustering factor (default: the only one, or the one with the most levels).

    Returns
    -------
    FixedVsRandom
        ``.table`` and ``.notes`` (absorbed columns, how to read ``z``, the Mundlak
        alternative).

    Notes
    -----
    ``z = (within - mixed_mean) / within_se`` uses the within estimator's cluster-robust
    standard error only: the mixed model's estimate is the more precise one under its own
    assumptions (as in the Hausman test), so ``|z|`` well above 2 says the cluster effects
    are correlated with that predictor, and the mixed model's coefficient is biased. In
    longitudinal data with a time-varying ``x`` whose cluster means differ, add the
    cluster mean of ``x`` as a predictor (Mundlak): the mixed model then estimates the
    within effect on ``x`` and the between-minus-within effect on the mean.

    Examples
    --------
    >>> fit.fe_vs_re()          # doctest: +SKIP
    """
    w = within_estimator(design, group)
    beta = idata.posterior["beta"]
    mixed = beta.sel(coef=list(w.index))
    table = pd.DataFrame(
        {
            "within": w["estimate"],
            "within_se": w["se_cluster"],
            "mixed_mean": mixed.mean(("chain", "draw")).values,
            "mixed_sd": mixed.std(("chain", "draw")).values,
        },
        index=w.index,
    )
    table["difference"] = table["within"] - table["mixed_mean"]
    table["z"] = table["difference"] / table["within_se"]
    g = w.attrs["group"]
    notes = [
        f"Within estimator: y and the fixed-effect columns demeaned within each of the "
        f"{w.attrs['n_clusters']} clusters of {g!r}; cluster-robust (CR1) standard errors.",
    ]
    if w.attrs["absorbed"]:
        notes.append(
            f"Not estimable by the within estimator (constant within every cluster, absorbed "
            f"by the cluster effects): {w.attrs['absorbed']}."
        )
    if w.attrs["dropped"]:
        notes.append(f"Dropped as collinear after demeaning: {w.attrs['dropped']}.")
    big = [c for c in table.index if abs(table.loc[c, "z"]) > 2]
    if big:
        notes.append(
            f"|z| > 2 for {big}: the within and mixed estimates disagree beyond the within "
            "estimator's uncertainty, a sign that the cluster effects are correlated with "
            "these predictors (the random-effects assumption fails for them)."
        )
    else:
        notes.append(
            "|z| <= 2 everywhere: the within and mixed estimates agree; no sign that the "
            "cluster effects are correlated with the time-varying predictors."
        )
    notes.append(
        "Mundlak alternative: keep the mixed model and add the cluster mean of each "
        f"time-varying predictor as a predictor (e.g. data.groupby({g!r})['x'].transform('mean')); "
        "the coefficient on the predictor is then the within effect (exactly so in a balanced "
        "random-intercept model), and the random effects stay for prediction and shrinkage."
    )
    return FixedVsRandom(table=table, notes=notes)
