"""ModelSpec: the parsed model (formula terms, family, residual correlation, priors).

The formula is read by `formulae` (bambi's engine); this module only splits it into its
fixed part and its group terms so that the design stage can evaluate each at scale
(group factors are indexed, never expanded into dense indicator matrices).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import formulae

from . import families
from .correlation import AR1, CAR1
from .priors import Prior


@dataclass(frozen=True)
class GroupTerm:
    """One ``(expr | factor)`` term: ``expr`` is a formulae right-hand side."""

    expr: str
    factor: str

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
    family: families.Gaussian
    correlation: AR1 | CAR1 | None = None
    priors: dict[str, Prior] = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Every data column the model uses (formula variables and correlation columns)."""
        names = set(formulae.model_description(self.formula).var_names) - {""}
        if self.correlation is not None:
            names |= {self.correlation.time, self.correlation.group}
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
            if factor.startswith("|"):
                raise ValueError(
                    f"uncorrelated random effects '||' in {part!r} are not supported yet; "
                    "write the terms as separate groups, e.g. (1 | g) + (0 + x | g)."
                )
            if not expr or not factor:
                raise ValueError(f"group term {part!r} needs the form (expr | factor).")
            nest = [f.strip() for f in factor.split("/")]
            return [GroupTerm(expr, ":".join(nest[: k + 1])) for k in range(len(nest))]
    return None


def parse(
    formula: str,
    family: str | families.Gaussian = "gaussian",
    correlation: AR1 | CAR1 | None = None,
    priors: dict[str, Prior] | None = None,
) -> ModelSpec:
    """Parse a mixed-model formula into a :class:`ModelSpec`.

    Parameters
    ----------
    formula : str
        ``"y ~ x + (1 + x | g)"``; fixed part in formulae syntax (categoricals,
        interactions, ``np.log(x)``, ``0 +`` to drop the intercept), group terms as in lme4.
    family : str or family object
    correlation : AR1, CAR1 or None
    priors : dict of str to Prior, optional

    Examples
    --------
    >>> from hierbayes.spec import parse
    >>> s = parse("y ~ time + treatment + (1 + time | id)")
    >>> s.fixed, s.group_terms
    ('time + treatment', (GroupTerm(expr='1 + time', factor='id'),))
    """
    if not isinstance(formula, str) or "~" not in formula:
        raise ValueError(
            f"formula {formula!r} needs a response and a right-hand side, e.g. "
            "'y ~ time + (1 + time | id)'."
        )
    lhs, rhs = formula.split("~", 1)
    response = lhs.strip()
    if not response:
        raise ValueError(f"formula {formula!r} has no response on the left of '~'.")
    fixed, groups = [], []
    for sign, part in _split_top_level(rhs):
        g = _group_term(part)
        if g is None:
            fixed.append(part if sign == "+" else f"-{part}")
        elif sign == "-":
            raise ValueError(f"a group term cannot be subtracted: '- {part}' in {formula!r}.")
        else:
            groups.extend(g)
    if correlation is not None and not isinstance(correlation, (AR1, CAR1)):
        raise TypeError("correlation must be hb.AR1(time=..., group=...) or hb.CAR1(...).")
    # validate the syntax through formulae now, before any data is touched
    formulae.model_description(formula.replace("||", "|"))
    return ModelSpec(
        formula=formula,
        response=response,
        fixed=_join(fixed),
        group_terms=tuple(groups),
        family=families.get(family),
        correlation=correlation,
        priors=dict(priors or {}),
    )
