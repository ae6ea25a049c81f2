"""Categorical predictors: the category order of a pandas Categorical sets the reference
level (as an R factor's level order does), whether or not it is ordered; contrasts and an
explicit reference are formulae's C(x, Treatment(...)) / C(x, Sum)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.design.newdata import new_rows

DOSES = ["placebo", "low", "high"]


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame({
        "id": np.repeat(np.arange(12), 5),
        "dose": pd.Categorical(rng.choice(DOSES, n), categories=DOSES),
        "y": rng.normal(size=n),
    })


def test_unordered_categorical_keeps_its_category_order(data):
    assert not data.dose.cat.ordered
    names = hb.Model("y ~ dose + (1 | id)", data).design.fixed_names
    assert names == ("Intercept", "dose[low]", "dose[high]")  # reference: placebo


def test_ordered_categorical_and_strings(data):
    ordered = data.assign(dose=data.dose.cat.as_ordered())
    assert hb.Model("y ~ dose + (1 | id)", ordered).design.fixed_names[1:] == ("dose[low]", "dose[high]")
    strings = data.assign(dose=data.dose.astype(str))  # plain strings: alphabetical, as R
    assert hb.Model("y ~ dose + (1 | id)", strings).design.fixed_names[1:] == ("dose[low]", "dose[placebo]")


def test_explicit_reference_level_and_sum_contrasts(data):
    strings = data.assign(dose=data.dose.astype(str))
    ref = hb.Model("y ~ C(dose, Treatment('placebo')) + (1 | id)", strings).design.fixed_names
    assert [n.split("[")[1] for n in ref[1:]] == ["high]", "low]"]
    s = hb.Model("y ~ C(dose, Sum) + (1 | id)", data).design
    # sum-to-zero coding: the last level's rows are -1 in every column
    high = (data.dose == "high").to_numpy()[s.rows]
    assert np.all(s.X[high, 1:] == -1)


def test_unused_categories_are_dropped(data):
    extra = data.assign(dose=data.dose.cat.add_categories(["none"]).cat.reorder_categories(
        ["none"] + DOSES))
    names = hb.Model("y ~ dose + (1 | id)", extra).design.fixed_names
    assert names == ("Intercept", "dose[low]", "dose[high]")


def test_new_data_is_coded_by_the_fitted_levels(data):
    d = hb.Model("y ~ dose + (1 | id)", data).design
    new = new_rows(d, pd.DataFrame({"id": [0, 1, 2], "dose": ["high", "placebo", "low"]}))
    np.testing.assert_array_equal(new.X, [[1, 0, 1], [1, 0, 0], [1, 1, 0]])


def test_missing_fixed_effect_column_is_named_as_such(data):
    d = hb.Model("y ~ dose + (1 | id)", data).design
    with pytest.raises(KeyError, match=r"fixed-effect column\(s\) \['dose'\] \(every prediction needs them\)") as e:
        new_rows(d, pd.DataFrame({"id": [0]}))
    assert "groups='none'" not in str(e.value)
    with pytest.raises(KeyError, match=r"cluster column\(s\) \['id'\]; pass groups='none'"):
        new_rows(d, pd.DataFrame({"dose": ["low"]}))
