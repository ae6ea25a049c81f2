"""Model comparison by PSIS-LOO, in the right unit, and the checks that make it valid.

:func:`loo` runs ArviZ's Pareto-smoothed importance-sampling LOO (``az.loo``,
``pointwise=True``) on the fit's log-likelihood group (:mod:`hierbayes.criticism.loglik`), whose unit
is an observation when observations are conditionally independent and a whole cluster
when residuals are correlated within clusters or the random effects are integrated out.
:func:`compare` ranks fits (``az.compare``) only when their elpd values estimate the same
thing: the same rows and response values, and the same unit (leaving out an observation
and leaving out a whole cluster are different predictive tasks whose elpds cannot be
ranked against each other).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import arviz as az
import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes import names

#: Pareto k thresholds (Vehtari et al. 2017/2024): PSIS is reliable below 0.7, and the
#: estimate of that unit's elpd is useless above 1.
K_GOOD, K_BAD = 0.7, 1.0


@dataclass(frozen=True)
class LOO:
    """PSIS-LOO of one fit.

    Attributes
    ----------
    elpd : arviz.ELPDData
        ArviZ's result (``elpd_loo``, ``se``, ``p_loo``, pointwise ``loo_i`` and ``pareto_k``).
    unit : str
        ``"obs"`` (leave one observation out) or the grouping factor whose clusters are left
        out whole (leave-one-cluster-out).
    refitted : tuple of str
        Units whose elpd comes from an exact refit without them (:func:`hierbayes.reloo`),
        not from PSIS; their Pareto k is reported as 0.
    """

    elpd: az.ELPDData
    unit: str
    refitted: tuple = ()

    @property
    def elpd_loo(self) -> float:
        return float(self.elpd["elpd_loo"])

    @property
    def se(self) -> float:
        return float(self.elpd["se"])

    @property
    def p_loo(self) -> float:
        return float(self.elpd["p_loo"])

    @property
    def n_units(self) -> int:
        return int(self.elpd["n_data_points"])

    @property
    def pareto_k(self) -> pd.Series:
        """Pareto shape k of every unit (observation or cluster), indexed by its label."""
        k = self.elpd["pareto_k"]
        return pd.Series(np.asarray(k.values), index=k[k.dims[0]].values, name="pareto_k")

    def k_counts(self) -> pd.Series:
        """How many units have k <= 0.7 (good), 0.7 < k <= 1 (bad), k > 1 (very bad)."""
        k = self.pareto_k.to_numpy()
        return pd.Series(
            {
                f"k <= {K_GOOD} (good)": int(np.sum(k <= K_GOOD)),
                f"{K_GOOD} < k <= {K_BAD} (bad)": int(np.sum((k > K_GOOD) & (k <= K_BAD))),
                f"k > {K_BAD} (very bad)": int(np.sum(k > K_BAD)),
            },
            name="count",
        )

    @property
    def n_high_k(self) -> int:
        """Units with k > 0.7, whose elpd estimate is unreliable."""
        return int(np.sum(self.pareto_k.to_numpy() > K_GOOD))

    def describe(self) -> list[str]:
        what = (
            f"leave-one-observation-out over {self.n_units} observations"
            if self.unit == "obs"
            else f"leave-one-cluster-out over {self.n_units} clusters of {self.unit!r}"
        )
        lines = [
            f"PSIS-LOO, {what}" + (f" ({len(self.refitted)} of them refitted exactly)" if self.refitted else "") + ":",
            f"  elpd_loo {self.elpd_loo:.1f} (se {self.se:.1f}), p_loo {self.p_loo:.1f}",
            "  Pareto k: " + ", ".join(f"{n} {lab}" for lab, n in self.k_counts().items()),
        ]
        if self.n_high_k:
            worst = self.pareto_k.sort_values(ascending=False).head(5)
            lines.append(
                f"  {self.n_high_k} {'observations' if self.unit == 'obs' else 'clusters'} have "
                f"k > {K_GOOD} (largest: "
                + ", ".join(f"{lab} {v:.2f}" for lab, v in worst.items())
                + "): their elpd estimates are unreliable, and so is the total. hb.reloo(fit) "
                "refits without each of them for an exact LOO of those units; hb.loo_kfold(fit) "
                "runs K-fold cross-validation when there are many."
            )
        else:
            lines.append(f"  All Pareto k <= {K_GOOD}: the PSIS estimate is reliable.")
        return lines

    def __repr__(self) -> str:
        return "\n".join(self.describe())


# --------------------------------------------------------------------------- helpers


def _cluster_labels(design, unit: str) -> np.ndarray:
    """Label of the ``unit`` cluster of every design row (design order)."""
    if design.correlation is not None and design.correlation.group == unit:
        return np.asarray(design.cluster_levels, dtype=object)[design.cluster]
    for g in design.groups:
        if g.name == unit:
            return np.asarray(g.levels, dtype=object)[g.index]
    known = sorted({g.name for g in design.groups} | ({design.correlation.group} if design.correlation else set()))
    raise ValueError(
        f"unit {unit!r} is not a grouping factor of this model; its clusters are {known} "
        "(or 'obs' for single observations)."
    )


def aggregate(ll: xr.DataArray, design, unit: str) -> xr.DataArray:
    """Sum a pointwise (``obs``) log-likelihood within the clusters of ``unit``.

    The sum is the log density of the cluster's observations given the parameters (they
    are conditionally independent, which is why the unit was ``obs``), so PSIS on it
    estimates leave-one-cluster-out.
    """
    from scipy import sparse

    labels_design = _cluster_labels(design, unit)
    by_row = pd.Series(labels_design, index=design.rows)
    labels = by_row.loc[ll["obs"].values].to_numpy()
    codes, uniques = pd.factorize(pd.Series(labels).astype(str), sort=True)
    n = codes.size
    onehot = sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(uniques.size, n))
    vals = ll.transpose("chain", "draw", "obs").values
    summed = (onehot @ vals.reshape(-1, n).T).T.reshape(vals.shape[:2] + (uniques.size,))
    return xr.DataArray(
        summed,
        dims=("chain", "draw", unit),
        coords={"chain": ll["chain"].values, "draw": ll["draw"].values, unit: list(uniques)},
    )


def relative_efficiency(posterior) -> float:
    """Relative efficiency as ArviZ computes it (mean ESS over draws), over the
    hyperparameters only: the thousands of random effects would dominate the cost.

    Examples
    --------
    >>> 0 < relative_efficiency(fit.idata.posterior) < 5
    True
    """
    keep = [v for v in posterior.data_vars if not names.is_effects(v)]
    ess = azs.ess(posterior[keep], method="mean")
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    return float(np.hstack([ess[v].values.ravel() for v in ess.data_vars]).mean() / n)


# --------------------------------------------------------------------------- public


def loo(fit, unit: str | None = None) -> LOO:
    """PSIS-LOO cross-validation of a fit through ArviZ, in the right unit.

    Parameters
    ----------
    fit : Fit
    unit : str, optional
        Default: the unit of the fit's log-likelihood (see :func:`hierbayes.criticism.loglik.unit`):
        single observations when they are conditionally independent, whole clusters of the
        correlation / integrated-out factor otherwise. A grouping factor name (``"id"``)
        turns a pointwise log-likelihood into a per-cluster one (sum within cluster),
        giving leave-one-cluster-out, e.g. to compare with a fit whose unit is that factor.

    Returns
    -------
    LOO
        ``elpd_loo``, ``se``, ``p_loo``, ``pareto_k`` per unit and ``k_counts()``;
        ``print`` gives a verdict on the Pareto k diagnostics.

    Raises
    ------
    ValueError
        ``unit`` is not a grouping factor of the model, or asks for single observations
        when the log-likelihood only exists per cluster.

    Notes
    -----
    The log-likelihood group is computed and stored in ``fit.idata.log_likelihood`` on
    first use. The relative efficiency passed to ``az.loo`` is ArviZ's (mean ESS over
    draws), computed over the hyperparameters only.

    Examples
    --------
    >>> res = hb.loo(fit)
    >>> res.unit, res.n_high_k     # doctest: +SKIP
    ('id', 0)
    """
    ll = fit.log_likelihood()["y"]
    current = ll.dims[-1]
    if unit is not None and unit != current:
        if current != "obs":
            raise ValueError(
                f"this fit's log-likelihood exists per cluster of {current!r} only (residuals "
                "are correlated within clusters, or the random effects are integrated out), "
                f"so LOO cannot leave out units of {unit!r}; use unit={current!r}."
            )
        if unit != "obs":
            ll = aggregate(ll, fit.design, unit)
    name = ll.dims[-1]
    data = az.InferenceData(log_likelihood=xr.Dataset({"y": ll}))
    with warnings.catch_warnings():
        # ArviZ warns on large k; LOO.describe() reports the counts and what to do
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        elpd = az.loo(data, pointwise=True, var_name="y", reff=relative_efficiency(fit.idata.posterior))
    return LOO(elpd=elpd, unit=name)


@dataclass(frozen=True)
class Comparison:
    """Fits ranked by PSIS-LOO, with the statements that make the ranking valid.

    Attributes
    ----------
    table : pandas.DataFrame
        ``az.compare``'s table (rank, elpd_loo, p_loo, elpd_diff, weight, se, dse, warning)
        plus ``unit``, ``n_units`` and ``k > 0.7`` (count of unreliable units) per fit.
    loos : dict of str to LOO
    notes : list of str
        What was checked (same rows and response, same unit) and warnings (Pareto k).
    """

    table: pd.DataFrame
    loos: dict
    notes: list = field(default_factory=list)

    def __repr__(self) -> str:
        cols = ["rank", "elpd_loo", "p_loo", "elpd_diff", "dse", "weight", "k > 0.7"]
        return self.table[cols].round(2).to_string() + "\n" + "\n".join(self.notes)

    def _repr_html_(self) -> str:
        notes = "".join(f"<li>{n}</li>" for n in self.notes)
        return self.table.round(3).to_html() + f"<ul>{notes}</ul>"


def _check_same_data(fits: dict) -> str:
    names = list(fits)
    ref_name, ref = names[0], fits[names[0]].design
    ref_y = pd.Series(ref.y, index=ref.rows).sort_index()
    for name in names[1:]:
        d = fits[name].design
        y = pd.Series(d.y, index=d.rows).sort_index()
        if not y.index.equals(ref_y.index):
            raise ValueError(
                f"fits {ref_name!r} and {name!r} were fitted to different rows ({ref_y.size} vs "
                f"{y.size} rows used; e.g. missing values dropped in one of them): their elpds "
                "sum over different data and cannot be compared. Fit both to the same rows."
            )
        if not np.allclose(y.to_numpy(), ref_y.to_numpy(), rtol=0, atol=1e-12):
            raise ValueError(
                f"fits {ref_name!r} ({ref.spec.response!r}) and {name!r} ({d.spec.response!r}) "
                "have different response values (another column or a transformed response): "
                "log predictive densities of different data cannot be compared."
            )
    return (
        f"Same data: every fit used the same {ref_y.size} rows and the same response values."
    )


def compare(fits: dict, unit: str | None = None, method: str = "stacking") -> Comparison:
    """Rank fits by PSIS-LOO (``az.compare``) and say whether the ranking is valid.

    Parameters
    ----------
    fits : dict of str to Fit
        At least two fits of the same data.
    unit : str, optional
        Unit of the LOO for every fit (see :func:`loo`); by default each fit's own, which
        must then agree. Pass a grouping factor (``"id"``) to compare a fit with
        conditionally independent observations against one whose unit is that factor's
        clusters.
    method : {"stacking", "BB-pseudo-BMA", "pseudo-BMA"}
        How ``az.compare`` computes the weights.

    Returns
    -------
    Comparison
        ``.table`` (ranked), ``.loos`` and ``.notes`` (the validity statements).

    Raises
    ------
    ValueError
        Fits used different rows or response values; or their LOO units differ (one leaves
        out observations, another whole clusters, or clusters of different factors), with
        the explanation and the ``unit=`` to use where one exists.

    Examples
    --------
    >>> cmp = hb.compare({"AR(1)": fit_ar, "independent": fit_iid})   # doctest: +SKIP
    >>> print(cmp)                                                     # doctest: +SKIP
    """
    if not isinstance(fits, dict) or len(fits) < 2:
        raise ValueError("compare needs a dict of at least two fits, e.g. {'AR(1)': fit1, 'iid': fit2}.")
    notes = [_check_same_data(fits)]
    loos = {name: loo(fit, unit=unit) for name, fit in fits.items()}
    units = {name: r.unit for name, r in loos.items()}
    if len(set(units.values())) > 1:
        desc = ", ".join(
            f"{n!r}: {'single observations' if u == 'obs' else f'clusters of {u!r}'}" for n, u in units.items()
        )
        factors = sorted({u for u in units.values() if u != "obs"})
        hint = (
            f" Compare leave-one-cluster-out for all of them with unit={factors[0]!r} (the "
            "pointwise log-likelihoods are summed within cluster)."
            if len(factors) == 1
            else " No common unit exists: the fits leave out clusters of different factors."
        )
        raise ValueError(
            f"the fits' LOO units differ ({desc}). The elpd of a left-out observation and "
            "that of a whole left-out cluster measure different predictive tasks (a new "
            "observation of a known cluster vs a new cluster), so their sums cannot be "
            "ranked." + hint
        )
    u = next(iter(units.values()))
    coords = {name: list(r.pareto_k.index) for name, r in loos.items()}
    first = next(iter(coords.values()))
    if any(c != first for c in coords.values()):
        raise ValueError(f"the fits' clusters of {u!r} differ; they were not fitted to the same clusters.")
    notes.append(
        "Same unit: every fit is scored "
        + (
            "leaving out one observation at a time (conditionally independent observations)."
            if u == "obs"
            else f"leaving out one whole cluster of {u!r} at a time ({len(first)} clusters): the "
            "elpd is the log predictive density of a new cluster's observations."
        )
    )
    table = az.compare({name: r.elpd for name, r in loos.items()}, method=method)
    table["unit"] = [loos[n].unit for n in table.index]
    table["n_units"] = [loos[n].n_units for n in table.index]
    table["k > 0.7"] = [loos[n].n_high_k for n in table.index]
    for name, r in loos.items():
        if r.n_high_k:
            notes.append(
                f"Warning: {name!r} has {r.n_high_k} units with Pareto k > {K_GOOD}; its elpd "
                "is unreliable (see hb.loo(fit) for which)."
            )
    best, runner = table.index[0], table.index[1]
    diff, dse = float(table.loc[runner, "elpd_diff"]), float(table.loc[runner, "dse"])
    verdict = "clearly" if diff > 4 and diff > 2 * dse else "not clearly"
    notes.append(
        f"{best!r} ranks first; {runner!r} is {diff:.1f} elpd behind (dse {dse:.1f}): "
        f"{verdict} better (a difference counts when it exceeds about 4 and twice its dse)."
    )
    return Comparison(table=table, loos=loos, notes=notes)
