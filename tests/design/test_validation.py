"""Input validation beyond tests/test_design.py: which columns a rank defect involves, constant
columns with and without an intercept, random-effect blocks, nested labels, and that every
input error is raised by ``hb.Model(...)`` before any PyMC model is built."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
import hierbayes.backend as backend_mod
from hierbayes.spec.correlation import AR1
from hierbayes.design.build import build_design
from hierbayes.spec.formula import parse


@pytest.fixture()
def df() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 24
    d = pd.DataFrame(
        {
            "g": np.repeat(list("fedcba"), 4),
            "t": np.tile([0.0, 1.0, 3.0, 4.0], 6),
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "k": np.tile(["lo", "mid", "hi"], 8),
            "y": rng.normal(size=n),
        }
    )
    return d.sample(frac=1.0, random_state=2)


def _build(formula, data, correlation=None, **kw):
    return build_design(parse(formula, correlation=correlation), data, **kw)


def test_collinear_column_names_only_the_columns_involved(df):
    with pytest.raises(ValueError, match=r"column 'c' is collinear with \['a'\] \(c = -3 \* a\)") as e:
        _build("y ~ a + b + c + (1 | g)", df.assign(c=-3.0 * df["a"]))
    assert "'b'" not in str(e.value).split("collinear with")[1]
    # a combination of two predictors and the intercept, on the user's scale
    with pytest.raises(ValueError, match=r"'c' is collinear with \['Intercept', 'a', 'b'\] "
                                         r"\(c = 5 \* Intercept \+ 1 \* a \+ 2 \* b\)"):
        _build("y ~ a + b + c + (1 | g)", df.assign(c=5 + df["a"] + 2 * df["b"]))


def test_collinear_categorical_columns(df):
    # the same grouping under other labels: its dummies repeat those of k
    k2 = df["k"].map({"lo": "L", "mid": "M", "hi": "H"})
    with pytest.raises(ValueError, match=r"column 'k2\[\w\]' is collinear with \['k\[\w+\]'\]"):
        _build("y ~ a + k + k2 + (1 | g)", df.assign(k2=k2))


def test_scale_and_near_collinearity_are_not_errors(df):
    # wildly different units, and two columns close to (not exactly) collinear
    d = df.assign(big=np.arange(len(df)) * 1e8, tiny=df["b"] ** 3 * 1e-7,
                  near=df["a"] + 1e-4 * df["b"])
    design = _build("y ~ big + tiny + a + near + (1 | g)", d)
    assert design.p == 5


def test_constant_column_without_intercept_is_the_intercept(df):
    d = _build("y ~ 0 + one + a + (1 | g)", df.assign(one=2.0))
    assert d.fixed_names == ("one", "a")
    with pytest.raises(ValueError, match=r"'one' is constant \(2\)"):
        _build("y ~ a + one + (1 | g)", df.assign(one=2.0))
    # without an intercept, a full set of dummies already spans the constant
    with pytest.raises(ValueError, match=r"'one' is collinear with \['k\[hi\]', 'k\[lo\]', 'k\[mid\]'\]"):
        _build("y ~ 0 + k + one + (1 | g)", df.assign(one=1.0))
    with pytest.raises(ValueError, match="'z' is zero in every row"):
        _build("y ~ 0 + z + a + (1 | g)", df.assign(z=0.0))


def test_transformed_response_is_refused_clearly(df):
    with pytest.raises(KeyError, match=r"response 'np.log\(y\)' is not a column.*add the transformed"):
        _build("np.log(y) ~ a + (1 | g)", df.assign(y=df["y"].abs()))


def test_intercept_only_models_build(df):
    assert _build("y ~ 1 + (1 | g)", df).fixed_names == ("Intercept",)
    assert _build("y ~ 1", df).groups == ()


def test_constant_after_dropping_missing_rows(df):
    d = df.assign(c=np.where(np.arange(len(df)) < 3, np.nan, 1.5), y=df["y"])
    d.loc[d.index[:3], "c"] = [7.0, 7.0, 7.0]  # only the rows that y drops vary
    d.loc[d.index[:3], "y"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"'c' is constant \(1.5\) across the rows used"):
            _build("y ~ a + c + (1 | g)", d)


def test_random_effect_columns_checked_too(df):
    with pytest.raises(ValueError, match=r"random-effect \(\| g\) column 'c' is constant"):
        _build("y ~ a + (1 + c | g)", df.assign(c=3.0))
    with pytest.raises(ValueError, match=r"random-effect \(\| g\) column 'c' is collinear with \['a'\]"):
        _build("y ~ a + (1 + a + c | g)", df.assign(c=2 * df["a"]))


def test_nested_labels_that_collide(df):
    d = df.assign(s=np.where(df["g"].isin(["a", "b", "c"]), "x:y", "x"),
                  g=np.where(df["g"].isin(["a", "b", "c"]), df["g"], "y:" + df["g"]))
    d.loc[d["g"] == "a", ["s", "g"]] = ["x", "y:a"]  # "x" + "y:a" -> "x:y:a"
    d.loc[d["g"] == "y:f", ["s", "g"]] = ["x:y", "a"]  # "x:y" + "a" -> "x:y:a" too
    with pytest.raises(ValueError, match=r"grouping factor 's:g'.*contain ':'"):
        _build("y ~ a + (1 | s/g)", d)


def test_nested_factor_with_integer_labels(df):
    d = df.assign(s=df["g"].map({"a": 1, "b": 1, "c": 2, "d": 2, "e": 10, "f": 10}),
                  g=df["g"].map({"a": 3, "b": 20, "c": 3, "d": 20, "e": 3, "f": 20}))
    design = _build("y ~ a + (1 | s/g)", d)
    inner = design.group("s:g")
    assert inner.levels == ("1:3", "1:20", "2:3", "2:20", "10:3", "10:20")
    user = d.iloc[design.rows]
    np.testing.assert_array_equal(np.asarray(inner.levels)[inner.index],
                                  (user["s"].astype(str) + ":" + user["g"].astype(str)).to_numpy())


def _bad_inputs(df):
    dup = df.copy()
    dup.loc[dup["g"] == "b", "t"] = 1.0
    half = df.assign(t=df["t"] + 0.5)
    inf = df.assign(a=df["a"].where(df["a"] > -1.5, -np.inf))
    return {
        "unknown column": (dict(formula="y ~ a + nope + (1 | g)"), KeyError, "'nope'"),
        "unknown correlation column": (dict(correlation=AR1("when", "g")), KeyError, "'when'"),
        "non-numeric response": (dict(data=df.assign(y=df["k"])), ValueError, "response column 'y'"),
        "inf": (dict(data=inf), ValueError, "'a' has infinite values"),
        "one level": (dict(data=df.assign(g="same")), ValueError, "single level"),
        "empty": (dict(data=df.iloc[:0]), ValueError, "empty"),
        "empty after NA": (dict(data=df.assign(y=np.nan)), ValueError, "no rows are left"),
        "missing values, raise": (dict(data=df.assign(a=np.nan), na_action="raise"), ValueError,
                                  "missing values"),
        "duplicated times": (dict(data=dup, correlation=AR1("t", "g")), ValueError, "duplicated time"),
        "non-integer times": (dict(data=half, correlation=AR1("t", "g")), ValueError, "CAR1"),
        "constant": (dict(data=df.assign(b=1.0)), ValueError, "'b' is constant"),
        "collinear": (dict(data=df.assign(b=df["a"] * 2)), ValueError, "'b' is collinear"),
        "no fixed effects": (dict(formula="y ~ 0 + (1 | g)"), ValueError, "no fixed effects"),
    }


CASES = [
    "unknown column", "unknown correlation column", "non-numeric response", "inf", "one level",
    "empty", "empty after NA", "missing values, raise", "duplicated times", "non-integer times",
    "constant", "collinear", "no fixed effects",
]


@pytest.mark.parametrize("case", CASES)
def test_model_refuses_bad_input_before_building_pymc(df, case, monkeypatch):
    def no_pymc(*args, **kwargs):
        raise AssertionError("a PyMC model was built before the input was validated")

    monkeypatch.setattr(backend_mod, "build_model", no_pymc)
    cases = _bad_inputs(df)
    assert sorted(cases) == sorted(CASES)
    kwargs, exc, msg = cases[case]
    args = dict(formula="y ~ a + b + (1 | g)", data=df) | kwargs
    with pytest.raises(exc, match=msg), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hb.Model(args.pop("formula"), args.pop("data"), **args)
