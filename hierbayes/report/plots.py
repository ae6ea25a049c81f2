"""Figures of the report: shrinkage densities and arrows, posterior predictive checks
(densities for continuous responses, bars for 0/1, binomial and count responses).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, nothing left open); save it with ``fig.savefig`` or let a notebook display it.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hierbayes.report.diagnostics import hyper_posterior
from hierbayes.kde import kde

OLS_COLOR = "#d95f02"
POST_COLOR = "#1b9e77"


def _grid(*arrays, n: int = 256) -> np.ndarray:
    vals = np.concatenate([np.ravel(a)[np.isfinite(np.ravel(a))] for a in arrays])
    if vals.size == 0:
        raise ValueError("nothing to plot: all values are NaN.")
    lo, hi = vals.min(), vals.max()
    pad = 0.1 * (hi - lo) if hi > lo else 1.0
    return np.linspace(lo - pad, hi + pad, n)


def _terms(frame: pd.DataFrame, terms) -> list[str]:
    have = list(dict.fromkeys(frame.index.get_level_values("term")))
    if terms is None:
        return have
    terms = [terms] if isinstance(terms, str) else list(terms)
    bad = [t for t in terms if t not in have]
    if bad:
        raise KeyError(f"terms {bad} are not in the shrinkage frame; it has {have}.")
    return terms


def plot_shrinkage_densities(frame: pd.DataFrame, terms=None, figsize=None) -> Figure:
    """Overlaid densities of per-cluster OLS estimates and posterior cluster coefficients.

    One panel per term: the wide orange curve (no pooling) against the narrower green one
    (the hierarchical model) shows the shrinkage at a glance.

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`~hierbayes.report.shrinkage.shrinkage_frame`.
    terms : str or list of str, optional
        Terms to show; default all.
    figsize : tuple, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from hierbayes.report import shrinkage_frame
    >>> fig = plot_shrinkage_densities(shrinkage_frame(idata, design))
    >>> fig.savefig("shrinkage.png")                                      # doctest: +SKIP
    """
    terms = _terms(frame, terms)
    fig = Figure(figsize=figsize or (4.2 * len(terms), 3.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(terms), squeeze=False)[0])
    for ax, t in zip(axes, terms):
        f = frame.xs(t, level="term")
        ols = f["ols"].to_numpy(float)
        post = f["posterior"].to_numpy(float)
        grid = _grid(ols, post)
        ax.plot(
            grid,
            kde(ols, grid),
            color=OLS_COLOR,
            lw=2,
            label=f"per-cluster OLS ({np.isfinite(ols).sum()})",
        )
        ax.plot(
            grid, kde(post, grid), color=POST_COLOR, lw=2, label="mixed model (posterior mean)"
        )
        ax.set_title(t)
        ax.set_xlabel("cluster coefficient")
        ax.set_yticks([])
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize="small", loc="upper left")
    return fig


def plot_shrinkage_arrows(
    frame: pd.DataFrame, terms=None, max_clusters: int = 60, seed: int = 0, figsize=None
) -> Figure:
    """Per-cluster arrows from the OLS estimate to the posterior mean.

    One panel per term, clusters on the vertical axis sorted by their OLS estimate; a grey
    tick marks the population value each cluster is pulled towards. With more than
    ``max_clusters`` clusters (having an OLS estimate) a random sample is shown, the same
    clusters in every panel.

    Parameters
    ----------
    frame : pandas.DataFrame
        A :func:`~hierbayes.report.shrinkage.shrinkage_frame`.
    terms : str or list of str, optional
    max_clusters : int
    seed : int
        Seed of the sample of clusters.
    figsize : tuple, optional

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from hierbayes.report import shrinkage_frame
    >>> frame = shrinkage_frame(idata, design)
    >>> fig = plot_shrinkage_arrows(frame, max_clusters=40)     # doctest: +SKIP
    """
    if max_clusters < 1:
        raise ValueError(f"max_clusters must be at least 1, got {max_clusters}.")
    terms = _terms(frame, terms)
    level_name = frame.index.names[0]
    levels = frame.index.get_level_values(0)
    has_ols = frame["ols"].notna().groupby(levels, sort=False).all()
    pool = has_ols.index[has_ols.to_numpy()]
    if len(pool) == 0:
        raise ValueError("no cluster has an OLS estimate for every term: nothing to draw.")
    if len(pool) > max_clusters:
        rng = np.random.default_rng(seed)
        pool = pool[np.sort(rng.choice(len(pool), max_clusters, replace=False))]
    n_show = len(pool)
    fig = Figure(figsize=figsize or (4.2 * len(terms), 1.5 + 0.12 * n_show), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(terms), squeeze=False)[0])
    for ax, t in zip(axes, terms):
        f = frame.xs(t, level="term").loc[pool].sort_values("ols")
        yy = np.arange(len(f))
        x0, x1 = f["ols"].to_numpy(float), f["posterior"].to_numpy(float)
        ax.scatter(f["population"], yy, marker="|", color="0.6", s=60, zorder=1)
        for y, a, b in zip(yy, x0, x1):
            ax.annotate(
                "",
                xy=(b, y),
                xytext=(a, y),
                arrowprops=dict(arrowstyle="->", color=POST_COLOR, lw=1),
            )
        ax.scatter(x0, yy, color=OLS_COLOR, s=12, zorder=3, label="OLS")
        ax.scatter(x1, yy, color=POST_COLOR, s=12, zorder=3, label="posterior mean")
        ax.set_title(t)
        ax.set_yticks([])
        ax.set_xlabel("cluster coefficient")
    axes[0].set_ylabel(f"{n_show} {level_name} (sorted by OLS)")
    axes[0].legend(fontsize="small", loc="lower right")
    return fig


def plot_ppc_density(y, y_rep, n_draws: int = 50, seed: int = 0, figsize=(5.5, 3.6)) -> Figure:
    """Density of the observed response over densities of posterior predictive draws.

    Parameters
    ----------
    y : array_like, shape (N,)
        Observed response.
    y_rep : array_like, shape (..., N)
        Replicated responses; leading axes (chain, draw) are flattened and ``n_draws`` of
        them, chosen at random, are drawn.
    n_draws : int
    seed : int
    figsize : tuple

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_ppc_density(rng.normal(size=200), rng.normal(size=(2, 30, 200)))
    >>> len(fig.axes[0].lines)  # 50 of the 60 draws, and the observed density
    51
    """
    y, rep = _replicates(y, y_rep)
    if rep.shape[0] > n_draws:
        rep = rep[np.sort(np.random.default_rng(seed).choice(rep.shape[0], n_draws, replace=False))]
    grid = _grid(y, rep)
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    for i, r in enumerate(rep):
        ax.plot(
            grid,
            kde(r, grid),
            color=POST_COLOR,
            alpha=0.25,
            lw=0.8,
            label="posterior predictive" if i == 0 else None,
        )
    ax.plot(grid, kde(y, grid), color="black", lw=2, label="observed")
    ax.set_yticks([])
    ax.set_xlabel("y")
    ax.legend(fontsize="small")
    return fig


#: families whose response takes a few whole values: PPC by bars, not by a density
DISCRETE = {"bernoulli": "proportions", "binomial": "proportions",
            "poisson": "rootogram", "negbinomial": "rootogram",
            "zero_inflated_poisson": "rootogram", "zero_inflated_negbinomial": "rootogram",
            "hurdle_poisson": "rootogram", "hurdle_negbinomial": "rootogram",
            "cumulative": "proportions"}


def _replicates(y, y_rep) -> tuple[np.ndarray, np.ndarray]:
    """``y`` (N,) and ``y_rep`` as (draws, N), checked against each other."""
    y = np.asarray(y, dtype=float).ravel()
    rep = np.asarray(y_rep, dtype=float)
    if rep.shape[-1] != y.size:
        raise ValueError(f"y_rep has {rep.shape[-1]} values on its last axis; y has {y.size}.")
    return y, rep.reshape(-1, y.size)


def value_frequencies(y, y_rep, values=None, prob: float = 0.94) -> pd.DataFrame:
    """Share of rows at each response value, observed and replicated.

    Parameters
    ----------
    y : array_like, shape (N,)
        Observed response (whole numbers: 0/1, successes, counts).
    y_rep : array_like, shape (..., N)
        Replicated responses (leading axes flattened into draws).
    values : array_like, optional
        Values to count; default every whole number from 0 to the largest observed value
        (the largest value counts every row at or above it: its bar is a tail).
    prob : float
        Mass of the replicated interval.

    Returns
    -------
    pandas.DataFrame
        Index ``value``; columns ``observed`` (share of rows), ``replicated`` (mean share
        over draws), ``median`` (its median), ``lower`` and ``upper`` (equal-tailed ``prob`` interval of the share).
        ``attrs["tail"]``: whether some value above the last one was counted in it.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y, rep = rng.random(500) < 0.3, rng.random((100, 500)) < 0.3
    >>> value_frequencies(y, rep).index.tolist()
    [0, 1]
    """
    y, rep = _replicates(y, y_rep)
    if values is None:
        values = np.arange(0, int(np.max(y)) + 1 if y.size else 1)
    values = np.asarray(values, dtype=int)
    top = values.max()

    def shares(v):  # (..., N) -> (..., len(values)), the last value a tail
        v = np.minimum(np.rint(v), top)
        return np.stack([(v == k).mean(axis=-1) for k in values], axis=-1)

    rep_share = shares(rep)
    a = (1 - prob) / 2
    out = pd.DataFrame(
        {"observed": shares(y), "replicated": rep_share.mean(axis=0),
         "median": np.median(rep_share, axis=0),
         "lower": np.quantile(rep_share, a, axis=0), "upper": np.quantile(rep_share, 1 - a, axis=0)},
        index=pd.Index(values.tolist(), name="value"),
    )
    out.attrs["tail"] = bool(np.any(np.rint(np.concatenate([y, rep.ravel()])) > top))
    return out


def plot_ppc_bars(y, y_rep, kind: str = "proportions", values=None, prob: float = 0.94,
                  figsize=(5.5, 3.6), levels=None) -> Figure:
    """Observed share of rows at each response value (bars) against the replicated share
    (median and ``prob`` interval): the posterior predictive check of discrete responses.

    ``kind="proportions"`` draws shares (0/1 and binomial responses); ``"rootogram"``
    draws square roots of the expected counts (a hanging rootogram: each observed bar
    hangs from the replicated point, so a bar that misses 0 shows a misfit at that value,
    and small frequencies stay visible).

    Parameters
    ----------
    y, y_rep, values, prob
        As :func:`value_frequencies`.
    kind : {"proportions", "rootogram"}
    figsize : tuple
    levels : sequence of str, optional
        An ordinal response's level labels (``fit.design.response_levels``): ``y`` and
        ``y_rep`` are their codes 0 .. K-1, every level gets a bar (observed or not) and
        the ticks show the labels.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_ppc_bars(rng.random(300) < 0.3, rng.random((50, 300)) < 0.3)
    >>> len(fig.axes[0].patches), bool(fig.axes[0].get_xlim()[0] > -1)
    (2, True)
    """
    if kind not in ("proportions", "rootogram"):
        raise ValueError(f"kind must be 'proportions' or 'rootogram', got {kind!r}.")
    if levels is not None and values is None:
        values = np.arange(len(levels))
    tab = value_frequencies(y, y_rep, values, prob)
    x = np.asarray(tab.index, dtype=float)
    n = np.size(np.ravel(y))
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    if kind == "proportions":
        ax.bar(x, tab["observed"], width=0.6, color="0.75", edgecolor="black", label="observed")
        mid, lo, hi = tab["median"], tab["lower"], tab["upper"]
        ax.set_ylabel("share of rows")
    else:
        root = np.sqrt(tab[["observed", "median", "lower", "upper"]] * n)
        mid, lo, hi = root["median"], root["lower"], root["upper"]
        ax.bar(x, root["observed"], width=0.6, bottom=mid - root["observed"], color="0.75",
               edgecolor="black", label="observed (hanging)")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_ylabel("sqrt(frequency)")
    ax.errorbar(x, mid, yerr=[mid - lo, hi - mid], fmt="o", color=POST_COLOR, ms=4, capsize=3,
                label=f"posterior predictive ({prob:.0%} interval)")
    if levels is not None:
        labels = [str(lev) for lev in levels]
    else:
        labels = [str(int(v)) for v in x]
        labels[-1] += "+" if tab.attrs["tail"] else ""
    ax.set_xticks(x, labels)
    ax.set_xlim(x.min() - 0.6, x.max() + 0.6)
    ax.set_xlabel("y")
    ax.legend(fontsize="small")
    return fig


def plot_ppc(y, y_rep, family: str | None = None, **kwargs) -> Figure:
    """The posterior predictive plot that suits the response: bars of observed and
    replicated shares for Bernoulli, binomial and ordinal responses (the levels' shares;
    pass ``levels=`` for their labels), a hanging rootogram for
    Poisson and negative binomial counts (:func:`plot_ppc_bars`), densities for
    continuous families (:func:`plot_ppc_density`), whose smoothing would spread 0/1
    data below 0 and above 1.

    Parameters
    ----------
    y, y_rep
        Observed and replicated responses (as :func:`plot_ppc_density`).
    family : str, optional
        The family's name (``fit.spec.family.name``); default ``"gaussian"``.
    **kwargs
        Passed to the chosen function.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fig = plot_ppc(rng.poisson(2, 300), rng.poisson(2, (40, 300)), "poisson")
    >>> fig.axes[0].get_ylabel()
    'sqrt(frequency)'
    """
    kind = DISCRETE.get(family or "gaussian")
    if kind is None:
        return plot_ppc_density(y, y_rep, **kwargs)
    return plot_ppc_bars(y, y_rep, kind=kind, **kwargs)


def ppc_caption(family: str | None = None) -> str:
    """The report's caption of :func:`plot_ppc` for ``family``."""
    kind = DISCRETE.get(family or "gaussian")
    return {
        None: "Posterior predictive check: density of y",
        "proportions": "Posterior predictive check: share of rows at each value of y",
        "rootogram": "Posterior predictive check: rootogram of the counts y",
    }[kind]


def _figure_of(axes) -> Figure:
    return np.ravel(np.asarray(axes, dtype=object))[0].figure


def rank_plot(idata, var_names: list[str] | None = None, **kwargs) -> Figure:
    """Rank plots (:func:`arviz.plot_rank`) of the hyperparameters; returns the Figure.

    Uniform rank histograms in every chain mean the chains mix; a chain piled up at one end
    is stuck elsewhere. Variables as :func:`~hierbayes.report.diagnostics.hyper_posterior`;
    ``kwargs`` go to :func:`arviz.plot_rank` (which draws with pyplot).

    Examples
    --------
    >>> fig = rank_plot(idata)
    """
    return _figure_of(az.plot_rank(hyper_posterior(idata, var_names), **kwargs))


def trace_plot(idata, var_names: list[str] | None = None, **kwargs) -> Figure:
    """Trace plots (:func:`arviz.plot_trace`) of the hyperparameters; returns the Figure.

    Examples
    --------
    >>> fig = trace_plot(idata, compact=True)
    """
    fig = _figure_of(az.plot_trace(hyper_posterior(idata, var_names), **kwargs))
    fig.set_layout_engine("constrained")  # titles clear of the tick labels above them
    return fig


def plot_caterpillar(idata, group: str, prob: float = 0.94, max_levels: int = 60,
                     figsize=None) -> Figure:
    """Caterpillar plot of one factor's random effects: each level's posterior mean and
    central ``prob`` interval, per term, levels sorted by their mean.

    With more than ``max_levels`` levels an evenly spaced subset of the sorted levels is
    drawn (the title says how many), so the plot keeps the shape of the whole spread.

    Parameters
    ----------
    idata : arviz.InferenceData
        Its posterior holds ``b_<group>`` (dims ``(chain, draw, group, <group>__term)``).
    group : str
        The grouping factor.
    prob : float
        Mass of the interval.
    max_levels : int
        Levels drawn at most per term.
    figsize : tuple, optional

    Returns
    -------
    matplotlib.figure.Figure
        One panel per term.

    Examples
    --------
    >>> fig = plot_caterpillar(idata, "id")
    >>> [ax.get_title().split(":")[0] for ax in fig.axes]
    ['Intercept', 'time']
    """
    from hierbayes import names

    from hierbayes.predict.predictive import effects_posterior

    var = names.effects(group)
    post = effects_posterior(idata)
    if var not in post:
        have = sorted(v for v in post.data_vars if names.is_effects(v))
        raise KeyError(f"the posterior has no {var!r} (random effects of {group!r}); it has {have}.")
    b = post[var]
    term_dim = names.term_dim(group)
    level_dim = next(d for d in b.dims if d not in ("chain", "draw", term_dim))
    flat = b.stack(sample=("chain", "draw")).transpose(level_dim, term_dim, "sample").values
    lo_q, hi_q = (1 - prob) / 2, 1 - (1 - prob) / 2
    mean = flat.mean(axis=-1)
    lo, hi = np.quantile(flat, [lo_q, hi_q], axis=-1)
    terms = [str(t) for t in b[term_dim].values]
    n_levels = flat.shape[0]
    fig = Figure(figsize=figsize or (3.6 * len(terms), 4.2), layout="constrained")
    axes = fig.subplots(1, len(terms), squeeze=False)[0]
    for k, (ax, term) in enumerate(zip(axes, terms)):
        order = np.argsort(mean[:, k])
        if n_levels > max_levels:
            order = order[np.linspace(0, n_levels - 1, max_levels).round().astype(int)]
        pos = np.arange(order.size)
        ax.hlines(pos, lo[order, k], hi[order, k], color=POST_COLOR, lw=1.2)
        ax.plot(mean[order, k], pos, "o", color=POST_COLOR, ms=2.5)
        ax.axvline(0.0, color="0.5", lw=0.8, ls="--")
        shown = f" ({order.size} of {n_levels} levels)" if n_levels > max_levels else ""
        ax.set_title(f"{term}: b_{group}{shown}", fontsize=9)
        ax.set_yticks([])
        ax.set_xlabel(f"effect ({prob:.0%} interval)")
    axes[0].set_ylabel(f"{group} levels, sorted")
    return fig
