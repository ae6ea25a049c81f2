"""Formula syntax errors that quote the formula and point at the position.

formulae's scanner and parser say what they could not read ("Don't know how to parse
'|'") but not where. :func:`check_syntax` runs them on a copy of the formula of the same
length (``||`` read as ``|``, the binomial left-hand side as its response), keeps each
token's start, and turns an error into one line naming the formula, the character and
what follows it.
"""

from __future__ import annotations

from formulae.parser import ParseError, Parser
from formulae.resolver import Resolver, ResolverError
from formulae.scanner import ScanError, Scanner


class _Scanner(Scanner):
    """formulae's scanner, marking each token it reads with where it starts (tokens it
    adds itself, such as the implicit intercept, have no place)."""

    def add_token(self, kind, literal=None):
        super().add_token(kind, literal)
        self.tokens[-1].start = self.start


def _error(formula: str, pos: int, why: str) -> ValueError:
    if why == "Don't know how to parse ''":  # formulae met the end of the formula
        why = "a term is missing"
    where = ("at its end" if pos >= len(formula)
             else f"at character {pos + 1} ({formula[pos:pos + 12]!r} onwards)")
    return ValueError(f"cannot read the formula {formula!r} {where}: {why.rstrip('.')}.")


def _check_parentheses(formula: str) -> None:
    opened = []
    for i, ch in enumerate(formula):
        if ch == "(":
            opened.append(i)
        elif ch == ")":
            if not opened:
                raise _error(formula, i, "this ')' closes no '('")
            opened.pop()
    if opened:
        raise _error(formula, opened[-1], "this '(' is never closed")


def check_syntax(formula: str, response: str) -> None:
    """Raise a ValueError that quotes ``formula`` and points at the position formulae
    cannot read.

    Parameters
    ----------
    formula : str
        The user's formula, ``lhs ~ rhs``.
    response : str
        The response column (the left-hand side without ``| trials(n)``).

    Examples
    --------
    >>> check_syntax("y ~ x + (1 + x | g)", "y")
    >>> check_syntax("y ~ x + (1 + | g)", "y")
    Traceback (most recent call last):
    ...
    ValueError: cannot read the formula 'y ~ x + (1 + | g)' at character 14 ('| g)' onwards): Don't know how to parse '|'.
    """
    _check_parentheses(formula)
    lhs, rhs = formula.split("~", 1)
    text = response.ljust(len(lhs)) + "~" + rhs.replace("||", "| ")  # same length, same places
    scanner = _Scanner(text)
    try:
        tokens = scanner.scan()
    except ScanError as exc:
        raise _error(formula, scanner.current - 1, str(exc)) from None
    parser = Parser(tokens)
    try:
        Resolver(parser.parse()).resolve()
    except ParseError as exc:
        pos = getattr(parser.tokens[min(parser.current, len(parser.tokens) - 1)], "start", len(formula))
        raise _error(formula, pos, str(exc)) from None
    except ResolverError as exc:
        raise ValueError(f"cannot read the formula {formula!r}: {exc}") from None
