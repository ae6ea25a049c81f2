"""Exact cross-validation by refitting, through arviz-stats: :func:`reloo` refits the model
without each unit whose PSIS-LOO estimate is unreliable (Pareto k above a threshold) and
:func:`loo_kfold` runs K-fold cross-validation over the fit's units.

A unit is what :func:`hierbayes.loo` leaves out (:func:`hierbayes.criticism.loglik.unit`): an
observation when observations are conditionally independent, a whole cluster when residuals
are correlated within clusters or the random effects are integrated out. Refits use the
fit's own model (formula, family, correlation, backend, the *resolved* priors, so a refit's
prior is the full fit's, not one recomputed from fewer rows) and sampler settings.

The held-out units' log predictive density ``log p(y_u | y_-u)`` is computed at every draw of
the refit. Effects the refit has no draws of (the held-out clusters' own) are integrated out:
exactly where the model allows it (Gaussian: the collapsed density, DESIGN.md; GLMMs of one
factor: the quadrature of :mod:`hierbayes.likelihood.quadrature`), otherwise by a fresh draw
from ``N(0, S)`` per posterior draw (a Monte Carlo average over the refit's draws; used for an
observation whose cluster has no other row, and for the other factors of a crossed design).

The refitting loops are arviz-stats' own (``arviz_stats.reloo``, ``arviz_stats.loo_kfold``);
hierbayes supplies the :class:`RefitWrapper` (``arviz_stats.SamplingWrapper``) and turns the
result into the :class:`~hierbayes.criticism.comparison.LOO` / :class:`KFold` that the rest of
the package reads.
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
from hierbayes.backend import marginal_unavailable
from hierbayes.backend.glmm import unavailable as quadrature_unavailable
from hierbayes.criticism.comparison import K_GOOD, LOO, loo as psis_loo, relative_efficiency
from hierbayes.criticism.loglik import unit_log_likelihood
from hierbayes.likelihood.recover import covariance_cholesky


def _unit_codes(design, unit: str, labels) -> dict:
    """The user row positions (in ``design.source``) of every unit label."""
    if unit == "obs":
        return {lab: np.array([int(lab)]) for lab in labels}
    if design.correlation is not None and design.correlation.group == unit:
        lab_of_row = np.asarray(design.cluster_levels, dtype=object)[design.cluster]
    else:
        g = design.group(unit)
        lab_of_row = np.asarray(g.levels, dtype=object)[g.index]
    rows = pd.Series(design.rows).groupby(pd.Series(lab_of_row).astype(str)).agg(list)
    return {lab: np.asarray(rows[str(lab)], dtype=int) for lab in labels}


def transfer_posterior(post: xr.Dataset, design, rng: np.random.Generator) -> xr.Dataset:
    """A refit's posterior on the full ``design``'s levels: every ``b_<g>`` reindexed to the
    design's levels of ``g``, a level the refit never saw drawn from ``N(0, S_g)`` at each draw.

    Parameters
    ----------
    post : xarray.Dataset
        The refit's posterior.
    design : Design
        The full fit's design.
    rng : numpy.random.Generator

    Returns
    -------
    xarray.Dataset

    Examples
    --------
    >>> import numpy as np
    >>> out = transfer_posterior(fit.idata.posterior, fit.design, np.random.default_rng(0))
    >>> out["b_id"].shape == fit.idata.posterior["b_id"].shape
    True
    """
    out = {}
    for g in design.groups:
        name = names.effects(g.name)
        if name not in post:
            continue
        b = post[name]
        seen = [str(v) for v in b[g.name].values]
        want = [str(v) for v in g.levels]
        nc, nd = b.sizes["chain"], b.sizes["draw"]
        sd = post[names.sd(g.name)].values.reshape(nc * nd, -1)
        corr = post[names.corr(g.name)].values.reshape(nc * nd, g.q, g.q) if names.corr(g.name) in post else None
        L = covariance_cholesky(sd, corr)
        z = rng.standard_normal((nc * nd, len(want), g.q))
        vals = np.einsum("dqk,dlk->dlq", L, z)
        where = {lab: i for i, lab in enumerate(seen)}
        have = np.array([lab in where for lab in want])
        src = b.transpose("chain", "draw", g.name, ...).values.reshape(nc * nd, len(seen), g.q)
        vals[:, have] = src[:, [where[lab] for lab in np.asarray(want)[have]]]
        out[name] = xr.DataArray(
            vals.reshape(nc, nd, len(want), g.q),
            dims=("chain", "draw", g.name, b.dims[-1]),
            coords={"chain": b.chain, "draw": b.draw, g.name: list(g.levels), b.dims[-1]: b[b.dims[-1]].values},
        )
    # the refit's level coordinates go with its effects (xarray would align on them)
    kept = post.drop_vars(list(out))
    kept = kept.drop_vars([g.name for g in design.groups
                           if g.name in kept.coords and not any(g.name in v.dims for v in kept.data_vars.values())])
    return kept.assign(out)


def check_same_parameters(full: xr.Dataset, refit: xr.Dataset) -> None:
    """Raise unless the refit's posterior ``refit`` has the full fit's parameters with the
    same labels (a level of a categorical predictor seen only in the held-out rows changes
    the fixed effects, and the refit would be another model).

    Examples
    --------
    >>> check_same_parameters(fit.idata.posterior, fit.idata.posterior)
    """
    for v in full.data_vars:
        if names.is_effects(v):
            continue
        if v not in refit:
            raise ValueError(f"the refit has no {v!r}: the held-out rows changed the model's parameters.")
        for dim in full[v].dims[2:]:
            a, b = list(full[v][dim].values), list(refit[v][dim].values)
            if a != b:
                raise ValueError(
                    f"the refit's {v!r} has labels {b} where the full fit has {a}: a level of a "
                    "categorical predictor appears only in the held-out rows. Leave out other "
                    "units, or recode the predictor."
                )


class RefitWrapper(azs.SamplingWrapper):
    """An ``arviz_stats.SamplingWrapper`` that refits a hierbayes fit without some units.

    Observations (for arviz-stats) are the units of the fit's log-likelihood, by position.

    Parameters
    ----------
    fit : Fit
    unit : str, optional
        The unit of :func:`hierbayes.loo` (default: the fit's own).
    model_inputs : dict, optional
        ``hb.Model``'s arguments (default: ``fit.inputs``; needed for a fit read by ``hb.load``).
    seed : int
        Seeds the refits and the draws of effects the refits have not seen.
    **fit_kwargs
        Passed to each refit's ``Model.fit`` (default: the full fit's draws, tune, chains,
        target_accept, max_treedepth and mass matrix).

    Examples
    --------
    >>> w = RefitWrapper(fit)
    >>> train, (held, rows) = w.sel_observations([0])   # the first cluster of 'id'
    >>> len(held), len(train) + len(rows) == len(fit.design.source)
    (1, True)
    """

    def __init__(self, fit, unit: str | None = None, model_inputs: dict | None = None,
                 seed: int = 0, **fit_kwargs):
        inputs = model_inputs if model_inputs is not None else fit.inputs
        if inputs is None:
            raise ValueError(
                "this fit does not know the model it came from (it was read by hb.load): pass "
                "model_inputs=hb.Model(...).inputs of the same model to refit it."
            )
        self.fit, self.inputs = fit, dict(inputs)
        ll = psis_unit_log_likelihood(fit, unit)
        self.unit = ll.dims[-1]
        self.labels = ll[self.unit].values
        self.rows = _unit_codes(fit.design, self.unit, self.labels)
        self.seed = seed
        self._count = 0
        self.exact: list[str] = []
        o = fit.options
        self.fit_kwargs = dict(draws=o.draws, tune=o.tune, chains=o.chains,
                               target_accept=o.target_accept, max_treedepth=o.max_treedepth,
                               mass_matrix=o.mass_matrix, progressbar=False)
        self.fit_kwargs.update(fit_kwargs)
        super().__init__(model=fit, idata_orig=az.InferenceData(
            posterior=fit.idata.posterior, log_likelihood=xr.Dataset({"y": ll})))

    def sel_observations(self, idx):
        idx = np.atleast_1d(np.asarray(idx, dtype=int))
        held = self.labels[idx]
        rows = np.concatenate([self.rows[lab] for lab in held])
        data = self.inputs["data"]
        return data.drop(index=data.index[rows]), (list(held), data.iloc[rows])

    def sample(self, modified_observed_data):
        from hierbayes.model import Model

        self._count += 1
        inputs = {**self.inputs, "data": modified_observed_data.reset_index(drop=True),
                  "backend": self.fit.backend}
        model = Model(priors=self.fit.priors, **inputs)
        return model.fit(seed=self.seed + self._count, **self.fit_kwargs)

    def get_inference_data(self, fitted_model):
        return fitted_model

    def log_likelihood__i(self, excluded_obs, idata__i):
        held, _ = excluded_obs
        refit = idata__i
        check_same_parameters(self.fit.idata.posterior, refit.idata.posterior)
        rng = np.random.default_rng([self.seed, self._count])
        post = transfer_posterior(refit.idata.posterior, self.fit.design, rng)
        ll = heldout_log_likelihood(self.fit, post, self.unit)
        self.exact.extend(str(h) for h in held)
        return ll.sel({self.unit: held}).rename({self.unit: "__heldout__"}) if len(held) > 1 \
            else ll.sel({self.unit: held[0]})


def psis_unit_log_likelihood(fit, unit: str | None = None) -> xr.DataArray:
    """The fit's log-likelihood in the unit of :func:`hierbayes.loo` (a pointwise one summed
    within clusters when ``unit`` names a grouping factor)."""
    from hierbayes.criticism.comparison import aggregate

    ll = fit.log_likelihood()["y"]
    if unit is not None and unit != ll.dims[-1]:
        if ll.dims[-1] != "obs":
            raise ValueError(f"this fit's log-likelihood exists per cluster of {ll.dims[-1]!r} only; "
                             f"use unit={ll.dims[-1]!r}.")
        ll = aggregate(ll, fit.design, unit)
    return ll


def heldout_log_likelihood(fit, post: xr.Dataset, unit: str) -> xr.DataArray:
    """Log predictive density of each unit of ``fit``'s data at the draws ``post`` of a refit
    (see the module docstring for how effects the refit has not seen are integrated out).

    Examples
    --------
    >>> ll = heldout_log_likelihood(fit, fit.idata.posterior, "id")
    >>> ll.dims
    ('chain', 'draw', 'id')
    """
    d = fit.design
    nagq = (fit.timing or {}).get("nagq")
    if unit == "obs" or fit.backend in ("marginal", "quadrature"):
        return unit_log_likelihood(d, fit.backend, post, nagq)
    # a cluster unit of a latent fit: integrate the held-out cluster's effects out exactly
    # where a marginal likelihood exists for this design
    if d.groups and marginal_unavailable(d) is None:
        return unit_log_likelihood(d, "marginal", post)
    if len(d.groups) == 1 and quadrature_unavailable(d) is None and unit == d.groups[0].name:
        return unit_log_likelihood(d, "quadrature", post)
    from hierbayes.criticism.comparison import aggregate

    ll = unit_log_likelihood(d, fit.backend, post)
    if ll.dims[-1] == "obs" and unit != "obs":
        ll = aggregate(ll, d, unit)
    return ll


@dataclass(frozen=True)
class KFold:
    """K-fold cross-validation of one fit.

    Attributes
    ----------
    elpd : float
        Expected log predictive density summed over the units.
    se : float
    p : float
        Effective number of parameters (lpd of the full fit minus elpd).
    elpd_i : pandas.Series
        Per unit, indexed by its label.
    folds : pandas.Series
        The fold (1..k) of every unit.
    unit : str
    """

    elpd: float
    se: float
    p: float
    elpd_i: pd.Series
    folds: pd.Series
    unit: str
    fits: dict = field(default_factory=dict, repr=False)

    @property
    def k(self) -> int:
        return int(self.folds.nunique())

    def __repr__(self) -> str:
        what = "observations" if self.unit == "obs" else f"clusters of {self.unit!r}"
        return (f"{self.k}-fold cross-validation over {len(self.elpd_i)} {what} (exact refits):\n"
                f"  elpd_kfold {self.elpd:.1f} (se {self.se:.1f}), p_kfold {self.p:.1f}")


def _legacy_elpd(new, n_samples: int) -> az.ELPDData:
    """arviz-stats' ELPDData as the ``arviz.ELPDData`` that :class:`LOO` and ``az.compare`` read."""
    elpd_i = new.elpd_i.rename("loo_i")
    return az.ELPDData(
        data=[float(new.elpd), float(new.se), float(new.p), n_samples, int(elpd_i.size),
              bool(np.any(new.pareto_k.values > K_GOOD)), elpd_i, new.pareto_k, "log", K_GOOD],
        index=["elpd_loo", "se", "p_loo", "n_samples", "n_data_points", "warning", "loo_i",
               "pareto_k", "scale", "good_k"],
    )


def reloo(fit, k_threshold: float = K_GOOD, *, unit: str | None = None, max_refits: int = 20,
          model_inputs: dict | None = None, seed: int = 0, **fit_kwargs) -> LOO:
    """PSIS-LOO with an exact refit for every unit whose Pareto k exceeds ``k_threshold``.

    Parameters
    ----------
    fit : Fit
    k_threshold : float
        Units with a larger Pareto k are refitted (default 0.7).
    unit : str, optional
        As in :func:`hierbayes.loo`.
    max_refits : int
        Refuse (naming the count and :func:`loo_kfold`) when more units than this need a refit.
    model_inputs : dict, optional
        ``hb.Model(...).inputs`` of the same model, for a fit read by ``hb.load``.
    seed : int
    **fit_kwargs
        Settings of each refit's ``Model.fit`` (default: the fit's own).

    Returns
    -------
    LOO
        ``refitted`` lists the units whose elpd is now exact (their Pareto k is set to 0).

    Examples
    --------
    >>> res = hb.reloo(fit)   # doctest: +SKIP
    >>> res.refitted          # doctest: +SKIP
    ('id17',)
    """
    wrapper = RefitWrapper(fit, unit=unit, model_inputs=model_inputs, seed=seed, **fit_kwargs)
    with warnings.catch_warnings():  # LOO.describe() reports the k counts and what to do
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        loo_orig = azs.loo(wrapper.idata_orig, var_name="y", pointwise=True,
                           reff=relative_efficiency(fit.idata.posterior))
    n_high = int((loo_orig.pareto_k.values > k_threshold).sum())
    if n_high > max_refits:
        raise ValueError(
            f"{n_high} units have Pareto k > {k_threshold}, more than max_refits={max_refits}: "
            "that many refits cost more than K-fold cross-validation; use hb.loo_kfold(fit), or "
            "raise max_refits."
        )
    if n_high == 0:
        return psis_loo(fit, unit=unit)
    n_samples = fit.idata.posterior.sizes["chain"] * fit.idata.posterior.sizes["draw"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Estimated shape parameter of Pareto")
        new = azs.reloo(wrapper, loo_orig=loo_orig, k_threshold=k_threshold, pointwise=True)
    return LOO(elpd=_legacy_elpd(new, n_samples), unit=wrapper.unit, refitted=tuple(wrapper.exact))


def loo_kfold(fit, k: int = 10, *, unit: str | None = None, folds=None, seed: int = 0,
              model_inputs: dict | None = None, save_fits: bool = False, **fit_kwargs) -> KFold:
    """K-fold cross-validation by exact refits (``arviz_stats.loo_kfold``), over the units of
    :func:`hierbayes.loo`: whole clusters where the fit's log-likelihood is per cluster.

    Parameters
    ----------
    fit : Fit
    k : int
        Number of folds (units assigned at random, seeded by ``seed``, sizes as equal as they
        can be).
    unit : str, optional
        As in :func:`hierbayes.loo`: a grouping factor turns a pointwise log-likelihood into
        leave-clusters-out folds.
    folds : array-like of int, optional
        The fold (1..k) of each unit, in the order of ``fit.loo().pareto_k``'s index.
    seed : int
    model_inputs : dict, optional
        ``hb.Model(...).inputs`` of the same model, for a fit read by ``hb.load``.
    save_fits : bool
        Keep the k refits in ``KFold.fits``.
    **fit_kwargs
        Settings of each refit's ``Model.fit`` (default: the fit's own).

    Returns
    -------
    KFold

    Examples
    --------
    >>> cv = hb.loo_kfold(fit, k=5, draws=200, tune=200)   # doctest: +SKIP
    >>> cv.k                                               # doctest: +SKIP
    5
    """
    wrapper = RefitWrapper(fit, unit=unit, model_inputs=model_inputs, seed=seed, **fit_kwargs)
    n = len(wrapper.labels)
    if folds is None:
        if not 2 <= k <= n:
            raise ValueError(f"k must be between 2 and the number of units ({n}), got {k}.")
        folds = np.random.default_rng(seed).permutation(np.arange(n) % k) + 1
    folds = np.asarray(folds, dtype=int)
    if folds.shape != (n,):
        raise ValueError(f"folds must give one fold per unit ({n}), got shape {folds.shape}.")
    res = azs.loo_kfold(wrapper.idata_orig, wrapper, pointwise=True, var_name="y", folds=folds,
                        save_fits=save_fits)
    labels = [str(v) for v in wrapper.labels]
    fits = {} if not save_fits else {f: v["fit"] for f, v in res.fold_fits.items()}
    return KFold(elpd=float(res.elpd), se=float(res.se), p=float(res.p),
                 elpd_i=pd.Series(np.asarray(res.elpd_i.values), index=labels, name="elpd_kfold"),
                 folds=pd.Series(folds, index=labels, name="fold"), unit=wrapper.unit, fits=fits)
