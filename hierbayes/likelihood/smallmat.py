"""Small q x q matrix algebra unrolled into elementwise operations.

Every entry is an array (numpy or PyTensor) holding that entry for many clusters at
once, so a Cholesky of 2,500 2x2 matrices is a handful of vector operations instead of
2,500 tiny LAPACK calls (which are slow to differentiate in PyTensor). Matrices are
nested lists ``A[i][j]``; functions take the ``sqrt`` of the array library in use.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Entries = list[list]


def cholesky(A: Sequence[Sequence], sqrt: Callable) -> Entries:
    """Lower Cholesky factor of a symmetric positive definite matrix (only ``A[i][j], j<=i`` read).

    Examples
    --------
    >>> import numpy as np
    >>> L = cholesky([[np.array(4.0), None], [np.array(2.0), np.array(5.0)]], np.sqrt)
    >>> [float(L[0][0]), float(L[1][0]), float(L[1][1])]
    [2.0, 1.0, 2.0]
    """
    q = len(A)
    L: Entries = [[0.0] * q for _ in range(q)]
    for i in range(q):
        for j in range(i + 1):
            s = A[i][j]
            for k in range(j):
                s = s - L[i][k] * L[j][k]
            L[i][j] = sqrt(s) if i == j else s / L[j][j]
    return L


def forward_solve(L: Entries, b: Sequence) -> list:
    """Solve ``L x = b`` for lower-triangular ``L``."""
    x = []
    for i in range(len(L)):
        s = b[i]
        for k in range(i):
            s = s - L[i][k] * x[k]
        x.append(s / L[i][i])
    return x


def back_solve_t(L: Entries, b: Sequence) -> list:
    """Solve ``L^T x = b`` for lower-triangular ``L``."""
    q = len(L)
    x = [None] * q
    for i in reversed(range(q)):
        s = b[i]
        for k in range(i + 1, q):
            s = s - L[k][i] * x[k]
        x[i] = s / L[i][i]
    return x


def tri_inverse(L: Entries) -> Entries:
    """Inverse of a lower-triangular matrix (lower-triangular; zeros above the diagonal)."""
    q = len(L)
    cols = [forward_solve(L, [1.0 if r == c else 0.0 for r in range(q)]) for c in range(q)]
    return [[cols[c][r] if c <= r else 0.0 for c in range(q)] for r in range(q)]


def gram(W: Entries) -> Entries:
    """``W^T W`` for a square matrix of entries."""
    q = len(W)
    out: Entries = [[0.0] * q for _ in range(q)]
    for a in range(q):
        for b in range(a + 1):
            s = 0.0
            for k in range(q):
                s = s + W[k][a] * W[k][b]
            out[a][b] = out[b][a] = s
    return out


def log_diag_sum(L: Entries, log: Callable):
    """``sum_i log L[i][i]`` (half the log-determinant of ``L L^T``)."""
    s = 0.0
    for i in range(len(L)):
        s = s + log(L[i][i])
    return s


def inverse_sym(A: Sequence[Sequence]) -> tuple[Entries, object]:
    """Inverse and determinant of a symmetric q x q matrix, q <= 3, by cofactors.

    Only ``A[i][j]`` with ``j <= i`` is read. One division by the determinant: a shallow
    graph that symbolic rewriters and autodiff handle quickly (a nested Cholesky with two
    triangular solves makes PyTensor's canonicaliser explode).

    Examples
    --------
    >>> import numpy as np
    >>> inv, det = inverse_sym([[np.array(2.0), None], [np.array(1.0), np.array(2.0)]])
    >>> float(det), float(inv[0][0]), float(inv[0][1])
    (3.0, 0.6666666666666666, -0.3333333333333333)
    """
    q = len(A)

    def a(i, j):
        return A[i][j] if j <= i else A[j][i]

    if q == 1:
        det = a(0, 0)
        return [[1.0 / det]], det
    if q == 2:
        det = a(0, 0) * a(1, 1) - a(1, 0) * a(1, 0)
        r = 1.0 / det
        off = -a(1, 0) * r
        return [[a(1, 1) * r, off], [off, a(0, 0) * r]], det
    if q == 3:
        c00 = a(1, 1) * a(2, 2) - a(2, 1) * a(2, 1)
        c01 = a(2, 1) * a(2, 0) - a(1, 0) * a(2, 2)
        c02 = a(1, 0) * a(2, 1) - a(1, 1) * a(2, 0)
        c11 = a(0, 0) * a(2, 2) - a(2, 0) * a(2, 0)
        c12 = a(1, 0) * a(2, 0) - a(0, 0) * a(2, 1)
        c22 = a(0, 0) * a(1, 1) - a(1, 0) * a(1, 0)
        det = a(0, 0) * c00 + a(1, 0) * c01 + a(2, 0) * c02
        r = 1.0 / det
        C = [[c00, c01, c02], [c01, c11, c12], [c02, c12, c22]]
        return [[C[i][j] * r for j in range(3)] for i in range(3)], det
    raise ValueError("inverse_sym handles q <= 3; use a Cholesky for larger blocks.")
