"""The AR(1)/CAR(1) process (hierbayes.likelihood.arprocess) against the dense correlation
matrix phi^|t_i - t_j|: whitening gives the exact Gaussian log-density, the recursion has
the right covariance, and the correlation between new and observed rows is the dense one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from hierbayes.likelihood import arprocess


def _dense(times, phi):
    return arprocess.lag_power(phi, np.abs(times[:, None] - times[None, :]))


def _coefficients(times, phi, kind):
    """One cluster as a padded row: lags, inner mask, odd flags, and a, 1/s^2."""
    lag = np.r_[0.0, np.diff(times)][None]
    inner = np.r_[0.0, np.ones(times.size - 1)][None]
    odd = (np.mod(lag, 2) == 1).astype(float)
    return arprocess.coefficients(np, kind, phi, lag, inner, odd)


@pytest.mark.parametrize(
    "times, phi, kind",
    [
        (np.array([0.0, 1, 2, 3]), 0.6, "ar1"),
        (np.array([0.0, 2, 3, 7]), -0.7, "ar1"),  # gaps, negative phi: odd lags keep the sign
        (np.array([0.0, 1]), -0.3, "ar1"),
        (np.array([0.0, 0.4, 1.9, 2.05, 5.5]), 0.8, "car1"),  # irregular times
        (np.array([3.0]), 0.5, "car1"),  # one observation
    ],
)
def test_whitening_gives_the_dense_gaussian_density(times, phi, kind):
    rng = np.random.default_rng(1)
    sigma = 1.3
    e = rng.normal(size=times.size)
    a, inv_s2 = _coefficients(times, phi, kind)
    w = arprocess.whiten(np, e[None], a, inv_s2)[0]
    n = times.size
    ll = (-0.5 * n * np.log(2 * np.pi) - n * np.log(sigma) - 0.5 * (w @ w) / sigma**2
          + 0.5 * np.log(inv_s2).sum())
    ref = multivariate_normal(np.zeros(n), sigma**2 * _dense(times, phi)).logpdf(e)
    assert ll == pytest.approx(ref, abs=1e-10)


def test_recursion_has_the_dense_covariance():
    """The recursion maps N(0, I) innovations to N(0, R): exactly, as a linear map."""
    times, phi = np.array([0.0, 1, 3, 4, 8]), -0.6
    a, _ = _coefficients(times, phi, "ar1")
    A = arprocess.recursion(np.eye(times.size), np.broadcast_to(a, (times.size, times.size)))
    np.testing.assert_allclose(A.T @ A, _dense(times, phi), atol=1e-12)


def test_correlation_matrix_and_the_conditional_forecast():
    """corr(new, observed) of the dense matrix, and the forecast of a new residual given
    the last one is phi^lag times it, with variance 1 - phi^(2 lag)."""
    t_obs, t_new, phi = np.array([0.0, 1.0, 2.0]), np.array([5.0]), np.array([0.7, -0.4])
    R_on = arprocess.correlation_matrix(t_obs, t_new, phi)
    for d, ph in enumerate(phi):
        full = _dense(np.r_[t_obs, t_new], ph)
        np.testing.assert_allclose(R_on[d], full[:3, 3:], atol=1e-14)
        R_oo = full[:3, :3]
        gain = np.linalg.solve(R_oo, full[:3, 3:]).ravel()
        np.testing.assert_allclose(gain, [0, 0, ph**3], atol=1e-12)  # Markov: the last one
        var = 1 - full[3:, :3] @ np.linalg.solve(R_oo, full[:3, 3:])
        assert var.item() == pytest.approx(1 - ph**6)
