"""The names of a model's parameters, dims and summary labels: built here and nowhere else.

A fit's posterior holds ``beta[coef]``, the family's scalars (``sigma``, ``nu``, ``alpha``,
``zi``, ``hu``) or, for one with a formula, its coefficients ``beta_<name>[coef_<name>]``,
the residual correlation's ``phi`` (or ``sd_ar`` with ``phi`` for a latent AR process), an
ordinal family's ``cutpoints[cutpoint]`` (summary rows ``cutpoint[1|2]``) and, for
each grouping factor ``g``, ``sd_g[g__term]``, ``corr_g[g__term, g__term_bis]`` (correlated
terms) and the random effects ``b_g[g, g__term]``; the latent backend samples ``z_g`` (the
non-centred effects). Saved files and user code rely on these names: change them here only.

Examples
--------
>>> from hierbayes import names
>>> names.sd("id"), names.corr("id"), names.effects("id"), names.term_dim("id")
('sd_id', 'corr_id', 'b_id', 'id__term')
>>> names.is_hyperparameter("sd_id"), names.is_hyperparameter("b_id")
(True, False)
>>> names.label("phi")
'phi (AR(1) correlation)'
>>> names.label("phi", "car1")
'phi (correlation at unit time distance, CAR(1))'
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the InferenceData group of random-effect draws recovered at thinned draws
#: (``Model.fit(recover_thin=k)``, k > 1); with every draw they are in the posterior
EFFECTS_GROUP = "random_effects"
#: the fixed-effect coefficients and their dim
FIXED = "beta"
COEF_DIM = "coef"
#: the residual sd, the AR(1) coefficient and the latent AR process's sd
SIGMA = "sigma"
PHI = "phi"
SD_AR = "sd_ar"
#: the K x K residual correlation matrix of hb.Unstructured (dims occasion x occasion_bis)
RESID_CORR = "corr_resid"
OCCASION_DIM = "occasion"
#: the residual sd of each occasion of hb.Unstructured(sd_by_occasion=True) (dims occasion)
SIGMA_OCC = "sigma_occasion"
#: hb.ARMA(p, q): the sampled partial autocorrelations (dims ar_lag / ma_lag, 1..p / 1..q)
#: and the implied coefficients (deterministics, the same dims)
ARMA_AR_PACF = "arma_ar_pacf"
ARMA_MA_PACF = "arma_ma_pacf"
AR_COEF = "ar"
MA_COEF = "ma"
AR_LAG_DIM = "ar_lag"
MA_LAG_DIM = "ma_lag"
ARMA_VARS = (ARMA_AR_PACF, ARMA_MA_PACF, AR_COEF, MA_COEF)
#: the scalar model parameters that are not per group (family parameters and AR)
SCALARS = ("sigma", "nu", "alpha", "shape", "zi", "hu", "phi", "sd_ar")
#: the cut-points of an ordinal (cumulative) family and their dim, labelled ``"1|2"``
CUTPOINTS = "cutpoints"
CUTPOINT_DIM = "cutpoint"
#: the scalar parameters that are positive (with every ``sd_<g>``): their priors live on (0, inf)
POSITIVE_SCALARS = ("sigma", "nu", "alpha", "shape", "sd_ar", "sigma_occasion")
#: the scalar parameters that are probabilities: their priors live on (0, 1)
PROBABILITIES = ("zi", "hu")

_SD, _CORR, _EFFECTS, _OFFSETS, _CHOL = "sd_", "corr_", "b_", "z_", "chol_"

#: Row labels of the scalar parameters in the summary, the sensitivity table and plots.
SCALAR_LABELS = {
    "sigma": "sigma (residual sd)",
    "nu": "nu (degrees of freedom)",
    "alpha": "alpha (negative binomial shape)",
    "zi": "zi (zero-inflation probability)",
    "hu": "hu (hurdle probability)",
    "shape": "shape (Gamma shape)",
    "phi": "phi (AR(1) correlation)",
    "sd_ar": "sd of the latent AR process",
}

#: ``phi`` by the residual correlation's kind (``AR1.kind``, ``CAR1.kind``): in AR(1) the
#: correlation of consecutive occasions (lag 1), in CAR(1) the correlation of two residuals
#: one time unit apart (``corr = phi ** |t - s|`` for real-valued times)
PHI_LABELS = {
    "ar1": "phi (AR(1) correlation)",
    "car1": "phi (correlation at unit time distance, CAR(1))",
    "compsymm": "rho (compound symmetry correlation)",
}


def sd(group: str) -> str:
    """The random-effect sds of ``group`` (dims ``term_dim(group)``)."""
    return _SD + group


def corr(group: str) -> str:
    """The random-effect correlation matrix of ``group`` (LKJ; correlated terms only)."""
    return _CORR + group


def effects(group: str) -> str:
    """The random effects of ``group`` (dims ``(group, term_dim(group))``)."""
    return _EFFECTS + group


def offsets(group: str) -> str:
    """The standard-normal (non-centred) effects the latent backend samples for ``group``."""
    return _OFFSETS + group


def chol(group: str) -> str:
    """PyMC's LKJ-Cholesky covariance variable of ``group``."""
    return _CHOL + group


def chol_rest(group: str) -> str:
    """The free coordinates of ``group``'s covariance below its ridge coordinates."""
    return _CHOL + group + "_rest"


def value_var(name: str, transform: str) -> str:
    """PyMC's name for the unconstrained value of ``name`` under ``transform``
    (``value_var("sd_id", "log") == "sd_id_log__"``)."""
    return f"{name}_{transform}__"


def dpar_coef(dpar: str) -> str:
    """The coefficients of a distributional parameter's formula (``beta_sigma``, dims
    :func:`dpar_dim`): ``log sigma_i = x_i' beta_sigma``."""
    return f"{FIXED}_{dpar}"


def dpar_dim(dpar: str) -> str:
    """The dim of :func:`dpar_coef`'s coefficients (``coef_sigma``)."""
    return f"{COEF_DIM}_{dpar}"


def dpar_prior_key(dpar: str, coef: str) -> str:
    """The prior key (and summary label) of one coefficient of a parameter's formula:
    ``sigma_Intercept``, ``sigma_SexM`` (brms' ``b_sigma_SexM``, without the ``b_``);
    ``beta_sigma`` sets every non-intercept one, as ``beta`` does for the mean."""
    return f"{dpar}_{coef}"


def is_dpar_coef(name: str) -> bool:
    """Whether ``name`` is a distributional parameter's coefficient vector (``beta_sigma``)."""
    return any(name == dpar_coef(k) for k in DPARS)


#: the family parameters that can take a formula somewhere (``Family.dpar_links``); a
#: family adding one adds it here
DPARS = ("sigma", "zi", "hu")


def cutpoint_labels(levels) -> list[str]:
    """The labels of the cut-points between consecutive ordered ``levels`` (the coords of
    :data:`CUTPOINT_DIM`): ``"low|mid"``.

    Examples
    --------
    >>> cutpoint_labels(["1", "2", "3"])
    ['1|2', '2|3']
    """
    levels = [str(v) for v in levels]
    return [f"{a}|{b}" for a, b in zip(levels[:-1], levels[1:])]


def cutpoint_label(label: str) -> str:
    """Summary label of one cut-point of an ordinal family: ``cutpoint[1|2]`` (brms'
    ``Intercept[1]``)."""
    return f"{CUTPOINTS[:-1]}[{label}]"


def term_dim(group: str) -> str:
    """The dim of ``group``'s random-effect terms (``Intercept``, slopes)."""
    return group + "__term"


def bis(dim: str) -> str:
    """The second dim of a square matrix over ``dim`` (PyMC/ArviZ convention)."""
    return dim + "_bis"


def sd_label(term: str, group: str) -> str:
    """Summary label of one random-effect sd: ``sd(time | id)``."""
    return f"sd({term} | {group})"


def corr_label(a: str, b: str, group: str) -> str:
    """Summary label of one random-effect correlation: ``corr(Intercept, time | id)``."""
    return f"corr({a}, {b} | {group})"


def label(name: str, correlation_kind: str | None = None) -> str:
    """Summary label of a scalar parameter (its name where it has no longer label).

    ``correlation_kind`` (the design's ``correlation.kind``: ``"ar1"`` or ``"car1"``)
    chooses what ``phi`` is called (:data:`PHI_LABELS`); other names ignore it.
    """
    if name == PHI and correlation_kind in PHI_LABELS:
        return PHI_LABELS[correlation_kind]
    return SCALAR_LABELS.get(name, name)


#: the sections of the summary table, in the order :func:`hyperparameters` lists them
SECTIONS = ("fixed", "random", "residual", "correlation")


@dataclass(frozen=True)
class Hyperparameter:
    """One scalar hyperparameter: its summary label and where it lies in the posterior.

    Attributes
    ----------
    label : str
        Row label in the summary, the sensitivity table and SBC (``sd(time | id)``).
    var : str
        The posterior variable holding it (``sd_id``).
    index : dict of str to str
        Coordinate label per dim of ``var`` (``{"id__term": "time"}``; both term dims of a
        correlation); empty for a scalar variable.
    section : str
        The summary section: one of :data:`SECTIONS`.
    """

    label: str
    var: str
    index: dict = field(default_factory=dict)
    section: str = "fixed"

    def draws(self, posterior):
        """This scalar's draws: ``posterior[var]`` at ``index``, with no coordinates left
        but ``chain`` and ``draw`` (``posterior``: an xarray Dataset or a mapping of
        DataArrays with labelled coordinates)."""
        da = posterior[self.var]
        if self.index:
            da = da.sel(self.index)
        return da.drop_vars([c for c in da.coords if c not in ("chain", "draw")])


def hyperparameters(design) -> list[Hyperparameter]:
    """Every hyperparameter a model may have, in the summary's order: the fixed effects;
    per grouping factor its sds, then the strict lower triangle of its correlation
    (``q > 1``); the family's parameters; ``phi``; ``sd_ar``.

    Parameters
    ----------
    design : Design
        Read duck-typed: ``design.fixed_names``, ``design.groups`` (each with ``.name``,
        ``.terms``, ``.q``), ``design.spec.family.extra_params`` and, when present,
        ``design.correlation.kind`` (the label of ``phi``, :func:`label`).

    Returns
    -------
    list of Hyperparameter
        Including ``phi`` and ``sd_ar`` whether or not the model has them: callers keep the
        entries whose ``var`` is in their posterior.

    Examples
    --------
    >>> from types import SimpleNamespace as NS
    >>> design = NS(fixed_names=["Intercept"],
    ...             groups=[NS(name="id", terms=["Intercept", "time"], q=2)],
    ...             spec=NS(family=NS(extra_params=("sigma",))))
    >>> [h.label for h in hyperparameters(design)]  # doctest: +NORMALIZE_WHITESPACE
    ['Intercept', 'sd(Intercept | id)', 'sd(time | id)', 'corr(Intercept, time | id)',
     'sigma (residual sd)', 'phi (AR(1) correlation)', 'sd of the latent AR process']
    >>> hyperparameters(design)[3].index
    {'id__term': 'time', 'id__term_bis': 'Intercept'}
    """
    levels = tuple(getattr(design, "response_levels", ()) or ())
    out = []
    if levels:  # an ordinal family's cut-points, in the intercept's place
        out += [Hyperparameter(cutpoint_label(c), CUTPOINTS, {CUTPOINT_DIM: c}, "fixed")
                for c in cutpoint_labels(levels)]
    out += [Hyperparameter(n, FIXED, {COEF_DIM: n}, "fixed") for n in design.fixed_names]
    for g in design.groups:
        out += _group_hyperparameters(g.name, list(g.terms), g.q)
    dpars = getattr(design, "dpars", {}) or {}
    for n in design.spec.family.extra_params:
        if n == CUTPOINTS:
            continue
        if n in dpars:  # a formula: its coefficients instead of one scalar
            out += [Hyperparameter(dpar_prior_key(n, c), dpar_coef(n), {dpar_dim(n): c}, "residual")
                    for c in dpars[n].names]
        else:
            out.append(Hyperparameter(label(n), n, {}, "residual"))
    kind = getattr(getattr(design, "correlation", None), "kind", None)
    out += [Hyperparameter(label(n, kind), n, {}, "correlation") for n in (PHI, SD_AR)]
    if kind == "arma":  # hb.ARMA: the coefficients ar[k], ma[k]
        corr = design.correlation
        out += [Hyperparameter(f"{v}[{k}] (ARMA coefficient)", v, {dim: k}, "correlation")
                for v, dim, n in ((AR_COEF, AR_LAG_DIM, corr.p), (MA_COEF, MA_LAG_DIM, corr.q))
                for k in range(1, n + 1)]
    occ = list(getattr(design, "occasions", ()) or ())
    out += [Hyperparameter(f"sigma at {o} (residual sd)", SIGMA_OCC, {OCCASION_DIM: o}, "residual")
            for o in occ]
    for i in range(len(occ)):  # hb.Unstructured: the strict lower triangle, row-wise
        for j in range(i):
            out.append(Hyperparameter(resid_corr_label(occ[j], occ[i]), RESID_CORR,
                                      {OCCASION_DIM: occ[i], bis(OCCASION_DIM): occ[j]},
                                      "correlation"))
    return out


def resid_corr_label(a: str, b: str) -> str:
    """Summary label of the unstructured residual correlation between occasions ``a``, ``b``.

    Examples
    --------
    >>> resid_corr_label("0", "2")
    'corr(resid at 0, 2)'
    """
    return f"corr(resid at {a}, {b})"


def _group_hyperparameters(group: str, terms: list[str], q: int) -> list[Hyperparameter]:
    """The sds of ``group``'s terms, then the correlations below the diagonal (row-wise)."""
    tdim = term_dim(group)
    out = [Hyperparameter(sd_label(t, group), sd(group), {tdim: t}, "random") for t in terms]
    for i in range(q if q > 1 else 0):
        for j in range(i):
            index = {tdim: terms[i], bis(tdim): terms[j]}
            name = corr_label(terms[j], terms[i], group)
            out.append(Hyperparameter(name, corr(group), index, "random"))
    return out


def is_group_sd(name: str) -> bool:
    return name.startswith(_SD)


def is_positive(name: str) -> bool:
    """Whether the model parameter ``name`` is positive (sds, ``sigma``, ``nu``, ``alpha``):
    its prior is truncated at 0 where it reaches below (:func:`hierbayes.spec.priors.positive_prior`).

    Examples
    --------
    >>> from hierbayes import names
    >>> names.is_positive("sd_id"), names.is_positive("nu"), names.is_positive("phi")
    (True, True, False)
    """
    return name in POSITIVE_SCALARS or is_group_sd(name)


def is_group_corr(name: str) -> bool:
    return name.startswith(_CORR)


def is_effects(name: str) -> bool:
    return name.startswith(_EFFECTS)


def is_hyperparameter(name: str) -> bool:
    """Whether ``name`` is a hyperparameter: what the summary, the diagnostics, the
    sensitivity table and SBC report (``beta``, the scalars, ``sd_*``, ``corr_*``), as
    opposed to random effects and sampler internals."""
    if name.endswith("__"):
        return False
    return (name == FIXED or name in SCALARS or name == CUTPOINTS or is_group_sd(name)
            or is_group_corr(name) or is_dpar_coef(name) or name == SIGMA_OCC
            or name in ARMA_VARS)


def is_reported(name: str) -> bool:
    """Whether a sampled variable belongs in a fit's posterior: the hyperparameters, the
    random effects and the parameters of hierarchical priors on the scalars
    (``sigma_sigma``), not the per-coefficient ``beta_<name>``, PyMC's transformed values
    or the latent backend's ``z_*``."""
    if is_dpar_coef(name):
        return True
    if name.endswith("__") or name.startswith(FIXED + "_"):
        return False
    return (
        is_hyperparameter(name)
        or is_effects(name)
        or name.startswith(tuple(s + "_" for s in SCALARS))
    )
