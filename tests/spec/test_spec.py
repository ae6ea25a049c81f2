"""Formula parsing into a ModelSpec (no data) and the labels formulae gives the design."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hierbayes.spec import correlation as corr_mod
from hierbayes.spec.correlation import AR1, CAR1
from hierbayes.design.build import build_design
from hierbayes.spec.families import Gaussian
from hierbayes.spec.priors import Prior
from hierbayes.spec.formula import GroupTerm, ModelSpec, parse


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n_per, ids = 4, [f"s{i}" for i in range(6)]
    df = pd.DataFrame(
        {
            "id": np.repeat(ids, n_per),
            "school": np.repeat(["A", "A", "B", "B", "C", "C"], n_per),
            "time": np.tile(np.arange(n_per), len(ids)).astype(float),
            "treatment": np.repeat(["control", "treatment"] * 3, n_per),
            "dose": rng.uniform(1, 3, size=len(ids) * n_per),
            "x": rng.normal(size=len(ids) * n_per),
        }
    )
    df["y"] = rng.normal(size=len(df))
    return df


# ----------------------------------------------------------------------- group terms


@pytest.mark.parametrize(
    "formula, fixed, terms",
    [
        ("y ~ x + (1 | id)", "x", [("1", "id")]),
        ("y ~ x + (1 + x | id)", "x", [("1 + x", "id")]),
        ("y ~ x + (x | id)", "x", [("x", "id")]),
        ("y ~ x + (0 + x | id)", "x", [("0 + x", "id")]),
        ("y ~ (1 | id)", "1", [("1", "id")]),
        ("y ~ time + treatment + (1 + time | id)", "time + treatment", [("1 + time", "id")]),
        ("y ~ x + (1 | id) + (0 + x | school)", "x", [("1", "id"), ("0 + x", "school")]),
        ("y ~ (1 | id) + x", "x", [("1", "id")]),
        ("y~x+(1+x|id)", "x", [("1+x", "id")]),
        ("y ~ x + (1 + np.log(dose) | id)", "x", [("1 + np.log(dose)", "id")]),
    ],
)
def test_group_terms_split_from_fixed_part(formula, fixed, terms):
    s = parse(formula)
    assert s.response == "y"
    assert s.fixed == fixed
    assert s.group_terms == tuple(GroupTerm(e, f) for e, f in terms)


def test_nesting_expands_to_outer_and_interaction():
    s = parse("y ~ x + (1 | school/id)")
    assert s.group_terms == (GroupTerm("1", "school"), GroupTerm("1", "school:id"))
    assert [g.name for g in s.group_terms] == ["school", "school:id"]
    assert s.group_terms[1].factor_columns == ("school", "id")


def test_three_level_nesting():
    s = parse("y ~ (1 + x | a/b/c)")
    assert [g.factor for g in s.group_terms] == ["a", "a:b", "a:b:c"]
    assert all(g.expr == "1 + x" for g in s.group_terms)


def test_group_term_name_strips_spaces():
    assert GroupTerm("1", "a : b").name == "a:b"
    assert GroupTerm("1", "a : b").factor_columns == ("a", "b")


def test_group_term_followed_by_minus_one_is_kept():
    s = parse("y ~ x + (1 | id) - 1")
    assert s.group_terms == (GroupTerm("1", "id"),)
    assert "|" not in s.fixed


def test_no_group_term_text_left_in_fixed_part(frame):
    """Whatever the formula, a '|' never reaches the fixed part (it would be ignored there)."""
    for f in ["y ~ x + (1 | id)", "y ~ (1 | id) + x - 1", "y ~ 0 + x + (1 + x | id)"]:
        s = parse(f)
        assert "|" not in s.fixed, f
        d = build_design(s, frame)
        assert [g.name for g in d.groups] == ["id"], f


# ----------------------------------------------------------------------- fixed part labels


@pytest.mark.parametrize(
    "formula, names",
    [
        ("y ~ x + (1 | id)", ("Intercept", "x")),
        ("y ~ 0 + x + (1 | id)", ("x",)),
        ("y ~ x - 1 + (1 | id)", ("x",)),
        ("y ~ x + treatment + (1 | id)", ("Intercept", "x", "treatment[treatment]")),
        (
            "y ~ x * treatment + (1 | id)",
            ("Intercept", "x", "treatment[treatment]", "x:treatment[treatment]"),
        ),
        ("y ~ x:dose + (1 | id)", ("Intercept", "x:dose")),
        ("y ~ np.log(dose) + (1 | id)", ("Intercept", "np.log(dose)")),
        ("y ~ C(time) + (1 | id)", ("Intercept", "C(time)[1.0]", "C(time)[2.0]", "C(time)[3.0]")),
    ],
)
def test_fixed_effect_labels(frame, formula, names):
    d = build_design(parse(formula), frame)
    assert d.fixed_names == names
    assert d.X.shape == (len(frame), len(names))


def test_transform_and_categorical_values(frame):
    d = build_design(parse("y ~ np.log(dose) + treatment + x:dose + (1 | id)"), frame)
    user = frame.iloc[d.rows]
    j = {n: k for k, n in enumerate(d.fixed_names)}
    np.testing.assert_allclose(d.X[:, j["Intercept"]], 1.0)
    np.testing.assert_allclose(d.X[:, j["np.log(dose)"]], np.log(user["dose"]))
    np.testing.assert_array_equal(d.X[:, j["treatment[treatment]"]], user["treatment"] == "treatment")
    np.testing.assert_allclose(d.X[:, j["x:dose"]], user["x"] * user["dose"])


def test_random_term_labels(frame):
    d = build_design(parse("y ~ x + (x | id) + (0 + x | school)"), frame)
    assert d.group("id").terms == ("Intercept", "x")
    assert d.group("school").terms == ("x",)
    d2 = build_design(parse("y ~ x + (1 | id) + (0 + x | id)"), frame)
    assert [g.name for g in d2.groups] == ["id"]  # terms of one factor merge (correlated)
    assert d2.group("id").terms == ("Intercept", "x")


def test_repeated_term_for_one_factor_raises(frame):
    with pytest.raises(ValueError, match="'x'.*twice.*'id'"):
        build_design(parse("y ~ x + (1 + x | id) + (0 + x | id)"), frame)


# ----------------------------------------------------------------------- spec contents


def test_columns_include_formula_and_correlation_columns():
    s = parse("y ~ np.log(dose) + x:treatment + (1 | id)", correlation=AR1("time", "id"))
    assert s.columns == sorted(["y", "dose", "x", "treatment", "id", "time"])
    assert parse("y ~ x + (1 | school/id)").columns == ["id", "school", "x", "y"]


def test_spec_holds_family_correlation_priors():
    p = {"sigma": Prior("HalfNormal", sigma=1.0)}
    s = parse("y ~ x + (1 | id)", family="normal", correlation=CAR1("t", "id"), priors=p)
    assert isinstance(s, ModelSpec)
    assert isinstance(s.family, Gaussian)
    assert s.correlation == CAR1(time="t", group="id")
    assert s.priors == p and s.priors is not p
    with pytest.raises(AttributeError):
        s.response = "z"  # frozen


@pytest.mark.parametrize(
    "formula, match",
    [
        ("y x", "needs a response"),
        ("~ x", "no response"),
        ("y ~ x + (1 | )", r"\(expr \| factor\)"),
        ("y ~ x + ( | id)", r"\(expr \| factor\)"),
    ],
)
def test_bad_formulas_raise_with_a_hint(formula, match):
    with pytest.raises(ValueError, match=match):
        parse(formula)


def test_double_bar_makes_uncorrelated_terms_and_nesting_expands():
    s = parse("y ~ x + (1 + x || g) + (1 | school/class)")
    assert s.group_terms == (
        GroupTerm("1 + x", "g", correlated=False),
        GroupTerm("1", "school", correlated=True),
        GroupTerm("1", "school:class", correlated=True),
    )


def test_binomial_trials_on_the_left_hand_side():
    s = parse("k | trials(n) ~ x + (1 | g)", family="binomial")
    assert (s.response, s.trials, s.family.name) == ("k", "n", "binomial")
    assert {"k", "n", "x", "g"} <= set(s.columns)
    with pytest.raises(ValueError, match="needs the number of trials.*k \\| trials\\(n\\)"):
        parse("k ~ x", family="binomial")
    with pytest.raises(ValueError, match="for the binomial family, not the poisson"):
        parse("k | trials(n) ~ x", family="poisson")
    with pytest.raises(ValueError, match="left-hand side 'k \\| n'"):
        parse("k | n ~ x", family="binomial")


def test_formula_must_be_a_string():
    with pytest.raises(ValueError, match="needs a response"):
        parse(None)


def test_unknown_family_and_bad_correlation():
    with pytest.raises(ValueError, match="'weibull'.*available families"):
        parse("y ~ x", family="weibull")
    with pytest.raises(TypeError, match="AR1"):
        parse("y ~ x", correlation="ar1")


def test_formulae_syntax_errors_surface_at_parse_time():
    with pytest.raises(ValueError, match="cannot read the formula 'y ~ x \\+' at its end"):
        parse("y ~ x +")  # before any data is touched (positions: tests/spec/test_syntax.py)


# ----------------------------------------------------------------------- correlation specs


def test_correlation_specs():
    a, c = AR1(time="t", group="id"), CAR1(time="t", group="id")
    assert a.kind == "ar1" and a.integer_times and a.phi_bounds == (-1.0, 1.0)
    assert c.kind == "car1" and not c.integer_times and c.phi_bounds == (0.0, 1.0)
    assert corr_mod.from_dict({"type": "AR1", "time": "t", "group": "id"}) == a
    assert corr_mod.from_dict({"type": "car1", "time": "t", "group": "id"}) == c
    assert corr_mod.from_dict(None) is None
    with pytest.raises(ValueError, match="'ma1'"):
        corr_mod.from_dict({"type": "ma1", "time": "t", "group": "id"})
    with pytest.raises(ValueError, match="group"):
        corr_mod.from_dict({"type": "ar1", "time": "t"})
