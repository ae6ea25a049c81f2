"""Unrolled q x q algebra (every entry a vector over clusters) against numpy.linalg."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hierbayes.likelihood import smallmat

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None)
N = 7  # matrices per batch: every entry is a length-N vector


def _spd_batch(rng, q, n=N):
    """n random SPD matrices, shape (n, q, q), some of them poorly scaled."""
    A = rng.normal(size=(n, q, q))
    scale = np.exp(rng.uniform(-2, 2, size=(n, 1, 1)))
    return scale * (A @ np.swapaxes(A, 1, 2) + 0.5 * np.eye(q))


def _entries(M, lower_only=False):
    """(n, q, q) array -> nested list of length-n vectors (None above the diagonal)."""
    q = M.shape[-1]
    return [[M[:, i, j] if (j <= i or not lower_only) else None for j in range(q)] for i in range(q)]


def _stack(E):
    """Nested list of vectors/scalars -> (n, q, q) array."""
    q = len(E)
    out = np.zeros((N, q, q))
    for i in range(q):
        for j in range(q):
            out[:, i, j] = np.broadcast_to(np.asarray(E[i][j], dtype=float), (N,))
    return out


def _vec(v):
    return np.stack([np.broadcast_to(np.asarray(x, dtype=float), (N,)) for x in v], axis=1)


seeds = st.integers(0, 2**32 - 1)


@FAST
@given(seed=seeds, q=st.integers(1, 4))
def test_cholesky_matches_numpy(seed, q):
    A = _spd_batch(np.random.default_rng(seed), q)
    L = _stack(smallmat.cholesky(_entries(A, lower_only=True), np.sqrt))
    np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=1e-10, atol=1e-12)


@FAST
@given(seed=seeds, q=st.integers(1, 4))
def test_triangular_solves_match_numpy(seed, q):
    rng = np.random.default_rng(seed)
    Lnp = np.linalg.cholesky(_spd_batch(rng, q))
    b = rng.normal(size=(N, q))
    L = _entries(Lnp)
    x = _vec(smallmat.forward_solve(L, list(b.T)))
    np.testing.assert_allclose(x, np.linalg.solve(Lnp, b[..., None])[..., 0], rtol=1e-9, atol=1e-11)
    y = _vec(smallmat.back_solve_t(L, list(b.T)))
    LT = np.swapaxes(Lnp, 1, 2)
    np.testing.assert_allclose(y, np.linalg.solve(LT, b[..., None])[..., 0], rtol=1e-9, atol=1e-11)


@FAST
@given(seed=seeds, q=st.integers(1, 4))
def test_tri_inverse_and_gram(seed, q):
    rng = np.random.default_rng(seed)
    Lnp = np.linalg.cholesky(_spd_batch(rng, q))
    Linv = _stack(smallmat.tri_inverse(_entries(Lnp)))
    np.testing.assert_allclose(Linv, np.linalg.inv(Lnp), rtol=1e-9, atol=1e-11)
    assert np.all(np.triu(Linv, k=1) == 0)
    W = rng.normal(size=(N, q, q))
    np.testing.assert_allclose(
        _stack(smallmat.gram(_entries(W))), np.swapaxes(W, 1, 2) @ W, rtol=1e-12, atol=1e-12
    )


@FAST
@given(seed=seeds, q=st.integers(1, 4))
def test_cholesky_route_to_inverse_and_logdet(seed, q):
    """gram(tri_inverse(chol(A))) = A^-1 and 2 log_diag_sum = log|A|: how collapsed.py uses them."""
    A = _spd_batch(np.random.default_rng(seed), q)
    L = smallmat.cholesky(_entries(A, lower_only=True), np.sqrt)
    np.testing.assert_allclose(
        _stack(smallmat.gram(smallmat.tri_inverse(L))), np.linalg.inv(A), rtol=1e-8, atol=1e-10
    )
    np.testing.assert_allclose(
        2 * smallmat.log_diag_sum(L, np.log), np.linalg.slogdet(A)[1], rtol=1e-10, atol=1e-10
    )


@FAST
@given(seed=seeds, q=st.integers(1, 3))
def test_inverse_sym_matches_numpy(seed, q):
    A = _spd_batch(np.random.default_rng(seed), q)
    # only the lower triangle may be read: garbage above it must not matter
    E = _entries(A)
    for i in range(q):
        for j in range(i + 1, q):
            E[i][j] = np.full(N, np.nan)
    inv, det = smallmat.inverse_sym(E)
    np.testing.assert_allclose(_stack(inv), np.linalg.inv(A), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(det, np.linalg.det(A), rtol=1e-10)


def test_inverse_sym_rejects_q4():
    A = _entries(_spd_batch(np.random.default_rng(0), 4))
    with pytest.raises(ValueError, match="q <= 3"):
        smallmat.inverse_sym(A)


def test_cholesky_reads_only_lower_triangle():
    A = _spd_batch(np.random.default_rng(1), 3)
    E = _entries(A, lower_only=True)  # None above the diagonal
    np.testing.assert_allclose(_stack(smallmat.cholesky(E, np.sqrt)), np.linalg.cholesky(A))
