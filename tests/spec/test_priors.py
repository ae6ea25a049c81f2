"""Default priors follow the documented data-scaled rule; overrides by name; Prior as data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hierbayes.spec.correlation import AR1, CAR1
from hierbayes.design.build import build_design
from hierbayes.spec.priors import Prior, default_priors, resolve_priors, tree
from hierbayes.spec.formula import parse


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    rng = np.random.default_rng(11)
    n_ids, n_t = 12, 5
    df = pd.DataFrame(
        {
            "id": np.repeat([f"i{k}" for k in range(n_ids)], n_t),
            "time": np.tile(np.arange(n_t), n_ids).astype(float),
            "treatment": np.repeat(["control", "treatment", "treatment"] * 4, n_t),
        }
    )
    df["x"] = 3.0 + 2.0 * rng.normal(size=len(df))
    treated = (df["treatment"] == "treatment").to_numpy(float)
    df["y"] = 10.0 + 0.5 * df["time"] - 1.5 * treated + 4 * rng.normal(size=len(df))
    return df.sample(frac=1.0, random_state=0)


FORMULA = "y ~ time + treatment + x + (1 + time | id)"


def _design(data, formula=FORMULA, correlation=AR1("time", "id")):
    return build_design(parse(formula, correlation=correlation), data)


def _close(a, b):
    """Defaults are kept at full precision (issue 15 item 5)."""
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-12, atol=1e-12)


def test_default_priors_follow_the_documented_rule(data):
    """Values recomputed from the user's columns (population sd), not from the design."""
    pri = default_priors(_design(data))
    y = data["y"].to_numpy()
    s_y = y.std()
    cols = {
        "time": data["time"].to_numpy(),
        "treatment[treatment]": (data["treatment"] == "treatment").to_numpy(float),
        "x": data["x"].to_numpy(),
    }
    ratio = sum((v.mean() / v.std()) ** 2 for v in cols.values())
    assert list(pri) == [
        "Intercept", "time", "treatment[treatment]", "x", "sigma", "sd_id", "corr_id", "phi"
    ]
    assert pri["Intercept"].dist == "Normal"
    _close(pri["Intercept"].params["mu"], y.mean())
    _close(pri["Intercept"].params["sigma"], 2.5 * s_y * np.sqrt(1 + ratio))
    for name, v in cols.items():
        assert pri[name].dist == "Normal"
        _close(pri[name].params["mu"], 0.0)
        _close(pri[name].params["sigma"], 2.5 * s_y / v.std())
    assert pri["sigma"].dist == "HalfStudentT"
    _close(pri["sigma"].params["nu"], 3)
    _close(pri["sigma"].params["sigma"], 2.5 * s_y)
    assert pri["sd_id"].dist == "HalfStudentT"
    _close(pri["sd_id"].params["nu"], 3)
    _close(pri["sd_id"].params["sigma"], [2.5 * s_y, 2.5 * s_y / cols["time"].std()])
    assert pri["corr_id"] == Prior("LKJ", eta=1.0)
    assert pri["phi"].dist == "Uniform"
    _close([pri["phi"].params["lower"], pri["phi"].params["upper"]], [-1, 1])


def test_defaults_scale_with_the_data(data):
    """Multiplying y by 10 multiplies every scale by 10 (and the intercept mean)."""
    base = default_priors(_design(data))
    big = default_priors(_design(data.assign(y=10 * data["y"])))
    for name in ["Intercept", "time", "x", "sigma"]:
        _close(big[name].params["sigma"], 10 * np.asarray(base[name].params["sigma"]))
    _close(big["sd_id"].params["sigma"], 10 * np.asarray(base["sd_id"].params["sigma"]))
    _close(big["Intercept"].params["mu"], 10 * base["Intercept"].params["mu"])


def test_defaults_without_intercept_or_correlation(data):
    pri = default_priors(_design(data, "y ~ 0 + x + (1 | id)", correlation=None))
    assert list(pri) == ["x", "sigma", "sd_id"]
    _close(pri["x"].params["sigma"], 2.5 * data["y"].std(ddof=0) / data["x"].std(ddof=0))
    # one random-effect term: a scalar scale, and no correlation prior
    assert np.ndim(pri["sd_id"].params["sigma"]) == 0
    _close(pri["sd_id"].params["sigma"], 2.5 * data["y"].std(ddof=0))


def test_car1_phi_bounds(data):
    pri = default_priors(_design(data.assign(time=data["time"] * 0.7), correlation=CAR1("time", "id")))
    assert pri["phi"] == Prior("Uniform", lower=0.0, upper=1.0)


# ----------------------------------------------------------------------- overrides


def test_overrides_by_name(data):
    d = _design(data)
    new = {
        "beta": Prior("Normal", mu=0, sigma=1),
        "x": Prior("StudentT", nu=4, mu=0, sigma=2),  # a label beats "beta" for that label
        "Intercept": Prior("Normal", mu=5, sigma=3),
        "sd_id": Prior("HalfNormal", sigma=[1.0, 0.5]),
        "corr_id": Prior("LKJ", eta=2.0),
        "phi": Prior("Uniform", lower=0.0, upper=1.0),
        "sigma": Prior("Exponential", lam=1.0),
    }
    pri = resolve_priors(d, new)
    assert pri["time"] == pri["treatment[treatment]"] == new["beta"]
    for k in ["x", "Intercept", "sd_id", "corr_id", "phi", "sigma"]:
        assert pri[k] == new[k]
    assert set(pri) == set(default_priors(d))
    assert resolve_priors(d, None) == default_priors(d)


def test_beta_override_leaves_the_intercept(data):
    d = _design(data)
    pri = resolve_priors(d, {"beta": Prior("Normal", mu=0, sigma=1)})
    assert pri["Intercept"] == default_priors(d)["Intercept"]


def test_unknown_name_lists_the_valid_ones(data):
    d = _design(data)
    with pytest.raises(KeyError, match="'sd_group'") as err:
        resolve_priors(d, {"sd_group": Prior("HalfNormal", sigma=1)})
    for name in [*default_priors(d), "beta"]:
        assert repr(name) in str(err.value)


def test_override_must_be_a_prior(data):
    with pytest.raises(TypeError, match="'sigma'.*hb.Prior"):
        resolve_priors(_design(data), {"sigma": 1.0})


# ----------------------------------------------------------------------- Prior as data


def test_tree_prints_nested_hyperpriors():
    p = Prior(
        "Normal",
        mu=Prior("Normal", mu=0, sigma=Prior("HalfNormal", sigma=2)),
        sigma=Prior("HalfNormal", sigma=1),
    )
    assert p.tree() == (
        "Normal()\n"
        "├─ mu ~ Normal(mu=0)\n"
        "│  └─ sigma ~ HalfNormal(sigma=2)\n"
        "└─ sigma ~ HalfNormal(sigma=1)"
    )
    assert Prior("HalfNormal", sigma=1.5).tree() == "HalfNormal(sigma=1.5)"
    assert set(p.hyperpriors) == {"mu", "sigma"}


def test_model_tree_one_branch_per_parameter():
    t = tree(
        {
            "sigma": Prior("HalfNormal", sigma=1),
            "Intercept": Prior("Normal", mu=0, sigma=Prior("HalfNormal", sigma=1)),
        }
    )
    lines = t.split("\n")
    assert lines[0] == "sigma     ~ HalfNormal(sigma=1)"
    assert lines[1] == "Intercept ~ Normal(mu=0)"
    assert lines[2].endswith("└─ sigma ~ HalfNormal(sigma=1)") and lines[2].startswith(" " * 12)


@pytest.mark.parametrize(
    "prior",
    [
        Prior("Normal", mu=0.0, sigma=1.0),
        Prior("HalfStudentT", nu=3, sigma=[2.5, 0.75]),
        Prior(
            "Normal",
            mu=Prior("Normal", mu=0, sigma=10),
            sigma=Prior("HalfNormal", sigma=Prior("Exponential", lam=1)),
        ),
        Prior("LKJ", eta=1.0),
        Prior("Flat"),
        Prior("StudentT", nu=3, mu=[0.5, 1.0], sigma=2).truncated(0),
    ],
)
def test_to_dict_from_dict_round_trip(prior):
    d = prior.to_dict()
    back = Prior.from_dict(json.loads(json.dumps(d)))  # JSON-friendly
    assert back == prior
    assert back.to_dict() == d
    assert back.tree() == prior.tree()


def test_prior_equality_and_hash():
    a = Prior("Normal", mu=0, sigma=1)
    assert a == Prior("Normal", mu=0, sigma=1)
    assert a != Prior("Normal", mu=0, sigma=2)
    assert a != Prior("StudentT", mu=0, sigma=1)
    assert len({a, Prior("Normal", mu=0, sigma=1)}) == 1
    assert repr(a) == "Prior('Normal', mu=0, sigma=1)"


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("eta", [0.5, 1.0, 2.0, 7.5])
def test_lkj_log_normaliser_is_the_lkj_constant(n, eta):
    """PyMC's closed forms (eta = 1 and general) of log Z equal -log c of Lewandowski,
    Kurowicka & Joe (2009, section 3.2): log c = -sum_k [(2 eta - 2 + m) m log 2 + m log B(a, a)], m = n - k,
    a = eta + (m - 1) / 2; and, for n = 2, the Beta(eta, eta) density of (r + 1) / 2."""
    from scipy.special import betaln

    from hierbayes.spec.priors import lkj_log_normaliser

    ref = 0.0
    for k in range(1, n):
        m = n - k
        a = eta + (m - 1) / 2.0
        ref -= (2 * eta - 2 + m) * m * np.log(2.0) + m * betaln(a, a)
    assert -lkj_log_normaliser(eta, n) == pytest.approx(ref, rel=1e-12, abs=1e-12)
    if n == 2:  # r = 0: density Beta(eta, eta) at 1/2, times the Jacobian 1/2
        beta = -betaln(eta, eta) + (2 * eta - 2) * np.log(0.5)
        assert -lkj_log_normaliser(eta, 2) == pytest.approx(beta - np.log(2.0), rel=1e-12)


# ------------------------------------------------------- full precision (issue 15 item 5)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1.0, 2e4, 1e5, 1e6])
def test_defaults_keep_full_precision_at_every_predictor_scale(data, scale):
    """A predictor's scale moves its prior sd by 1 / scale, exactly (no rounding to 4
    decimals, which turned sd 1e5 into sigma=0)."""
    d = _design(data.assign(x=data["x"] * scale), "y ~ x + (1 + x | id)", correlation=None)
    pri = default_priors(d)
    s_y, s_x = data["y"].std(ddof=0), (data["x"] * scale).std(ddof=0)
    sigma = pri["x"].params["sigma"]
    assert np.isfinite(sigma) and sigma > 0
    assert sigma == pytest.approx(2.5 * s_y / s_x, rel=1e-12)
    sd_x = np.asarray(pri["sd_id"].params["sigma"])[1]
    assert np.isfinite(sd_x) and sd_x > 0 and sd_x == pytest.approx(2.5 * s_y / s_x, rel=1e-12)
    assert pri["Intercept"].params["mu"] == pytest.approx(data["y"].mean(), rel=1e-14)
    for p in pri.values():
        for v in p.params.values():
            assert np.all(np.isfinite(np.asarray(v, float)))


def test_display_rounds_but_values_do_not(data):
    d = _design(data.assign(x=data["x"] * 1e5), "y ~ x + (1 | id)", correlation=None)
    p = default_priors(d)["x"]
    assert p.params["sigma"] == pytest.approx(2.5 * data["y"].std(ddof=0) / (1e5 * data["x"].std(ddof=0)), rel=1e-12)
    assert "sigma=0)" not in str(p) and "e-05" in str(p)   # 4 significant digits, not decimals


def test_equality_is_exact():
    """Equality and hash compare the values, not a 4-significant-digit print-out."""
    a = Prior("Normal", mu=1000.01, sigma=1.0)
    b = Prior("Normal", mu=1000.02, sigma=1.0)
    assert repr(a) == repr(b)          # the print-out rounds ...
    assert a != b and a.key() != b.key() and len({a, b}) == 2   # ... equality does not
    assert Prior("Normal", mu=0, sigma=1) == Prior("Normal", mu=0.0, sigma=1.0)
    assert Prior("HalfNormal", sigma=[1, 2]) == Prior("HalfNormal", sigma=np.array([1.0, 2.0]))
    assert Prior("HalfNormal", sigma=[1, 2]) != Prior("HalfNormal", sigma=[1, 2.0000001])
    assert Prior("HalfNormal", sigma=[1, 2]) != Prior("HalfNormal", sigma=1)
    nested = Prior("Normal", mu=0, sigma=Prior("HalfNormal", sigma=1.0))
    assert nested == Prior("Normal", mu=0, sigma=Prior("HalfNormal", sigma=1))
    assert nested != Prior("Normal", mu=0, sigma=Prior("HalfNormal", sigma=1.000001))
    assert hash(nested) == hash(Prior("Normal", mu=0, sigma=Prior("HalfNormal", sigma=1)))


def test_truncation_is_part_of_the_prior():
    """A truncated prior differs from its base, prints its bound and keeps it through
    with_params (issue 15 item 3)."""
    from hierbayes.spec.priors import half_form, positive_prior

    base = Prior("Normal", mu=0, sigma=1)
    cut = base.truncated(0)
    assert cut != base and cut.truncated_at == 0.0 and base.truncated_at is None
    assert str(cut) == "Normal(mu=0, sigma=1) truncated at 0"
    assert repr(cut) == "Prior('Normal', mu=0, sigma=1).truncated(0)"
    assert cut.with_params(mu=0, sigma=2).truncated_at == 0.0
    assert half_form(cut) == Prior("HalfNormal", sigma=1)
    assert half_form(Prior("Normal", sigma=[1, 2]).truncated(0)) == Prior("HalfNormal", sigma=[1, 2])
    assert half_form(Prior("Normal", mu=[0, 1], sigma=1).truncated(0)) is None
    assert half_form(Prior("Cauchy", alpha=0, beta=2).truncated(0)) == Prior("HalfCauchy", beta=2)
    assert positive_prior("sd_id", base) == cut
    assert positive_prior("sd_id", cut) is cut


# ------------------------------------------------- one namespace (issue 15 item 4)


def _collision_frame(rename=None):
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"id": np.repeat([f"i{k}" for k in range(8)], 4),
                       "t": np.tile(np.arange(4), 8).astype(float), "x": rng.normal(size=32)})
    df["y"] = rng.normal(size=32)
    df["k"] = rng.poisson(2.0, size=32)
    return df.rename(columns=rename or {})


COLLISIONS = {  # formula, options, the column renamed into the colliding name, the key
    "sigma": ("y ~ x + (1 | id)", {}, {"x": "sigma"}, "sigma"),
    "phi": ("y ~ x + (1 | id)", {"correlation": AR1("t", "id")}, {"x": "phi"}, "phi"),
    "nu": ("y ~ x + (1 | id)", {"family": "student"}, {"x": "nu"}, "nu"),
    "alpha": ("k ~ x + (1 | id)", {"family": "negbinomial"}, {"x": "alpha"}, "alpha"),
    "beta": ("y ~ x + (1 | id)", {}, {"x": "beta"}, "beta"),
    "sd_<g>": ("y ~ x + (1 | id)", {}, {"x": "sd_id"}, "sd_id"),
    "corr_<g>": ("y ~ x + (1 + t | id)", {}, {"x": "corr_id"}, "corr_id"),
    "group ar": ("k ~ x + (1 | ar)", {"family": "poisson", "correlation": AR1("t", "ar")},
                 {"id": "ar"}, "sd_ar"),
}


@pytest.mark.parametrize("case", list(COLLISIONS))
def test_a_name_shared_with_a_model_parameter_is_refused_at_model(case):
    """A predictor named sigma/phi/nu/alpha/beta/sd_<g>/corr_<g>, or a grouping factor ar
    beside a latent AR process's sd_ar, would share its prior key with another parameter
    (the coefficient 'sigma' silently got the residual sd's HalfStudentT prior): refused
    at hb.Model(), naming the key, both parameters and the column to rename."""
    import hierbayes as hb

    formula, opts, rename, key = COLLISIONS[case]
    column = next(iter(rename.values()))
    for k, v in rename.items():
        formula = formula.replace(f" {k} ", f" {v} ").replace(f"| {k})", f"| {v})")
    df = _collision_frame(rename)
    with pytest.raises(ValueError, match=rf"prior key '{key}'.*Rename the column '{column}'") as err:
        hb.Model(formula, df, **opts)
    assert "data.rename(columns=" in str(err.value)


def test_the_same_names_are_fine_where_nothing_else_has_them():
    """A predictor 'sigma' in a Poisson model, or a grouping factor 'ar' without a latent AR
    process, names one parameter: no collision."""
    import hierbayes as hb

    m = hb.Model("k ~ sigma + (1 | id)", _collision_frame({"x": "sigma"}), family="poisson")
    assert m.priors["sigma"].dist == "Normal" and "sigma" in m.design.fixed_names
    m = hb.Model("y ~ x + (1 | ar)", _collision_frame({"id": "ar"}))
    assert "sd_ar" in m.priors and m.priors["sd_ar"].dist == "HalfStudentT"


def test_defaults_do_not_depend_on_the_order_of_the_rows(data):
    """Compared exactly, the defaults of a shuffled copy of the data are the same priors,
    so its refit still shares the compiled model (issue 15 item 5)."""
    import hierbayes as hb

    a = hb.Model(FORMULA, data, correlation=AR1("time", "id"))
    for seed in range(3):
        b = hb.Model(FORMULA, data.sample(frac=1, random_state=seed), correlation=AR1("time", "id"))
        assert b.priors == a.priors
        assert b.structure_key() == a.structure_key()
