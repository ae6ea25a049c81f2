"""Recovery of random effects from their exact conditional Gaussian (DESIGN.md step 4):

    b_c | y, theta ~ N(Cov Z_c^T R_c^-1 (y_c - X_c beta) / sigma^2, Cov),
    Cov = (S^-1 + Z_c^T R_c^-1 Z_c / sigma^2)^-1,

computed densely per cluster from the user's rows (``ref.dense_posterior_b``).
"""

from __future__ import annotations

import numpy as np
import pytest

from hierbayes.likelihood import recover
from hierbayes.spec.correlation import AR1, CAR1
from hierbayes.design.build import build_design
from hierbayes.spec.formula import parse

CORR = {"ar1": AR1("t", "g"), "car1": CAR1("t", "g"), None: None}
RE = {1: ("1", ["1"]), 2: ("1 + x", ["1", "x"]), 3: ("1 + x + t", ["1", "x", "t"])}


class _ConstantRNG:
    """Stands in for a numpy Generator: every standard normal draw is ``value``."""

    def __init__(self, value: float) -> None:
        self.value = value

    def standard_normal(self, size=None, *args, **kwargs):
        return np.full(size, self.value)


def _setup(ref, corr, q, seed, n_clusters=6):
    rng = np.random.default_rng(seed)
    df = ref.random_frame(rng, n_clusters=n_clusters, max_size=5, times=corr or "ar1")
    re_expr, re_cols = RE[q]
    d = build_design(parse(f"y ~ x + ({re_expr} | g)", correlation=CORR[corr]), df)
    return rng, df, d, ["1", "x"], re_cols


def _tile(D, beta, sigma, phi, S):
    L = np.linalg.cholesky(S)
    return (
        np.tile(beta, (D, 1)),
        np.full(D, sigma),
        None if phi is None else np.full(D, phi),
        np.tile(L, (D, 1, 1)),
    )


def _exact(ref, df, d, fixed, re, beta, sigma, phi, S, corr):
    """(C, q) means and (C, q, q) covariances in the design's level order."""
    post = ref.dense_posterior_b(df, fixed, re, beta, sigma, phi, S, corr)
    levels = d.groups[0].levels
    return np.stack([post[lab][0] for lab in levels]), np.stack([post[lab][1] for lab in levels])


CASES = [("ar1", 0.6), ("ar1", -0.7), ("car1", 0.4), (None, None)]

#: both samplers: cluster by cluster, and shared per time/design pattern
DRAW = pytest.mark.parametrize(
    "draw",
    [recover.draw_random_effects, recover.draw_random_effects_numpy,
     recover.draw_random_effects_by_pattern],
    ids=["per-cluster", "per-cluster-numpy", "by-pattern"],
)


@DRAW
@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("corr, phi", CASES)
def test_zero_noise_gives_the_exact_conditional_mean(ref, corr, phi, q, draw):
    rng, df, d, fixed, re = _setup(ref, corr, q, seed=10 + q)
    beta, sigma, S = rng.normal(size=2), 0.9, ref.random_spd(rng, q)
    out = draw(d, *_tile(3, beta, sigma, phi, S), rng=_ConstantRNG(0.0))
    mean, _ = _exact(ref, df, d, fixed, re, beta, sigma, phi, S, corr)
    assert out.shape == (3, d.groups[0].n_levels, q)
    for k in range(3):
        np.testing.assert_allclose(out[k], mean, rtol=1e-9, atol=1e-10)


@DRAW
@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("corr, phi", CASES)
def test_noise_is_a_square_root_of_the_conditional_covariance(ref, corr, phi, q, draw):
    """With every z = 1, b_c - mean_c = A 1 for the sampler's square root A (A A^T = Cov),
    so (b - mean)^T Cov^-1 (b - mean) = 1^T A^T Cov^-1 A 1 = q exactly."""
    rng, df, d, fixed, re = _setup(ref, corr, q, seed=20 + q)
    beta, sigma, S = rng.normal(size=2), 1.3, ref.random_spd(rng, q)
    params = _tile(1, beta, sigma, phi, S)
    dev = draw(d, *params, rng=_ConstantRNG(1.0))[0]
    dev -= draw(d, *params, rng=_ConstantRNG(0.0))[0]
    _, cov = _exact(ref, df, d, fixed, re, beta, sigma, phi, S, corr)
    maha = np.einsum("ci,cij,cj->c", dev, np.linalg.inv(cov), dev)
    np.testing.assert_allclose(maha, q, rtol=1e-8)


@DRAW
@pytest.mark.parametrize("corr, phi", [("ar1", -0.5), (None, None)])
def test_monte_carlo_moments_match_the_exact_conditional(ref, corr, phi, draw):
    """Sample mean and covariance of many draws within 5 Monte Carlo standard errors."""
    rng, df, d, fixed, re = _setup(ref, corr, 2, seed=3)
    beta, sigma, S = np.array([0.4, 0.7]), 0.8, np.array([[0.9, 0.25], [0.25, 0.4]])
    D = 6000
    draws = draw(d, *_tile(D, beta, sigma, phi, S), rng=np.random.default_rng(42))
    mean, cov = _exact(ref, df, d, fixed, re, beta, sigma, phi, S, corr)
    se_mean = np.sqrt(np.diagonal(cov, axis1=1, axis2=2) / D)
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * se_mean)
    dev = draws - mean
    sample_cov = np.einsum("dci,dcj->cij", dev, dev) / D
    var = np.diagonal(cov, axis1=1, axis2=2)
    se_cov = np.sqrt((var[:, :, None] * var[:, None, :] + cov**2) / D)
    assert np.all(np.abs(sample_cov - cov) < 5 * se_cov)


@DRAW
def test_parameters_vary_per_draw_across_chunks(ref, draw):
    """Each draw uses its own (beta, sigma, phi, S), also across chunk boundaries."""
    rng, df, d, fixed, re = _setup(ref, "ar1", 2, seed=4)
    D = 7
    betas = rng.normal(size=(D, 2))
    sigmas = rng.uniform(0.5, 2.0, size=D)
    phis = rng.uniform(-0.9, 0.9, size=D)
    Ss = [ref.random_spd(rng, 2) for _ in range(D)]
    L = np.stack([np.linalg.cholesky(S) for S in Ss])
    out = draw(d, betas, sigmas, phis, L, rng=_ConstantRNG(0.0), chunk=3)
    for k in range(D):
        mean, _ = _exact(ref, df, d, fixed, re, betas[k], sigmas[k], phis[k], Ss[k], "ar1")
        np.testing.assert_allclose(out[k], mean, rtol=1e-9, atol=1e-10)


@DRAW
def test_same_seed_same_draws(ref, draw):
    rng, df, d, fixed, re = _setup(ref, "ar1", 2, seed=5)
    params = _tile(20, np.array([0.1, 0.2]), 1.1, 0.3, np.array([[1.0, 0.3], [0.3, 0.5]]))
    a = draw(d, *params, rng=np.random.default_rng(7))
    b = draw(d, *params, rng=np.random.default_rng(7))
    c = draw(d, *params, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("q", [1, 3])
def test_covariance_cholesky(q):
    rng = np.random.default_rng(q)
    sd = rng.uniform(0.2, 2.0, size=(4, 5, q))
    A = rng.normal(size=(4, 5, q, q))
    cov = A @ np.swapaxes(A, -1, -2) + np.eye(q)
    d = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    corr = cov / d[..., :, None] / d[..., None, :]
    L = recover.covariance_cholesky(sd, corr)
    LLt = L @ np.swapaxes(L, -1, -2)
    np.testing.assert_allclose(LLt, sd[..., :, None] * corr * sd[..., None, :], rtol=1e-10)
    assert np.all(np.triu(L, k=1) == 0)
    L0 = recover.covariance_cholesky(sd, None)
    L0Lt = L0 @ np.swapaxes(L0, -1, -2)
    np.testing.assert_allclose(L0Lt, sd[..., :, None] ** 2 * np.eye(q), rtol=1e-12)


def test_balanced_design_both_samplers_agree_in_distribution(ref):
    """On balanced data (one shared pattern, the case the by-pattern sampler is for) both
    samplers give the exact mean with zero noise and the same Mahalanobis size of noise."""
    rng = np.random.default_rng(9)
    df = ref.random_frame(rng, n_clusters=6, min_size=4, max_size=4, times="ar1", balanced=True)
    d = build_design(parse("y ~ x + (1 + t | g)", correlation=AR1("t", "g")), df)
    beta, sigma, phi, S = np.array([0.2, 0.5]), 0.7, 0.65, ref.random_spd(rng, 2)
    params = _tile(2, beta, sigma, phi, S)
    mean, cov = _exact(ref, df, d, ["1", "x"], ["1", "t"], beta, sigma, phi, S, "ar1")
    for draw in (recover.draw_random_effects, recover.draw_random_effects_by_pattern):
        zero = draw(d, *params, rng=_ConstantRNG(0.0))
        np.testing.assert_allclose(zero[1], mean, rtol=1e-9, atol=1e-10)
        dev = draw(d, *params, rng=_ConstantRNG(1.0))[1] - zero[1]
        maha = np.einsum("ci,cij,cj->c", dev, np.linalg.inv(cov), dev)
        np.testing.assert_allclose(maha, 2.0, rtol=1e-8)


@pytest.mark.parametrize("q", [1, 2, 3])
@pytest.mark.parametrize("corr, phi", CASES + [("car1", 0.95)])
@pytest.mark.parametrize("extras", [False, True], ids=["plain", "offset-row-sigma"])
def test_numba_kernel_equals_numpy_reference_on_the_same_random_numbers(ref, corr, phi, q, extras):
    """Ragged clusters (size 1 included), per-draw parameters, chunks that do not divide D,
    with and without a per-draw offset and per-row residual sd: the numba kernel's draws are
    the numpy reference's, same generator, same numbers."""
    rng = np.random.default_rng(30 + q)
    df = ref.random_frame(rng, n_clusters=9, min_size=1, max_size=7, times=corr or "ar1")
    re_expr, _ = RE[q]
    d = build_design(parse(f"y ~ x + ({re_expr} | g)", correlation=CORR[corr]), df)
    assert d.layout.sizes.min() == 1 and d.layout.sizes.max() > 3
    D = 7
    beta = rng.normal(size=(D, 2))
    sigma = rng.uniform(0.5, 2.0, size=D)
    phis = None if phi is None else np.clip(phi + rng.uniform(-0.04, 0.04, size=D), -0.99, 0.99)
    L = np.stack([np.linalg.cholesky(ref.random_spd(rng, q)) for _ in range(D)])
    kw = {}
    if extras:
        kw = dict(offset=rng.normal(size=(D, d.n)), row_sigma=rng.uniform(0.5, 2.0, size=(D, d.n)))
    fast = recover.draw_random_effects(d, beta, sigma, phis, L, np.random.default_rng(5), chunk=3, **kw)
    slow = recover.draw_random_effects_numpy(d, beta, sigma, phis, L, np.random.default_rng(5), chunk=3, **kw)
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-11)
    assert np.all(np.isfinite(fast))
