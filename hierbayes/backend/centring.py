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
- for each factor a one-way analysis of variance of those residuals by level gives the
  pooled within-level variance ``s_w^2`` and the excess between-level variance
  ``s_b^2 = var(level means) - s_w^2 / n_bar`` (method of moments, floored at 0);
- level ``j`` with ``n_j`` rows has the data-to-prior precision ratio
  ``r_j = n_j s_b^2 / s_w^2`` (for a Gaussian model exactly the ratio of the likelihood's
  precision of ``b_j``, ``n_j / sigma^2``, to the prior's ``1 / sd^2``; for other families
  the same ratio on the response scale, the delta method's first order on the link scale);
- the factor is **centred when the median ratio over its levels is at least 1**
  (:data:`THRESHOLD`): the typical level's posterior is closer to its data than to the
  prior. Otherwise non-centred, which is also the choice when the ratio cannot be
  estimated (constant residuals, one row per level).

``hb.Model(..., centered={"item": True})`` overrides the rule per factor; the rule's
decisions and ratios are in ``model.centering`` and the summary header.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the median data-to-prior precision ratio at and above which a factor is centred
THRESHOLD = 1.0


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


def precision_ratio(residuals: np.ndarray, index: np.ndarray, n_levels: int) -> float:
    """The median over levels of ``n_j s_b^2 / s_w^2`` (module docstring); nan when the
    within-level variance is zero or no level has two rows.

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
    n = np.bincount(index, minlength=n_levels).astype(float)
    sums = np.bincount(index, weights=residuals, minlength=n_levels)
    has = n > 0
    means = sums[has] / n[has]
    dev = residuals - (sums / np.maximum(n, 1))[index]
    df_within = residuals.size - has.sum()
    if df_within < 1 or has.sum() < 2:
        return float("nan")
    s_w2 = float(dev @ dev) / df_within
    if not s_w2 > 0:
        return float("nan")
    s_b2 = max(float(np.var(means, ddof=1)) - s_w2 * float(np.mean(1.0 / n[has])), 0.0)
    return float(np.median(n[has] * s_b2 / s_w2))


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
    for g in sampled:
        if g.name in given:
            out[g.name] = Centering(bool(given[g.name]), float("nan"), "user")
            continue
        if resid is None:
            resid = _fixed_effect_residuals(design)
        ratio = precision_ratio(resid, g.index, g.n_levels)
        out[g.name] = Centering(bool(ratio >= THRESHOLD), ratio, "rule")
    return out


def _fixed_effect_residuals(design) -> np.ndarray:
    """The response (a binomial's as the proportion of trials) less its least-squares fit
    on the fixed effects."""
    y = design.y if design.trials is None else design.y / design.trials
    if design.p == 0:
        return y - y.mean()
    coef, *_ = np.linalg.lstsq(design.X, y, rcond=None)
    return y - design.X @ coef
