"""Prior sweeps: refit a model over a grid of prior settings, in parallel.

Each setting is one seeded, picklable :class:`~hierbayes.studies.parallel.FitTask` run through an
executor (:mod:`hierbayes.studies.parallel`); the result is a tidy table, one row per setting and
hyperparameter, with the posterior mean, sd, interval and convergence checks. A fit that
fails is a row with its error message.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hierbayes.studies.parallel import FitTask, run_all, task_seeds
from hierbayes.spec.priors import Prior, as_prior


def expand_settings(grid) -> list[dict[str, Prior]]:
    """A dict of lists -> the full factorial grid; a list of dicts -> those settings."""
    if isinstance(grid, dict):
        if not grid:
            raise ValueError("the prior grid is empty; give e.g. {'sd_id': [hb.Prior(...), ...]}.")
        for k, v in grid.items():
            if isinstance(v, Prior) or not isinstance(v, (list, tuple)):
                raise TypeError(
                    f"grid[{k!r}] must be a list of hb.Prior, e.g. "
                    f"{{{k!r}: [hb.Prior('HalfNormal', sigma=0.5), hb.Prior('HalfNormal', sigma=2)]}}."
                )
        keys = list(grid)
        return [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]
    settings = [dict(s) for s in grid]
    if not settings:
        raise ValueError("the list of prior settings is empty.")
    return settings


def setting_label(setting: dict[str, Prior]) -> str:
    """``"sd_id=HalfNormal(sigma=1); beta=Normal(mu=0, sigma=1)"``."""
    return "; ".join(f"{k}={v}" for k, v in setting.items()) or "defaults"


def _sweep_fit(task: FitTask) -> pd.DataFrame:
    """Worker: fit one setting, return its summary table with convergence columns."""
    fit = task.fit()
    table = fit.summary(hdi_prob=task.extra.get("hdi_prob", 0.94)).table
    table = table.rename_axis("parameter").reset_index()
    table["divergences"] = fit.n_divergences()
    return table


def prior_sweep(
    model,
    grid,
    *,
    executor=None,
    seed: int | None = 0,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    hdi_prob: float = 0.94,
    max_workers: int | None = None,
    **fit_kwargs,
) -> pd.DataFrame:
    """Refit ``model`` for every prior setting of ``grid``; a tidy table of the posteriors.

    Parameters
    ----------
    model : Model
        The model to refit; its own prior overrides are kept unless a setting replaces them.
    grid : dict of str to list of Prior, or list of dict
        ``{"sd_id": [p1, p2], "beta": [p3, p4]}`` sweeps the full factorial grid (4
        settings); a list of dicts gives the settings one by one. Keys are parameter names
        as in ``model.priors`` (plus ``"beta"`` for every non-intercept coefficient).
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        Where the fits run (see :mod:`hierbayes.studies.parallel`); default a local process pool.
    seed : int
        Setting ``k`` is fitted with the ``k``-th seed spawned from ``seed``: the same
        call gives the same table on any executor.
    draws, tune, chains : int
        Per fit (sweeps are many fits: defaults are modest).
    hdi_prob : float
    max_workers : int, optional
        Workers of the default process pool.
    **fit_kwargs
        Other ``Model.fit`` arguments (``target_accept``, ``sampler``, ...).

    Returns
    -------
    DataFrame
        One row per setting and hyperparameter: ``setting_id``, ``setting`` (label), one
        column per swept name holding its prior, ``parameter`` (the summary's labels),
        ``section``, ``mean``, ``sd``, ``hdi_*``, ``ess_bulk``, ``r_hat``,
        ``divergences``, ``seed``, ``error`` (None, or the message of a failed fit, whose
        only row has no parameter).

    Examples
    --------
    >>> table = hb.prior_sweep(model, {"sd_id": [hb.Prior("HalfNormal", sigma=s)
    ...                                          for s in (0.1, 1.0, 10.0)]}, seed=1)  # doctest: +SKIP
    >>> hb.plot_prior_sweep(table)                                                     # doctest: +SKIP
    """
    # a bambi.Prior is converted (as_prior); anything else is refused, naming the key
    settings = [{k: as_prior(v, k) for k, v in s.items()} for s in expand_settings(grid)]
    for s in settings:
        for k in s:
            if k != "beta" and k not in model.priors:
                raise KeyError(
                    f"no parameter named {k!r} to sweep; parameters are {sorted(model.priors) + ['beta']}."
                )
    base = dict(model.spec.priors)
    seeds = task_seeds(seed, len(settings))
    fit_kw = dict(draws=draws, tune=tune, chains=chains, **fit_kwargs)
    tasks = [
        FitTask(
            inputs=model.inputs,
            priors={**{k: v for k, v in base.items() if k not in s}, **s},
            fit_kwargs=fit_kw,
            seed=sd,
            tag=i,
            extra={"hdi_prob": hdi_prob},
        )
        for i, (s, sd) in enumerate(zip(settings, seeds))
    ]
    results = run_all(_sweep_fit, tasks, executor=executor, max_workers=max_workers)
    keys = list(dict.fromkeys(k for s in settings for k in s))
    parts = []
    for i, (s, sd, res) in enumerate(zip(settings, seeds, results)):
        if res["ok"]:
            part = res["value"].copy()
            part["error"] = None
        else:
            part = pd.DataFrame({"parameter": [None], "error": [res["error"]]})
        part.insert(0, "setting_id", i)
        part.insert(1, "setting", setting_label(s))
        for j, k in enumerate(keys):
            part.insert(2 + j, k, str(s[k]) if k in s else "default")
        part["seed"] = sd
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def plot_prior_sweep(table: pd.DataFrame, parameters: list[str] | None = None, ncols: int = 4) -> Figure:
    """Posterior mean and interval of each hyperparameter across the settings of a sweep.

    Parameters
    ----------
    table : DataFrame
        The result of :func:`prior_sweep`.
    parameters : list of str, optional
        Which rows of ``parameter`` to draw (default all); failed settings are marked.
    ncols : int

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> hb.plot_prior_sweep(table, ["sd(Intercept | id)", "phi (AR(1) correlation)"])  # doctest: +SKIP
    """
    ok = table[table["error"].isna()]
    names = parameters or list(dict.fromkeys(ok["parameter"]))
    settings = table.drop_duplicates("setting_id").sort_values("setting_id")
    x = np.arange(len(settings))
    lo_col, hi_col = [c for c in table.columns if c.startswith("hdi_")][:2]
    nrows = int(np.ceil(len(names) / ncols))
    fig = Figure(figsize=(3.4 * ncols, 2.4 * nrows + 0.3 * len(settings)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, n in zip(axes, names):
        rows = ok[ok.parameter == n].set_index("setting_id").reindex(settings.setting_id)
        m = rows["mean"].to_numpy(dtype=float)
        ax.errorbar(x, m, yerr=[m - rows[lo_col].to_numpy(float), rows[hi_col].to_numpy(float) - m],
                    fmt="o", color="#1b9e77", capsize=3, ms=4)
        failed = ~np.isfinite(m)
        if failed.any():
            ax.plot(x[failed], np.full(failed.sum(), np.nanmean(m) if np.isfinite(m).any() else 0),
                    "x", color="#d95f02", label="failed fit")
        ax.set_title(n, fontsize=9)
        ax.set_xticks(x, [str(i) for i in x])
    for ax in axes[len(names):]:
        ax.set_visible(False)
    legend = "\n".join(f"{i}: {lab}" for i, lab in zip(x, settings.setting))
    fig.supxlabel("setting\n" + legend, fontsize=8)
    fig.suptitle(f"Prior sweep: posterior mean and {lo_col[4:]}-{hi_col[4:]} interval per setting")
    return fig
