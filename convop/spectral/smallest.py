"""The smallest singular values of a sparse matrix, exact to the rank tolerance.

1. Structural zeros: rows and columns of ``A`` that hold nothing (pixels a
   stride never reads) only add exact zeros; they are removed first, giving ``B``.
2. Shift-invert Lanczos on the Gram matrix of the smaller side, ``G = B^H B``
   (``B`` made tall), with a sparse LU; each value refined as ``||B v||``.
3. Certification. The Gram matrix squares the condition number: values below
   the normal-equations floor ``sqrt(max(m, n) eps) sigma_max`` cannot be told
   from 0 through ``G``. Those values are computed again through the augmented
   matrix ``K = [[t I, B], [B^H, -t I]]`` (``t`` the rank tolerance), whose
   pivoted LU squares nothing: the lower-right block of ``K^{-1}`` is
   ``-t (B^H B + t^2 I)^{-1}``. Block inverse iteration with it, then the SVD of
   ``B X`` on the subspace found (Rayleigh-Ritz on ``B`` itself, not on ``G``),
   gives values accurate to about ``eps ||B||``: backward-stable solves leave
   residuals ``||B x|| / ||x||`` at that level, where Lanczos's Ritz vectors of
   the huge eigenvalues lose it to cancellation.

ARPACK's plain smallest mode does not converge on these operators, hence the
shift-invert.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from .. import _memory
from ._target import Target
from .lanczos import basis_size, top_eigenpairs
from .tolerance import rank_tolerance, zero_below

#: Below this smaller dimension a dense SVD is cheaper and safer than Lanczos.
DENSE_SMALL = 64
#: SuperLU's fill on these grids stays within about this multiple of the input's entries.
_FILL = 12
#: Block inverse iterations at most; the zeros converge in one (their ratio is ~1/t^2).
_MAX_SUBSPACE_ITERATIONS = 12


def smallest_singular_values(target: Target, k: int, rng: np.random.Generator,
                             sigma_max: float) -> np.ndarray:
    """Return the ``k`` smallest singular values of the target's matrix, descending."""
    A = target.matrix()
    m, n = A.shape
    tol = rank_tolerance(m, n, sigma_max, target.eps)
    B = A.copy()
    B.eliminate_zeros()
    B = B[np.flatnonzero(np.diff(B.indptr))][:, np.unique(B.indices)]
    rm, rn = B.shape
    zeros = min(m, n) - min(rm, rn)
    if k <= zeros:
        return np.zeros(k)
    need = k - zeros
    if rm < rn:  # the same singular values; the Gram matrix of the smaller side
        B = B.conj().T.tocsr()
    small = B.shape[1]
    if small <= DENSE_SMALL or need >= small - 1:
        _memory.check_budget(3 * B.shape[0] * small * B.dtype.itemsize, target.max_bytes,
                             f"a dense SVD of the {B.shape[0]}x{small} matrix")
        values = scipy.linalg.svdvals(B.toarray())[::-1][:need]
    else:
        values = _gram_smallest(B, need, rng, target.max_bytes)
        floor = math.sqrt(max(m, n) * target.eps) * sigma_max
        unresolved = int(np.count_nonzero(values <= floor))
        if unresolved:
            low = _augmented_smallest(B, unresolved, rng, target.max_bytes, max(tol, 1e-300))
            values = np.sort(np.concatenate([low, values[unresolved:]]))
    return zero_below(np.concatenate([values, np.zeros(zeros)]), tol)


def _gram_smallest(B: sp.csr_array, need: int, rng: np.random.Generator,
                   max_bytes: int | None) -> np.ndarray:
    """Shift-invert Lanczos on ``B^H B`` (``B`` tall); values refined as ``||B v||``, ascending."""
    small = B.shape[1]
    G = (B.conj().T @ B).tocsc()
    _memory.check_budget(
        _FILL * (G.data.nbytes + G.indices.nbytes) + G.indptr.nbytes
        + basis_size(small, need) * small * G.dtype.itemsize,
        max_bytes,
        f"the sparse LU of the {small}x{small} Gram matrix ({G.nnz} stored entries)",
    )
    shift = 1e-12 * float(abs(G).sum(axis=0).max())
    shifted = (G + shift * sp.eye_array(small, format="csc", dtype=G.dtype)).tocsc()
    lu = sla.splu(shifted, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0)
    # The largest eigenvalues 1/(lambda + shift) of the inverse are the smallest lambda.
    inverse = sla.LinearOperator(G.shape, matvec=lu.solve, rmatvec=lu.solve, dtype=G.dtype)
    _, vectors = top_eigenpairs(inverse, need, 1e-13, rng)
    return np.sort(np.linalg.norm(B @ vectors, axis=0))  # ||B v||: no squared rounding


def _augmented_smallest(B: sp.csr_array, count: int, rng: np.random.Generator,
                        max_bytes: int | None, t: float) -> np.ndarray:
    """Return the ``count`` smallest values through ``K = [[t I, B], [B^H, -t I]]``, ascending."""
    rm, rn = B.shape
    width = min(rn, count + max(2, min(10, count)))  # a few extra vectors speed convergence
    K = sp.block_array([[t * sp.eye_array(rm, dtype=B.dtype), B],
                        [B.conj().T, -t * sp.eye_array(rn, dtype=B.dtype)]], format="csc")
    _memory.check_budget(
        _FILL * (K.data.nbytes + K.indices.nbytes) + K.indptr.nbytes
        + 4 * width * (rm + rn) * K.dtype.itemsize,
        max_bytes,
        f"the sparse LU of the {rm + rn}x{rm + rn} augmented matrix ({K.nnz} stored entries)",
    )
    lu = sla.splu(K, permc_spec="COLAMD")
    X = rng.standard_normal((rn, width)).astype(K.dtype)
    values = np.full(count, np.inf)
    for _ in range(_MAX_SUBSPACE_ITERATIONS):
        # (B^H B + t^2 I)^{-1} X up to the factor -1/t, which the QR drops.
        X, _ = np.linalg.qr(lu.solve(np.vstack([np.zeros((rm, width), K.dtype), X]))[rm:])
        previous, values = values, np.sort(scipy.linalg.svdvals(B @ X))[:count]
        if np.all(np.abs(values - previous) <= 1e-10 * values + t):
            break
    return values
