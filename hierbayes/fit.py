"""Fit: the posterior (an ArviZ InferenceData) with the spec, design and priors behind it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import arviz as az
import numpy as np

from hierbayes.spec import priors as priors_mod
from hierbayes.design.build import Design
from hierbayes.report.summary import Summary, parameter_table


#: how the summary names the way nutpie evaluated the log-density
#: what the summary header says of the native kernels other than the one-factor one
_NATIVE_KINDS = {"hybrid": "hybrid: one factor integrated out, the others sampled",
                 "glmm": "adaptive quadrature"}
_COMPILERS = {
    "native": "native numba kernel",
    "jax": "PyMC model compiled with JAX",
    "numba": "PyMC model compiled with numba",
}


@dataclass
class Fit:
    """A fitted model.

    Attributes
    ----------
    idata : arviz.InferenceData
        Posterior with labelled dims: ``beta[coef]``, ``sigma``, ``phi``, ``sd_<g>[<g>__term]``,
        ``corr_<g>``, ``b_<g>[<g>, <g>__term]`` (random effects, recovered for the marginal
        backend); ``observed_data`` holds ``y`` in the user's row order.
    design : Design
    priors : dict of str to Prior
    backend : str
        ``"marginal"`` or ``"latent"``.
    layout : str or None
        Layout of the collapsed likelihood (``"pooled"`` / ``"padded"``), marginal only.
    options : SamplerOptions
    timing : dict
        Seconds spent building, compiling, sampling and recovering.
    inputs : dict or None
        What rebuilds the model (``hb.Model``'s arguments, the data as the design's frozen
        copy): cross-validation refits (:func:`hierbayes.reloo`, :func:`hierbayes.loo_kfold`)
        use it. None for a fit read back by :func:`hierbayes.load`.
    """

    idata: az.InferenceData
    design: Design
    priors: dict
    backend: str
    layout: str | None
    options: object
    timing: dict = field(default_factory=dict)
    inputs: dict | None = field(default=None, repr=False)

    @property
    def spec(self):
        return self.design.spec

    @property
    def posterior(self):
        return self.idata.posterior

    def n_divergences(self) -> int:
        ss = getattr(self.idata, "sample_stats", None)
        if ss is None or "diverging" not in ss:
            return 0
        return int(ss["diverging"].sum())

    def _quadrature_backend(self) -> str:
        """The header's backend line of a quadrature fit: which factor is integrated out, by
        how many nodes, and (a hybrid) which factors are sampled and how."""
        from hierbayes.backend import glmm

        d = self.design
        g = glmm.integrated_group(d)
        others = glmm.sampled_groups(d)
        nodes = self.timing.get("nagq", "?")
        how = f"{nodes} nodes per effect" + (" (Laplace)" if nodes == 1 else "")
        text = (f"marginal ({g.name} integrated out by adaptive Gauss-Hermite quadrature, {how}; "
                f"{g.name} draws recovered"
                + (f", Metropolis acceptance {self.timing['recover_acceptance']:.2f}"
                   if "recover_acceptance" in self.timing else ""))
        if others:
            text += (f"; {', '.join(h.name for h in others)} sampled (hybrid: the factor with the "
                     "most levels is integrated out; centring: see 'Sampled effects')")
        return text + ")"

    def header(self) -> list[str]:
        d, o = self.design, self.options
        groups = ", ".join(f"{g.name}: {g.n_levels} levels" for g in d.groups) or "none"
        from hierbayes.likelihood.collapsed import collapsed_group

        collapsed_name = collapsed_group(d).name if self.backend == "marginal" else ""
        latent_names = [g.name for g in d.groups if g.name != collapsed_name]
        backend = {
            "marginal": f"marginal (random effects integrated out, {self.layout} layout; "
            f"{collapsed_name} collapsed, draws recovered"
            + (f"; {', '.join(latent_names)} latent (hybrid)" if latent_names else "")
            + ("; ridge-aligned coordinates" if self.timing.get("ridge") else "")
            + ")",
            "latent": "latent (random effects sampled"
            + ("; centred or not per factor: see 'Sampled effects')" if self.timing.get("centering")
               else ")"),
            "quadrature": self._quadrature_backend() if self.backend == "quadrature" else "",
        }[self.backend]
        lines = [
            "Bayesian "
            + ("linear" if d.spec.family.name == "gaussian" else "generalized linear")
            + " mixed-effects model (hierbayes)",
            f"  Formula: {d.spec.formula}",
            f"  Family: {d.spec.family.name} ({d.spec.family.link} link)"
            + (f"; censored: " + ", ".join(f"{v} {k}" for k, v in d.censoring.counts().items()
                                            if v and k != "none")
               if d.censoring is not None else ""),
            f"  Correlation: {d.correlation.describe() if d.correlation else 'none (independent residuals)'}",
            f"  Data: {d.n} observations used"
            + (f" ({d.n_dropped} rows with missing values dropped)" if d.n_dropped else "")
            + f"; groups: {groups}",
            f"  Backend: {backend}",
            f"  Sampler: {o.sampler} NUTS, {o.chains} chains x {o.draws} draws "
            f"(tune {o.tune}, target_accept {o.target_accept}), seed {self.timing.get('seed')}"
            + self._log_density(),
        ]
        t = self.timing
        if "total_s" in t:
            lines.append(
                f"  Time: {t['total_s']:.1f} s (compile {t.get('compile_s', float('nan')):.1f} s"
                + (", cached" if t.get("cache_hit") else "")
                + f", sampling {t.get('sampling_s', float('nan')):.1f} s)"
            )
        if t.get("centering"):
            lines.append("  Sampled effects: " + "; ".join(f"{k} {v}" for k, v in t["centering"].items()))
        lines.append("  Priors:")
        lines += ["    " + line for line in priors_mod.tree(self.priors).split("\n")]
        return lines

    def _log_density(self) -> str:
        """How the log-density was evaluated, and why not by the native kernel."""
        t = self.timing
        how = _COMPILERS.get(t.get("compiler"))
        if t.get("compiler") == "native" and t.get("native_kind") in _NATIVE_KINDS:
            how = f"{how} ({_NATIVE_KINDS[t['native_kind']]})"
        if how is None and self.options.sampler == "pymc":
            how = "PyTensor"
        why = t.get("native_reason")
        if how is None:
            return ""
        return f"; log-density: {how}" + (f" (native kernel not used: {why})" if why else "")

    def summary(self, hdi_prob: float = 0.94) -> Summary:
        """nlme-like summary: fixed effects, variance components, residual sd and phi.

        Returns a :class:`~hierbayes.report.summary.Summary`: ``.table`` (DataFrame of every
        hyperparameter with mean, sd, HDI, MCSE, bulk/tail ESS, R-hat), ``.fixed``,
        ``.variance``; ``print(summary)`` gives the text form, notebooks show HTML.

        Examples
        --------
        >>> fit = model.fit(seed=1)            # doctest: +SKIP
        >>> fit.summary().fixed.index.tolist()
        [\'Intercept\', \'time\', \'treatment[treatment]\']
        """
        table = parameter_table(self.idata, self.design, hdi_prob)
        footer = self._verdicts(table)
        return Summary(table, self.header(), footer)

    def _verdicts(self, table) -> list[str]:
        """The summary's footer: :func:`~hierbayes.report.diagnostics.convergence_verdict`
        of :meth:`diagnose` (the same verdict the report prints), with advice that fits
        this model (:func:`~hierbayes.report.diagnostics.footer_advice`)."""
        from hierbayes.report.diagnostics import Context, convergence_verdict, footer_advice

        diag = self.diagnose()
        return convergence_verdict(diag).lines(footer_advice(diag, Context.of(self)))

    # ------------------------------------------------------------------ reporting

    def diagnose(self, var_names=None):
        """Convergence checks with a verdict and advice per check, the advice fitted to this
        model (its backend, family and sampler options; see
        :func:`hierbayes.report.diagnose`). ``print(fit.diagnose())`` shows the full text.

        Examples
        --------
        >>> list(fit.diagnose()["check"])[:2]
        ['R-hat', 'bulk ESS']
        """
        from hierbayes.report import diagnose
        from hierbayes.report.diagnostics import Context

        return diagnose(self.idata, var_names, context=Context.of(self))

    def cluster_ols(self, group: str | None = None):
        """Per-cluster fits of the random-effect terms, adjusted for the row-level fixed
        columns (R's ``lmList``; a per-cluster GLM by IRLS for binary and count families),
        with a status per cluster; see :func:`hierbayes.report.cluster_ols`."""
        from hierbayes.report import cluster_ols

        return cluster_ols(self.design, group)

    def cluster_coefficients(self, group: str | None = None, hdi_prob: float = 0.94):
        """Posterior cluster coefficients (fixed + random parts, as nlme's ``coef()``)."""
        from hierbayes.report import cluster_coefficients

        return cluster_coefficients(self.idata, self.design, group, hdi_prob)

    def shrinkage(self, group: str | None = None):
        """Shrinkage of the cluster coefficients against per-cluster OLS (table per term)."""
        from hierbayes.report import shrinkage_table

        return shrinkage_table(self.idata, self.design, group)

    def residuals(self):
        """Standardized within-group residuals summary (Min, Q1, Med, Q3, Max), as nlme prints;
        a censored model's summary is of its exact rows (the series' name counts the others)."""
        from hierbayes.report import residual_summary, within_group_residuals
        from hierbayes.report.residuals import censored_rows_note

        out = residual_summary(within_group_residuals(self.idata, self.design))
        note = censored_rows_note(self.design)
        return out if note is None else out.rename(f"residuals ({note})")

    def posterior_predictive(self, n_draws: int | None = None, seed: int = 0,
                             censored: bool = True) -> np.ndarray:
        """Replicated data (draws x rows, in the user's row order) for posterior predictive checks.

        A censored model's replicates are censored as the data's rows are (a replicate
        beyond a censored row's bound is reported at the bound; ``censored=False``: the
        uncensored draws; :func:`hierbayes.predict.predictive.censored_replicates`).

        The draws are also stored in ``idata.posterior_predictive`` (variable ``y``, dims
        ``chain, draw, obs`` as ``observed_data``), replacing earlier ones, so
        ``az.plot_ppc(fit.idata)`` works. ``n_draws`` thins evenly within each chain, so
        it is rounded up to a multiple of the number of chains (5 draws of 2 chains: 6).
        Rows dropped for missing values are NaN in the returned array.
        """
        from hierbayes.predict.predictive import posterior_predictive_dataset

        ds = posterior_predictive_dataset(self.idata, self.design, n_draws, seed, censored=censored)
        if "posterior_predictive" in self.idata.groups():
            del self.idata.posterior_predictive
        self.idata.add_groups(posterior_predictive=ds)
        y = ds["y"].stack(sample=("chain", "draw")).transpose("sample", "obs")
        out = np.full((y.shape[0], self.design.n_input_rows), np.nan)
        out[:, y["obs"].values] = y.values
        return out

    def plot_ppc(self, n_draws: int = 200, seed: int = 0, **kwargs):
        """Posterior predictive check figure that suits the family: bars of observed and
        replicated shares for 0/1 and binomial responses, a rootogram for counts, densities
        otherwise (see :func:`hierbayes.report.plot_ppc`); ``kwargs`` go to it.

        Examples
        --------
        >>> fig = fit.plot_ppc(n_draws=20)
        >>> fig.axes[0].get_xlabel()
        'y'
        """
        from hierbayes.predict.predictive import posterior_predictive
        from hierbayes.report import plot_ppc

        y_rep = posterior_predictive(self.idata, self.design, n_draws=n_draws, seed=seed)
        if self.design.response_levels:  # ordinal: a bar per level, labelled
            kwargs.setdefault("levels", self.design.response_levels)
        return plot_ppc(self.design.y, y_rep, self.spec.family.name, **kwargs)

    def report(self, out_dir, n_ppc: int = 200, seed: int = 0):
        """Write a self-contained HTML report (summary, diagnostics, shrinkage, residuals,
        posterior predictive checks, figures as PNG too) into ``out_dir``; returns its path."""
        from hierbayes.report.fit_report import write_fit_report

        return write_fit_report(self, out_dir, n_ppc=n_ppc, seed=seed)

    def print_priors(self) -> str:
        return priors_mod.tree(self.priors)

    def log_likelihood(self):
        """Pointwise log-likelihood (per observation, or per cluster when residuals are
        correlated or the random effects are integrated out; see :mod:`hierbayes.criticism.loglik`),
        stored in ``idata.log_likelihood`` on first use and returned.

        Examples
        --------
        >>> fit.log_likelihood()["y"].dims  # doctest: +ELLIPSIS
        ('chain', 'draw', 'id')
        """
        from hierbayes.criticism.loglik import log_likelihood

        if "log_likelihood" not in self.idata.groups():
            self.idata.add_groups(log_likelihood=log_likelihood(self))
        return self.idata.log_likelihood

    def thin(self, factor: int | str = "auto") -> "Fit":
        """A copy of the fit keeping every ``factor``-th draw of every chain, in every group
        (posterior with the random effects, sampler statistics, log-likelihood, ...).

        Parameters
        ----------
        factor : int or "auto"
            ``"auto"``: arviz-stats' choice (``arviz_stats.thin``, Säilynoja et al. 2022:
            from the bulk and tail ESS) computed on the hyperparameters of the summary, so that
            the thinned draws stay nearly independent; an int keeps every ``factor``-th draw.

        Returns
        -------
        Fit

        Examples
        --------
        >>> fit.thin(2).idata.posterior.sizes["draw"]
        100
        """
        import arviz_stats as azs

        from hierbayes.criticism.sensitivity import hyperparameters

        n = self.idata.posterior.sizes["draw"]
        if isinstance(factor, str):
            if factor != "auto":
                raise ValueError(f"factor must be a whole number >= 1 or 'auto', got {factor!r}.")
            kept = azs.thin(hyperparameters(self.idata, self.design), factor="auto")
            factor = max(1, round(n / kept.sizes["draw"]))
        elif isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
            raise ValueError(f"factor must be a whole number >= 1 or 'auto', got {factor!r}.")
        groups = {}
        for name in self.idata.groups():
            ds = self.idata[name]
            groups[name] = ds.isel(draw=slice(None, None, int(factor))) if "draw" in ds.dims else ds
        idata = az.InferenceData(**groups)
        timing = {**self.timing, "thin": int(factor)}
        return dataclasses.replace(self, idata=idata, timing=timing)

    def to_netcdf(self, path) -> str:
        """Write the InferenceData to netCDF."""
        return self.idata.to_netcdf(str(path))

    def __repr__(self) -> str:
        return "\n".join(self.header())

    # ------------------------------------------------------------------ prediction

    def predict(self, new_data, kind: str = "mean", groups: str = "existing", **kwargs):
        """Posterior draws of the mean or of new observations for new rows.

        See :func:`hierbayes.predict.prediction.predict` (``prob``, ``n_draws``, ``seed``).

        Examples
        --------
        >>> pred = fit.predict(new_rows, kind="response")
        >>> pred.table                                       # doctest: +SKIP
        """
        from hierbayes.predict.prediction import predict

        return predict(self, new_data, kind=kind, groups=groups, **kwargs)

    def loo(self, unit: str | None = None):
        """PSIS-LOO through ArviZ in the right unit (observations, or whole clusters when
        residuals are correlated or random effects integrated out); see :func:`hierbayes.loo`.

        Examples
        --------
        >>> print(fit.loo())  # doctest: +ELLIPSIS
        PSIS-LOO, leave-one-cluster-out over 40 clusters of 'id':...
        """
        from hierbayes.criticism.comparison import loo

        return loo(self, unit=unit)

    def fe_vs_re(self, group: str | None = None):
        """The within (fixed-effects) estimator of the time-varying coefficients next to the
        mixed model's posterior, with the Mundlak alternative pointed to; see
        :func:`hierbayes.report.fixed_vs_random`.

        Examples
        --------
        >>> fit.fe_vs_re()       # doctest: +SKIP
        """
        from hierbayes.report import fixed_vs_random

        return fixed_vs_random(self.idata, self.design, group)
    def save(self, path, *, compress: bool = True):
        """Save this fit (posterior, spec, priors, data to rebuild the design, options,
        timing, package version) to one netCDF file, atomically; load it with ``hb.load``.

        Examples
        --------
        >>> fit.save("fit.nc")
        PosixPath(\'fit.nc\')
        >>> again = hb.load("fit.nc")
        """
        from hierbayes.io.persist import save

        return save(self, path, compress=compress)
    # ------------------------------------------------------------------ prior sensitivity

    def log_prior(self):
        """Log densities of the top-level priors at the posterior draws, stored as the
        ``log_prior`` group of ``idata`` (see :mod:`hierbayes.criticism.logprior`) and returned.

        Examples
        --------
        >>> fit.log_prior()["sigma"].dims  # doctest: +ELLIPSIS
        ('chain', 'draw')
        """
        from hierbayes.criticism.logprior import log_prior

        ds = log_prior(self.idata, self.design, self.priors)
        if "log_prior" in self.idata.groups():
            del self.idata.log_prior
        self.idata.add_groups(log_prior=ds)
        return ds

    def prior_sensitivity(self, threshold: float = 0.05):
        """Power-scaling prior and likelihood sensitivity of each hyperparameter, with
        arviz-stats' diagnosis (see :func:`hierbayes.criticism.sensitivity.prior_sensitivity`).

        Examples
        --------
        >>> fit.prior_sensitivity()  # doctest: +SKIP
        """
        from hierbayes.criticism.sensitivity import prior_sensitivity

        return prior_sensitivity(self, threshold=threshold)

    def plot_prior_sensitivity(self):
        """Posterior means +- sd under power-scaled prior and likelihood, one panel per
        hyperparameter (see :func:`hierbayes.criticism.sensitivity.plot_prior_sensitivity`)."""
        from hierbayes.criticism.sensitivity import plot_prior_sensitivity

        return plot_prior_sensitivity(self)


def load(path, *, allow_version_mismatch: bool = False):
    """Load a fit saved with :meth:`Fit.save <hierbayes.fit.Fit.save>`.

    Parameters
    ----------
    path : str or Path
    allow_version_mismatch : bool, default False
        A file written by another hierbayes version raises :class:`~hierbayes.io.persist.VersionMismatchError`
        unless this is True (then it warns, rebuilds the design and checks it against the
        stored fingerprint).

    Returns
    -------
    Fit
        With the same InferenceData, spec, priors, design (rebuilt from the stored data and
        checked against the saved one), backend, layout, sampler options and timing.

    Examples
    --------
    >>> import hierbayes as hb
    >>> fit = hb.load("clark_ar1_fit.nc")   # doctest: +SKIP
    >>> fit.summary().fixed  # doctest: +SKIP
    """
    from hierbayes.io import persist

    return Fit(**persist.read(path, allow_version_mismatch=allow_version_mismatch))
