"""Centred or non-centred random effects, per grouping factor, for the factors NUTS samples.

A sampled factor's effects can be written centred, ``b_j ~ N(0, S)``, or non-centred,
``b_j = F z_j`` with ``z_j ~ N(0, I)`` and ``F F^T = S``. Which one samples well depends on
how much the data say about each level compared with the spread of the levels
(Papaspiliopoulos, Roberts & Skoeld 2007; Betancourt & Girolami 2015): where a level's
data dominate (many informative rows per level), the non-centred form couples ``z_j`` and
``S`` tightly and the centred form is the efficient one; where the prior dominates (few
rows, weak data), the centred form has the funnel between ``b`` and ``S`` and the
non-centred form removes it.

The rule (:func:`choose`), computed once from the design before sampling:

- the response is regressed on the fixed effects (least squares; for a GLMM on the response
  scale, no link: only a ratio of variances is needed);
- for each factor, each level's least-squares fit of those residuals on the factor's own
  terms (its columns of ``Z``: the intercept, the slopes) gives estimates ``b_hat_j`` with
  sampling variances ``s_w^2 [(Z_j^T Z_j)^-1]_kk`` (``s_w^2`` the pooled within-level
  residual variance); the spread of the levels, ``s_b,k^2``, is the variance of the
  ``b_hat_jk`` less their mean sampling variance (method of moments, floored at 0): for an
  intercept alone, the one-way analysis of variance;
- level ``j`` and term ``k`` have the data-to-prior precision ratio
  ``r_jk = s_b,k^2 / (s_w^2 [(Z_j^T Z_j)^-1]_kk)`` (for a random intercept
  ``n_j s_b^2 / s_w^2``; for a Gaussian model the ratio of the likelihood's precision of
  ``b_jk`` to the prior's; for other families the same ratio on the response scale, the
  delta method's first order on the link scale);
- the factor is **centred when, for every one of its terms, the median ratio over its
  levels is at least 1** (:data:`THRESHOLD`; 4 for non-Gaussian families,
  :data:`THRESHOLD_NON_GAUSSIAN`): the typical level's posterior is closer to
  its data than to the prior in every direction. Otherwise non-centred (a term the data
  say little about, such as a slope on a two-level condition with few rows per level,
  would give the centred form a funnel), which is also the choice when the ratio cannot be
  estimated (constant residuals, no level with more rows than terms).

``hb.Model(..., centered={"item": True})`` overrides the rule per factor; the rule's
decisions and ratios are in ``model.centering`` and the summary header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the median data-to-prior precision ratio at and above which a factor is centred: for a
#: Gaussian likelihood, and for other families (whose ratio is a first-order approximation
#: and whose sds are less well identified; on benchmarks/bench_crossed.py's C4, Bernoulli
#: items at ratio 2 sampled worse centred: R-hat 1.05 and bulk ESS 146 against 1.01 and
#: 301 non-centred)
THRESHOLD = 1.0
THRESHOLD_NON_GAUSSIAN = 4.0


@dataclass(frozen=True)
class Centering:
    """One factor's parameterisation: ``centered``, the median ratio ``ratio`` (nan where it
    could not be estimated) and ``source`` ("rule" or "user")."""

    centered: bool
    ratio: float
    source: str

    def describe(self) -> str:
        form = "centred" if self.centered else "non-centred"
        if self.source == "user":
            return f"{form} (as given)"
        return f"{form} (median data/prior precision ratio {self.ratio:.2g})"


def precision_ratio(residuals: np.ndarray, index: np.ndarray, n_levels: int,
                    Z: np.ndarray | None = None) -> float:
    """The smallest over terms of the median over levels of ``r_jk`` (module docstring);
    nan when the within-level variance is zero or fewer than two levels have more rows
    than terms.

    Parameters
    ----------
    residuals : (N,) array
    index : (N,) int array
        Each row's level, ``0 .. n_levels - 1``.
    n_levels : int
    Z : (N, q) array, optional
        The factor's terms; default a column of ones (a random intercept).

    Examples
    --------
    >>> import numpy as np
    >>> from hierbayes.backend.centring import precision_ratio
    >>> rng = np.random.default_rng(0)
    >>> g = np.repeat(np.arange(200), 50)
    >>> r = rng.normal(0, 2.0, 200)[g] + rng.normal(0, 1.0, g.size)  # n s_b^2 / s_w^2 = 200
    >>> 150 < precision_ratio(r, g, 200) < 260
    True
    """
    Z = np.ones((residuals.size, 1)) if Z is None else np.asarray(Z, dtype=float)
    q = Z.shape[1]
    ZtZ = np.zeros((n_levels, q, q))
    np.add.at(ZtZ, index, Z[:, :, None] * Z[:, None, :])
    Ztr = np.zeros((n_levels, q))
    np.add.at(Ztr, index, Z * residuals[:, None])
    n = np.bincount(index, minlength=n_levels)
    ok = (n > q) & (np.linalg.matrix_rank(ZtZ) == q) if n_levels else np.zeros(0, bool)
    if ok.sum() < 2:
        return float("nan")
    inv = np.linalg.inv(ZtZ[ok])  # (L, q, q)
    b_hat = np.einsum("lij,lj->li", inv, Ztr[ok])
    fitted = np.zeros(residuals.size)
    rows = ok[index]
    lvl = np.cumsum(ok) - 1  # level -> position among the kept levels
    fitted[rows] = np.einsum("ni,ni->n", Z[rows], b_hat[lvl[index[rows]]])
    dev = (residuals - fitted)[rows]
    df_within = rows.sum() - q * ok.sum()
    s_w2 = float(dev @ dev) / df_within
    if not s_w2 > 0:
        return float("nan")
    sampling = s_w2 * np.diagonal(inv, axis1=1, axis2=2)  # (L, q)
    s_b2 = np.maximum(b_hat.var(axis=0, ddof=1) - sampling.mean(axis=0), 0.0)
    return float(np.min(np.median(s_b2[None, :] / sampling, axis=0)))


def choose(design, sampled, given: dict | None = None) -> dict[str, Centering]:
    """The parameterisation of each factor in ``sampled`` (GroupBlocks of ``design``):
    ``given[name]`` (a bool) where the user gave one, else the rule.

    Raises
    ------
    ValueError
        A key of ``given`` that is not a sampled factor, or a value that is not a bool.
    """
    given = dict(given or {})
    names_ = [g.name for g in sampled]
    for k, v in given.items():
        if k not in names_:
            all_names = [g.name for g in design.groups]
            why = (f"its effects are integrated out, not sampled" if k in all_names
                   else f"the model's grouping factors are {all_names}")
            raise ValueError(f"centered={{{k!r}: ...}} names no sampled grouping factor: {why}; "
                             f"the sampled factors are {names_}.")
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"centered[{k!r}] must be True or False, got {v!r}.")
    out = {}
    resid = None
    threshold = THRESHOLD if design.spec.family.name == "gaussian" else THRESHOLD_NON_GAUSSIAN
    for g in sampled:
        if g.name in given:
            out[g.name] = Centering(bool(given[g.name]), float("nan"), "user")
            continue
        if resid is None:
            resid = _fixed_effect_residuals(design)
        ratio = precision_ratio(resid, g.index, g.n_levels, g.Z)
        out[g.name] = Centering(bool(ratio >= threshold), ratio, "rule")
    return out


def _fixed_effect_residuals(design) -> np.ndarray:
    """The response (a binomial's as the proportion of trials) less its least-squares fit
    on the fixed effects."""
    y = design.y if design.trials is None else design.y / design.trials
    if design.p == 0:
        return y - y.mean()
    coef, *_ = np.linalg.lstsq(design.X, y, rcond=None)
    return y - design.X @ coef
