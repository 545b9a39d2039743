"""The smallest singular values (and vectors) of a sparse matrix, exact to the rank tolerance.

1. Structural zeros: rows and columns of ``A`` that hold nothing (pixels a
   stride never reads) only add exact zeros; they are removed first, giving ``B``
   (made tall: for a wide ``B`` the same values are those of ``B^H``).
2. Shift-invert Lanczos on the Gram matrix ``G = B^H B`` with a sparse
   factorization; each value refined as ``||B v||``.
3. Certification. The Gram matrix squares the condition number: values below
   the normal-equations floor ``sqrt(max(m, n) eps) sigma_max`` cannot be told
   from 0 through ``G``. Those values are computed again through the augmented
   matrix ``K = [[t I, B], [B^H, -t I]]`` (``t`` the rank tolerance), whose
   pivoted LU squares nothing: the lower-right block of ``K^{-1}`` is
   ``-t (B^H B + t^2 I)^{-1}`` and the upper-left ``t (B B^H + t^2 I)^{-1}``. Block
   inverse iteration with it, then the SVD of ``B X`` on the subspace found
   (Rayleigh-Ritz on ``B`` itself, not on ``G``), gives values accurate to about
   ``eps ||B||``: backward-stable solves leave residuals ``||B x|| / ||x||`` at
   that level, where Lanczos's Ritz vectors of the huge eigenvalues lose it to
   cancellation. The upper-left block gives the left vectors of zero values.

Each value comes with a bound: the residual of its singular triplet, within
which an exact singular value lies.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from .. import _memory
from ._target import Target
from .lanczos import NoConvergence, basis_size, top_eigenpairs
from .tolerance import rank_tolerance, zero_below

if TYPE_CHECKING:
    from .values import Singular

#: Below this smaller dimension a dense SVD is cheaper and safer than Lanczos.
DENSE_SMALL = 64
#: SuperLU's fill on these grids stays within about this multiple of the input's entries.
_FILL = 12
#: Block inverse iterations at most; the zeros converge in one (their ratio is ~1/t^2).
_MAX_SUBSPACE_ITERATIONS = 12


def smallest_singular_values(target: Target, k: int, rng: np.random.Generator,
                             sigma_max: float, *, maxiter: int | None = None,
                             callback: Callable[[int, float], None] | None = None,
                             vectors: bool = False) -> Singular:
    """Return the ``k`` smallest singular values of the target's matrix, descending."""
    from .values import Singular

    A = target.matrix()
    m, n = A.shape
    tol = rank_tolerance(m, n, sigma_max, target.eps)
    A = A.copy()
    A.eliminate_zeros()
    rows = np.flatnonzero(np.diff(A.indptr))
    cols = np.unique(A.indices)
    B = A[rows][:, cols]
    zeros = min(m, n) - min(B.shape)
    transposed = B.shape[0] < B.shape[1]
    if transposed:  # the same singular values; the Gram matrix of the smaller side
        B = B.conj().T.tocsr()
    solver = _Solver(B, rng, target.max_bytes, max(tol, 1e-300), maxiter, callback)
    need = max(0, k - zeros)
    values, right = solver.smallest(need, sigma_max * math.sqrt(max(m, n) * target.eps))
    values = np.concatenate([values, np.zeros(zeros)])
    bounds = np.concatenate([solver.bounds(right, values[:need]), np.zeros(zeros)])
    order = np.argsort(values)[::-1]
    final = zero_below(values, tol)
    if not vectors:
        return Singular(final[-k:], bounds[order][-k:], steps=solver.steps)
    # Vectors of the tall B: right ones from the solver, left ones B v / s, or for zero
    # values a basis of null(B^H). Then back to A: undo the transpose and re-insert the
    # removed rows and columns. Structural zeros take unit vectors of empty rows and
    # columns, and null vectors of the kept part where those run out.
    sig = zero_below(values[:need], tol)  # descending; `right` is ascending
    nonzero = sig > 0
    empty_rows = np.setdiff1d(np.arange(m), rows)[:zeros]
    empty_cols = np.setdiff1d(np.arange(n), cols)[:zeros]
    # Null vectors of B^H (the tall B's left null space) serve the zero values the solver
    # found and the structural zeros beyond the empty lines of the tall side: A^H u = 0 on
    # A's kept rows, or after a transpose A v = 0 on its kept columns. One call, so that
    # they are orthonormal together. (The other side always has enough empty lines.)
    short = zeros - (empty_cols.size if transposed else empty_rows.size)
    found = int((~nonzero).sum())
    null = solver.left_null(found + short) if found + short else np.zeros((B.shape[0], 0))
    v_b = right[:, ::-1]
    u_b = np.zeros((B.shape[0], need), dtype=B.dtype)
    u_b[:, nonzero] = (B @ v_b[:, nonzero]) / sig[nonzero]
    if found:
        u_b[:, ~nonzero] = null[:, :found]
    if transposed:  # B = A_kept^H: its right vectors are A's left ones
        u_b, v_b = v_b, u_b
    u = np.zeros((m, need + zeros), dtype=B.dtype)
    v = np.zeros((n, need + zeros), dtype=B.dtype)
    u[rows, :need] = u_b
    v[cols, :need] = v_b
    u[empty_rows, need + np.arange(empty_rows.size)] = 1.0
    v[empty_cols, need + np.arange(empty_cols.size)] = 1.0
    if short:
        last = np.arange(need + zeros - short, need + zeros)
        if transposed:
            v[np.ix_(cols, last)] = null[:, found:]
        else:
            u[np.ix_(rows, last)] = null[:, found:]
    return Singular(final[-k:], bounds[order][-k:], u[:, -k:], v[:, -k:].conj().T,
                    solver.steps)


class _Solver:
    """The smallest values of a tall sparse ``B``: Gram shift-invert, certified when needed."""

    def __init__(self, B: sp.csr_array, rng: np.random.Generator, max_bytes: int | None,
                 t: float, maxiter: int | None, callback: Callable[[int, float], None] | None):
        self.B = B
        self.rng = rng
        self.max_bytes = max_bytes
        self.t = t
        self.maxiter = maxiter
        self.callback = callback
        self.steps = 0
        self._lu: Any = None

    def smallest(self, need: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``need`` smallest values (ascending) and their right vectors (columns)."""
        B = self.B
        rm, rn = B.shape
        if need == 0:
            return np.zeros(0), np.zeros((rn, 0), dtype=B.dtype)
        if rn <= DENSE_SMALL or need >= rn - 1:
            _memory.check_budget(3 * rm * rn * B.dtype.itemsize, self.max_bytes,
                                 f"a dense SVD of the {rm}x{rn} matrix")
            _, s, vh = scipy.linalg.svd(B.toarray(), full_matrices=False)
            order = np.argsort(s)[:need]
            return s[order], vh[order].conj().T
        try:
            values, vectors, below = self._gram(need, floor)
        except NoConvergence:
            if self.maxiter is not None:
                raise  # the caller's limit: say so rather than spend more
            values = np.zeros(need)  # resolve everything through the augmented matrix
            vectors = np.zeros((rn, need), dtype=B.dtype)
            below = np.ones(need, dtype=bool)
        # Unresolved: the Gram matrix puts them below the floor (their Ritz values say so;
        # ||B v|| of an unconverged vector is only an upper bound), or ||B v|| does.
        unresolved = int(np.count_nonzero(below | (values <= floor)))
        if unresolved:
            low, low_vectors = self._augmented(unresolved)
            values = np.concatenate([low, values[unresolved:]])
            vectors = np.hstack([low_vectors, vectors[:, unresolved:]])
        order = np.argsort(values)
        return values[order], vectors[:, order]

    def bounds(self, vectors: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Return the residual ``||B^H u - s v|| / sqrt(2)`` of each triplet (``u = B v / s``)."""
        B = self.B
        out = np.empty(values.size)
        for i, (s, v) in enumerate(zip(values, vectors.T)):
            bv = B @ v
            if s > 0:
                out[i] = float(np.linalg.norm(B.conj().T @ (bv / s) - s * v)) / math.sqrt(2)
            else:
                out[i] = float(np.linalg.norm(bv))
        return out

    def _gram(self, need: int, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shift-invert Lanczos on ``B^H B``; values refined as ``||B v||``, ascending.

        Also returns which values the Gram matrix places below ``floor``.
        """
        B = self.B
        small = B.shape[1]
        G = (B.conj().T @ B).tocsc()
        _memory.check_budget(
            _FILL * (G.data.nbytes + G.indices.nbytes) + G.indptr.nbytes
            + basis_size(small, need) * small * G.dtype.itemsize,
            self.max_bytes,
            f"the sparse LU of the {small}x{small} Gram matrix ({G.nnz} stored entries)",
        )
        shift = 1e-12 * float(abs(G).sum(axis=0).max())
        shifted = (G + shift * sp.eye_array(small, format="csc", dtype=G.dtype)).tocsc()
        lu = sla.splu(shifted, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0)
        report = None
        if self.callback is not None:
            callback = self.callback

            def report(step: int, theta: float) -> None:  # theta = 1 / (s^2 + shift)
                callback(step, math.sqrt(max(1.0 / theta - shift, 0.0)) if theta > 0 else 0.0)

        # The largest eigenvalues 1/(lambda + shift) of the inverse are the smallest lambda.
        above = 1.0 / (floor**2 + shift)
        pairs = top_eigenpairs(lu.solve, small, need, dtype=G.dtype, tol=1e-10, rng=self.rng,
                               maxiter=self.maxiter, callback=report, above=above)
        self.steps += pairs.steps
        values = np.linalg.norm(B @ pairs.vectors, axis=0)  # ||B v||: no squared rounding
        order = np.argsort(values)
        below = pairs.values[order] > above
        # Put the values below the floor first: the caller replaces the smallest ones.
        first = np.argsort(~below, kind="stable")
        return values[order][first], pairs.vectors[:, order][:, first], below[first]

    def _factor(self) -> Any:
        """Return the pivoted LU of ``K = [[t I, B], [B^H, -t I]]`` (built once)."""
        if self._lu is None:
            B, t = self.B, self.t
            rm, rn = B.shape
            K = sp.block_array([[t * sp.eye_array(rm, dtype=B.dtype), B],
                                [B.conj().T, -t * sp.eye_array(rn, dtype=B.dtype)]],
                               format="csc")
            _memory.check_budget(
                _FILL * (K.data.nbytes + K.indices.nbytes) + K.indptr.nbytes
                + 4 * (rm + rn) * min(rn, 64) * K.dtype.itemsize,
                self.max_bytes,
                f"the sparse LU of the {rm + rn}x{rm + rn} augmented matrix ({K.nnz} stored "
                f"entries)",
            )
            self._lu = sla.splu(K, permc_spec="COLAMD")
        return self._lu

    def _subspace(self, count: int, side: str) -> np.ndarray:
        """Block inverse iteration with ``(B^H B + t^2)^{-1}`` (``"right"``) or ``B B^H``."""
        B = self.B
        rm, rn = B.shape
        size = rn if side == "right" else rm
        lu = self._factor()
        width = min(size, count + max(2, min(10, count)))  # extra vectors speed convergence
        X = self.rng.standard_normal((size, width)).astype(B.dtype)
        values = np.full(count, np.inf)
        for _ in range(_MAX_SUBSPACE_ITERATIONS):
            zero = np.zeros((rm if side == "right" else rn, width), B.dtype)
            rhs = np.vstack([zero, X]) if side == "right" else np.vstack([X, zero])
            solved = lu.solve(rhs)
            self.steps += width
            X, _ = np.linalg.qr(solved[rm:] if side == "right" else solved[:rm])
            applied = B @ X if side == "right" else B.conj().T @ X
            previous, values = values, np.sort(scipy.linalg.svdvals(applied))[:count]
            if np.all(np.abs(values - previous) <= 1e-10 * values + self.t):
                break
        return X

    def _augmented(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``count`` smallest values through ``K``, with right vectors, ascending."""
        X = self._subspace(count, "right")
        # Rayleigh-Ritz on B itself: B (X w) = s u for the SVD of B X.
        _, s, wh = np.linalg.svd(self.B @ X, full_matrices=False)
        order = np.argsort(s)[:count]
        return s[order], X @ wh[order].conj().T

    def left_null(self, count: int) -> np.ndarray:
        """``count`` orthonormal vectors ``u`` with ``B^H u = 0`` (to the rank tolerance)."""
        B = self.B
        if B.shape[0] <= DENSE_SMALL or self._lu is None and B.shape[1] <= DENSE_SMALL:
            u, s, _ = scipy.linalg.svd(B.toarray(), full_matrices=True)
            return u[:, -count:]
        X = self._subspace(count, "left")
        u, s, _ = np.linalg.svd(X.conj().T @ (B @ (B.conj().T @ X)))
        return X @ u[:, np.argsort(s)[:count]]
