"""Model: formula + data + options -> spec -> design -> backend -> sample -> Fit."""

from __future__ import annotations

import functools
import time

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes import backend as backend_mod
from hierbayes.backend import centring
from hierbayes.likelihood import collapsed
from hierbayes.likelihood import recover
from hierbayes.sampling import nuts as sample
from hierbayes.design.build import Design, build_design
from hierbayes.fit import Fit
from hierbayes.spec.priors import Prior, resolve_priors, tree
from hierbayes.spec.formula import parse
from hierbayes import names



class Model:
    """A Bayesian mixed-effects model, ready to fit.

    Parameters
    ----------
    formula : str
        ``"y ~ time + treatment + (1 + time | id)"``: fixed effects in formulae syntax
        (categoricals with treatment coding, interactions ``a:b`` / ``a*b``, ``np.log(x)``,
        ``0 +`` to drop the intercept) and lme4-style group terms ``(1 | g)``,
        ``(1 + x | g)``, ``(x | g)`` (intercept implied), ``(0 + x | g)``, ``(1 | a/b)``.
        Terms of one grouping factor are correlated (LKJ prior on their correlation).
        Reference level: the first category of a pandas Categorical (ordered or not, as
        an R factor's first level), else the alphabetically first value; or name it,
        ``C(dose, Treatment('placebo'))``; ``C(dose, Sum)`` for sum-to-zero contrasts.
    data : pandas.DataFrame
    correlation : hb.AR1, hb.CAR1, hb.CompSymm, hb.Unstructured or hb.ARMA, optional
        Residual correlation within clusters. ``hb.CompSymm(group)`` (exchangeable, ``rho``
        in the ``phi`` slot) and ``hb.Unstructured(time, group)`` (a K x K correlation
        ``corr_resid`` over the occasions, LKJ(2) prior) are Gaussian-only and refuse a
        random intercept on their group (not identified); compound symmetry with random
        slopes on its group is integrated out by the marginal backend, the rest is latent.
        ``hb.ARMA(time, group, p, q)`` (Gaussian, latent backend; partial autocorrelations
        ``arma_ar_pacf`` / ``arma_ma_pacf``, coefficients ``ar`` / ``ma``) takes random
        effects on its group, an intercept too.
    family : str or family object, default "gaussian"
        ``"gaussian"``, ``"student"``, ``"bernoulli"``, ``"binomial"`` (response
        ``k | trials(n)``), ``"poisson"``, ``"negbinomial"``, ``"gamma"``, ``"lognormal"``
        (strictly positive responses), ``"zero_inflated_poisson"``
        (``"zip"``), ``"zero_inflated_negbinomial"`` (``"zinb"``), ``"hurdle_poisson"``,
        ``"hurdle_negbinomial"`` (latent backend; see ``zi``), ``"cumulative"`` (alias
        ``"ordinal"``: ordered levels, cut-points instead of an intercept; latent backend),
        or an object of :mod:`hierbayes.spec.families` such as ``Bernoulli(link="probit")``
        or ``Cumulative(levels=["low", "mid", "high"])``. Bernoulli,
        binomial, Poisson, negative binomial, Gamma and lognormal models can integrate one
        grouping factor's effects out by adaptive Gauss-Hermite quadrature (``backend``; with
        several factors the one with the most levels, the others sampled); other
        non-Gaussian models use the latent backend.
    priors : dict of str to hb.Prior, optional
        Replace default priors by parameter name (see ``model.priors``): ``"Intercept"``,
        a coefficient label such as ``"time"``, ``"beta"`` (every non-intercept
        coefficient), ``"sigma"``, ``"sd_<g>"``, ``"corr_<g>"``, ``"phi"``, ``"corr_resid"``
        (``hb.Prior("LKJ", eta=...)``). A prior on the
        whole line (e.g. ``Normal``) for a positive parameter (``sigma``, ``sd_<g>``, ``nu``,
        ``alpha``, ``sd_ar``) is truncated at 0, as brms does, and printed so. Distribution
        and parameter names are checked against PyMC here, not at fit time. One key names
        one parameter: a predictor or grouping factor whose key would be another
        parameter's (a column ``sigma`` in a Gaussian model) is refused, naming the column
        to rename.
    backend : {"auto", "marginal", "latent", "quadrature"}
        ``"marginal"``: the random effects integrated out, exactly for Gaussian models (with
        several factors, the largest integrated out and the others latent), by adaptive
        Gauss-Hermite quadrature for GLMMs (``"quadrature"``, :mod:`hierbayes.backend.glmm`;
        with several factors the same hybrid: the factor with the most levels integrated
        out, the others' effects sampled and entering as an offset); ``"latent"``: every
        effect sampled; ``"auto"``: marginal where it applies (GLMMs: one or two effects per
        cluster of the integrated factor), latent otherwise.
    nagq : int, optional
        Quadrature backend: Gauss-Hermite nodes per effect (1 is the Laplace approximation;
        default 9, 7, 5 for 1, 2, 3 effects per cluster: the accuracy table of
        :mod:`hierbayes.likelihood.quadrature`). An error for the other backends.
    na_action : {"drop", "raise"}
        Rows with missing values in used columns: drop them with a warning that counts
        them, or raise.
    centered : dict of str to bool, optional
        For the grouping factors whose effects are sampled (all of them in the latent
        backend; the factors not integrated out in the marginal one): ``True`` samples a
        factor's effects centred (``b ~ N(0, S)``), ``False`` non-centred
        (``b = F z``). Factors not named follow the rule of
        :mod:`hierbayes.backend.centring` (centred where the data per level dominate the
        spread of the levels); ``model.centering`` shows each decision.
    sigma : str, optional
        A formula for the residual sd (Gaussian and Student-t families), log-linear:
        ``sigma="~ Sex"`` is ``log sigma_i = x_i' beta_sigma`` (brms' ``bf(y ~ ..., sigma ~
        Sex)``). Fixed effects only. Coefficients ``beta_sigma`` (dims ``coef_sigma``),
        prior keys ``sigma_Intercept``, ``sigma_SexM`` (``beta_sigma``: every slope);
        without it ``sigma`` is one scalar. nlme's variance functions:

        - ``weights = varIdent(form = ~ 1 | Sex)`` is ``sigma="~ Sex"``; nlme reports the
          ratio of each level's sd to the reference level's, here ``exp(sigma_SexM)``
          (``sigma_Intercept`` is the log sd of the reference level).
        - ``varExp(form = ~ x)`` (sd ``sigma exp(t x)``) is ``sigma="~ x"``: ``t`` is
          ``sigma_x``.
        - ``varPower(form = ~ x)`` (sd ``sigma |x|^t``) is ``sigma="~ np.log(np.abs(x))"``
          (rows with ``x = 0`` give an infinite value and are refused).

        With ``correlation``, the residuals are ``e_i = sigma_i u_i`` with ``u`` the
        unit-variance AR(1)/CAR(1) process, as nlme combines ``weights`` with
        ``correlation``. The collapsed marginal backend takes it (padded layout); the
        native kernel does not (JAX evaluates it; ``fit.timing["native_reason"]``).
    zi, hu : str, optional
        A formula for the zero-inflation probability ``zi`` of the
        ``zero_inflated_poisson`` / ``zero_inflated_negbinomial`` families (aliases ``zip``,
        ``zinb``), or for the hurdle probability ``hu`` of ``hurdle_poisson`` /
        ``hurdle_negbinomial``, on the logit scale: ``zi="~ x"`` is
        ``logit zi_i = x_i' beta_zi``, brms' ``bf(y ~ ..., zi ~ x)`` and glmmTMB's
        ``ziformula = ~ x``. Fixed effects only; coefficients ``beta_zi`` (dims
        ``coef_zi``), prior keys ``zi_Intercept``, ``zi_x`` (``beta_zi``: every slope).
        Without it ``zi`` is one probability with prior Beta(1, 1) (glmmTMB's
        ``ziformula = ~ 1``).
    censored : str or (str, str), optional
        A censored response (brms' ``y | cens(c) ~ ...``, which the formula also takes): the
        indicator column, with the interval's upper-bound column as ``("c", "y2")``. Values
        ``"left"``, ``"none"``, ``"right"``, ``"interval"`` (or -1, 0, 1, 2). Gaussian,
        Student-t and lognormal families, latent backend, no residual correlation; the
        log-likelihood (LOO) is the censored one; ``hb.simulate`` draws uncensored responses,
        predictive replicates are censored as the data are, ``hb.sbc`` takes the censoring
        process as ``censor=`` (:mod:`hierbayes.design.censoring`).

    Examples
    --------
    >>> import hierbayes as hb
    >>> data = hb.datasets.load("clark_ar1")
    >>> model = hb.Model("y ~ time + treatment + (1 + time | id)", data,
    ...                  correlation=hb.AR1(time="time", group="id"))
    >>> model.backend
    'marginal'
    >>> fit = model.fit(seed=1)  # doctest: +SKIP
    >>> print(fit.summary())  # doctest: +SKIP
    """

    def __init__(
        self,
        formula: str,
        data: pd.DataFrame,
        *,
        correlation=None,
        family: str = "gaussian",
        priors: dict[str, Prior] | None = None,
        backend: str = "auto",
        na_action: str = "drop",
        nagq: int | None = None,
        centered: dict[str, bool] | None = None,
        sigma: str | None = None,
        zi: str | None = None,
        hu: str | None = None,
        censored: str | tuple[str, str] | None = None,
    ) -> None:
        self.spec = parse(formula, family=family, correlation=correlation, priors=priors,
                          sigma=sigma, zi=zi, hu=hu, censored=censored)
        self.design: Design = build_design(self.spec, data, na_action=na_action)
        # what rebuilds this model in another process (prior sweeps, SBC): plain data only,
        # and the design's frozen copy of the data, so that editing the caller's DataFrame
        # after hb.Model() changes no later refit
        self.inputs = dict(formula=formula, data=self.design.source, correlation=correlation,
                           family=family, backend=backend, na_action=na_action, nagq=nagq,
                           centered=centered, sigma=sigma, zi=zi, hu=hu, censored=censored)
        backend_mod.check_priors(self.spec.priors)
        self.priors: dict[str, Prior] = resolve_priors(self.design, self.spec.priors)
        self.backend: str = backend_mod.choose(self.design, backend)
        self.nagq = backend_mod.check_nagq(nagq, self.backend)
        if centered is not None and not isinstance(centered, dict):
            raise TypeError(f"centered must be a dict of factor name to bool, got {type(centered).__name__}.")
        self.centering: dict[str, centring.Centering] = centring.choose(
            self.design, backend_mod.sampled_groups(self.design, self.backend), centered)
        self._cdata = collapsed.prepare(self.design) if self.backend == "marginal" else None
        self._pymc = None

    @classmethod
    def from_bambi(cls, bmb_model, correlation=None, **kwargs) -> "Model":
        """The hierbayes model of a ``bambi.Model``: its formula, family and link, the priors
        its user set and its data (:mod:`hierbayes.io.bambi` says what maps to what).

        bambi's group terms are independent, so ``(1 + x | g)`` becomes ``(1 + x || g)``;
        the priors bambi chose itself are replaced by hierbayes' defaults. Whatever has no
        exact hierbayes equivalent (another family or link, a fixed parameter, a prior on a
        centred intercept, a group prior that is not ``Normal(0, <sd prior>)``) raises an
        error naming it.

        Parameters
        ----------
        bmb_model : bambi.Model
            Not fitted, not changed.
        correlation : hb.AR1 or hb.CAR1, optional
            Residual correlation (bambi has none).
        **kwargs
            Other :class:`Model` arguments (``backend``, ``centered``, ...). ``priors``
            are merged over the converted ones (yours win); ``family``, ``formula`` or
            ``na_action`` replace the converted value.

        Examples
        --------
        >>> import bambi as bmb, hierbayes as hb                                # doctest: +SKIP
        >>> b = bmb.Model("y ~ time + (1 | id)", hb.datasets.load("clark_ar1"),
        ...               priors={"time": bmb.Prior("Normal", mu=0, sigma=1)})  # doctest: +SKIP
        >>> m = hb.Model.from_bambi(b, correlation=hb.AR1(time="time", group="id"))  # doctest: +SKIP
        >>> m.priors["time"]                                                     # doctest: +SKIP
        Prior('Normal', mu=0, sigma=1)
        """
        from hierbayes.io import bambi as bambi_io

        extra = dict(kwargs.pop("priors", None) or {})
        inputs = bambi_io.model_inputs(bmb_model, overridden=set(extra))
        inputs["priors"] = {**inputs["priors"], **extra}
        inputs.update(kwargs)
        return cls(correlation=correlation, **inputs)

    @property
    def ridge_coordinates(self) -> bool:
        """Whether the marginal model samples its prior in ridge-aligned coordinates."""
        from hierbayes.backend import reparam

        return self.backend == "marginal" and reparam.applies(self.design, self.priors)

    @property
    def layout(self) -> str | None:
        """Layout of the collapsed likelihood (``"pooled"`` or ``"padded"``), if marginal."""
        return self._cdata.layout if self._cdata is not None else None

    def build(self):
        """The PyMC model (built once)."""
        if self._pymc is None:
            self._pymc = backend_mod.build_model(self.design, self.priors, self.backend, self._cdata,
                                                 nagq=self.nagq, centering=self.centering)
        return self._pymc

    def structure_key(self) -> str:
        """A hash of everything that fixes this model's compiled graph, not the data values.

        Two models with equal keys (same backend, terms, family, correlation kind, priors
        and array shapes) share a compiled model in the session cache
        (:mod:`hierbayes.sampling.cache`): a refit with new data values compiles nothing.
        Default priors scale with the data, so data that move them change the key.

        Returns
        -------
        str
            A hex digest.

        Examples
        --------
        >>> import hierbayes as hb
        >>> data = hb.datasets.load("clark_ar1")
        >>> a = hb.Model("y ~ time + (1 | id)", data)
        >>> b = hb.Model("y ~ time + (1 | id)", data.sample(frac=1, random_state=0))
        >>> a.structure_key() == b.structure_key()
        True
        >>> a.structure_key() == hb.Model("y ~ time + (1 | id)", data, backend="latent").structure_key()
        False
        """
        d = self.design
        shapes = (
            self._cdata.signature()
            if self._cdata is not None
            else (d.X.shape, tuple((g.name, g.Z.shape, g.n_levels) for g in d.groups),
                  None if d.layout is None else d.layout.pos.shape)
        )
        corr = None if d.correlation is None else (d.correlation.kind,)
        if d.correlation is not None and d.correlation.dense:
            # compound symmetry / unstructured: cluster sizes and occasion patterns are in the graph
            import hashlib

            h = hashlib.sha1(d.layout.sizes.tobytes() + d.time.tobytes() + d.layout.pos.tobytes())
            corr = corr + (h.hexdigest(), d.occasions)
        # the family and link fix the likelihood graph too (logit and probit share shapes)
        corr = (corr, repr(self.spec.family), d.trials is not None,
                tuple((k, c.centered) for k, c in self.centering.items()))
        if d.dpars:  # a parameter formula: its terms and shape fix the graph too
            corr = corr + (tuple((k, b.names, b.X.shape) for k, b in d.dpars.items()),)
        if d.censoring is not None:  # one term per kind of row, its rows' count a data shape
            corr = corr + (("censored", tuple(d.censoring.counts().items())),)
        if self.backend == "quadrature":  # the kernel's Op holds the data: reuse for the same data only
            from hierbayes.backend import glmm

            shapes = (shapes, glmm.fingerprint(d), self.nagq)
        return sample.structure_key(
            self.backend, d.fixed_names, tuple((g.name, g.terms) for g in d.groups),
            corr, tuple((k, v.key()) for k, v in self.priors.items()), shapes,
        )

    def fit(
        self,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        *,
        cores: int | None = None,
        sampler: str = "nutpie",
        target_accept: float | None = None,
        seed: int | None = None,
        progressbar: bool = True,
        mass_matrix: str | None = None,
        compiler: str = "auto",
        max_treedepth: int = 10,
        recover_random_effects: bool = True,
        recover_thin: int = 1,
        **sampler_kwargs,
    ) -> Fit:
        """Sample the posterior with NUTS.

        Parameters
        ----------
        draws, tune, chains : int
            Draws kept per chain, warm-up draws per chain, number of chains.
        cores : int, optional
            Chains run in parallel (default: as many as cores, at most ``chains``).
        sampler : {"nutpie", "pymc"}
            nutpie (default; see ``compiler``) or PyMC's own NUTS.
        target_accept : float, optional
            Default 0.8; 0.95 for models sampled in ridge coordinates (random intercept
            with AR(1)/CAR(1) residuals, see :mod:`hierbayes.backend.reparam`), whose
            posterior bends along the intercept-sd / residual-sd / phi ridge.
        seed : int, optional
            Seeds sampling and the recovery of random effects: same seed, same draws.
        progressbar : bool
        mass_matrix : {"diag", "low_rank"}, optional
            nutpie's metric adaptation. Default ``"low_rank"`` (nutpie's low-rank-modified
            metric, which also learns the correlations between the ridge coordinates) for
            models sampled in ridge coordinates, where it doubled the bulk ESS over seeds on
            the acceptance model (``benchmarks/bench_seeds.py``), and for the GLMM hybrid
            (quadrature with sampled factors), where it learns the correlation of the
            intercept with the sampled factor's effects (crossed Bernoulli 300 x 24,
            ``benchmarks/bench_glmm.py --cases B5``: min bulk ESS 4,195 against 274 of 2,000
            draws; the Poisson sites x years model of ``models/crossed_counts.toml`` at 2 x 500:
            1,365 against 198); ``"diag"`` otherwise.
        compiler : {"auto", "native", "jax", "numba"}
            How nutpie evaluates the log-density. ``"auto"`` (default): the hand-written
            numba kernel (:mod:`hierbayes.backend.native.bridge`; microseconds per gradient,
            compiled once per installation and cached on disk) for a Gaussian model with one
            grouping factor integrated out (the others, if any, sampled: the hybrid
            kernel) and priors it knows, else JAX (seconds to
            compile). ``"native"`` insists on the kernel (an error says why it does not
            apply); ``"jax"``; ``"numba"`` (PyTensor's numba backend: a minute or more to
            compile). When the kernel is not used, ``fit.timing["native_reason"]`` and the
            summary header say why.
        max_treedepth : int
            The maximum depth of NUTS trees (nutpie's ``maxdepth``, PyMC's
            ``max_treedepth``; 2^depth leapfrog steps at most per draw).
        recover_random_effects : bool
            Marginal and quadrature backends: draw ``b_<g>`` back per posterior draw
            (default True).
        recover_thin : int
            Draw ``b_<g>`` back at every ``recover_thin``-th draw of each chain only
            (default 1: every draw, into ``fit.posterior``). With k > 1 the effects go to
            the group ``fit.idata.random_effects`` (dims ``chain, draw, <g>, <g>__term``,
            the draw labels those of the posterior draws they belong to), holding
            ``draws / k`` draws: their memory is C x q x chains x draws / k numbers.
            Cluster coefficients, shrinkage, residuals, posterior predictive draws and
            predictions for fitted clusters then use those draws
            (:func:`hierbayes.predict.predictive.effects_posterior`); the summary,
            diagnostics and LOO use every draw.

        Returns
        -------
        Fit
        """
        if isinstance(recover_thin, bool) or not isinstance(recover_thin, (int, np.integer)) or recover_thin < 1:
            raise ValueError(f"recover_thin must be a whole number >= 1 (1: every draw), got {recover_thin!r}.")
        t0 = time.perf_counter()
        opts = self._sampler_options(
            draws=draws, tune=tune, chains=chains, cores=cores, target_accept=target_accept,
            seed=sample.resolve_seed(seed), sampler=sampler, progressbar=progressbar,
            mass_matrix=mass_matrix, compiler=compiler, max_treedepth=max_treedepth,
            extra=sampler_kwargs,
        )
        pm_model = self.build()
        t_build = time.perf_counter() - t0
        native = sample.decide_native(self.design, self.priors, self.backend, opts)
        raw, timing = sample.run(pm_model, self.structure_key(), opts, native=native)
        timing["build_s"] = t_build
        timing["ridge"] = self.ridge_coordinates
        if self.centering:
            timing["centering"] = {k: c.describe() for k, c in self.centering.items()}
        if self.backend == "quadrature":
            timing["nagq"] = pm_model.hb_marginal_glmm.nagq
        idata = self._tidy(raw)
        if self.backend == "marginal" and recover_random_effects:
            self._add_random_effects(idata, opts.seed, timing, int(recover_thin))
        if self.backend == "quadrature" and recover_random_effects:
            self._add_glmm_effects(idata, opts.seed, timing, int(recover_thin))
        timing["total_s"] = time.perf_counter() - t0
        return Fit(idata, self.design, self.priors, self.backend, self.layout, opts, timing,
                   inputs=self.inputs)

    def _sampler_options(self, *, target_accept, mass_matrix, **kw) -> sample.SamplerOptions:
        """The fit's sampler options, with this model's defaults for ``target_accept`` and
        ``mass_matrix`` where they are None (ridge coordinates: 0.95 and low-rank; the GLMM
        hybrid: low-rank)."""
        ridge = self.ridge_coordinates
        hybrid = self.backend == "quadrature" and len(self.design.groups) > 1
        if target_accept is None:
            target_accept = 0.95 if ridge else 0.8
        if mass_matrix is None:
            mass_matrix = "low_rank" if ridge or hybrid else "diag"
        return sample.SamplerOptions(target_accept=target_accept, mass_matrix=mass_matrix, **kw)

    # ------------------------------------------------------------------ post-processing

    def _tidy(self, raw: az.InferenceData) -> az.InferenceData:
        post = raw.posterior
        keep = [v for v in post.data_vars if names.is_reported(v)]
        groups = {"posterior": post[keep]}
        if hasattr(raw, "sample_stats"):
            groups["sample_stats"] = raw.sample_stats
        d = self.design
        order = np.argsort(d.rows)
        y = xr.DataArray(d.y[order], dims=["obs"], coords={"obs": d.rows[order]})
        idata = az.InferenceData(**groups, observed_data=xr.Dataset({"y": y}))
        return idata

    @staticmethod
    def _store_effects(idata: az.InferenceData, b: xr.DataArray, thin: int) -> None:
        """``b_<g>`` into the posterior (every draw) or the ``random_effects`` group."""
        if thin == 1:
            idata.posterior[b.name] = b
        elif names.EFFECTS_GROUP in idata.groups():
            idata[names.EFFECTS_GROUP][b.name] = b
        else:
            idata.add_groups({names.EFFECTS_GROUP: xr.Dataset({b.name: b})})

    def _add_random_effects(self, idata: az.InferenceData, seed: int, timing: dict, thin: int = 1) -> None:
        """Marginal backend: add the collapsed group's ``b_<g>`` draws (every ``thin``-th)."""
        t1 = time.perf_counter()
        g = collapsed.collapsed_group(self.design)
        post = idata.posterior.isel(draw=slice(None, None, thin))
        b = self._recover(post, seed).rename(names.effects(g.name))
        self._store_effects(idata, b, thin)
        timing["recover_s"] = time.perf_counter() - t1
        timing["recover_thin"] = thin

    def _add_glmm_effects(self, idata: az.InferenceData, seed: int, timing: dict, thin: int = 1) -> None:
        """Quadrature backend: draw the integrated factor's ``b_<g>`` per posterior draw (every
        ``thin``-th) from its exact conditional
        (:func:`hierbayes.likelihood.recover_glmm.draw_random_effects`), given that draw's
        sampled effects of the other factors in a hybrid model."""
        from hierbayes.backend import glmm
        from hierbayes.likelihood import quadrature, recover_glmm

        t1 = time.perf_counter()
        g = glmm.integrated_group(self.design)
        post = idata.posterior.isel(draw=slice(None, None, thin))
        corr = post[names.corr(g.name)].values if names.corr(g.name) in post else None
        sd = post[names.sd(g.name)].values
        nc, nd = sd.shape[:2]
        L = glmm.kernel_factors(g, sd.reshape(nc * nd, g.q),
                                None if corr is None else corr.reshape(nc * nd, g.q, g.q))
        L = L.reshape(nc, nd, g.q, g.q)
        order = glmm.term_order(g)
        beta = post["beta"].values if self.design.p else np.zeros((nc, nd, 0))
        fp = quadrature.family_param(self.design.spec.family)
        alpha = None if fp is None else post[fp].values
        model = self.build()
        mg = model.hb_marginal_glmm
        offset = glmm.sampled_offsets(self.design, post, model.hb_row_order)
        b, info = recover_glmm.draw_random_effects(mg, beta, L, alpha, np.random.default_rng([seed, 1]),
                                                   offset=offset)
        b = b[..., np.argsort(order)]  # back to the design's term order
        tdim = names.term_dim(g.name)
        self._store_effects(idata, xr.DataArray(
            b, dims=["chain", "draw", g.name, tdim], name=names.effects(g.name),
            coords={"chain": post.chain, "draw": post.draw, g.name: list(g.levels), tdim: list(g.terms)},
        ), thin)
        timing["recover_s"] = time.perf_counter() - t1
        timing["recover_thin"] = thin
        timing["recover_acceptance"] = info["acceptance"]

    def _recover(self, post: xr.Dataset, seed: int) -> xr.DataArray:
        """The collapsed group's ``b_<g>`` at the draws of ``post`` (a posterior dataset)."""
        g = collapsed.collapsed_group(self.design)
        nc, nd = post.sizes["chain"], post.sizes["draw"]

        def flat(name):
            return post[name].values.reshape((nc * nd,) + post[name].shape[2:])

        corr = flat(names.corr(g.name)) if names.corr(g.name) in post else None
        L_S = recover.covariance_cholesky(flat(names.sd(g.name)), corr)
        rng = np.random.default_rng([seed, 1])
        phi = flat("phi") if "phi" in post else None
        if self.design.correlation is not None and self.design.correlation.kind in ("unstructured", "arma"):
            from hierbayes.criticism.loglik import correlation_draws

            phi = correlation_draws(self.design, post)  # the structure's parameters
        draw = (
            recover.draw_random_effects_by_pattern
            if self.layout == "pooled"
            else recover.draw_random_effects
        )
        rs = None
        if "sigma" in self.design.dpars:  # a residual sd per row
            rs = self.design.dpars["sigma"].rows(flat(names.dpar_coef("sigma")))
            draw = functools.partial(recover.draw_random_effects, row_sigma=rs)
        if self.design.sd_by_occasion:  # an sd per occasion: per row
            rs = flat(names.SIGMA_OCC)[:, self.design.occasion_index]
            draw = functools.partial(recover.draw_random_effects, row_sigma=rs)
        sigma = flat("sigma") if rs is None else np.ones(nc * nd)
        others = [h for h in self.design.groups if h.name != g.name]
        if others:  # hybrid: condition on the latent factors' draws
            from hierbayes.predict.predictive import linear_predictor

            D = nc * nd
            bs = {
                h.name: post[names.effects(h.name)].transpose("chain", "draw", h.name, names.term_dim(h.name))
                .values.reshape(D, h.n_levels, h.q)
                for h in others
            }
            beta = flat("beta")
            b = np.empty((D, g.n_levels, g.q))
            chunk = recover.draw_chunk(self.design)
            for s in range(0, D, chunk):  # the offset (draws x rows) one chunk at a time
                sl = slice(s, min(s + chunk, D))
                offset = linear_predictor(self.design, np.zeros((sl.stop - sl.start, 0)),
                                          {k: v[sl] for k, v in bs.items()}, groups=others)
                b[sl] = recover.draw_random_effects(
                    self.design, beta[sl], sigma[sl], None if phi is None else phi[sl], L_S[sl],
                    rng, chunk=chunk, offset=offset, row_sigma=None if rs is None else rs[sl])
        else:
            b = draw(self.design, flat("beta"), sigma, phi, L_S, rng)
        tdim = names.term_dim(g.name)
        return xr.DataArray(
            b.reshape(nc, nd, g.n_levels, g.q),
            dims=["chain", "draw", g.name, tdim],
            coords={"chain": post.chain, "draw": post.draw, g.name: list(g.levels), tdim: list(g.terms)},
        )

    def __repr__(self) -> str:
        d = self.design
        lines = [
            f"hierbayes.Model: {self.spec.formula}",
            f"  family: {self.spec.family.name} ({self.spec.family.link} link); correlation: "
            f"{d.correlation.describe() if d.correlation else 'none'}",
            f"  backend: {self.backend}" + (f" ({self.layout} layout)" if self.layout else ""),
            *[f"  {k}: ~ {rhs} ({self.spec.family.dpar_links[k]} link, coefficients "
              f"{names.dpar_coef(k)})" for k, rhs in self.spec.dpars.items()],
            f"  {d.n} observations; groups: "
            + (", ".join(f"{g.name} ({g.n_levels} levels: {', '.join(g.terms)})" for g in d.groups) or "none"),
            "  priors:",
        ]
        lines += ["    " + line for line in tree(self.priors).split("\n")]
        return "\n".join(lines)

    def sample_prior_predictive(self, draws: int = 500, seed: int | None = None):
        """Draw data sets from the prior predictive distribution (no sampling, no compile).

        Parameters
        ----------
        draws : int
            Number of simulated data sets.
        seed : int, optional

        Returns
        -------
        PriorPredictive
            ``.prior`` (hyperparameter draws), ``.y`` (draws x rows, user order),
            ``.compare()`` (observed statistics against prior predictive quantiles) and
            ``.plot()``.

        Examples
        --------
        >>> pp = model.sample_prior_predictive(draws=200, seed=1)   # doctest: +SKIP
        >>> pp.compare()                                            # doctest: +SKIP
        """
        from hierbayes.predict.prior_predictive import sample_prior_predictive

        return sample_prior_predictive(self.design, self.priors, draws=draws, seed=seed)
