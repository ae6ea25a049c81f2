"""hb.simulate and hb.sbc for every family: the simulated responses lie in the family's
support and have its mean and variance; the latent AR process of non-Gaussian families;
SBC mechanics on a Bernoulli model (fast) and calibration of Bernoulli and Poisson random
intercept models (slow)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import hierbayes as hb
from hierbayes.spec import families

# the family parameters each registered family is simulated with: a family added to the
# registry without an entry here fails test_every_family_is_covered
FAMILY_PARAMS = {
    "gaussian": {"sigma": 0.8},
    "student": {"sigma": 0.8, "nu": 6.0},
    "bernoulli": {},
    "binomial": {},
    "poisson": {},
    "negbinomial": {"alpha": 2.5},
    "cumulative": {"cutpoints": np.array([-0.5, 0.4, 1.3])},
    "zero_inflated_poisson": {"zi": 0.3},
    "zero_inflated_negbinomial": {"alpha": 2.5, "zi": 0.3},
    "hurdle_poisson": {"hu": 0.4},
    "hurdle_negbinomial": {"alpha": 2.5, "hu": 0.4},
    "gamma": {"shape": 3.0},
    "lognormal": {"sigma": 0.5},
}
N = 40_000


def _layout(n: int = N, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.repeat(np.arange(n // 8), 8), "x": rng.normal(size=n),
                         "t": np.tile(np.arange(8), n // 8), "n": rng.integers(1, 12, size=n)})


def _formula(fam) -> str:
    return ("k | trials(n)" if fam.needs_trials else "y") + " ~ x + (1 | id)"


def test_every_family_is_covered():
    assert {cls().name for cls in families.FAMILIES.values()} == set(FAMILY_PARAMS)


@pytest.mark.parametrize("name", sorted(FAMILY_PARAMS))
def test_simulated_responses_have_the_familys_support_mean_and_variance(name):
    fam = families.get(name)
    lay = _layout()
    beta = np.array([0.3, 0.4])
    eta = beta[0] + beta[1] * lay.x.to_numpy()
    if not fam.intercept:  # the cumulative family: the cut-points carry the intercept
        eta, beta = eta - beta[0], beta[1:]
    params = {"beta": beta, "sd_id": [0.0], **FAMILY_PARAMS[name]}
    sim = hb.simulate(hb.spec.formula.parse(_formula(fam), family=name), lay, params, seed=4)
    y = sim["k" if fam.needs_trials else "y"].to_numpy()
    if fam.ordered_response:  # levels 1 .. K; the family's numpy methods use codes 0 .. K-1
        y = y - 1.0
    trials = lay.n.to_numpy(dtype=float) if fam.needs_trials else None
    fam.validate(y, "y", trials)  # in the support
    extra = FAMILY_PARAMS[name]
    mean = fam.fitted(eta, extra, trials)
    var = fam.variance(eta, extra, trials)
    se = np.sqrt(var.sum()) / N
    assert abs(y.mean() - mean.mean()) < 4 * se
    # the variance of the standardised residuals is 1 (up to Monte Carlo error)
    z = (y - mean) / np.sqrt(var)
    assert abs(z.var() - 1.0) < 0.06


def test_the_same_seed_gives_the_same_counts():
    lay = _layout(800)
    p = {"beta": [0.2, 0.5], "sd_id": [0.7], "alpha": 3.0}
    a = hb.simulate(hb.spec.formula.parse("y ~ x + (1 | id)", family="negbinomial"), lay, p, seed=9)
    b = hb.simulate(hb.spec.formula.parse("y ~ x + (1 | id)", family="negbinomial"), lay, p, seed=9)
    pd.testing.assert_frame_equal(a, b)
    assert np.all(a.y.to_numpy() == np.round(a.y.to_numpy())) and a.y.min() >= 0


def test_random_intercepts_of_counts_have_their_sd():
    """log of the cluster means of Poisson counts with many rows per cluster: sd_id."""
    rng = np.random.default_rng(3)
    lay = pd.DataFrame({"id": np.repeat(np.arange(400), 200), "x": 0.0})
    sim = hb.simulate(hb.spec.formula.parse("y ~ 1 + (1 | id)", family="poisson"), lay,
                      {"beta": [1.5], "sd_id": [0.5]}, seed=int(rng.integers(1 << 30)))
    log_means = np.log(sim.groupby("id").y.mean())
    assert abs(log_means.std() - 0.5) < 0.06
    assert abs(log_means.mean() - 1.5) < 0.06


def test_latent_ar_process_of_a_poisson_model():
    """With a correlation a non-Gaussian family needs sd_ar: the latent process added to
    eta has marginal sd sd_ar and lag-1 correlation phi (seen through log counts of large
    means)."""
    n_ids, n_t = 3000, 6
    lay = pd.DataFrame({"id": np.repeat(np.arange(n_ids), n_t), "t": np.tile(np.arange(n_t), n_ids)})
    spec = hb.spec.formula.parse("y ~ 1 + (1 | id)", family="poisson",
                                 correlation=hb.AR1(time="t", group="id"))
    p = {"beta": [6.0], "sd_id": [0.0], "phi": 0.6, "sd_ar": 0.3}
    with pytest.raises(KeyError, match="sd_ar"):
        hb.simulate(spec, lay, {k: v for k, v in p.items() if k != "sd_ar"}, seed=1)
    with pytest.raises(ValueError, match="sd_ar must be positive"):
        hb.simulate(spec, lay, {**p, "sd_ar": 0.0}, seed=1)
    sim = hb.simulate(spec, lay, p, seed=1)
    u = np.log(sim.y.to_numpy()).reshape(n_ids, n_t) - 6.0
    assert abs(u.std() - 0.3) < 0.02  # Poisson noise on log(400) adds ~0.05^2
    r = np.corrcoef(u[:, :-1].ravel(), u[:, 1:].ravel())[0, 1]
    assert abs(r * (0.3**2 + 1 / 400) / 0.3**2 - 0.6) < 0.05


@pytest.mark.parametrize("name, bad, msg", [
    ("negbinomial", {"alpha": -1.0}, "alpha must be positive"),
    ("student", {"sigma": 1.0, "nu": np.nan}, "nu must be finite"),
    ("poisson", {"sigma": 1.0}, "unknown names \\['sigma'\\]"),
    ("negbinomial", {}, "params lack \\['alpha'\\]"),
])
def test_family_parameter_errors_name_the_parameter(name, bad, msg):
    spec = hb.spec.formula.parse("y ~ x + (1 | id)", family=name)
    with pytest.raises((KeyError, ValueError), match=msg):
        hb.simulate(spec, _layout(80), {"beta": [0.0, 0.0], "sd_id": [0.5], **bad}, seed=1)


def _bernoulli_model(n_ids: int, n_per: int, family: str = "bernoulli") -> hb.Model:
    lay = _layout(n_ids * n_per, seed=2).iloc[: n_ids * n_per].copy()
    lay["id"] = np.repeat(np.arange(n_ids), n_per)
    lay["y"] = np.arange(len(lay)) % 2  # replaced by each simulation
    priors = {"Intercept": hb.Prior("Normal", mu=0, sigma=1), "x": hb.Prior("Normal", mu=0, sigma=1),
              "sd_id": hb.Prior("HalfNormal", sigma=1.0)}
    return hb.Model("y ~ x + (1 | id)", lay, family=family, priors=priors)


def test_sbc_mechanics_of_a_bernoulli_model():
    model = _bernoulli_model(20, 8)
    with ThreadPoolExecutor(1) as ex:
        res = hb.sbc(model, 2, executor=ex, seed=3, n_ranks=19, draws=100, tune=150)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert list(res.ranks.columns) == ["Intercept", "x", "sd(Intercept | id)"]
    r = res.ranks.to_numpy()
    assert np.all((r >= 0) & (r <= 19))


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bernoulli", "poisson"])
def test_sbc_glmm_random_intercept_calibrated(family):
    res = hb.sbc(_bernoulli_model(30, 8, family), 40, seed=21, n_ranks=49, draws=250, tune=400,
                 max_workers=2)
    assert res.fits.error.isna().all(), res.fits.error.tolist()
    assert (res.uniformity(bins=5).p_value > 0.001).all()
