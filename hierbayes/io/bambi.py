"""A bambi model read as a hierbayes model: formula, family, link, the priors its user set,
and its data (what :meth:`hierbayes.Model.from_bambi` builds from).

Nothing here imports bambi: the model is read through its attributes (written against,
and tested with, bambi 0.17), so hierbayes does not need bambi installed to run.

What is carried over, and how:

- **Formula.** bambi's group terms are independent (one sd per term, no correlation), so
  ``(1 + x | g)`` becomes hierbayes' ``(1 + x || g)``; a one-term group stays ``(1 | g)``.
  A binomial response ``p(k, n)`` (or ``prop(k, n)``) becomes ``k | trials(n)``. A formula
  for ``sigma`` (``bmb.Formula("y ~ x", "sigma ~ Sex")``) becomes ``sigma="~ Sex"``.
- **Family and link.** gaussian, t (hierbayes' student), bernoulli and binomial (logit or
  probit), poisson and negativebinomial (log). Any other family or link is refused.
- **Priors**, only those the user set (bambi marks them ``auto_scale=False``); every other
  parameter takes hierbayes' default, not bambi's (both are weakly informative and scaled
  to the data, with different constants: module :mod:`hierbayes.spec.priors`). A common
  term's prior goes to each of its coefficients (``"treatment"`` to
  ``treatment[treatment]``), ``sigma``/``nu``/``alpha`` to the same keys, a group term's
  ``Normal(mu=0, sigma=S)`` to ``sd_<g>`` (``S`` the prior of the sd), a ``sigma``-formula
  term's to ``sigma_<coef>``. bambi centres the predictors by default
  (``center_predictors=True``) and its ``Intercept`` prior is then on the intercept at the
  predictors' means; hierbayes' ``Intercept`` is on the raw scale, so such a prior is
  refused (pass ``priors={"Intercept": ...}`` to ``from_bambi``, or build the bambi model
  with ``center_predictors=False``).
- **Data**: ``bmb_model.data`` (bambi's copy, with its ``categorical=`` columns);
  ``dropna=True`` becomes ``na_action="drop"``, else ``"raise"`` (bambi's own behaviour).

Whatever cannot be carried over exactly raises an error that names it: another family or
link, a response transformation (``censored``, ``weighted``, ``y['level']``), potentials,
a parameter bambi fixes at a value, a prior on a centred intercept, a group prior that is not
``Normal(mu=0, sigma=<prior of the sd>)``, and bambi's flat priors (``auto_scale=False``).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np

from hierbayes import names
from hierbayes.design.build import build_design
from hierbayes.spec.formula import parse
from hierbayes.spec.priors import Prior, as_prior

#: bambi family name -> hierbayes family name
FAMILIES = {
    "gaussian": "gaussian",
    "t": "student",
    "bernoulli": "bernoulli",
    "binomial": "binomial",
    "poisson": "poisson",
    "negativebinomial": "negbinomial",
}

#: links hierbayes has for each (hierbayes) family
LINKS = {
    "gaussian": ("identity",),
    "student": ("identity",),
    "bernoulli": ("logit", "probit"),
    "binomial": ("logit", "probit"),
    "poisson": ("log",),
    "negbinomial": ("log",),
}

#: the distributional parameters hierbayes takes a formula for, with their link
DPAR_LINKS = {"sigma": "log"}


def model_inputs(bmb_model: Any, overridden: set[str] | frozenset = frozenset()) -> dict[str, Any]:
    """The keyword arguments of :class:`hierbayes.Model` equivalent to a bambi model.

    Parameters
    ----------
    bmb_model : bambi.Model
        Built or not; it is not fitted and not changed.
    overridden : set of str
        Prior keys the caller sets itself: bambi's priors for them are not converted (nor
        refused).

    Returns
    -------
    dict
        ``formula``, ``data``, ``family``, ``priors``, ``na_action`` and, with a ``sigma``
        formula, ``sigma``.

    Raises
    ------
    ValueError
        For a family, link, response, formula part or prior hierbayes cannot represent
        exactly, naming it and what to do instead.

    Examples
    --------
    >>> import bambi as bmb, hierbayes as hb                      # doctest: +SKIP
    >>> m = bmb.Model("y ~ time + (1 + time | id)", hb.datasets.load("clark_ar1"))  # doctest: +SKIP
    >>> model_inputs(m)["formula"]                                  # doctest: +SKIP
    'y ~ time + (1 + time || id)'
    """
    family, link = _family(bmb_model)
    if getattr(bmb_model, "potentials", None):
        raise ValueError("the bambi model has potentials (extra terms in its log density); "
                         "hierbayes has no equivalent: drop them or fit it with bambi.")
    formula_obj = bmb_model.formula
    main = getattr(formula_obj, "main", formula_obj)
    out: dict[str, Any] = {"formula": formula(str(main), family)}
    dpars = _dpars(formula_obj)
    out.update(dpars)
    out["family"] = family if link == LINKS[family][0] else _family_object(family, link)
    out["data"] = bmb_model.data
    out["na_action"] = "drop" if getattr(bmb_model, "dropna", False) else "raise"
    if not getattr(bmb_model, "auto_scale", True):
        raise ValueError(
            "the bambi model has auto_scale=False: its default priors are flat, which "
            "hierbayes does not take (its defaults are weakly informative); build the bambi "
            "model with auto_scale=True, or set every prior explicitly.")
    out["priors"] = _priors(bmb_model, out, set(overridden))
    return out


def formula(main: str, family: str = "gaussian") -> str:
    """bambi's main formula in hierbayes' syntax: independent group terms written ``||``,
    a binomial response ``p(k, n)`` written ``k | trials(n)``.

    Examples
    --------
    >>> formula("y ~ time + (1 + time | id) + (1 | site)")
    'y ~ time + (1 + time || id) + (1 | site)'
    >>> formula("p(k, n) ~ x + (1 | g)", "binomial")
    'k | trials(n) ~ x + (1 | g)'
    >>> formula("y ~ x + (x | g)")
    'y ~ x + (x || g)'
    """
    lhs, rhs = main.split("~", 1)
    lhs = lhs.strip()
    m = re.fullmatch(r"(?:p|prop)\(\s*(\w+)\s*,\s*(\w+)\s*\)", lhs)
    if family == "binomial":
        if m is None:
            raise ValueError(
                f"the binomial response {lhs!r} is not p(successes, trials) with two columns; "
                "write it as p(k, n) with k and n columns of the data.")
        lhs = f"{m.group(1)} | trials({m.group(2)})"
    elif "(" in lhs:
        raise ValueError(
            f"the bambi response {lhs!r} is a transformation hierbayes does not take "
            "(censored, truncated, weighted, ...); hierbayes' response is a column "
            "(or k | trials(n) for the binomial family).")
    elif "[" in lhs:
        raise ValueError(
            f"the response {lhs!r} picks a level of a column; hierbayes takes a 0/1 column: "
            "add one to the data (e.g. data['y01'] = (data['y'] == 'yes').astype(int)).")
    return f"{lhs} ~ {_independent(rhs.strip())}"


def _independent(rhs: str) -> str:
    """Every group term ``(a + b | g)`` of ``rhs`` (two or more terms) written ``(a + b || g)``."""
    out, i = [], 0
    while i < len(rhs):
        if rhs[i] != "(":
            out.append(rhs[i])
            i += 1
            continue
        depth, j = 0, i
        while j < len(rhs):
            depth += {"(": 1, ")": -1}.get(rhs[j], 0)
            if depth == 0:
                break
            j += 1
        inner = rhs[i + 1:j]
        bar = _top_level_bar(inner)
        if bar is not None and _n_terms(inner[:bar]) > 1:
            inner = f"{inner[:bar].rstrip()} || {inner[bar + 1:].lstrip()}"
        out.append(f"({inner})")
        i = j + 1
    return "".join(out)


def _top_level_bar(s: str) -> int | None:
    depth = 0
    for k, ch in enumerate(s):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "|" and depth == 0:
            if s[k + 1:k + 2] == "|" or s[k - 1:k] == "|":
                return None  # already independent
            return k
    return None


def _n_terms(expr: str) -> int:
    """How many random-effect terms ``expr`` (the left of ``|``) gives: an implied intercept
    counts, unless ``0 +`` / ``- 1`` removes it."""
    parts = [p.strip() for p in re.split(r"\+(?![^(]*\))", expr) if p.strip()]
    slopes = [p for p in parts if p not in ("1", "0", "-1") and not p.endswith("- 1")]
    no_intercept = "0" in parts or "-1" in parts or expr.replace(" ", "").endswith("-1")
    return len(slopes) + (0 if no_intercept else 1)


def _family(bmb_model: Any) -> tuple[str, str]:
    fam = bmb_model.family
    name = getattr(fam, "name", None)
    if name not in FAMILIES:
        raise ValueError(
            f"the bambi family {name!r} has no hierbayes equivalent; hierbayes takes "
            f"{', '.join(sorted(FAMILIES))} (as {sorted(set(FAMILIES.values()))}).")
    family = FAMILIES[name]
    parent = fam.likelihood.parent
    link = fam.link[parent].name
    if link not in LINKS[family]:
        raise ValueError(
            f"the {name} family's link {link!r} is not available in hierbayes; the "
            f"{family} family takes {list(LINKS[family])}.")
    return family, link


def _family_object(family: str, link: str):
    from hierbayes.spec import families

    return families.FAMILIES[family](link=link)


def _dpars(formula_obj: Any) -> dict[str, str]:
    out = {}
    for lhs, extra in zip(getattr(formula_obj, "additionals_lhs", ()),
                          getattr(formula_obj, "additionals", ())):
        if lhs not in DPAR_LINKS:
            raise ValueError(
                f"the bambi formula {extra!r} models {lhs!r}; hierbayes takes a formula for "
                f"{sorted(DPAR_LINKS)} only.")
        rhs = str(extra).split("~", 1)[1].strip()
        if "|" in rhs:
            raise ValueError(f"the bambi formula {extra!r} has group terms; hierbayes' "
                             f"{lhs} formula takes fixed effects only.")
        out[lhs] = f"~ {rhs}"
    return out


def _user_set(prior: Any) -> bool:
    """Whether bambi's prior was set by its user (bambi turns auto_scale off on those)."""
    return prior is not None and not isinstance(prior, (int, float)) and \
        not getattr(prior, "auto_scale", True)


def _priors(bmb_model: Any, inputs: dict[str, Any], skip: set[str]) -> dict[str, Prior]:
    spec = parse(inputs["formula"], family=inputs["family"], sigma=inputs.get("sigma"))
    with warnings.catch_warnings():  # hb.Model(...) warns about the data itself, once
        warnings.simplefilter("ignore")
        design = build_design(spec, inputs["data"], na_action="drop")
    parent = bmb_model.family.likelihood.parent
    out: dict[str, Prior] = {}
    for cname, comp in bmb_model.components.items():
        terms = getattr(comp, "terms", None)
        if terms is None:  # a constant component: sigma, nu, alpha
            prior = getattr(comp, "prior", None)
            if isinstance(prior, (int, float)):
                raise ValueError(
                    f"the bambi model fixes {cname!r} at {prior}; hierbayes estimates it: "
                    f"give it a prior instead (e.g. a narrow one around {prior}).")
            if _user_set(prior) and cname not in skip:
                out[cname] = as_prior(prior, cname)
            continue
        if cname == parent:
            out.update(_mean_priors(bmb_model, comp, design, skip))
        else:
            out.update(_dpar_priors(bmb_model, cname, comp, design, skip))
    return out


def _mean_priors(bmb_model: Any, comp: Any, design, skip: set[str]) -> dict[str, Prior]:
    out: dict[str, Prior] = {}
    slices = design.common_terms.slices
    sd_parts: dict[str, dict[str, Prior]] = {}
    for tname, term in comp.terms.items():
        if not _user_set(term.prior):
            continue
        kind = type(term).__name__
        if kind == "GroupSpecificTerm":
            expr, factor = (s.strip() for s in tname.split("|", 1))
            sd_parts.setdefault(factor, {})[expr] = _sd_prior(tname, term.prior)
        elif tname == "Intercept":
            if "Intercept" not in skip:
                _check_uncentred(bmb_model, comp, "Intercept")
                out["Intercept"] = as_prior(term.prior, "Intercept")
        elif kind == "CommonTerm" and tname in slices:
            prior = as_prior(term.prior, tname)
            for n in design.fixed_names[slices[tname]]:
                out[n] = prior
        else:
            raise ValueError(
                f"the bambi term {tname!r} ({kind}) has no hierbayes equivalent for its prior.")
    for factor, parts in sd_parts.items():
        if names.sd(factor) not in skip:
            out[names.sd(factor)] = _group_sd(factor, parts, design)
    return {k: v for k, v in out.items() if k not in skip}


def _check_uncentred(bmb_model: Any, comp: Any, key: str) -> None:
    """Refuse bambi's intercept prior where bambi puts it on centred predictors."""
    others = [n for n, t in comp.terms.items()
              if not n.endswith("Intercept") and type(t).__name__ == "CommonTerm"]
    if getattr(bmb_model, "center_predictors", True) and others:
        raise ValueError(
            f"the bambi prior on the intercept ({key!r} in hierbayes) is on the intercept at the "
            "predictors' means (bambi's center_predictors=True); hierbayes' intercept is on the "
            f"raw scale. Pass priors={{{key!r}: hb.Prior(...)}} to from_bambi (it replaces this "
            "one), or build the bambi model with center_predictors=False.")


def _sd_prior(tname: str, prior: Any) -> Prior:
    """The sd prior of a bambi group term's ``Normal(mu=0, sigma=S)``: ``S``."""
    args = dict(getattr(prior, "args", {}))
    mu = args.pop("mu", 0.0)
    sigma = args.pop("sigma", None)
    nested = sigma is not None and hasattr(sigma, "args")
    centred = not hasattr(mu, "args") and bool(np.all(np.asarray(mu, dtype=float) == 0.0))
    if prior.name != "Normal" or not nested or args or not centred:
        raise ValueError(
            f"the bambi prior of the group term {tname!r} is {prior}; hierbayes takes a group "
            "term's prior as Normal(mu=0, sigma=<prior of the sd>), e.g. "
            "bmb.Prior('Normal', mu=0, sigma=bmb.Prior('HalfNormal', sigma=1)), and learns the sd.")
    return as_prior(sigma, tname)


def _group_sd(factor: str, parts: dict[str, Prior], design) -> Prior:
    """One ``sd_<factor>`` prior from per-term sd priors (a vector parameter where they
    differ in value)."""
    group = next((g for g in design.groups if g.name == factor), None)
    if group is None:
        raise ValueError(f"the bambi group factor {factor!r} is not a grouping factor of the "
                         f"hierbayes model ({[g.name for g in design.groups]}).")
    # each hierbayes term of the factor and the bambi term it comes from ("1" for the
    # intercept; a categorical slope "s" gives the terms "s[b]", "s[c]", ...)
    owner = {t: next((e for e in parts if (e == "1" and t == "Intercept") or t == e
                      or t.startswith(f"{e}[")), None) for t in group.terms}
    missing = [t for t, e in owner.items() if e is None]
    first = next(iter(parts.values()))
    if missing or any(p.dist != first.dist or set(p.params) != set(first.params)
                      for p in parts.values()):
        raise ValueError(
            f"the bambi priors of the terms of {factor!r} ({', '.join(f'{e}|{factor}' for e in parts)}) "
            f"cannot make one hierbayes prior for sd_{factor}: set a prior on every term of "
            f"{factor!r} (hierbayes terms {list(group.terms)}) with the same sd distribution, "
            f"or pass priors={{'sd_{factor}': hb.Prior(...)}} to from_bambi.")
    if all(p == first for p in parts.values()):
        return first
    return Prior(first.dist, **{k: [parts[owner[t]].params[k] for t in group.terms]
                                for k in first.params})


def _dpar_priors(bmb_model: Any, dpar: str, comp: Any, design, skip: set[str]) -> dict[str, Prior]:
    out: dict[str, Prior] = {}
    blk = design.dpars[dpar]
    slices = blk.terms.slices
    for tname, term in comp.terms.items():
        if not _user_set(term.prior):
            continue
        if tname == "Intercept" or tname == f"{dpar}_Intercept":
            key = names.dpar_prior_key(dpar, "Intercept")
            if key not in skip:
                _check_uncentred(bmb_model, comp, key)
                out[key] = as_prior(term.prior, tname)
            continue
        key = tname.removeprefix(f"{dpar}_")
        if key not in slices:
            raise ValueError(f"the bambi {dpar}-formula term {tname!r} has no hierbayes "
                             "equivalent for its prior.")
        for c in blk.names[slices[key]]:
            out[names.dpar_prior_key(dpar, c)] = as_prior(term.prior, tname)
    return {k: v for k, v in out.items() if k not in skip}
