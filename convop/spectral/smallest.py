"""The smallest singular values (and vectors) of a sparse matrix, exact to the rank tolerance.

1. Structural zeros: rows and columns of ``A`` that hold nothing (pixels a
   stride never reads) only add exact zeros; they are removed first, giving ``B``
   (made tall: for a wide ``B`` the same values are those of ``B^H``).
2. Shift-invert Lanczos on the Gram matrix ``G = B^H B``; each value refined
   as ``||B v||``. For a layer, ``G`` is built in pixel blocks from the kernel's
   tap pairs (:mod:`convop.spectral.gram`) and factored by a nested-dissection
   multifrontal Cholesky (:mod:`convop.spectral.cholesky`); an explicit matrix
   (or a numerically singular ``G``) goes through SuperLU.
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
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .. import _memory
from ..errors import NoConvergence
from ..geometry import ConvGeometry, make_geometry
from ._target import Target
from .augmented import RefinedAugmented, RefinementFailed, augmented_lu, splu_explained
from .cholesky import BlockCholesky, NotPositiveDefinite
from .gram import block_gram, scaled_block_gram, touched
from .lanczos import basis_size, top_eigenpairs
from .results import Singular
from .tolerance import rank_tolerance, zero_below

#: Below this smaller dimension a dense SVD is cheaper and safer than Lanczos.
DENSE_SMALL = 64
#: Relative accuracy of the shift-invert Lanczos. Tight: the singular vectors, and so
#: the residual bounds reported, improve with it at a step or two per decade.
GRAM_TOL = 1e-13
#: Block inverse iterations at most; the zeros converge in one (their ratio is ~1/t^2).
_MAX_SUBSPACE_ITERATIONS = 12


def smallest_singular_values(target: Target, k: int, rng: np.random.Generator,
                             sigma_max: float, *, maxiter: int | None = None,
                             callback: Callable[[int, float], None] | None = None,
                             vectors: bool = False) -> Singular:
    """Return the ``k`` smallest singular values of the target's matrix, descending."""
    m, n = target.shape
    tol = rank_tolerance(m, n, sigma_max, target.eps)
    B = _Tall.of(target, sigma_max)
    rows, cols, transposed = B.rows, B.cols, B.transposed
    zeros = min(m, n) - min(B.shape)
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
    u_b[:, nonzero] = B.matmat(v_b[:, nonzero]) / sig[nonzero]
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


def predicted_factor_flops(geom: ConvGeometry, weight: np.ndarray) -> float:
    """Return the multiply-adds of the Cholesky factor the smallest values of a layer take.

    From the nested dissection's symbolic phase alone (no numeric work): 7.9e11 for
    a 64->64 3x3 layer at 32x32 (15 s here with its solves), 1.6e12 for 512->512
    at 7x7 (32 s), 4.0e12 for 128->128 at 28x28 (59 s).
    """
    m, n = geom.matrix_shape("input")
    side = "output" if m < n else "input"
    # The pixel pattern does not depend on the channels: a one-channel layer's serves.
    single = make_geometry((1, 1, *geom.kernel_size), geom.input_size, stride=geom.stride,
                           padding=geom.padding, dilation=geom.dilation,
                           padding_mode=geom.padding_mode)
    pattern = block_gram(single, np.ones((1, 1, *geom.kernel_size)), side, np.dtype(np.float64))
    channels = geom.in_per_group if side == "input" else geom.out_per_group
    return BlockCholesky.predicted_flops(pattern, channels, geom.groups)


class _Tall:
    """``B``: the operator's nonempty rows and columns, conjugate-transposed if wide.

    ``B``'s columns are the operator's kept columns (or, ``transposed``, its kept
    rows). For a layer it is applied through the layer's products and its Gram
    matrix is built in pixel blocks; the explicit sparse ``B`` is only formed
    when a path needs it (the augmented matrix, dense small cases).
    """

    def __init__(self, target: Target, rows: np.ndarray, cols: np.ndarray,
                 sigma_max: float, explicit: sp.csr_array | None = None) -> None:
        self.target = target
        self.rows, self.cols = rows, cols
        self.transposed = rows.size < cols.size
        self.shape = (cols.size, rows.size) if self.transposed else (rows.size, cols.size)
        self.dtype = target.dtype
        self.sigma_max = sigma_max
        self._explicit = explicit

    @classmethod
    def of(cls, target: Target, sigma_max: float) -> _Tall:
        """Find the nonempty rows and columns of the target's matrix."""
        layer = target.layer
        if layer is not None:
            cols, rows = touched(layer.geometry, layer.weight)
            return cls(target, np.flatnonzero(rows), np.flatnonzero(cols), sigma_max)
        A = target.matrix().copy()
        A.eliminate_zeros()
        rows = np.flatnonzero(np.diff(A.indptr))
        cols = np.unique(A.indices)
        tall = cls(target, rows, cols, sigma_max)
        B = A[rows][:, cols]
        tall._explicit = B.conj().T.tocsr() if tall.transposed else B
        return tall

    def sparse(self) -> sp.csr_array:
        """Return ``B`` explicitly (built once)."""
        if self._explicit is None:
            B = self.target.matrix()[self.rows][:, self.cols]
            self._explicit = B.conj().T.tocsr() if self.transposed else sp.csr_array(B)
        return self._explicit

    def matmat(self, X: np.ndarray) -> np.ndarray:
        """Return ``B X`` (``X`` a vector or columns)."""
        if self._explicit is not None or self.target.layer is None:
            return self.sparse() @ X
        inside, outside, which = ((self.rows, self.cols, "adjoint") if self.transposed
                                  else (self.cols, self.rows, "forward"))
        return self._through_layer(X, inside, outside, which)

    def rmatmat(self, Y: np.ndarray) -> np.ndarray:
        """Return ``B^H Y``."""
        if self._explicit is not None or self.target.layer is None:
            return self.sparse().conj().T @ Y
        inside, outside, which = ((self.cols, self.rows, "forward") if self.transposed
                                  else (self.rows, self.cols, "adjoint"))
        return self._through_layer(Y, inside, outside, which)

    def _through_layer(self, X: np.ndarray, inside: np.ndarray, outside: np.ndarray,
                       which: str) -> np.ndarray:
        m, n = self.target.shape
        size = n if which == "forward" else m
        columns = X.reshape(X.shape[0], -1)
        out = np.empty((outside.size, columns.shape[1]), dtype=np.result_type(X, self.dtype))
        full = np.zeros(size, dtype=self.dtype)
        for j in range(columns.shape[1]):
            full[inside] = columns[:, j]
            out[:, j] = self.target.apply(full, which)[outside]
        return out.reshape((outside.size,) + X.shape[1:])

    def gram_solver(self, max_bytes: int | None, extra_bytes: int, t: float
                    ) -> tuple[Callable[[np.ndarray], np.ndarray], float, bool]:
        """Return ``b -> (B^H B + shift I)^{-1} b``, the shift, and whether it is ``t**2``.

        A layer's Gram matrix is factored with the shift ``t**2`` (the augmented
        matrix's, so the factor also serves :class:`RefinedAugmented`), or where that
        is not numerically positive definite with ``1e-12 ||B||**2``; an explicit
        matrix goes through SuperLU with the latter.
        """
        if self.target.layer is not None and self._explicit is None:
            try:
                return self._block_solver(max_bytes, extra_bytes, t)
            except NotPositiveDefinite:
                pass  # numerically singular: SuperLU's pivoting copes, and the caller
                # certifies what falls below the floor through the augmented matrix
        B = self.sparse()
        small = B.shape[1]
        G = (B.conj().T @ B).tocsc()
        shift = 1e-12 * self.sigma_max**2
        shifted = (G + shift * sp.eye_array(small, format="csc", dtype=G.dtype)).tocsc()
        lu = splu_explained(shifted, f"the {small}x{small} Gram matrix", max_bytes,
                            extra_bytes, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0)
        return lu.solve, shift, False

    def _block_solver(self, max_bytes: int | None, extra_bytes: int, t: float
                      ) -> tuple[Callable[[np.ndarray], np.ndarray], float, bool]:
        layer = self.target.layer
        assert layer is not None
        g = layer.geometry
        side = "output" if self.transposed else "input"
        budget = max(0, max_bytes - extra_bytes) if max_bytes is not None else None
        gram, scale = scaled_block_gram(g, layer.weight, side, self.dtype, budget)
        c, groups, pixels = gram.channels, gram.groups, gram.pattern.shape[0]
        # B's columns (channel-major, channel = group * c + local) in the Gram's
        # (group, pixel, local channel) order.
        kept = self.rows if self.transposed else self.cols
        channel, pixel = np.divmod(kept, pixels)
        group, local = np.divmod(channel, c)
        index = (group * pixels + pixel) * c + local
        # Unknowns B lacks get a diagonal far above the spectrum: decoupled, and never
        # among the smallest eigenvalues.
        extra = np.full(groups * pixels * c, 4.0 * (self.sigma_max / scale) ** 2 + 1.0)
        shifts = ((t / scale) ** 2, 1e-12 * (self.sigma_max / scale) ** 2)
        for shift in shifts:
            extra[index] = shift
            try:
                factor = BlockCholesky(gram, extra.reshape(groups, pixels, c), budget)
                break
            except NotPositiveDefinite:
                if shift == shifts[-1]:
                    raise
        size = groups * pixels * c
        dtype = self.dtype

        def solve(b: np.ndarray) -> np.ndarray:
            full = np.zeros((size,) + b.shape[1:], dtype=np.result_type(b, dtype))
            full[index] = b
            return factor.solve(full)[index] / scale**2

        return solve, shift * scale**2, shift == shifts[0]


class _Solver:
    """The smallest values of a tall ``B``: Gram shift-invert, certified when needed."""

    def __init__(self, B: _Tall, rng: np.random.Generator, max_bytes: int | None,
                 t: float, maxiter: int | None, callback: Callable[[int, float], None] | None):
        self.B = B
        self.rng = rng
        self.max_bytes = max_bytes
        self.t = t
        self.maxiter = maxiter
        self.callback = callback
        self.steps = 0
        self._gram_factor: Callable[[np.ndarray], np.ndarray] | None = None
        self._K: Any = None

    def smallest(self, need: int, floor: float) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``need`` smallest values (ascending) and their right vectors (columns)."""
        B = self.B
        rm, rn = B.shape
        if need == 0:
            return np.zeros(0), np.zeros((rn, 0), dtype=B.dtype)
        if rn <= DENSE_SMALL or need >= rn - 1:
            _memory.check_budget(3 * rm * rn * B.dtype.itemsize, self.max_bytes,
                                 f"a dense SVD of the {rm}x{rn} matrix")
            _, s, vh = scipy.linalg.svd(B.sparse().toarray(), full_matrices=False)
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
        if self._gram_factor is not None:
            # The factor has the augmented matrix's shift: every value, not only those
            # below the floor, gets K's accuracy from a start that has nearly converged
            # (Lanczos's Ritz vectors lose digits to the inverse's dynamic range).
            try:
                return self._augmented(need, vectors)
            except RefinementFailed:
                self._gram_factor, self._K = None, None
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
        if values.size == 0:
            return np.zeros(0)
        bv = self.B.matmat(vectors)
        positive = values > 0
        safe = np.where(positive, values, 1.0)
        back = self.B.rmatmat(bv / safe)
        residual = np.linalg.norm(back - safe * vectors, axis=0) / math.sqrt(2)
        # At the rounding level B v is noise and the residual above means nothing; but the
        # i-th smallest singular value and s_i both lie in [0, ||B V||] for the orthonormal
        # V of the smallest ones (Courant-Fischer).
        spread = float(np.linalg.norm(bv))
        return np.minimum(np.where(positive, residual, np.inf), spread)

    def _gram(self, need: int, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Shift-invert Lanczos on ``B^H B``; values refined as ``||B v||``, ascending.

        Also returns which values the Gram matrix places below ``floor``.
        """
        B = self.B
        small = B.shape[1]
        solve, shift, exact = B.gram_solver(
            self.max_bytes, basis_size(small, need) * small * B.dtype.itemsize, self.t)
        if exact:
            self._gram_factor = solve
        report = None
        if self.callback is not None:
            callback = self.callback

            def report(step: int, theta: float) -> None:  # theta = 1 / (s^2 + shift)
                callback(step, math.sqrt(max(1.0 / theta - shift, 0.0)) if theta > 0 else 0.0)

        # The largest eigenvalues 1/(lambda + shift) of the inverse are the smallest lambda.
        above = 1.0 / (floor**2 + shift)
        pairs = top_eigenpairs(solve, small, need, dtype=B.dtype, tol=GRAM_TOL, rng=self.rng,
                               maxiter=self.maxiter, callback=report, above=above)
        self.steps += pairs.steps
        values = np.linalg.norm(B.matmat(pairs.vectors), axis=0)  # ||B v||: no squared rounding
        order = np.argsort(values)
        below = pairs.values[order] > above
        # Put the values below the floor first: the caller replaces the smallest ones.
        first = np.argsort(~below, kind="stable")
        return values[order][first], pairs.vectors[:, order][:, first], below[first]

    def _solver(self) -> Any:
        """Return solves with ``K = [[t I, B], [B^H, -t I]]`` (built once).

        Refinement on the Gram step's Cholesky factor when it has one with the shift
        ``t**2``; SuperLU's LU of ``K`` otherwise, or once refinement has failed.
        """
        if self._K is None:
            B = self.B
            rm, rn = B.shape
            if self._gram_factor is not None:
                self._K = RefinedAugmented(B.matmat, B.rmatmat, self._gram_factor, self.t,
                                           B.sigma_max, rm)
            else:
                self._K = augmented_lu(B.sparse(), self.t, self.max_bytes,
                                       4 * (rm + rn) * min(rn, 64) * B.dtype.itemsize)
        return self._K

    def _subspace(self, count: int, side: str, start: np.ndarray | None = None) -> np.ndarray:
        """Block inverse iteration with ``(B^H B + t^2)^{-1}`` (``"right"``) or ``B B^H``."""
        try:
            return self._iterate(count, side, start)
        except RefinementFailed:
            if start is not None:
                raise  # the caller keeps what it had
            self._gram_factor, self._K = None, None  # too ill-conditioned: SuperLU's LU
            return self._iterate(count, side)

    def _iterate(self, count: int, side: str, start: np.ndarray | None = None) -> np.ndarray:
        B = self.B
        rm, rn = B.shape
        size = rn if side == "right" else rm
        K = self._solver()
        width = min(size, count + max(2, min(10, count)))  # extra vectors speed convergence
        X = self.rng.standard_normal((size, width)).astype(B.dtype)
        if start is not None and np.any(start):
            X[:, :start.shape[1]] = start
        values = np.full(count, np.inf)
        for i in range(_MAX_SUBSPACE_ITERATIONS):
            zero = np.zeros((rm if side == "right" else rn, width), B.dtype)
            rhs = np.vstack([zero, X]) if side == "right" else np.vstack([X, zero])
            # The first step, from a start far from converged, needs no refined solve.
            solved = (K.solve(rhs, refine=False) if i == 0 and isinstance(K, RefinedAugmented)
                      else K.solve(rhs))
            self.steps += width
            X, _ = np.linalg.qr(solved[rm:] if side == "right" else solved[:rm])
            applied = B.matmat(X) if side == "right" else B.rmatmat(X)
            found = np.sort(scipy.linalg.svdvals(applied))
            # A wide `applied` has width - rows more zero singular values than svdvals lists.
            found = np.concatenate([np.zeros(max(0, width - found.size)), found])
            previous, values = values, found[:count]
            if np.all(np.abs(values - previous) <= 1e-10 * values + self.t):
                break
        return X

    def _augmented(self, count: int, start: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Return the ``count`` smallest values through ``K``, with right vectors, ascending.

        ``start``: right vectors to start from (columns); with one, a refinement
        that fails raises :class:`RefinementFailed` instead of turning to SuperLU.
        """
        X = self._subspace(count, "right", start)
        # Rayleigh-Ritz on B itself: B (X w) = s u for the SVD of B X.
        _, s, wh = np.linalg.svd(self.B.matmat(X), full_matrices=False)
        order = np.argsort(s)[:count]
        return s[order], X @ wh[order].conj().T

    def left_null(self, count: int) -> np.ndarray:
        """``count`` orthonormal vectors ``u`` with ``B^H u = 0`` (to the rank tolerance)."""
        B = self.B.sparse()
        rm, rn = B.shape
        if rm <= DENSE_SMALL or rm <= 2048 and rm * rn <= 2**22:
            u, s, _ = scipy.linalg.svd(B.toarray(), full_matrices=True)
            return u[:, -count:]
        X = self._subspace(count, "left")
        u, s, _ = np.linalg.svd(X.conj().T @ self.B.matmat(self.B.rmatmat(X)))
        return X @ u[:, np.argsort(s)[:count]]
