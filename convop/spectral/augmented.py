"""Solves with the augmented matrix ``K = [[t I, B], [B^H, -t I]]`` of a tall ``B``.

``K`` squares nothing: a backward-stable solve with it resolves singular values
down to about ``eps ||B||``, where the Gram matrix ``B^H B`` stops at
``sqrt(eps) ||B||``. Two ways to get one:

- :class:`RefinedAugmented`: iterative refinement on ``K`` itself, each
  correction through the Cholesky factor of ``C = B^H B + t^2 I`` (block
  elimination: ``x = C^{-1} (B^H b1 - t b2)``, ``y = (b1 - B x) / t``). The
  residuals are computed with ``B``'s products, so the answer is ``K``'s to
  working accuracy once the refinement converges. It contracts by about
  ``eps cond(B)^2`` per step: up to ``cond(B)`` near ``1e7`` a few steps do; beyond,
  or where ``C``'s factor is not positive definite, it says so and the caller
  falls back to the second way. The layer's Cholesky factor is the one the Gram
  step already built, so this costs no second factorization.
- :func:`augmented_lu`: SuperLU's pivoted LU of the explicit ``K``, fill-heavy
  (about 100 s for a 64->64 3x3 layer at 16x16) but unconditional.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from .. import _memory

#: SuperLU's fill on these grids stays within about this multiple of the input's entries.
FILL = 12
#: Refinement steps at most.
MAX_REFINEMENTS = 30
#: Each refinement step must shrink the residual at least this much, or it stops
#: (benchmarks/TUNING.md#refinement).
CONTRACTION = 0.9
#: A refined solve is accepted when its relative residual
#: ``||b - K z|| / (||B|| ||z|| + ||b||)`` is at most this many eps: a backward-stable
#: LU's, give or take the rounding of the residual itself (benchmarks/TUNING.md#refinement).
ACCEPTED_RESIDUAL = 1000.0
#: A residual at most this many eps is at its own rounding (0.7-0.8 eps measured): the
#: solve returns without the step that would only confirm the stall.
FLOOR_RESIDUAL = 10.0

Apply = Callable[[np.ndarray], np.ndarray]


class RefinementFailed(ArithmeticError):
    """Iterative refinement on ``K`` did not reach a backward-stable residual."""


class RefinedAugmented:
    """Backward-stable solves with ``K`` by refinement on the Gram matrix's Cholesky factor.

    Parameters
    ----------
    matmat, rmatmat : callable
        ``X -> B X`` and ``Y -> B^H Y`` on columns.
    gram_solve : callable
        ``b -> (B^H B + t^2 I)^{-1} b``, as accurate as a Cholesky factor gives.
    t : float
        The diagonal of ``K``.
    norm : float
        ``||B||`` (the residual's scale).
    rows : int
        ``B``'s row count.
    """

    def __init__(self, matmat: Apply, rmatmat: Apply, gram_solve: Apply, t: float,
                 norm: float, rows: int) -> None:
        self.matmat, self.rmatmat, self.gram_solve = matmat, rmatmat, gram_solve
        self.t, self.norm, self.rows = t, norm, rows
        self.steps = 0  # refinement steps, over all solves

    def _product(self, z: np.ndarray) -> np.ndarray:
        y, x = z[:self.rows], z[self.rows:]
        return np.vstack([self.t * y + self.matmat(x), self.rmatmat(y) - self.t * x])

    def _precondition(self, b: np.ndarray) -> np.ndarray:
        b1, b2 = b[:self.rows], b[self.rows:]
        x = self.gram_solve(self.rmatmat(b1) - self.t * b2)
        return np.vstack([(b1 - self.matmat(x)) / self.t, x])

    def solve(self, b: np.ndarray, refine: bool = True) -> np.ndarray:
        """Return ``K^{-1} b`` for columns ``b``.

        Without ``refine``, the Gram factor's solve alone (one solve, a relative
        residual near ``eps`` times the Gram matrix's condition): enough for a
        step of inverse iteration far from convergence.

        Raises
        ------
        RefinementFailed
            When a step does not shrink the residual by half and it is not yet
            at a backward-stable level (``K`` too ill-conditioned for the factor).
        """
        eps = np.finfo(np.result_type(b, np.float64)).eps
        z = self._precondition(b)
        if not refine:
            return z
        size_b = np.linalg.norm(b, axis=0)
        previous = np.full(b.shape[1], np.inf)
        for _ in range(MAX_REFINEMENTS):
            r = b - self._product(z)
            residual = np.linalg.norm(r, axis=0) / np.maximum(
                self.norm * np.linalg.norm(z, axis=0) + size_b, np.finfo(float).tiny)
            if np.all(residual <= FLOOR_RESIDUAL * eps):
                return z
            stalled = residual > CONTRACTION * previous
            if np.any(stalled):
                if np.all(np.minimum(residual, previous) <= ACCEPTED_RESIDUAL * eps):
                    return z
                raise RefinementFailed(
                    f"refinement on the augmented matrix stalled at a relative residual "
                    f"{float(residual.max()):.1e}")
            previous = residual
            z = z + self._precondition(r)
            self.steps += 1
        if np.all(previous <= ACCEPTED_RESIDUAL * eps):
            return z
        raise RefinementFailed(f"refinement on the augmented matrix took more than "
                               f"{MAX_REFINEMENTS} steps")


def splu_explained(matrix: sp.csc_array, what: str, max_bytes: int | None, extra_bytes: int,
                   **options: Any) -> Any:
    """SuperLU's factorization, checked against the budget with its usual fill first.

    SuperLU reports a fill beyond what it could allocate as a bare ``MemoryError``
    ("Not enough memory") after running for a while; this one says what it
    factored and the estimate the budget check assumed.
    """
    estimate = FILL * matrix.nnz
    _memory.check_budget(
        FILL * (matrix.data.nbytes + matrix.indices.nbytes) + matrix.indptr.nbytes
        + extra_bytes, max_bytes, f"the sparse LU of {what} ({matrix.nnz} stored entries)")
    try:
        return sla.splu(matrix, **options)
    except MemoryError as err:
        raise MemoryError(
            f"SuperLU ran out of memory factoring {what} ({matrix.nnz} stored entries): its "
            f"fill passed the {estimate} entries ({FILL} times the matrix's) the budget "
            f"check assumed. Pass a smaller `max_bytes` to be refused before trying, or "
            f"compute the largest values only. (SuperLU: {err or 'not enough memory'})"
        ) from err


def augmented_lu(B: sp.csr_array, t: float, max_bytes: int | None, extra_bytes: int) -> Any:
    """Return SuperLU's pivoted LU of ``K = [[t I, B], [B^H, -t I]]``."""
    rm, rn = B.shape
    # bmat, not block_array: the PETSc path runs on Debian's scipy 1.10.
    K = sp.csc_array(sp.bmat([[t * sp.identity(rm, dtype=B.dtype), B],
                              [B.conj().T, -t * sp.identity(rn, dtype=B.dtype)]],
                             format="csc"))
    return splu_explained(K, f"the {rm + rn}x{rm + rn} augmented matrix", max_bytes,
                          extra_bytes, permc_spec="COLAMD")
