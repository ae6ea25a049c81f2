"""Simulation-based calibration (Talts et al. 2018) of a model's posterior.

For each simulation: draw the hyperparameters from the prior, simulate a data set with
the model's layout (:func:`hierbayes.predict.simulate`), fit it, and take the rank of the true
value among ``n_ranks`` posterior draws spaced evenly through the chains (thinning to
roughly independent draws). If the posterior is calibrated, each parameter's ranks are
uniform on ``0 .. n_ranks``: tested with a chi-square test on equal-width bins and shown
as rank histograms. Fits run through an executor like prior sweeps
(:mod:`hierbayes.studies.parallel`).

The ranks are only trustworthy when the kept draws are close to independent: keep
``n_ranks`` at or below the bulk ESS of the fits (the result reports each fit's minimum
ESS) -- autocorrelated draws make rank histograms look too peaked or too flat.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from hierbayes.studies.parallel import FitTask, run_all, task_seeds
from hierbayes import names


def _truth_and_params(prior_ds, design) -> tuple[pd.DataFrame, list[dict]]:
    """Per simulation: the true values under the summary's labels, and ``hb.simulate``
    parameters."""
    from hierbayes.criticism.sensitivity import hyperparameters

    n = prior_ds.sizes["draw"]
    flat = hyperparameters(SimpleNamespace(posterior=prior_ds.expand_dims(chain=1)), design)
    truth = pd.DataFrame({k: flat[k].values[0] for k in flat.data_vars})
    params = []
    for i in range(n):
        d = prior_ds.isel(draw=i)
        p = {"beta": d["beta"].transpose("coef").values}
        for name in (*design.spec.family.extra_params, names.PHI, names.SD_AR):
            if name in design.dpars:  # a parameter formula: its coefficients (hb.simulate draws rows)
                coef = names.dpar_coef(name)
                p[coef] = d[coef].transpose(names.dpar_dim(name)).values
            elif name in d:  # a vector family parameter (cut-points) keeps its shape
                value = d[name].values
                p[name] = float(value) if value.ndim == 0 else value
        odim = names.OCCASION_DIM  # hb.Unstructured: the correlation matrix, an sd per occasion
        if names.RESID_CORR in d:
            p[names.RESID_CORR] = d[names.RESID_CORR].transpose(odim, names.bis(odim)).values
        if names.SIGMA_OCC in d:
            p[names.SIGMA_OCC] = d[names.SIGMA_OCC].transpose(odim).values
        for v in (names.AR_COEF, names.MA_COEF):  # hb.ARMA: simulate takes the coefficients
            if v in d:
                p[v] = np.atleast_1d(d[v].values)
        for g in design.groups:
            tdim = names.term_dim(g.name)
            p[names.sd(g.name)] = d[names.sd(g.name)].transpose(tdim).values
            if g.q > 1 and g.correlated:  # `||` terms have no correlations
                p[names.corr(g.name)] = d[names.corr(g.name)].transpose(tdim, names.bis(tdim)).values
        params.append(p)
    return truth, params


def simulation_inputs(model) -> dict:
    """The inputs each SBC data set is fitted with: the model's own, an ordinal family's
    levels fixed to the model's, so that a simulated data set that misses a level keeps
    every cut-point (and the truth's labels).

    Examples
    --------
    >>> simulation_inputs(model)["formula"]
    'y ~ time + treatment + (1 + time | id)'
    """
    import dataclasses

    fam = model.spec.family
    if not fam.ordered_response or fam.levels is not None:
        return model.inputs
    return {**model.inputs, "family": dataclasses.replace(fam, levels=model.design.response_levels)}


def censoring_process(model, censor):
    """The censoring process ``hb.sbc`` applies to each simulated data set of ``model``:
    None for an uncensored model, ``censor`` (a
    :class:`~hierbayes.design.censoring.DetectionLimit` given the model's columns) for a
    censored one; refused otherwise.

    Examples
    --------
    >>> censoring_process(model, None) is None
    True
    """
    from hierbayes.design.censoring import DetectionLimit

    spec = model.spec
    if spec.censored is None:
        if censor is not None:
            raise ValueError(
                "censor= is for a censored model (y | cens(c) ~ ...); this model has no "
                "censoring column. Drop censor=, or censor the model's response."
            )
        return None
    if censor is None:
        raise ValueError(
            "hb.sbc of a censored model needs censor=, the censoring process that made the "
            "data: hb.DetectionLimit(lower=..., upper=...) for a detection limit, or a "
            f"function data -> data that sets {spec.response!r} and the indicator column "
            f"{spec.censored!r} of each simulated data set. hb.simulate draws uncensored "
            "responses."
        )
    if isinstance(censor, DetectionLimit):
        return censor.for_model(spec)
    if isinstance(censor, dict):
        raise TypeError(f"censor= takes hb.DetectionLimit(**{censor!r}) or a function, not a dict.")
    if not callable(censor):
        raise TypeError(
            f"censor= must be hb.DetectionLimit(...) or a function data -> data, got {type(censor).__name__}."
        )
    return censor


def _simulated(inputs: dict, params: dict, seed: int, censor, columns) -> pd.DataFrame:
    """One SBC data set: ``hb.simulate`` at ``params``, then the censoring process, whose
    result is checked (a data frame of the same rows with the model's ``columns``)."""
    from hierbayes.predict.simulate import simulate

    data = simulate(inputs["formula"], inputs["data"], params, correlation=inputs["correlation"],
                    family=inputs["family"], seed=seed, sigma=inputs.get("sigma"),
                    zi=inputs.get("zi"), hu=inputs.get("hu"))
    if censor is None:
        return data
    out = censor(data)
    if not isinstance(out, pd.DataFrame) or len(out) != len(data):
        raise TypeError(
            f"censor= must return a data frame of the {len(data)} simulated rows, got "
            f"{type(out).__name__}" + (f" of {len(out)} rows." if hasattr(out, "__len__") else ".")
        )
    missing = [c for c in columns if c not in out.columns]
    if missing:
        raise KeyError(f"censor= returned a data frame without the model's column(s) {missing}.")
    return out


def _sbc_fit(task: FitTask) -> dict:
    """Worker: simulate one data set at the drawn parameters, fit it, rank the truth."""
    from hierbayes.model import Model
    from hierbayes.criticism.sensitivity import hyperparameters

    ex = task.extra
    inputs = dict(task.inputs)
    inputs["data"] = _simulated(inputs, ex["params"], ex["sim_seed"], ex.get("censor"), ex.get("columns", ()))
    fit = Model(priors=task.priors, **inputs).fit(seed=task.seed, progressbar=False, **task.fit_kwargs)
    post = hyperparameters(fit.idata, fit.design)
    L = ex["n_ranks"]
    ranks, ess = {}, {}
    import arviz_stats as azs

    ess_all = azs.ess(post, method="bulk")
    for name, true in ex["truth"].items():
        draws = post[name].values.reshape(-1)  # chain-major
        keep = draws[np.linspace(0, draws.size - 1, L).round().astype(int)]
        ranks[name] = int((keep < true).sum())
        ess[name] = float(ess_all[name])
    return {"ranks": ranks, "min_ess": min(ess.values()), "divergences": fit.n_divergences()}


@dataclass
class SBCResult:
    """Ranks of the true values among posterior draws, one row per simulation.

    Attributes
    ----------
    ranks : DataFrame
        Simulation x parameter, integers in ``0 .. n_ranks`` (NaN for a failed fit).
    truth : DataFrame
        The drawn true values, same shape.
    n_ranks : int
        Posterior draws each truth was ranked among.
    fits : DataFrame
        Per simulation: ``min_ess`` (bulk ESS, lowest over parameters), ``divergences``,
        ``seed``, ``error``.
    """

    ranks: pd.DataFrame
    truth: pd.DataFrame
    n_ranks: int
    fits: pd.DataFrame

    def uniformity(self, bins: int | None = None) -> pd.DataFrame:
        """Chi-square test of uniform ranks per parameter.

        Parameters
        ----------
        bins : int, optional
            Equal-width bins over ``0 .. n_ranks`` (default: the largest divisor of
            ``n_ranks + 1`` that keeps at least 5 expected simulations per bin, at most 20).

        Returns
        -------
        DataFrame
            ``n`` (simulations used), ``bins``, ``chi2``, ``p_value`` per parameter.
        """
        bins = bins or self.default_bins()
        if (self.n_ranks + 1) % bins:
            raise ValueError(f"bins must divide n_ranks + 1 = {self.n_ranks + 1}, got {bins}.")
        rows = {}
        for name in self.ranks.columns:
            r = self.ranks[name].dropna().to_numpy(int)
            counts = np.bincount(r * bins // (self.n_ranks + 1), minlength=bins)
            chi2, p = stats.chisquare(counts) if r.size else (np.nan, np.nan)
            rows[name] = {"n": r.size, "bins": bins, "chi2": float(chi2), "p_value": float(p)}
        return pd.DataFrame.from_dict(rows, orient="index")

    def default_bins(self) -> int:
        n = int(self.ranks.notna().all(axis=1).sum())
        best = 1
        for b in range(1, 21):
            if (self.n_ranks + 1) % b == 0 and n / b >= 5:
                best = b
        return best

    def plot(self, bins: int | None = None, ncols: int = 4) -> Figure:
        """Rank histogram per parameter with the 99% band of a uniform histogram's counts.

        Examples
        --------
        >>> res = hb.sbc(model, n_sims=100, seed=1)    # doctest: +SKIP
        >>> res.plot().savefig("sbc.png")              # doctest: +SKIP
        """
        bins = bins or self.default_bins()
        test = self.uniformity(bins)
        columns = list(self.ranks.columns)
        nrows = int(np.ceil(len(columns) / ncols))
        fig = Figure(figsize=(3.4 * ncols, 2.5 * nrows), layout="constrained")
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, name in zip(axes, columns):
            r = self.ranks[name].dropna().to_numpy(int)
            counts = np.bincount(r * bins // (self.n_ranks + 1), minlength=bins)
            lo, hi = stats.binom.ppf([0.005, 0.995], r.size, 1 / bins)
            ax.axhspan(lo, hi, color="0.85")
            ax.axhline(r.size / bins, color="0.5", lw=0.8)
            ax.bar(np.arange(bins), counts, width=1.0, color="#7570b3", edgecolor="white")
            ax.set_title(f"{name}\np = {test.loc[name, 'p_value']:.3f}", fontsize=8)
            ax.set_xticks([])
        for ax in axes[len(columns):]:
            ax.set_visible(False)
        fig.suptitle(
            f"SBC rank histograms ({len(self.ranks)} simulations, ranks among {self.n_ranks} draws; "
            "grey: 99% band if uniform)"
        )
        return fig


def sbc(
    model,
    n_sims: int,
    *,
    executor=None,
    seed: int | None = 0,
    n_ranks: int = 99,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    max_workers: int | None = None,
    on_done=None,
    censor=None,
    **fit_kwargs,
) -> SBCResult:
    """Simulation-based calibration of ``model``: prior draw -> simulate -> fit -> rank.

    Parameters
    ----------
    model : Model
        Gives the formula, residual correlation, priors (held fixed: the data-scaled
        defaults of ``model`` are used for every simulated data set) and the data layout
        (predictors, groups, times) that every simulation reuses.
    n_sims : int
        Number of simulated data sets.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Where the fits run; default a local process pool (:mod:`hierbayes.studies.parallel`).
        Fits of one worker share one compiled model (same structure, new data).
    seed : int
        Seeds the prior draws, each simulation and each fit: same seed, same result.
    n_ranks : int
        Posterior draws (evenly spaced over all chains) each true value is ranked among;
        keep it at or below the fits' bulk ESS.
    draws, tune, chains : int
        Per fit; ``draws * chains`` must be at least ``n_ranks``.
    max_workers : int, optional
    on_done : callable, optional
        ``on_done(index, result)`` as each simulation's fit finishes (progress).
    censor : hb.DetectionLimit or callable, optional
        A censored model's (``y | cens(c) ~ ...``) censoring process, applied to each
        simulated (uncensored) data set before it is fitted; required for a censored model,
        refused for another. ``hb.DetectionLimit(lower=0.5)`` reports values below 0.5 at
        0.5, marked ``"left"`` (``upper=`` likewise, ``"right"``; a column name gives
        per-row limits). A function ``data -> data`` returns the data with the response and
        the indicator column (and an interval's upper-bound column) set; with the default
        process pool it must be picklable (a module-level function, not a lambda).
    **fit_kwargs
        Other ``Model.fit`` arguments.

    Returns
    -------
    SBCResult
        ``.ranks``, ``.uniformity()`` (chi-square per parameter), ``.plot()``.

    Notes
    -----
    Any family :func:`hierbayes.simulate` draws (every family of
    :mod:`hierbayes.spec.families`); a censored model with the censoring process
    (``censor=``) that makes its data, so that each fit sees data censored as the model
    assumes. Rank of the truth ``theta`` among draws
    ``theta_1..theta_L``: ``#{l : theta_l < theta}``, uniform on ``0..L`` under a
    calibrated posterior (Talts et al. 2018, theorem 1).

    Examples
    --------
    >>> model = hb.Model("y ~ time + (1 | id)", layout, correlation=hb.AR1(time="time", group="id"))  # doctest: +SKIP
    >>> res = hb.sbc(model, n_sims=100, seed=1)   # doctest: +SKIP
    >>> res.uniformity()                          # doctest: +SKIP
    """
    from hierbayes.backend.prior import draw_hyperparameters

    if n_sims < 1:
        raise ValueError(f"n_sims must be a positive integer, got {n_sims}.")
    censor = censoring_process(model, censor)
    if draws * chains < n_ranks:
        raise ValueError(
            f"draws * chains = {draws * chains} is fewer than n_ranks = {n_ranks}; raise draws "
            "or lower n_ranks."
        )
    s_prior, *s_sims = task_seeds(seed, 1 + 2 * n_sims)
    prior_ds = draw_hyperparameters(model.design, model.priors, n_sims, s_prior)
    truth, params = _truth_and_params(prior_ds, model.design)
    fit_kw = dict(draws=draws, tune=tune, chains=chains, **fit_kwargs)
    inputs = simulation_inputs(model)
    columns = tuple(c for c in (model.spec.censored, model.spec.censored_upper) if c is not None)
    if censor is not None:  # fail here, not in every worker: the process on the first data set
        _simulated(inputs, params[0], s_sims[0], censor, columns)
    tasks = [
        FitTask(
            inputs=inputs,
            priors=dict(model.priors),  # fixed: not re-derived from each simulated data set
            fit_kwargs=fit_kw,
            seed=s_sims[2 * i + 1],
            tag=i,
            extra={"params": params[i], "truth": truth.iloc[i].to_dict(),
                   "sim_seed": s_sims[2 * i], "n_ranks": n_ranks, "censor": censor,
                   "columns": columns},
        )
        for i in range(n_sims)
    ]
    results = run_all(_sbc_fit, tasks, executor=executor, max_workers=max_workers, on_done=on_done)
    ranks = pd.DataFrame(
        [r["value"]["ranks"] if r["ok"] else {} for r in results], columns=truth.columns, dtype=float
    )
    fits = pd.DataFrame({
        "min_ess": [r["value"]["min_ess"] if r["ok"] else np.nan for r in results],
        "divergences": [r["value"]["divergences"] if r["ok"] else np.nan for r in results],
        "seed": [t.seed for t in tasks],
        "error": [None if r["ok"] else r["error"] for r in results],
    })
    return SBCResult(ranks=ranks, truth=truth, n_ranks=n_ranks, fits=fits)
