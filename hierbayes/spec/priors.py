"""Priors as plain data, the data-scaled defaults, and their tree print-out.

A :class:`Prior` names a PyMC distribution and its parameters; a parameter may itself be
a :class:`Prior` (a hyperprior). Nothing here imports PyMC: the backend turns priors into
random variables.

Default priors (weakly informative, scaled to the data as rstanarm/brms do), with
``s_y`` the standard deviation of the response and ``m_x``, ``s_x`` the mean and standard
deviation of a predictor column:

- ``Intercept``: Normal(mean(y), 2.5 s_y sqrt(1 + sum_j (m_xj / s_xj)^2)) -- the
  rstanarm intercept prior 2.5 s_y stated on centred predictors, carried to the raw scale.
- each other fixed effect ``x``: Normal(0, 2.5 s_y / s_x).
- ``sigma`` (residual sd): HalfStudentT(nu=3, sigma=2.5 s_y).
- ``sd_<group>`` (random-effect sds): HalfStudentT(nu=3, sigma=2.5 s_y / s_z) per term,
  s_z = 1 for an intercept.
- ``corr_<group>``: LKJ(eta=1), uniform over correlation matrices (brms' default).
- ``phi``: Uniform(-1, 1) for AR(1), Uniform(0, 1) for CAR(1).
- a parameter with a formula (``sigma="~ Sex"``: ``log sigma_i = x_i' beta_sigma``) has no
  scalar prior; its coefficients are keyed ``sigma_Intercept``, ``sigma_SexM`` (brms'
  ``Intercept_sigma``, ``b_sigma_SexM``; ``beta_sigma`` sets every non-intercept one):
  ``sigma_Intercept`` StudentT(nu=3, mu=log s_y, sigma=2.5) (the intercept on the log-sd
  scale, centred at the response's sd), each other coefficient Normal(0, 1 / s_x) (one
  log unit, a factor e, per sd of the predictor).

For families with a non-identity link (Bernoulli, binomial, Poisson, negative binomial)
the same rules hold on the link scale with ``s_y = 1`` and the intercept centred at 0
(rstanarm's GLM defaults). The family's own parameters take the family's defaults
(:mod:`hierbayes.spec.families`); ``sd_ar``, the sd of the latent AR(1) process of a
non-Gaussian model with a correlation, is HalfStudentT(3, 2.5 s_y).

Positive parameters (``sigma``, ``sd_<g>``, ``nu``, ``alpha``, ``sd_ar``) take priors on
(0, inf). A user prior on the whole line for one of them (Normal, StudentT, Cauchy,
Logistic, ...) is truncated at 0, as brms does: ``Normal(mu=0, sigma=1)`` becomes
``Normal(mu=0, sigma=1) truncated at 0`` (built as PyMC's ``HalfNormal(sigma=1)``; where
the distribution is not centred at 0, as ``pm.Truncated(lower=0)``), on every backend, in
the native kernel and in the log-prior of the sensitivity analysis
(:func:`positive_prior`, :func:`half_form`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hierbayes import names


@dataclass(frozen=True, eq=False)
class Prior:
    """A prior distribution: a PyMC distribution name and its parameters.

    Parameters
    ----------
    dist : str
        Name of a PyMC distribution, e.g. ``"Normal"``, ``"HalfStudentT"``, ``"LKJ"``.
    **params
        Its parameters; numbers, arrays, or nested :class:`Prior` objects (hyperpriors).

    Notes
    -----
    Parameter values are kept at full precision; only the print-outs (``str``, ``repr``,
    :meth:`tree`) round them, to 4 significant digits. Two priors are equal when their
    distribution, truncation and every parameter value are exactly equal (arrays by value,
    hyperpriors recursively; ``0`` equals ``0.0``): :meth:`key` is that identity.

    Examples
    --------
    >>> import hierbayes as hb
    >>> p = hb.Prior("Normal", mu=0, sigma=hb.Prior("HalfNormal", sigma=1))
    >>> print(p.tree())
    Normal(mu=0)
    └─ sigma ~ HalfNormal(sigma=1)
    >>> hb.Prior("Normal", mu=0, sigma=1.000001) == hb.Prior("Normal", mu=0, sigma=1)
    False
    """

    dist: str
    params: dict[str, Any] = field(default_factory=dict)
    #: lower bound the distribution is truncated at (None: not truncated); see :meth:`truncated`
    truncated_at: float | None = None

    def __init__(self, dist: str, **params: Any) -> None:
        object.__setattr__(self, "dist", str(dist))
        object.__setattr__(self, "params", dict(params))
        object.__setattr__(self, "truncated_at", None)

    def truncated(self, lower: float = 0.0) -> Prior:
        """This prior truncated below at ``lower`` (its density renormalised on
        ``[lower, inf)``, PyMC's ``pm.Truncated``).

        Examples
        --------
        >>> import hierbayes as hb
        >>> print(hb.Prior("Normal", mu=1, sigma=2).truncated(0))
        Normal(mu=1, sigma=2) truncated at 0
        """
        out = Prior(self.dist, **self.params)
        object.__setattr__(out, "truncated_at", float(lower))
        return out

    def with_params(self, **params: Any) -> Prior:
        """The same distribution (and truncation) with ``params`` replacing its parameters.

        Examples
        --------
        >>> import hierbayes as hb
        >>> hb.Prior("HalfNormal", sigma=1).with_params(sigma=2)
        Prior('HalfNormal', sigma=2)
        """
        out = Prior(self.dist, **params)
        object.__setattr__(out, "truncated_at", self.truncated_at)
        return out

    def key(self) -> tuple:
        """An exact, hashable identity of this prior: distribution, truncation and every
        parameter value at full precision (what equality, hashing and the compile cache's
        key use).

        Examples
        --------
        >>> import hierbayes as hb
        >>> hb.Prior("HalfNormal", sigma=[1, 2.5]).key()
        ('HalfNormal', None, (('sigma', ('num', (2,), (1.0, 2.5))),))
        """
        return (self.dist, self.truncated_at,
                tuple((k, _exact(v)) for k, v in sorted(self.params.items())))

    def __hash__(self) -> int:
        return hash(self.key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Prior) and self.key() == other.key()

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        cut = "" if self.truncated_at is None else f".truncated({self.truncated_at:g})"
        return f"Prior({self.dist!r}{', ' if args else ''}{args}){cut}"

    def __str__(self) -> str:
        flat = ", ".join(
            f"{k}={_fmt(v)}" for k, v in self.params.items() if not isinstance(v, Prior)
        )
        cut = "" if self.truncated_at is None else f" truncated at {self.truncated_at:g}"
        return f"{self.dist}({flat}){cut}"

    @property
    def hyperpriors(self) -> dict[str, Prior]:
        return {k: v for k, v in self.params.items() if isinstance(v, Prior)}

    def tree(self, indent: str = "") -> str:
        """This prior and its hyperpriors as an indented tree."""
        lines = [str(self)]
        hyper = list(self.hyperpriors.items())
        for i, (k, v) in enumerate(hyper):
            last = i == len(hyper) - 1
            branch, cont = ("└─ ", "   ") if last else ("├─ ", "│  ")
            sub = v.tree(indent + cont).split("\n")
            lines.append(f"{indent}{branch}{k} ~ {sub[0]}")
            lines.extend(sub[1:])
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """A JSON-friendly form (used when saving fits)."""
        out = {
            "dist": self.dist,
            "params": {
                k: v.to_dict() if isinstance(v, Prior) else np.asarray(v).tolist()
                for k, v in self.params.items()
            },
        }
        if self.truncated_at is not None:
            out["truncated_at"] = self.truncated_at
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Prior:
        params = {
            k: cls.from_dict(v) if isinstance(v, dict) and "dist" in v else v
            for k, v in d["params"].items()
        }
        out = cls(d["dist"], **params)
        return out if d.get("truncated_at") is None else out.truncated(d["truncated_at"])


def as_prior(prior: Any, key: str | None = None) -> Prior:
    """``prior`` as an :class:`Prior`: an ``hb.Prior`` as it is, a ``bambi.Prior`` converted
    (same PyMC distribution name and parameters; bambi is not imported).

    A bambi prior with a nested prior (a hierarchical prior, ``Normal(mu=0,
    sigma=Prior("HalfNormal", ...))``) is refused: in hierbayes a group's effects get their
    sd prior under ``sd_<g>`` (:meth:`hierbayes.Model.from_bambi` converts bambi's group
    terms). So is one with a custom ``dist`` callable.

    Raises
    ------
    TypeError
        For anything else, naming ``key`` and the type.
    ValueError
        For a hierarchical or custom-callable bambi prior.

    Examples
    --------
    >>> import hierbayes as hb
    >>> from hierbayes.spec.priors import as_prior
    >>> as_prior(hb.Prior("Normal", mu=0, sigma=1))
    Prior('Normal', mu=0, sigma=1)
    >>> import bambi as bmb                                      # doctest: +SKIP
    >>> as_prior(bmb.Prior("HalfNormal", sigma=2.5), "sigma")    # doctest: +SKIP
    Prior('HalfNormal', sigma=2.5)
    """
    where = f"prior for {key!r}" if key is not None else "prior"
    if isinstance(prior, Prior):
        return prior
    if _is_bambi_prior(prior):
        if getattr(prior, "dist", None) is not None:
            raise ValueError(
                f"the bambi {where} uses a custom dist callable ({prior.dist!r}); hierbayes "
                "takes a PyMC distribution name and its parameters: hb.Prior('Normal', mu=0, sigma=1).")
        nested = [k for k, v in prior.args.items() if _is_bambi_prior(v) or isinstance(v, Prior)]
        if nested:
            raise ValueError(
                f"the bambi {where} is hierarchical ({prior}: a prior on {', '.join(nested)}); "
                "hierbayes puts the sd of a group's effects under 'sd_<g>' "
                "(priors={'sd_g': hb.Prior('HalfNormal', sigma=1)}); hb.Model.from_bambi "
                "converts a bambi group term's prior so.")
        return Prior(str(prior.name), **{k: _plain(v) for k, v in prior.args.items()})
    raise TypeError(
        f"{where} must be an hb.Prior (or a bambi.Prior), e.g. hb.Prior('Normal', mu=0, "
        f"sigma=1); got {type(prior).__name__}."
    )


def _is_bambi_prior(obj: Any) -> bool:
    cls = type(obj)
    return (cls.__name__ == "Prior" and cls.__module__.split(".")[0] == "bambi"
            and hasattr(obj, "args") and hasattr(obj, "name"))


def _plain(v: Any) -> Any:
    """A bambi parameter value (0-d numpy arrays of pytensor's floatX) as a Python number
    or a float array."""
    arr = np.asarray(v)
    if arr.dtype.kind in "biuf":
        return arr.item() if arr.ndim == 0 else arr.astype(float)
    return v


def _exact(v: Any) -> tuple:
    """A parameter value as an exact, hashable tuple (numbers by value, at full precision)."""
    if isinstance(v, Prior):
        return ("prior", v.key())
    if isinstance(v, str):
        return ("str", v)
    try:
        arr = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        return ("other", repr(v))
    return ("num", arr.shape, tuple(arr.ravel().tolist()))


#: prior families with support (0, inf): what sd priors must be for the ridge coordinates
#: (:mod:`hierbayes.backend.reparam`) and the native kernel (:mod:`hierbayes.backend.native.bridge`)
POSITIVE = frozenset({"HalfFlat", "HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential",
                      "Gamma", "InverseGamma", "LogNormal", "Weibull"})

#: PyMC distributions whose support lies in [0, inf) whatever their parameters
NONNEGATIVE = POSITIVE | {"ChiSquared", "Pareto", "Wald", "Rice", "Beta", "Kumaraswamy",
                          "LogitNormal", "HalfFlat"}

#: PyMC distributions with support on the whole real line that PyMC can truncate (they have a
#: cdf): on a positive parameter they are truncated at 0, as brms does
REAL_LINE = frozenset({"Normal", "StudentT", "Cauchy", "Logistic", "Laplace", "Gumbel",
                       "ExGaussian", "Moyal", "SkewStudentT", "Flat"})

#: the half-distribution of a whole-line one centred at 0: (its name, the location parameter
#: and its default, the parameters it keeps)
HALF = {
    "Normal": ("HalfNormal", "mu", 0.0, ("sigma", "tau")),
    "StudentT": ("HalfStudentT", "mu", 0.0, ("nu", "sigma", "lam")),
    "Cauchy": ("HalfCauchy", "alpha", None, ("beta",)),
    "Flat": ("HalfFlat", None, None, ()),
}


def support_lower(prior: Prior) -> float | None:
    """The lower end of ``prior``'s support: 0 for a distribution on [0, inf) (or (0, 1)),
    ``-inf`` on the whole line, the ``lower`` of a Uniform or TruncatedNormal, the bound of a
    truncated prior; None when unknown (a distribution this module does not know).

    Examples
    --------
    >>> from hierbayes.spec.priors import Prior, support_lower
    >>> support_lower(Prior("Gamma", alpha=2, beta=1)), support_lower(Prior("Normal"))
    (0.0, -inf)
    >>> support_lower(Prior("Uniform", lower=-1, upper=1)), support_lower(Prior("SkewNormal"))
    (-1.0, None)
    """
    if prior.truncated_at is not None:
        return prior.truncated_at
    if prior.dist in NONNEGATIVE:
        return 0.0
    if prior.dist in REAL_LINE:
        return -np.inf
    if prior.dist in ("Uniform", "TruncatedNormal"):
        lo = prior.params.get("lower", 0.0 if prior.dist == "Uniform" else None)
        if lo is None:
            return -np.inf
        if isinstance(lo, Prior):
            return None
        return float(np.min(np.asarray(lo, dtype=float)))
    return None


def positive_support(prior: Prior) -> bool:
    """Whether ``prior`` puts no mass below 0 (a positive parameter may take it as it is).

    Examples
    --------
    >>> from hierbayes.spec.priors import Prior, positive_support
    >>> positive_support(Prior("HalfNormal", sigma=1)), positive_support(Prior("Normal"))
    (True, False)
    >>> positive_support(Prior("Normal", mu=1, sigma=1).truncated(0))
    True
    """
    lo = support_lower(prior)
    return lo is not None and lo >= 0


def half_line(prior: Prior) -> bool:
    """Whether ``prior``'s support is exactly (0, inf): a distribution of :data:`POSITIVE`
    or a whole-line one truncated at 0 (what the ridge coordinates and the native kernel
    need of sd priors).

    Examples
    --------
    >>> from hierbayes.spec.priors import Prior, half_line
    >>> half_line(Prior("Normal", mu=1, sigma=1).truncated(0)), half_line(Prior("Uniform"))
    (True, False)
    """
    return prior.dist in POSITIVE or (prior.truncated_at == 0.0 and prior.dist in REAL_LINE)


#: distributions on (0, 1): the priors a probability parameter (``zi``, ``hu``) may take
UNIT_INTERVAL = {"Beta", "Kumaraswamy", "LogitNormal"}


def check_pacf_prior(name: str, prior: Prior) -> None:
    """A partial autocorrelation's prior (hb.ARMA) lives on (-1, 1): a Uniform within it,
    refused otherwise at hb.Model() with the spelling that works.

    Examples
    --------
    >>> check_pacf_prior("arma_ar_pacf", Prior("Uniform", lower=-0.9, upper=0.9))
    >>> check_pacf_prior("arma_ar_pacf", Prior("Normal", mu=0, sigma=1))
    Traceback (most recent call last):
    ...
    ValueError: arma_ar_pacf (partial autocorrelations of hb.ARMA, in (-1, 1)) takes an hb.Prior('Uniform', lower=..., upper=...) within (-1, 1), got Prior('Normal', mu=0, sigma=1).
    """
    lo, hi = prior.params.get("lower"), prior.params.get("upper")
    ok = (prior.dist == "Uniform" and isinstance(lo, (int, float)) and isinstance(hi, (int, float))
          and -1.0 <= lo < hi <= 1.0)
    if not ok:
        raise ValueError(f"{name} (partial autocorrelations of hb.ARMA, in (-1, 1)) takes an "
                         f"hb.Prior('Uniform', lower=..., upper=...) within (-1, 1), got {prior!r}.")


def check_probability_prior(key: str, prior: Prior) -> None:
    """Refuse a prior for the probability ``key`` (``zi``, ``hu``) whose support is not
    within (0, 1): one of :data:`UNIT_INTERVAL`, or a Uniform inside [0, 1].

    Examples
    --------
    >>> from hierbayes.spec.priors import Prior, check_probability_prior
    >>> check_probability_prior("zi", Prior("Uniform", lower=0, upper=0.5))
    >>> check_probability_prior("zi", Prior("Normal", mu=0, sigma=1))
    Traceback (most recent call last):
    ...
    ValueError: the prior of 'zi' is Normal(mu=0, sigma=1), but zi is a probability: use a prior on (0, 1) (Beta, Kumaraswamy, LogitNormal, or a Uniform within [0, 1]), e.g. hb.Prior('Beta', alpha=1, beta=1); for a prior on the logit scale give zi a formula, zi='~ 1', and set 'zi_Intercept'.
    """
    if prior.dist in UNIT_INTERVAL and prior.truncated_at is None:
        return
    if (prior.dist == "Uniform" and prior.truncated_at is None and not prior.hyperpriors
            and 0.0 <= float(prior.params.get("lower", 0.0)) and float(prior.params.get("upper", 1.0)) <= 1.0):
        return
    raise ValueError(
        f"the prior of {key!r} is {prior}, but {key} is a probability: use a prior on (0, 1) "
        f"({', '.join(sorted(UNIT_INTERVAL))}, or a Uniform within [0, 1]), e.g. "
        f"hb.Prior('Beta', alpha=1, beta=1); for a prior on the logit scale give {key} a formula, "
        f"{key}='~ 1', and set '{key}_Intercept'."
    )


def positive_prior(key: str, prior: Prior) -> Prior:
    """The prior of the positive parameter ``key`` (``sigma``, ``sd_<g>``, ``nu``, ...): as
    given when its support is positive, truncated at 0 when it reaches below 0 (a Normal,
    Student-t, Cauchy, ... on the whole line, or a Uniform with a negative lower bound), as
    brms does.

    Raises
    ------
    ValueError
        For a distribution whose support is not known to be positive and that PyMC cannot
        truncate, naming ``key``, the distribution and what to use instead.

    Examples
    --------
    >>> from hierbayes.spec.priors import Prior, positive_prior
    >>> print(positive_prior("sd_id", Prior("Normal", mu=0, sigma=1)))
    Normal(mu=0, sigma=1) truncated at 0
    >>> print(positive_prior("sigma", Prior("Exponential", lam=1)))
    Exponential(lam=1)
    """
    if positive_support(prior):
        return prior
    if prior.dist in REAL_LINE or prior.dist == "Uniform":
        return prior.truncated(0.0)
    raise ValueError(
        f"the prior of {key!r} is {prior}, whose support is not (0, inf), and hierbayes cannot "
        f"truncate it at 0; {key} is positive: use a positive distribution (e.g. "
        f"{', '.join(sorted(POSITIVE - {'HalfFlat'}))}) or one on the whole line that is "
        f"truncated at 0 ({', '.join(sorted(REAL_LINE))})."
    )


def _all_zero(v: Any) -> bool:
    if isinstance(v, Prior):
        return False
    try:
        return bool(np.all(np.asarray(v, dtype=float) == 0.0))
    except (TypeError, ValueError):
        return False


def half_form(prior: Prior) -> Prior | None:
    """PyMC's half-distribution equal to ``prior`` when it is a whole-line distribution
    centred at 0 and truncated at 0 (``Normal(0, s)`` truncated at 0 is ``HalfNormal(s)``),
    else None; the backends and the native kernel build this form where it exists and
    ``pm.Truncated`` otherwise.

    Examples
    --------
    >>> from hierbayes.spec.priors import Prior, half_form
    >>> half_form(Prior("StudentT", nu=3, mu=0, sigma=2).truncated(0))
    Prior('HalfStudentT', nu=3, sigma=2)
    >>> half_form(Prior("Normal", mu=1, sigma=2).truncated(0)) is None
    True
    """
    if prior.truncated_at != 0.0 or prior.dist not in HALF:
        return None
    name, loc, default, keep = HALF[prior.dist]
    if loc is not None:
        centre = prior.params.get(loc, default)
        if centre is None or not _all_zero(centre):
            return None
    if set(prior.params) - set(keep) - ({loc} if loc else set()):
        return None
    return Prior(name, **{k: v for k, v in prior.params.items() if k in keep})


def lkj_eta(priors: dict[str, Prior], group: str) -> float:
    """The ``eta`` of the LKJ prior on the correlations of ``group`` (1 when none is set).

    Examples
    --------
    >>> from hierbayes.spec.priors import Prior, lkj_eta
    >>> lkj_eta({"corr_id": Prior("LKJ", eta=2.0)}, "id"), lkj_eta({}, "id")
    (2.0, 1.0)
    """
    return float(priors.get(names.corr(group), Prior("LKJ", eta=1.0)).params.get("eta", 1.0))


def _fmt(v: Any) -> str:
    if isinstance(v, Prior):
        return repr(v)
    arr = np.asarray(v)
    if arr.ndim == 0:
        x = arr.item()
        return f"{x:.4g}" if isinstance(x, float) else str(x)
    return "[" + ", ".join(f"{x:.4g}" for x in arr.ravel()) + "]"


def _canonical(x: np.ndarray) -> np.ndarray:
    """A column's values in sorted order: the defaults' sums then do not depend on the order
    of the rows (a shuffled copy of the data gives the same priors to the last bit, so the
    compile cache's exact key still matches)."""
    return np.sort(np.asarray(x, dtype=float))


def _sd(x: np.ndarray) -> float:
    s = float(np.std(_canonical(x)))
    return s if s > 0 else 1.0


def _owners(design) -> list[tuple[str, str, str | None]]:
    """Every prior key of a model with what it is and, where one can rename it, the data
    column it comes from: ``(key, what, column)``, in :func:`default_priors`' order (``beta``,
    the key for every non-intercept coefficient, first)."""
    fam = design.spec.family
    out = [("beta", "the key that sets every non-intercept coefficient", None)]
    out += [(n, f"the coefficient of the predictor {n!r}", n)
            for n in design.fixed_names if n != "Intercept"]
    dpars = getattr(design, "dpars", {}) or {}
    out += [(k, f"the {names.label(k)} of the {fam.name} family", None)
            for k in fam.extra_params if k not in dpars]
    for k, blk in dpars.items():
        out.append((names.dpar_coef(k), f"the key that sets every non-intercept {k} coefficient", None))
        out += [(names.dpar_prior_key(k, c), f"the {k}-formula coefficient of {c!r}", None)
                for c in blk.names]
    for g in design.groups:
        out.append((names.sd(g.name), f"the sds of the grouping factor {g.name!r}", g.name))
        if len(g.terms) > 1 and g.correlated:
            out.append((names.corr(g.name), f"the correlations of the grouping factor {g.name!r}",
                        g.name))
    if design.correlation is not None and design.correlation.kind == "unstructured":
        out.append((names.RESID_CORR, "the residual correlation matrix over occasions", None))
    elif design.correlation is not None and design.correlation.kind == "arma":
        c = design.correlation
        out += [(n, f"every {what} partial autocorrelation of the ARMA residuals (in (-1, 1))", None)
                for n, what, k in ((names.ARMA_AR_PACF, "AR", c.p), (names.ARMA_MA_PACF, "MA", c.q)) if k]
    elif design.correlation is not None:
        out.append((names.PHI, f"the {names.label(names.PHI)}", None))
        if not fam.collapsible:
            out.append((names.SD_AR, f"the {names.label(names.SD_AR)}", None))
    return out


def check_namespace(design) -> None:
    """Refuse a model in which a coefficient or a grouping factor would share its prior key
    with another parameter (a predictor named ``sigma``, ``phi``, ``nu``, ``alpha``, ``beta``
    or ``sd_<g>``; a grouping factor ``ar`` beside a latent AR process's ``sd_ar``).

    One key, one parameter: otherwise ``priors={"sigma": ...}`` would set both, and the
    coefficient ``sigma`` would silently get the residual sd's positive-only prior.

    Raises
    ------
    ValueError
        Naming the key, both parameters and the column to rename.

    Examples
    --------
    >>> import hierbayes as hb
    >>> data = hb.datasets.load("clark_ar1").rename(columns={"time": "sigma"})
    >>> hb.Model("y ~ sigma + (1 | id)", data)
    Traceback (most recent call last):
    ...
    ValueError: the prior key 'sigma' would name both the coefficient of the predictor 'sigma' and the sigma (residual sd) of the gaussian family. Rename the column 'sigma', e.g. data.rename(columns={'sigma': 'sigma_x'}).
    """
    seen: dict[str, tuple[str, str | None]] = {}
    for key, what, column in _owners(design):
        if key not in seen:
            seen[key] = (what, column)
            continue
        first, first_column = seen[key]
        column = first_column or column
        fix = (f" Rename the column {column!r}, e.g. data.rename(columns={{{column!r}: "
               f"{column + '_x'!r}}})." if column else "")
        raise ValueError(f"the prior key {key!r} would name both {first} and {what}.{fix}")


def default_priors(design) -> dict[str, Prior]:
    """The data-scaled default priors of a :class:`~hierbayes.design.build.Design`.

    Returns an ordered mapping from parameter name to :class:`Prior`; see the module
    docstring for the rule. The values are kept at full precision (the print-outs round).
    A coefficient or grouping factor whose key is another parameter's is refused
    (:func:`check_namespace`).

    Examples
    --------
    >>> import hierbayes as hb
    >>> m = hb.Model("y ~ time + (1 | id)", hb.datasets.load("clark_ar1"))
    >>> sorted(m.priors)
    ['Intercept', 'sd_id', 'sigma', 'time']
    """
    check_namespace(design)
    y = design.y
    centre, s_y = design.spec.family.response_scale(_canonical(y))
    out: dict[str, Prior] = {}
    coef_names = list(design.fixed_names)
    X = design.X
    if "Intercept" in coef_names:
        others = [j for j, n in enumerate(coef_names) if n != "Intercept"]
        ratio = sum((_canonical(X[:, j]).mean() / _sd(X[:, j])) ** 2 for j in others)
        out["Intercept"] = Prior(
            "Normal", mu=float(centre), sigma=float(2.5 * s_y * np.sqrt(1 + ratio))
        )
    for j, n in enumerate(coef_names):
        if n != "Intercept":
            out[n] = Prior("Normal", mu=0.0, sigma=float(2.5 * s_y / _sd(X[:, j])))
    dpars = getattr(design, "dpars", {}) or {}
    out.update({k: v for k, v in design.spec.family.default_priors(s_y).items() if k not in dpars})
    for k, blk in dpars.items():
        for j, c in enumerate(blk.names):
            out[names.dpar_prior_key(k, c)] = (
                # sigma's intercept centred at log sd(y); another parameter's (zi, hu) at 0
                Prior("StudentT", nu=3, mu=float(np.log(s_y)) if k == "sigma" else 0.0, sigma=2.5)
                if c == "Intercept"
                else Prior("Normal", mu=0.0, sigma=float(1.0 / _sd(blk.X[:, j])))
            )
    for g in design.groups:
        scales = [
            float(2.5 * s_y / (1.0 if t == "Intercept" else _sd(g.Z[:, k])))
            for k, t in enumerate(g.terms)
        ]
        out[names.sd(g.name)] = Prior(
            "HalfStudentT", nu=3, sigma=scales[0] if len(scales) == 1 else scales
        )
        if len(g.terms) > 1 and g.correlated:
            out[names.corr(g.name)] = Prior("LKJ", eta=1.0)
    corr = design.correlation
    if corr is not None and corr.kind == "unstructured":
        out[names.RESID_CORR] = Prior("LKJ", eta=2.0)
    elif corr is not None and corr.kind == "arma":  # stationary / invertible: pacfs in (-1, 1)
        out.update({n: Prior("Uniform", lower=-1.0, upper=1.0)
                    for n, k in ((names.ARMA_AR_PACF, corr.p), (names.ARMA_MA_PACF, corr.q)) if k})
    elif corr is not None:
        lo, hi = design.phi_bounds
        out["phi"] = Prior("Uniform", lower=lo, upper=hi)
        if not design.spec.family.collapsible:
            out["sd_ar"] = Prior("HalfStudentT", nu=3, sigma=float(2.5 * s_y))
    return out


def resolve_priors(design, overrides: dict[str, Prior] | None) -> dict[str, Prior]:
    """Merge user priors into the defaults, by parameter name.

    ``"beta"`` sets every fixed effect except the intercept; a ``bambi.Prior`` is converted
    (:func:`as_prior`). Unknown names raise an error
    listing the valid ones. A prior on the whole line for a positive parameter (``sigma``,
    ``sd_<g>``, ``nu``, ``alpha``, ``sd_ar``) is truncated at 0 (:func:`positive_prior`).
    """
    priors = default_priors(design)
    for key, prior in (overrides or {}).items():
        prior = as_prior(prior, key)
        dpar = next((k for k in getattr(design, "dpars", {}) or {} if key == names.dpar_coef(k)), None)
        if key == "beta":
            for n in design.fixed_names:
                if n != "Intercept":
                    priors[n] = prior
        elif dpar is not None:
            for c in design.dpars[dpar].names:
                if c != "Intercept":
                    priors[names.dpar_prior_key(dpar, c)] = prior
        elif key in priors:
            priors[key] = prior
        else:
            raise KeyError(
                f"no parameter named {key!r} to put a prior on; parameters are "
                f"{sorted(priors) + ['beta'] + [names.dpar_coef(k) for k in getattr(design, 'dpars', {}) or {}]}."
            )
    coefs = set(design.fixed_names)
    for key in priors:
        if key not in coefs and names.is_positive(key):
            priors[key] = positive_prior(key, priors[key])
        if key not in coefs and key in names.PROBABILITIES:
            check_probability_prior(key, priors[key])
        if key not in coefs and key in (names.ARMA_AR_PACF, names.ARMA_MA_PACF):
            check_pacf_prior(key, priors[key])
    return priors


def tree(priors: dict[str, Prior]) -> str:
    """All priors of a model as a printable tree, one parameter per branch."""
    width = max(len(k) for k in priors)
    lines = []
    for k, p in priors.items():
        sub = p.tree(" " * (width + 3)).split("\n")
        lines.append(f"{k:<{width}} ~ {sub[0]}")
        lines.extend(sub[1:])
    return "\n".join(lines)


def lkj_log_normaliser(eta: float, n: int) -> float:
    """The log normaliser ``log Z(eta, n) = log int det(C)^(eta - 1) dC`` of the LKJ(eta)
    density of an n x n correlation matrix: ``log p(C) = (eta - 1) log det C - log Z``.

    Computed as PyMC's ``_lkj_normalizing_constant`` (pymc 5.28) computes it, equal to
    Lewandowski, Kurowicka & Joe (2009, section 3.2) (tested). PyMC 5.28's ``LKJCorr`` and
    ``LKJCholeskyCov`` *add* it to the log density (``logp(LKJCorr(n=2, eta=1), r=0)`` is
    ``+log 2``, not ``-log 2``): a constant, harmless to sampling, that the native kernel
    reproduces so that its density equals the PyMC model's to the last bit; the log-prior
    of a fit (:func:`hierbayes.criticism.logprior.lkj_logpdf`) subtracts it, as the density
    requires.

    Examples
    --------
    >>> round(lkj_log_normaliser(1.0, 2), 6)      # LKJ(1), 2 x 2: r ~ Uniform(-1, 1), Z = 2
    0.693147
    """
    from scipy.special import gammaln

    if n < 2:
        return 0.0
    if eta == 1:
        out = float(gammaln(2.0 * np.arange(1, int((n - 1) / 2) + 1)).sum())
        if n % 2 == 1:
            out += (0.25 * (n**2 - 1) * np.log(np.pi) - 0.25 * (n - 1) ** 2 * np.log(2.0)
                    - (n - 1) * gammaln(int((n + 1) / 2)))
        else:
            out += (0.25 * n * (n - 2) * np.log(np.pi) + 0.25 * (3 * n**2 - 4 * n) * np.log(2.0)
                    + n * gammaln(n / 2) - (n - 1) * gammaln(n))
        return float(out)
    k = np.arange(1, n)
    return float(-(n - 1) * gammaln(eta + 0.5 * (n - 1))
                 + (0.5 * k * np.log(np.pi) + gammaln(eta + 0.5 * (n - 1 - k))).sum())
