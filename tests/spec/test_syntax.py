"""Formula syntax errors quote the formula and point at the character that is not read."""

from __future__ import annotations

import pytest

from hierbayes.spec.formula import parse


@pytest.mark.parametrize(
    "formula, where, why",
    [
        ("y ~ x + (1 + | g)", "at character 14 ('| g)' onwards)", "Don't know how to parse '|'"),
        ("y ~ x * * g", "at character 9 ('* g' onwards)", "parse '*'"),
        ("y ~ x + (1 | g", "at character 9 ('(1 | g' onwards)", "this '(' is never closed"),
        ("y ~ log(x", "at character 8", "never closed"),
        ("y ~ x + (1 | g))", "at character 16 (')' onwards)", "this ')' closes no '('"),
        ("y ~ x +", "at its end", "a term is missing"),
        ("y ~ x $ g", "at character 7 ('$ g' onwards)", "Unexpected character: $"),
        ("k | trials(n) ~ x + (1 + | g)", "at character 26", "parse '|'"),
        ("y ~ x + (1 + x || g) + * z", "at character 24", "parse '*'"),
    ],
)
def test_formula_errors_quote_and_point(formula, where, why):
    with pytest.raises(ValueError) as err:
        parse(formula, family="binomial" if "trials" in formula else "gaussian")
    msg = str(err.value)
    assert msg.startswith(f"cannot read the formula {formula!r} {where}"), msg
    assert why in msg and "\n" not in msg


@pytest.mark.parametrize("formula", ["y ~ x + (1 || g)", "y~x+(1|g)", "y ~ C(x, Sum) + (1 + x | a/b)",
                                     "k | trials(n) ~ x + (1 | g)"])
def test_valid_formulas_parse(formula):
    parse(formula, family="binomial" if "trials" in formula else "gaussian")
