"""Can these draws be trusted? Convergence and sampler checks with plain verdicts.

Checks run on the hyperparameters by default (``beta``, ``sigma``, ``phi``, ``sd_*`` and the
off-diagonal entries of ``corr_*``), not on the thousands of random effects ``b_*``.
Sampler statistics are read from nutpie (``diverging``, ``maxdepth_reached``, ``energy``)
or PyMC (``diverging``, ``reached_max_treedepth``, ``energy``) output.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import arviz as az
import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes import names



@dataclass(frozen=True)
class Thresholds:
    """The convergence and sampler thresholds: the only place they are written.

    ``rhat_max`` (rank-normalised split R-hat), ``ess_per_chain`` (bulk and tail ESS, per
    chain: 400 for 4 chains), ``ebfmi_min`` (per chain), ``treedepth_max_frac`` (share of
    draws at the maximum tree depth). The MCSE check follows from the ESS rule
    (``1 / sqrt(ess_per_chain * chains)`` posterior sds)."""

    rhat_max: float = 1.01
    ess_per_chain: int = 100
    ebfmi_min: float = 0.3
    treedepth_max_frac: float = 0.01


#: the thresholds :func:`diagnose`, :func:`convergence_verdict`, the summary and the report use
THRESHOLDS = Thresholds()

#: the checks that decide whether a fit converged (the others are reported as warnings)
CONVERGENCE_CHECKS = ("R-hat", "bulk ESS", "divergences")

# check -> (advice when it fails, verdict when ok, verdict when failing); the verdicts are
# formatted with v (value), t (threshold) and the check's own fields.
_TEXT = {
    "R-hat": (
        "Run longer (more tune and more draws). If R-hat stays high the geometry is hard: "
        "{collapse}reparameterise, and look for multimodality or a stuck chain in the "
        "rank/trace plots.",
        "R-hat is at most {v:.3f} (worst: {name}), within {t}: the chains agree.",
        "R-hat reaches {v:.3f} for {name} (threshold {t}): the chains disagree, so the "
        "posterior summaries are not reliable.",
    ),
    "ESS": (
        "Draw more (longer or more chains). Low ESS with long trajectories points to strong "
        "posterior correlations: {collapse_short}a reparameterisation helps more than "
        "length.",
        "{method} ESS is at least {v:.0f} (worst: {name}), above {t:.0f} ({per} per chain): "
        "enough for {use}.",
        "{method} ESS is only {v:.0f} for {name} (need {t:.0f}, {per} per chain): the {use} "
        "carry large Monte Carlo error.",
    ),
    "MCSE": (
        "Draw more: the Monte Carlo error falls as 1/sqrt(ESS); see the ESS advice.",
        "Monte Carlo SE of the mean is at most {v:.3f} posterior sds (worst: {name}), "
        "within {t:.3f}.",
        "Monte Carlo SE of the mean reaches {v:.3f} posterior sds for {name} (threshold "
        "{t:.3f}): the reported means are imprecise.",
    ),
    "divergences": (
        "{raise_ta} If divergences remain, reparameterise: {collapse_funnel}weakly informative "
        "priors on the sds help too.",
        "no divergent transitions.",
        "{v:.0f} of {n} transitions diverged ({frac:.1%}): the sampler met curvature it cannot "
        "follow, so the posterior may be biased.",
    ),
    "E-BFMI": (
        "Reparameterise ({collapse_list}non-centred random effects), tighten the priors on "
        "scale parameters, and tune longer.",
        "E-BFMI is at least {v:.2f} in every chain (threshold {t}).",
        "E-BFMI is {v:.2f} (below {t}) in chain(s) {low}: the sampler explores the energy "
        "distribution poorly, typical of heavy tails or funnels.",
    ),
    "tree depth": (
        "Remove the strong posterior correlations that need long trajectories "
        "({collapse_list}reparameterisation) or raise the maximum tree depth (fit's "
        "max_treedepth); a longer tune adapts the mass matrix better.",
        "{v:.1%} of draws hit the maximum tree depth (threshold {t:.0%}).",
        "{v:.1%} of draws hit the maximum tree depth (threshold {t:.0%}): trajectories are cut "
        "short and the sampler moves slowly (inefficient, not biased by itself).",
    ),
}


#: chains "sit apart" when the range of their means exceeds this many within-chain sds
APART_SDS = 2.0


@dataclass(frozen=True)
class Context:
    """What the advice of :func:`diagnose` may suggest for a fit; the defaults know
    nothing about it (plain InferenceData), and the advice stays generic.

    Attributes
    ----------
    backend : str, optional
        The fit's backend (``"marginal"`` or ``"latent"``).
    marginal_reason : str, optional
        Why the marginal backend cannot take the model
        (:func:`hierbayes.backend.marginal_unavailable`, or for a GLMM
        :func:`hierbayes.backend.glmm.unavailable`); None when it can.
    target_accept : float, optional
        The fit's ``target_accept``.
    phi_sign_alias : str, optional
        Why the data cannot tell ``phi`` from ``-phi``
        (:attr:`hierbayes.design.build.Design.phi_sign_alias`).
    """

    backend: str | None = None
    marginal_reason: str | None = None
    target_accept: float | None = None
    phi_sign_alias: str | None = None

    @classmethod
    def of(cls, fit) -> "Context":
        """The context of a :class:`~hierbayes.fit.Fit` (its backend, design and options).

        Examples
        --------
        >>> Context.of(fit).backend, Context.of(fit).target_accept
        ('marginal', 0.95)
        """
        from hierbayes.backend import glmm, marginal_unavailable

        design = fit.design
        # Gaussian: the exact collapsed backend; GLMMs: the quadrature one (backend="marginal")
        why = (marginal_unavailable(design) if design.spec.family.collapsible
               else glmm.unavailable(design))
        return cls(
            backend=fit.backend,
            marginal_reason=why,
            target_accept=getattr(fit.options, "target_accept", None),
            phi_sign_alias=getattr(design, "phi_sign_alias", None),
        )

    @property
    def can_collapse(self) -> bool | None:
        """Whether switching to the marginal backend is advice worth giving: True for a
        latent fit the marginal backend can take, False when it already is marginal or
        cannot take the model, None when the fit is unknown."""
        if self.backend is None:
            return None
        return self.backend == "latent" and self.marginal_reason is None


def _raise_target_accept(ta: float | None) -> str:
    """The divergence advice about ``target_accept``, from the value the fit used."""
    if ta is None:
        return "Raise target_accept (0.95, then 0.99) and tune longer."
    if ta < 0.95:
        return f"Raise target_accept from {ta:g} to 0.95 (then 0.99) and tune longer."
    if ta < 0.99:
        return f"Raise target_accept from {ta:g} to 0.99 and tune longer."
    return f"target_accept is already {ta:g}, so raising it buys little; tune longer."


def _advice_fields(ctx: Context) -> dict:
    """The parts of the advice that depend on the fit (:data:`_TEXT` placeholders)."""
    can = ctx.can_collapse
    maybe = " where the family allows it" if can is None else ""
    return {
        "collapse": f"use the collapsed backend (backend='marginal'){maybe} or " if can is not False else "",
        "collapse_short": "the collapsed backend or " if can is not False else "",
        "collapse_funnel": (
            f"the collapsed backend (backend='marginal'){maybe} removes the funnel between "
            "the random-effect sds and the random effects; " if can is not False else ""
        ),
        "collapse_list": "collapsed backend, " if can is not False else "",
        "raise_ta": _raise_target_accept(ctx.target_accept),
    }


def footer_advice(diag: pd.DataFrame, ctx: Context | None = None) -> str:
    """What the summary's footer tells a fit that did not converge, from the same context
    as :func:`diagnose`'s advice: the sign of ``phi`` when its chains sit at both signs,
    else the marginal backend where it is an option, else tuning (``target_accept`` only
    where it can still be raised).

    Examples
    --------
    >>> footer_advice(diagnose(idata), Context(backend="latent", marginal_reason="no"))
    'raise tune and target_accept (e.g. 0.95), or draw longer chains'
    """
    ctx = ctx or Context()
    if diag.attrs.get("phi_sign_alias") and ctx.phi_sign_alias:
        return ctx.phi_sign_alias
    if ctx.can_collapse:
        return "use the marginal backend (backend='marginal')"
    ta = ctx.target_accept
    if ta is None or ta < 0.95:
        return "raise tune and target_accept (e.g. 0.95), or draw longer chains"
    if ta < 0.99:
        return f"raise target_accept from {ta:g} to 0.99 and tune longer, or reparameterise"
    return f"tune and draw longer, or reparameterise (target_accept is already {ta:g})"


def chain_means(ds: xr.Dataset, rhat: pd.Series, top: int = 3) -> pd.DataFrame:
    """Where each chain sits for the ``top`` parameters of highest R-hat.

    Parameters
    ----------
    ds : xarray.Dataset
        Draws (``chain``, ``draw``, ...), as :func:`hyper_posterior` gives them.
    rhat : pandas.Series
        R-hat per flattened label (``beta[time]``), as :func:`diagnose` computes it.
    top : int

    Returns
    -------
    pandas.DataFrame
        Index the labels, worst first; columns ``chain <k>`` (the chain means), ``r_hat``,
        ``within_sd`` (root mean within-chain variance), ``spread`` (range of the chain
        means over ``within_sd``) and ``apart`` (``spread`` > :data:`APART_SDS`: the
        chains sit in different places, not just drift).

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(0, 0.05, (2, 300)) + np.array([[0.6], [-0.6]])
    >>> ds = hyper_posterior(az.from_dict(posterior={"phi": x}))
    >>> cm = chain_means(ds, pd.Series({"phi": 3.0}))
    >>> cm.loc["phi", ["chain 0", "chain 1"]].round(1).tolist(), bool(cm.loc["phi", "apart"])
    ([0.6, -0.6], True)
    """
    worst = rhat.dropna().sort_values(ascending=False).index[:top]
    n_chains = int(ds.sizes.get("chain", 1))
    means = pd.concat(
        [_flatten(ds.isel(chain=c).mean("draw")) for c in range(n_chains)], axis=1
    ).loc[worst]
    means.columns = [f"chain {c}" for c in range(n_chains)]
    var = pd.concat([_flatten(ds.isel(chain=c).var("draw")) for c in range(n_chains)], axis=1)
    within = np.sqrt(var.loc[worst].mean(axis=1))
    spread = (means.max(axis=1) - means.min(axis=1)) / within.where(within > 0)
    return means.assign(r_hat=rhat.loc[worst], within_sd=within, spread=spread,
                        apart=spread > APART_SDS)


def _chain_sentence(cm: pd.DataFrame) -> str:
    """Per-chain means of the worst parameters, and whether the chains sit apart."""
    chains = [c for c in cm.columns if c.startswith("chain ")]
    parts = [
        f"{label} " + ", ".join(f"{row[c]:.3g}" for c in chains)
        + f" (within-chain sd {row['within_sd']:.2g})"
        for label, row in cm.iterrows()
    ]
    out = "Chain means: " + "; ".join(parts) + "."
    apart = list(cm.index[cm["apart"].to_numpy(bool)])
    if apart:
        out += (
            f" The chains of {', '.join(apart)} sit apart (their means spread over "
            f"{cm.loc[apart, 'spread'].max():.0f} within-chain sds): the posterior is "
            "multimodal, or a chain is stuck away from the others."
        )
    return out


def _phi_at_both_signs(cm: pd.DataFrame) -> bool:
    """Whether ``phi``'s chains sit apart on both sides of 0."""
    if "phi" not in cm.index or not bool(cm.loc["phi", "apart"]):
        return False
    m = cm.loc["phi", [c for c in cm.columns if c.startswith("chain ")]].astype(float)
    return bool(m.max() > 0 > m.min())


def _explain_rhat(row: dict, ds: xr.Dataset, rhat: pd.Series, ctx: Context) -> dict:
    """The R-hat row of a failing fit, with where the chains sit (and why, for phi)."""
    cm = chain_means(ds, rhat)
    flags = {"chain_means": cm, "multimodal": bool(cm["apart"].any()), "phi_sign_alias": False}
    row["verdict"] += " " + _chain_sentence(cm)
    if ctx.phi_sign_alias and _phi_at_both_signs(cm):
        flags["phi_sign_alias"] = True
        row["verdict"] += f" phi's chains sit at opposite signs: {ctx.phi_sign_alias}."
        row["advice"] = ctx.phi_sign_alias[0].upper() + ctx.phi_sign_alias[1:] + ". " + row["advice"]
    return flags


def hyper_posterior(idata, var_names: list[str] | None = None) -> xr.Dataset:
    """Posterior of the variables to diagnose, correlation matrices cut to off-diagonals.

    Parameters
    ----------
    idata : arviz.InferenceData
    var_names : list of str, optional
        Default: ``beta``, ``sigma``, ``phi``, ``sd_*`` and ``corr_*`` when present (else
        every variable not named ``b_*``).

    Returns
    -------
    xarray.Dataset
        Each ``corr_*`` (chain, draw, term, term_bis) becomes its strictly lower triangle
        along a dim ``{name}__pair`` with labels like ``"Intercept, time"``.

    Examples
    --------
    >>> list(hyper_posterior(idata).data_vars)  # doctest: +ELLIPSIS
    ['beta', 'sigma', 'phi', 'sd_id', 'corr_id']
    """
    post = getattr(idata, "posterior", None)
    if post is None:
        raise ValueError("idata has no posterior group; pass the InferenceData of a fit.")
    if var_names is None:
        selected = [v for v in post.data_vars if names.is_hyperparameter(v)]
        selected = selected or [v for v in post.data_vars if not names.is_effects(v)]
    else:
        selected = [var_names] if isinstance(var_names, str) else list(var_names)
        missing = [v for v in selected if v not in post]
        if missing:
            raise KeyError(
                f"var_names {missing} are not in the posterior; it has {sorted(post.data_vars)}."
            )
    if not selected:
        raise ValueError("no variables to diagnose: pass var_names.")
    out = {}
    for v in selected:
        da = post[v]
        if names.is_group_corr(v) and da.ndim == 4 and da.shape[2] == da.shape[3]:
            i, j = np.tril_indices(da.shape[2], -1)
            if i.size == 0:
                continue
            labels = da[da.dims[2]].values
            pair = [f"{labels[b]}, {labels[a]}" for a, b in zip(i, j)]
            da = xr.DataArray(
                da.values[:, :, i, j],
                dims=("chain", "draw", f"{v}__pair"),
                coords={"chain": da["chain"], "draw": da["draw"], f"{v}__pair": pair},
            )
        out[v] = da
    return xr.Dataset(out)


def _flatten(ds: xr.Dataset) -> pd.Series:
    """Every scalar of a (non-sample) Dataset, labelled ``var[coord, ...]``."""
    vals, labels = [], []
    for v, da in ds.data_vars.items():
        arr = np.asarray(da.values, dtype=float)
        coords = [da[d].values if d in da.coords else range(n) for d, n in zip(da.dims, arr.shape)]
        for ix in np.ndindex(arr.shape):
            lab = ",".join(str(coords[k][i]) for k, i in enumerate(ix))
            labels.append(f"{v}[{lab}]" if ix else v)
            vals.append(arr[ix])
    return pd.Series(vals, index=labels, dtype=float)


def sampling_diagnostics(ds: xr.Dataset) -> pd.DataFrame:
    """arviz-stats' sampling diagnostics of every scalar of ``ds`` (dims ``chain``, ``draw``):
    rank-normalised split R-hat, bulk and tail ESS, and the Monte Carlo se of the mean; the
    one source of these numbers for :func:`diagnose` and the summary table.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> ds = az.from_dict(posterior={"sigma": np.random.default_rng(0).normal(1, 0.1, (4, 500))}).posterior
    >>> list(sampling_diagnostics(ds).columns)
    ['r_hat', 'ess_bulk', 'ess_tail', 'mcse_mean']
    """
    return pd.DataFrame({
        "r_hat": _flatten(azs.rhat(ds, method="rank")),
        "ess_bulk": _flatten(azs.ess(ds, method="bulk")),
        "ess_tail": _flatten(azs.ess(ds, method="tail")),
        "mcse_mean": _flatten(azs.mcse(ds, method="mean")),
    })


def _row(check, value, threshold, ok, key=None, missing="", ctx=None, **fields) -> dict:
    """One row of :func:`diagnose`; ``ok=None`` or a NaN value means not checked."""
    advice, ok_msg, fail_msg = _TEXT[key or check]
    advice = advice.format(**_advice_fields(ctx or Context()))
    value = float(value)
    if ok is None or np.isnan(value):
        ok, verdict = pd.NA, missing
    else:
        verdict = (ok_msg if ok else fail_msg).format(v=value, t=threshold, **fields)
    return {
        "check": check,
        "value": value,
        "threshold": float(threshold),
        "ok": ok,
        "verdict": verdict,
        "advice": "" if ok is pd.NA or ok else advice,
    }


def _summary_row(check, values: pd.Series, worst: str, threshold, key, ctx=None, **fields) -> dict:
    """The worst (``"max"`` or ``"min"``) value over all variables against ``threshold``."""
    s = values.dropna()
    if s.empty:
        return _row(check, np.nan, threshold, None, key, "not computed: no finite value.", ctx)
    name = s.idxmax() if worst == "max" else s.idxmin()
    v = float(s[name])
    ok = v <= threshold if worst == "max" else v >= threshold
    return _row(check, v, threshold, ok, key, ctx=ctx, name=name, **fields)


def _stat(idata, *names):
    """The first of ``names`` in ``idata.sample_stats`` (nutpie or PyMC spelling), or None."""
    ss = getattr(idata, "sample_stats", None)
    return next((ss[n] for n in names if ss is not None and n in ss), None)


def _sampler_rows(idata, ctx: Context) -> list[dict]:
    div = _stat(idata, "diverging")
    energy = _stat(idata, "energy")
    hit = _stat(idata, "maxdepth_reached", "reached_max_treedepth")
    rows = []
    if div is None:
        rows.append(_row("divergences", np.nan, 0, None, missing="not checked: no diverging stat."))
    else:
        d = np.asarray(div.values, dtype=bool)
        k = int(d.sum())
        rows.append(_row("divergences", k, 0, k == 0, ctx=ctx, n=d.size, frac=k / d.size))
    if energy is None or energy.sizes.get("draw", 0) < 2:
        rows.append(_row("E-BFMI", np.nan, THRESHOLDS.ebfmi_min, None, missing="not checked: no energy stat."))
    else:
        e = np.asarray(energy.transpose("chain", "draw").values, dtype=float)
        bfmi = np.atleast_1d(az.bfmi(e))
        low = [int(c) for c in np.flatnonzero(bfmi < THRESHOLDS.ebfmi_min)]
        rows.append(_row("E-BFMI", bfmi.min(), THRESHOLDS.ebfmi_min, not low, ctx=ctx, low=low))
    if hit is None:
        msg = "not checked: no maxdepth_reached / reached_max_treedepth stat."
        rows.append(_row("tree depth", np.nan, THRESHOLDS.treedepth_max_frac, None, missing=msg))
    else:
        f = float(np.mean(np.asarray(hit.values, dtype=bool)))
        rows.append(_row("tree depth", f, THRESHOLDS.treedepth_max_frac,
                         f <= THRESHOLDS.treedepth_max_frac, ctx=ctx))
    return rows


def diagnose(idata, var_names: list[str] | None = None, *, context: Context | None = None) -> "Diagnosis":
    """Convergence and sampler checks, one row per check, with a verdict and advice.

    Parameters
    ----------
    idata : arviz.InferenceData
        Posterior, and ``sample_stats`` for the sampler checks (those rows say
        "not checked" and have ``ok`` = NA when a statistic is missing).
    var_names : list of str, optional
        Variables for R-hat, ESS and MCSE; default the hyperparameters (see
        :func:`hyper_posterior`).
    context : Context, optional
        What the advice may suggest for this fit (:meth:`Context.of`; ``fit.diagnose()``
        passes it): the marginal backend only where it can take the model and the fit is
        not already marginal, ``target_accept`` only above the value used.

    Returns
    -------
    Diagnosis
        A DataFrame that prints in full (see :class:`Diagnosis`). Columns ``check``,
        ``value``, ``threshold``, ``ok`` (nullable boolean), ``verdict`` (a sentence naming
        the worst variable) and ``advice`` (what to do; empty when ok). When R-hat fails,
        its verdict gives the per-chain means of the worst parameters
        (:func:`chain_means`) and calls the posterior multimodal when the chains sit
        apart; with AR(1) times that leave ``phi``'s sign unidentified and ``phi``'s
        chains at both signs it says so and advises the fix. ``attrs``:
        ``chain_means``, ``multimodal`` and ``phi_sign_alias`` (when R-hat failed).
        Checks, in order:

        - ``R-hat``: max rank-normalised split R-hat, ok when <= 1.01;
        - ``bulk ESS``, ``tail ESS``: min, ok when >= 100 per chain (400 for 4 chains);
        - ``MCSE``: max Monte Carlo SE of the mean over the posterior sd, ok when
          <= 1 / sqrt(ESS threshold) (0.05 for 4 chains), i.e. consistent with the ESS rule;
        - ``divergences``: count, ok when 0;
        - ``E-BFMI``: min over chains, ok when >= 0.3;
        - ``tree depth``: fraction of draws at the maximum depth, ok when <= 1%.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict(posterior={"sigma": rng.normal(1, 0.1, (4, 500))})
    >>> diagnose(idata).set_index("check").loc["R-hat", "ok"]
    np.True_
    """
    ctx = context or Context()
    ds = hyper_posterior(idata, var_names)
    ess_min = THRESHOLDS.ess_per_chain * int(ds.sizes.get("chain", 1))
    stats = sampling_diagnostics(ds)
    rhat = stats["r_hat"]
    rows = [_summary_row("R-hat", rhat, "max", THRESHOLDS.rhat_max, "R-hat", ctx)]
    flags = {}
    if rows[0]["ok"] is False and int(ds.sizes.get("chain", 1)) > 1:
        flags = _explain_rhat(rows[0], ds, rhat, ctx)
    for method, use in (("bulk", "posterior means and sds"), ("tail", "interval bounds")):
        ess = stats[f"ess_{method}"]
        fields = {"method": method, "use": use, "per": THRESHOLDS.ess_per_chain}
        rows.append(_summary_row(f"{method} ESS", ess, "min", ess_min, "ESS", ctx, **fields))
    sd = _flatten(ds.std(("chain", "draw")))
    rel = stats["mcse_mean"] / sd.where(sd > 0)
    rows.append(_summary_row("MCSE", rel, "max", 1 / np.sqrt(ess_min), "MCSE", ctx))
    rows.extend(_sampler_rows(idata, ctx))
    out = Diagnosis(rows, columns=["check", "value", "threshold", "ok", "verdict", "advice"])
    out["ok"] = out["ok"].astype("boolean")
    out.attrs.update(flags)
    return out


class Diagnosis(pd.DataFrame):
    """The rows of :func:`diagnose`: a DataFrame whose printed form shows every verdict
    and every piece of advice in full (a plain DataFrame cuts long text at 50 characters).

    ``print(diag)`` gives the numbers as a table, then :func:`verdict_lines` wrapped to
    ``width`` columns; in a notebook the HTML table keeps the full text. Selections and
    other derived frames are plain DataFrames.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> stuck = az.from_dict(posterior={"sigma": np.r_[rng.normal(0, 1, (2, 500)),
    ...                                                rng.normal(5, 1, (2, 500))]})
    >>> "rank/trace plots" in str(diagnose(stuck))
    True
    """

    width = 100

    @property
    def _constructor(self):
        return pd.DataFrame

    def to_text(self, width: int | None = None) -> str:
        """The printed form: the table of numbers, then the wrapped verdicts."""
        width = width or self.width
        table = pd.DataFrame(self)[["check", "value", "threshold", "ok"]].to_string(index=False)
        lines = []
        for line in verdict_lines(self).split("\n"):
            indent = " " * (10 if line.startswith("       -> ") else 7)
            lines.append(textwrap.fill(line, width, subsequent_indent=indent))
        return table + "\n\n" + "\n".join(lines)

    def __repr__(self) -> str:
        return self.to_text()

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        with pd.option_context("display.max_colwidth", None):
            return pd.DataFrame(self).to_html()


@dataclass(frozen=True)
class Verdict:
    """Whether a fit converged, by :data:`CONVERGENCE_CHECKS` of :func:`diagnose`."""

    converged: bool
    rhat: float
    ess_bulk: float
    ess_min: float
    divergences: int
    problems: tuple[str, ...]

    def lines(self, advice: str) -> list[str]:
        """The summary's footer: the three numbers, then the verdict (with ``advice`` when
        it did not converge)."""
        out = [f"Diagnostics: max R-hat {self.rhat:.3f}, min bulk ESS {self.ess_bulk:.0f}, "
               f"{self.divergences} divergent transitions."]
        if self.converged:
            out.append(f"  Converged: every hyperparameter has R-hat <= {THRESHOLDS.rhat_max} "
                       f"and bulk ESS >= {THRESHOLDS.ess_per_chain} per chain.")
        else:
            out.append("  NOT CONVERGED: " + "; ".join(self.problems)
                       + f". Do not trust these estimates; {advice}.")
        return out


def convergence_verdict(diag: pd.DataFrame) -> Verdict:
    """The one convergence verdict, from the rows of :func:`diagnose`: converged when
    R-hat, bulk ESS and divergences pass (:data:`THRESHOLDS`); tail ESS, MCSE, E-BFMI and
    tree depth are reported by :func:`diagnose` but do not decide it. A check that could not
    be computed (no divergence statistic) does not fail it.

    Examples
    --------
    >>> import arviz as az, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> idata = az.from_dict(posterior={"sigma": rng.normal(1, 0.1, (4, 500))})
    >>> convergence_verdict(diagnose(idata)).converged
    True
    >>> stuck = az.from_dict(posterior={"sigma": np.r_[rng.normal(0, 1, (2, 500)),
    ...                                                rng.normal(5, 1, (2, 500))]})
    >>> v = convergence_verdict(diagnose(stuck)); v.converged, v.problems[0][:5]
    (False, 'R-hat')
    """
    row = diag.set_index("check")
    rhat, ess = float(row.loc["R-hat", "value"]), float(row.loc["bulk ESS", "value"])
    ess_min = float(row.loc["bulk ESS", "threshold"])
    div = row.loc["divergences", "value"]
    n_div = 0 if pd.isna(div) else int(div)
    problems = []
    if row.loc["R-hat", "ok"] is False or rhat > THRESHOLDS.rhat_max:
        problems.append(f"R-hat {rhat:.3f} > {THRESHOLDS.rhat_max}: chains disagree")
    if ess < ess_min:
        problems.append(f"bulk ESS {ess:.0f} < {ess_min:.0f}")
    if n_div:
        problems.append(f"{n_div} divergences")
    failed = [c for c in CONVERGENCE_CHECKS if row.loc[c, "ok"] is False]
    return Verdict(not problems and not failed, rhat, ess, ess_min, n_div, tuple(problems))


def verdict_lines(df: pd.DataFrame) -> str:
    """Plain-text verdicts of :func:`diagnose`, one line per check, advice under failures.

    Examples
    --------
    >>> print(verdict_lines(diagnose(idata)))  # doctest: +SKIP
    [ok]   R-hat: R-hat is at most 1.003 (worst: sigma), within 1.01: the chains agree.
    """
    lines = []
    for r in df.itertuples(index=False):
        tag = "[--]  " if pd.isna(r.ok) else ("[ok]  " if r.ok else "[FAIL]")
        lines.append(f"{tag} {r.check}: {r.verdict}")
        if r.advice:
            lines.append(f"       -> {r.advice}")
    converged = convergence_verdict(df).converged
    lines.append("Converged (R-hat, bulk ESS, divergences)." if converged
                 else "NOT CONVERGED (R-hat, bulk ESS or divergences failed).")
    n_fail = int((df["ok"] == False).sum())  # noqa: E712  (nullable boolean)
    lines.append("All checks passed." if n_fail == 0 else f"{n_fail} check(s) failed.")
    return "\n".join(lines)
