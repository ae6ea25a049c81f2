"""ModelSpec: the parsed model (formula terms, family, residual correlation, priors).

The formula is read by `formulae` (bambi's engine); this module only splits it into its
fixed part and its group terms so that the design stage can evaluate each at scale
(group factors are indexed, never expanded into dense indicator matrices).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import formulae
from formulae.categorical import ENCODINGS

from hierbayes.spec import families
from hierbayes.spec.correlation import CLASSES as CORRELATIONS, Correlation
from hierbayes.spec.priors import Prior, as_prior
from hierbayes.spec.syntax import check_syntax


@dataclass(frozen=True)
class GroupTerm:
    """One ``(expr | factor)`` term: ``expr`` is a formulae right-hand side."""

    expr: str
    factor: str
    correlated: bool = True

    @property
    def factor_columns(self) -> tuple[str, ...]:
        return tuple(f.strip() for f in self.factor.split(":"))

    @property
    def name(self) -> str:
        """The name the group is known by in outputs (``id``, ``school:class``)."""
        return ":".join(self.factor_columns)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model: response, fixed-effects formula, group terms, family, correlation.

    Build it with :func:`parse`; it holds names and settings only, no data.
    """

    formula: str
    response: str
    fixed: str
    group_terms: tuple[GroupTerm, ...]
    family: families.Family
    correlation: Correlation | None = None
    priors: dict[str, Prior] = field(default_factory=dict)
    trials: str | None = None
    #: censoring: the indicator column (brms' ``y | cens(c)``: "left"/"none"/"right"/"interval"
    #: or -1/0/1/2) and, for interval censoring, the upper bound's column (``cens(c, y2)``)
    censored: str | None = None
    censored_upper: str | None = None
    #: formulas of distributional parameters, by parameter name (``{"sigma": "1 + Sex"}``:
    #: the right-hand side, on the family's link scale, :attr:`Family.dpar_links`)
    dpars: dict[str, str] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Every data column the model uses (formula variables and correlation columns)."""
        rhs = self.formula.split("~", 1)[1].replace("||", "|")
        names = set(formulae.model_description(f"{self.response} ~ {rhs}").var_names) - {""}
        names -= set(ENCODINGS)  # C(x, Sum): formulae lists the bare contrast name as a variable
        names |= {c for c in (self.trials, self.censored, self.censored_upper) if c is not None}
        for rhs_d in self.dpars.values():
            # rows with missing values in a parameter formula's columns drop with the rest
            names |= set(formulae.model_description(f"{self.response} ~ {rhs_d}").var_names) - {""}
        names -= set(ENCODINGS)
        if self.correlation is not None:
            names |= {self.correlation.time, self.correlation.group} - {None}
        return sorted(names)


def _split_top_level(rhs: str) -> list[tuple[str, str]]:
    """Split a right-hand side at top-level ``+`` and ``-``: ``[(sign, term), ...]``."""
    parts, depth, cur, sign = [], 0, "", "+"
    for ch in rhs:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch in "+-" and depth == 0:
            if cur.strip():
                parts.append((sign, cur.strip()))
            cur, sign = "", ch
        else:
            cur += ch
    if cur.strip():
        parts.append((sign, cur.strip()))
    return parts


def _join(parts: list[str]) -> str:
    if not parts:
        return "1"
    out = parts[0] if not parts[0].startswith("-") else "1 " + parts[0].replace("-", "- ", 1)
    for p in parts[1:]:
        out += f" - {p[1:]}" if p.startswith("-") else f" + {p}"
    return out


def _group_term(part: str) -> list[GroupTerm] | None:
    """``(1 + x | g)`` -> GroupTerm; ``(1 | a/b)`` -> terms for ``a`` and ``a:b``."""
    if not (part.startswith("(") and part.endswith(")")):
        return None
    inner = part[1:-1]
    depth = 0
    for i, ch in enumerate(inner):
        depth += ch == "("
        depth -= ch == ")"
        if ch == "|" and depth == 0:
            expr, factor = inner[:i].strip(), inner[i + 1 :].strip()
            correlated = not factor.startswith("|")
            factor = factor.lstrip("|").strip()
            if not expr or not factor:
                raise ValueError(f"group term {part!r} needs the form (expr | factor).")
            nest = [f.strip() for f in factor.split("/")]
            return [GroupTerm(expr, ":".join(nest[: k + 1]), correlated) for k in range(len(nest))]
    return None


def parse(
    formula: str,
    family: str | families.Gaussian = "gaussian",
    correlation: Correlation | None = None,
    priors: dict[str, Prior] | None = None,
    *,
    sigma: str | None = None,
    zi: str | None = None,
    hu: str | None = None,
    censored: str | tuple[str, str] | None = None,
) -> ModelSpec:
    """Parse a mixed-model formula into a :class:`ModelSpec`.

    Parameters
    ----------
    formula : str
        ``"y ~ x + (1 + x | g)"``; fixed part in formulae syntax (categoricals,
        interactions, ``np.log(x)``, ``0 +`` to drop the intercept), group terms as in lme4.
    family : str or family object
        ``"gaussian"``, ``"student"``, ``"bernoulli"``, ``"binomial"``, ``"poisson"``,
        ``"negbinomial"``, ``"gamma"``, ``"lognormal"``, the zero-inflated and hurdle count
        families (:mod:`hierbayes.spec.families.zeroinflated`), ``"cumulative"``, or an object from
        :mod:`hierbayes.spec.families` (e.g.
        ``Bernoulli(link="probit")``). The binomial family takes its trials from the
        left-hand side: ``"k | trials(n) ~ x + (1 | g)"``.
    censored : str or (str, str), optional
        The censoring indicator column (``"c"``), with the interval's upper-bound column
        (``("c", "y2")``): the same as ``"y | cens(c) ~ ..."`` (``cens(c, y2)``) on the left of
        ``~`` (brms). Values ``"left"``/``"none"``/``"right"``/``"interval"`` or -1/0/1/2:
        ``y`` is an upper bound, exact, a lower bound, or the interval's lower end.
        Gaussian, Student-t and lognormal families (:mod:`hierbayes.design.censoring`).
    correlation : AR1, CAR1, CompSymm, Unstructured or None
    priors : dict of str to Prior, optional
    sigma : str, optional
        A formula for the family's ``sigma`` on its link scale (log for the Gaussian and
        Student-t families): ``"~ Sex"`` is ``log sigma_i = x_i' beta_sigma``. Fixed
        effects only (formulae syntax, an intercept unless ``0 +``); see
        :func:`parse_dpars`.
    zi, hu : str, optional
        A formula for the zero-inflation probability ``zi`` (``zero_inflated_poisson``,
        ``zero_inflated_negbinomial``) or the hurdle probability ``hu`` (``hurdle_poisson``,
        ``hurdle_negbinomial``) on the logit scale: ``zi="~ x"`` is
        ``logit zi_i = x_i' beta_zi`` (brms' ``zi ~ x``, glmmTMB's ``ziformula = ~ x``).

    Examples
    --------
    >>> from hierbayes.spec.formula import parse
    >>> s = parse("y ~ time + treatment + (1 + time | id)")
    >>> s.fixed, s.group_terms
    ('time + treatment', (GroupTerm(expr='1 + time', factor='id', correlated=True),))
    >>> parse("y ~ time + (1 | id)", sigma="~ treatment").dpars
    {'sigma': 'treatment'}
    >>> parse("y ~ time + (1 | id)", family="zip", zi="~ treatment").dpars
    {'zi': 'treatment'}
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(
            f"formula {formula!r} needs a response and a right-hand side, e.g. "
            "'y ~ time + (1 + time | id)'."
        )
    lhs, rhs = formula.split("~", 1)
    response, trials, cens = _response(lhs.strip(), formula)
    fam = families.get(family)
    cens = _censoring(fam, cens, censored, formula)
    fixed, groups = [], []
    for sign, part in _split_top_level(rhs):
        g = _group_term(part)
        if g is None:
            fixed.append(part if sign == "+" else f"-{part}")
        elif sign == "-":
            raise ValueError(f"a group term cannot be subtracted: '- {part}' in {formula!r}.")
        else:
            groups.extend(g)
    check_syntax(formula, response)  # quotes the formula and points at what is not read
    if correlation is not None and not isinstance(correlation, CORRELATIONS):
        raise TypeError("correlation must be hb.AR1(time=..., group=...), hb.CAR1(...), "
                        "hb.CompSymm(group=...), hb.Unstructured(time=..., group=...) or "
                        "hb.ARMA(time=..., group=..., p=..., q=...).")
    if fam.needs_trials and trials is None:
        raise ValueError(
            f"the {fam.name} family needs the number of trials per row: write the response "
            f"as '{response} | trials(n)' with n the column of trial counts."
        )
    if trials is not None and not fam.needs_trials:
        raise ValueError(
            f"'| trials({trials})' on the left of '~' is for the binomial family, not the "
            f"{fam.name} family; pass family='binomial' or drop it."
        )
    return ModelSpec(
        formula=formula,
        response=response,
        fixed=_join(fixed),
        group_terms=tuple(groups),
        family=fam,
        correlation=correlation,
        priors={k: as_prior(v, k) for k, v in (priors or {}).items()},
        trials=trials,
        censored=cens[0],
        censored_upper=cens[1],
        dpars=parse_dpars(fam, sigma=sigma, zi=zi, hu=hu),
    )


def parse_dpars(family: families.Family, **formulas: str | None) -> dict[str, str]:
    """The formulas of a family's distributional parameters, checked: ``{name: rhs}``.

    Each keyword is one parameter (``sigma="~ Sex"``); None means the parameter stays one
    scalar. A parameter the family does not let take a formula (not in its
    :attr:`~hierbayes.spec.families.Family.dpar_links`) is a ValueError naming the
    family's parameters; group terms ``(1 | g)`` are refused (fixed effects only). The
    left-hand side may be omitted (``"~ Sex"``, ``"Sex"``) or be the parameter's own name
    (``"sigma ~ Sex"``, as brms' ``bf()`` writes it).

    Examples
    --------
    >>> from hierbayes.spec import families
    >>> parse_dpars(families.get("gaussian"), sigma="~ Sex")
    {'sigma': 'Sex'}
    >>> parse_dpars(families.get("poisson"), sigma="~ Sex")
    Traceback (most recent call last):
    ...
    ValueError: sigma='~ Sex': the poisson family has no parameter 'sigma' that takes a formula (its parameters: none; the gaussian, lognormal and student families take sigma=).
    """
    out = {}
    for name, text in formulas.items():
        if text is None:
            continue
        where = f"{name}={text!r}"
        if name not in family.dpar_links:
            own = ", ".join(family.dpar_links) or "none"
            takers = sorted({f.name for f in families.FAMILIES.values() if name in f.dpar_links})
            listed = " and ".join([", ".join(takers[:-1]), takers[-1]] if len(takers) > 2 else takers)
            also = f"; the {listed} families take {name}=" if takers else ""
            raise ValueError(
                f"{where}: the {family.name} family has no parameter {name!r} that takes a "
                f"formula (its parameters: {own}{also})."
            )
        if not isinstance(text, str):
            raise TypeError(f"{where}: a parameter formula is a string such as '~ Sex'.")
        lhs, rhs = text.split("~", 1) if "~" in text else ("", text)
        if lhs.strip() not in ("", name):
            raise ValueError(
                f"{where}: the left of '~' must be empty or {name!r} (write '~ Sex')."
            )
        rhs = rhs.strip()
        if not rhs:
            raise ValueError(f"{where} has no right-hand side; write e.g. '~ Sex' or '~ 1'.")
        for _, part in _split_top_level(rhs):
            if _group_term(part) is not None or "|" in part:
                raise ValueError(
                    f"{where}: group terms such as {part!r} are not supported in a parameter "
                    "formula (fixed effects only); remove it."
                )
        check_syntax(f"{name} ~ {rhs}", name)
        out[name] = rhs
    return out


_NAME = r"([A-Za-z_][\w.]*)"
_TRIALS = re.compile(rf"^{_NAME}\s*\|\s*trials\(\s*{_NAME}\s*\)$")
_CENS = re.compile(rf"^{_NAME}\s*\|\s*cens\(\s*{_NAME}\s*(?:,\s*{_NAME}\s*)?\)$")


def _response(lhs: str, formula: str) -> tuple[str, str | None, tuple[str | None, str | None]]:
    """``"y"`` -> ("y", None, (None, None)); ``"k | trials(n)"`` -> ("k", "n", (None, None));
    ``"y | cens(c, y2)"`` -> ("y", None, ("c", "y2"))."""
    if not lhs:
        raise ValueError(f"formula {formula!r} has no response on the left of '~'.")
    if "|" not in lhs:
        return lhs, None, (None, None)
    m = _TRIALS.match(lhs)
    if m is not None:
        return m.group(1), m.group(2), (None, None)
    m = _CENS.match(lhs)
    if m is None:
        raise ValueError(
            f"left-hand side {lhs!r} of {formula!r} is not understood; write a response column "
            "('y'), for the binomial family successes and trials ('k | trials(n)'), or a "
            "censored response ('y | cens(c)', 'y | cens(c, y2)' for intervals)."
        )
    return m.group(1), None, (m.group(2), m.group(3))


def _censoring(fam, from_formula: tuple, keyword, formula: str) -> tuple[str | None, str | None]:
    """The censoring columns from the formula or the ``censored=`` keyword (the same ones if
    both), checked against the family."""
    if keyword is not None:
        kw = (keyword, None) if isinstance(keyword, str) else tuple(keyword)
        if len(kw) != 2 or not all(isinstance(c, str) for c in kw if c is not None):
            raise TypeError(
                f"censored must be a column name or (indicator, upper) column names, got {keyword!r}."
            )
        if from_formula != (None, None) and from_formula != kw:
            raise ValueError(
                f"censored={keyword!r} differs from the formula's cens{from_formula!r} in "
                f"{formula!r}; give it once."
            )
        from_formula = kw
    if from_formula[0] is not None and not fam.censorable:
        raise ValueError(
            f"censored responses are available for the gaussian, student and lognormal families, "
            f"not {fam.name}."
        )
    return from_formula
