"""Sparse Cholesky of a layer's Gram matrix: geometric nested dissection, multifrontal.

The unknowns of a layer's Gram matrix (:mod:`convop.spectral.gram`) sit on the
pixels of a grid, and the matrix couples only pixels a few steps apart. Nested
dissection cuts the grid in two along its longest axis, takes the pixels of one
side that touch the other as the separator (read from the coupling pattern, so
circular padding's wrap-around is handled too), and recurses; eliminating the
halves before their separator confines fill to dense separator blocks. The
multifrontal method then factors each separator's dense frontal matrix with
LAPACK and passes the Schur complement to its parent, so nearly all the work
runs in BLAS 3. Groups share the pattern and are factored side by side.

The frontal matrices and the waiting Schur complements live in two buffers
allocated once: on some machines touching fresh memory costs more than the
arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .. import _memory
from .._blas import blas_threads, cores
from .gram import BlockGram

#: Most unknowns (pixels x channels) in a leaf of the dissection.
LEAF = 128
#: Coupling blocks with this many entries get both cores in a solve of several columns.
WIDE = 2**20


class NotPositiveDefinite(np.linalg.LinAlgError):
    """A pivot block was not numerically positive definite."""


class CostlyFactor(RuntimeError):
    """The factor's arithmetic exceeds ``max_flops`` (raised before any numeric work)."""


@dataclass
class _Node:
    """A supernode of the dissection: its own pixels and its children."""

    pixels: np.ndarray
    children: list[_Node] = field(default_factory=list)


class BlockCholesky:
    """``G + diag(extra) = L L^H`` for a layer's Gram matrix in pixel blocks.

    Parameters
    ----------
    gram : BlockGram
        The Gram matrix.
    extra : numpy.ndarray
        ``(groups, pixels, channels)``, added to the diagonal (a shift, and a
        large value on unknowns the layer never couples).
    max_bytes : int, optional
        Budget for the factor and the work buffers.
    max_flops : float, optional
        Most multiply-adds the numeric factorization may take (``flops``).

    Raises
    ------
    NotPositiveDefinite
        When a pivot block fails (the matrix is numerically singular).
    CostlyFactor
        When the factorization would take more than ``max_flops``.
    """

    def __init__(self, gram: BlockGram, extra: np.ndarray, max_bytes: int | None = None,
                 leaf: int = LEAF, max_flops: float | None = None) -> None:
        self.dtype = gram.dtype
        parent = self._analyse(gram, gram.channels, gram.groups, leaf)
        self._check_memory(max_bytes)
        #: Multiply-adds of the numeric factorization, from the symbolic one (an upper estimate).
        self.flops = self._total_flops()
        if max_flops is not None and self.flops > max_flops:
            raise CostlyFactor(f"the factor takes {self.flops:.2e} multiply-adds, more than "
                               f"{max_flops:.2e}")
        self.diagonal: list[np.ndarray] = []
        self.coupling: list[np.ndarray] = []  # L21 = F21 L11^{-H}
        with _memory.base_pages():  # fresh gigabytes: see _memory.base_pages
            self._factor(gram, extra[:, self.perm], parent)

    @classmethod
    def predicted_flops(cls, pattern: BlockGram, channels: int, groups: int,
                        leaf: int = LEAF) -> float:
        """Return the multiply-adds of the factor of a Gram matrix (symbolic phase only).

        ``pattern`` holds its pixel pattern (any channel count: a one-channel
        layer's is cheap to build); ``channels`` and ``groups`` are the real ones.
        """
        symbolic = cls.__new__(cls)
        symbolic._analyse(pattern, channels, groups, leaf)
        return symbolic._total_flops()

    # Symbolic ------------------------------------------------------------------------------

    def _analyse(self, gram: BlockGram, channels: int, groups: int, leaf: int) -> np.ndarray:
        """Order the pixels by nested dissection and find each supernode's structure.

        Only ``gram``'s pattern is read. Returns the supernodes' parents (-1 for a root).
        """
        self.channels = c = channels
        self.groups = groups
        self.pixels = gram.pattern.shape[0]
        nodes = _postorder(_bisect(np.arange(self.pixels), gram.pattern, gram.points(),
                                   max(1, leaf // c)))
        self.perm = np.concatenate([node.pixels for node in nodes])
        self.starts = np.cumsum([0] + [node.pixels.size for node in nodes])
        parent = np.full(len(nodes), -1, dtype=np.intp)
        for i, node in enumerate(nodes):
            for child in node.children:
                parent[child.index] = i  # type: ignore[attr-defined]
        position = np.empty(self.pixels, dtype=np.intp)
        position[self.perm] = np.arange(self.pixels)
        # The pattern in elimination order, each entry pointing at its block.
        p = gram.pattern
        rows = position[np.repeat(np.arange(self.pixels), np.diff(p.indptr))]
        cols = position[p.indices]
        by_row = np.lexsort((cols, rows))
        self._rows, self._cols = rows[by_row], cols[by_row]
        self._block = by_row  # entry k of the pattern holds gram.blocks(k)
        self._row_starts = np.searchsorted(self._rows, np.arange(self.pixels + 1))
        self.structs = self._structure(parent)
        return parent

    def _structure(self, parent: np.ndarray) -> list[np.ndarray]:
        """Return each supernode's update pixels: later pixels coupled to its subtree."""
        count = self.starts.size - 1
        gathered: list[list[np.ndarray]] = [[] for _ in range(count)]
        structs = []
        for i in range(count):
            a, b = self.starts[i], self.starts[i + 1]
            cols = self._cols[self._row_starts[a]:self._row_starts[b]]
            parts = [cols[cols >= b], *(s[s >= b] for s in gathered[i])]
            s = np.unique(np.concatenate(parts)).astype(np.intp)
            structs.append(s)
            gathered[i] = []
            if parent[i] >= 0:
                gathered[parent[i]].append(s)
        self._parent = parent
        return structs

    def _check_memory(self, max_bytes: int | None) -> None:
        c2 = self.channels**2 * self.groups * self.dtype.itemsize
        own = np.diff(self.starts)
        sizes = np.array([s.size for s in self.structs])
        self._factor_entries = int(np.sum(own * (own + sizes)))
        self._update = int(np.max(sizes, initial=0))  # pixels of the largest F22
        # The stack of Schur complements waiting for their parents, simulated.
        depth, peak, waiting = 0, 0, [0] * len(sizes)
        for i, s in enumerate(sizes):
            depth -= waiting[i]
            depth += int(s) ** 2
            peak = max(peak, depth)
            if self._parent[i] >= 0:
                waiting[self._parent[i]] += int(s) ** 2
        self._stack = peak
        _memory.check_budget(  # the factor, the F22 buffer and the stack
            c2 * (self._factor_entries + self._update**2 + peak), max_bytes,
            f"the Cholesky factor of the {self.groups * self.pixels * self.channels}-unknown "
            f"Gram matrix ({self._factor_entries * self.channels**2 * self.groups} entries)")

    # Numeric -------------------------------------------------------------------------------

    def _factor(self, gram: BlockGram, extra: np.ndarray, parent: np.ndarray) -> None:
        count = len(self.structs)
        self.diagonal = [np.empty(0)] * count
        self.coupling = [np.empty(0)] * count
        self._factor_nodes(gram, extra, parent)
        c = self.channels
        self._scalar = [(s[:, None] * c + np.arange(c)).reshape(-1) for s in self.structs]

    def _flops(self) -> np.ndarray:
        """Return the arithmetic of each supernode (up to a constant)."""
        own = np.diff(self.starts).astype(np.float64)
        struct = np.array([s.size for s in self.structs], dtype=np.float64)
        return own**3 / 3 + own**2 * struct + own * struct**2

    def _total_flops(self) -> float:
        return float(self._flops().sum()) * self.channels**3 * self.groups

    def _factor_nodes(self, gram: BlockGram, extra: np.ndarray, parent: np.ndarray) -> None:
        """Factor every supernode in postorder, each front with threaded LAPACK and BLAS.

        A front is assembled straight into its three parts: ``F11`` and ``F21`` in
        the factor's own arrays (factored there), ``F22`` in a work buffer whose
        Schur complement then moves to the stack. Factoring independent subtrees
        side by side on single-threaded BLAS measured slower than this at every
        size tried (benchmarks/TUNING.md#cholesky-threads).
        """
        c, bt = self.channels, self.groups
        # The factor's arrays are views of one arena; it and the buffers are touched by
        # every core before the first front (_memory.zeros).
        workers = cores()
        arena = _memory.zeros(bt * self._factor_entries * c * c, self.dtype, workers)
        used = 0
        work = _memory.zeros(bt * (self._update * c) ** 2, self.dtype, workers)
        stack = _memory.zeros(bt * self._stack * c * c, self.dtype, workers)
        waiting: list[tuple[int, int, np.ndarray]] = []  # (parent, offset, struct)
        top = 0
        local = np.full(self.pixels, -1, dtype=np.intp)
        complex_ = self.dtype.kind == "c"
        probe = np.empty((1, 1), dtype=self.dtype)
        potrf, = scipy.linalg.get_lapack_funcs(("potrf",), (probe,))
        trsm, rank_k = scipy.linalg.get_blas_funcs(("trsm", "herk" if complex_ else "syrk"),
                                                   (probe,))
        for i in range(len(self.structs)):
            s = self.structs[i]
            a, b = int(self.starts[i]), int(self.starts[i + 1])
            own, nf = b - a, b - a + s.size
            n_own, m = own * c, s.size * c
            local[a:b] = np.arange(own)
            local[s] = np.arange(own, nf)
            L11 = arena[used: used + bt * n_own * n_own].reshape(bt, n_own, n_own)
            used += L11.size
            Y = arena[used: used + bt * m * n_own].reshape(bt, m, n_own)  # F21, then L21
            used += Y.size
            # F22's Schur complement: written by the rank-k update (beta = 0), then the
            # children's F22 parts added; never zeroed (that cost a quarter of the factor).
            S = work[: bt * m * m].reshape(bt, m, m)
            lo, hi = self._row_starts[a], self._row_starts[b]
            later = self._cols[lo:hi] >= a
            ri = local[self._rows[lo:hi][later]]
            ci = local[self._cols[lo:hi][later]]
            k = self._block[lo:hi][later]
            inside = ci < own  # the pattern's rows here are own pixels, so F22 gets none
            L11.reshape(bt, own, c, own, c).transpose(0, 1, 3, 2, 4)[
                :, ri[inside], ci[inside]] = gram.blocks(k[inside])
            Y.reshape(bt, s.size, c, own, c).transpose(0, 1, 3, 2, 4)[
                :, ci[~inside] - own, ri[~inside]] = np.swapaxes(
                    gram.blocks(k[~inside]), -1, -2).conj()
            d = np.arange(n_own)
            L11[:, d, d] += extra[:, a:b].reshape(bt, -1)
            children = []
            while waiting and waiting[-1][0] == i:  # children's updates are on top
                _, offset, cs = waiting.pop()
                mc = cs.size * c
                child = (stack[offset: offset + bt * mc * mc].reshape(bt, mc, mc),
                         local[cs] * c)
                _extend_add((L11, Y, S), *child, c, n_own, tail=False)
                children.append(child)
                top = offset
            # Partial factorization in place, on row-major blocks read by LAPACK as their
            # Fortran transposes: a row-major lower triangle is a Fortran upper one, and
            # a Hermitian block's transpose is its conjugate, whose upper factor U has
            # U^T = L. Only lower triangles are read or written.
            update = s.size > 0 and parent[i] >= 0
            # Both cores for large blocks only: after threaded BLAS OpenBLAS's threads
            # spin and slow the small single-threaded work that follows.
            big = n_own * (n_own + m) ** 2 > 2**24
            with blas_threads(cores() if big else 1):
                for g in range(bt):
                    out, info = potrf(L11[g].T, lower=0, clean=0, overwrite_a=1)
                    if info != 0:
                        raise NotPositiveDefinite(
                            f"the {info}-th leading minor of a pivot block is not positive "
                            f"definite")
                    _in_place(out, L11[g])
                    if m:  # L21^T = U^{-H} F21^T in Fortran terms
                        _in_place(trsm(1.0, L11[g].T, Y[g].T, side=0, lower=0, trans_a=2,
                                       overwrite_b=1), Y[g])
                    if update:  # S^T = -conj(L21) L21^T (upper part)
                        _in_place(rank_k(-1.0, Y[g].T, beta=0.0, c=S[g].T,
                                         trans=2 if complex_ else 1, lower=0, overwrite_c=1),
                                  S[g])
            self.diagonal[i] = L11
            self.coupling[i] = Y
            if update:
                for child in children:  # before S overwrites them on the stack
                    _extend_add((L11, Y, S), *child, c, n_own, tail=True)
                stack[top: top + bt * m * m] = S.reshape(-1)
                waiting.append((int(parent[i]), top, s))
                top += bt * m * m
            local[a:b] = -1
            local[s] = -1

    @property
    def nnz(self) -> int:
        """Stored entries of the factor."""
        return sum(d.size + x.size for d, x in zip(self.diagonal, self.coupling))

    def solve(self, b: np.ndarray) -> np.ndarray:
        """Return the solution for a vector or columns, unknowns ``(group, pixel, channel)``."""
        b = np.asarray(b)
        columns = b.shape[1:]
        c, bt = self.channels, self.groups
        x = b.reshape(bt, self.pixels, c, -1)[:, self.perm].astype(
            np.result_type(b, self.dtype)).reshape(bt, self.pixels * c, -1)
        # The columns as rows: each coupling product is then (columns x n) @ (n x m), which
        # BLAS runs near memory speed, where (m x n) @ (n x 3) ran at half of it.
        r = np.ascontiguousarray(np.swapaxes(x, 1, 2))
        # One BLAS thread for several columns: OpenBLAS's two threads on these thin
        # products and solves took 3-6 times as long (three columns: 1.54 s against
        # 0.42 s at 64->64 @32, 0.40 s against 0.07 s at @16); one column gains from two.
        split = 2 if np.iscomplexobj(r) and self.dtype.kind != "c" else 1  # _triangular
        with blas_threads(cores() if r.shape[1] * split == 1 else 1):
            self._substitute(r)
        x = np.swapaxes(r, 1, 2)
        out = np.empty(x.shape, dtype=x.dtype).reshape(bt, self.pixels, c, -1)
        out[:, self.perm] = x.reshape(bt, self.pixels, c, -1)
        return out.reshape(b.shape[:1] + columns)

    def _substitute(self, r: np.ndarray) -> None:
        """Solve ``L L^H x = b`` in place on ``r``, ``(groups, columns, unknowns)``."""
        c, bt = self.channels, self.groups
        for i, s in enumerate(self._scalar):  # L y = b
            own = slice(self.starts[i] * c, self.starts[i + 1] * c)
            L11, Y = self.diagonal[i], self.coupling[i]
            for g in range(bt):
                r[g, :, own] = _triangular(L11[g], r[g, :, own], transposed=False)
            if s.size:  # y_s -= L21 y_own, i.e. rows -= rows L21^T
                with blas_threads(cores() if Y.size >= WIDE else 1):
                    r[:, :, s] -= r[:, :, own] @ np.swapaxes(Y, -1, -2)
        for i in range(len(self._scalar) - 1, -1, -1):  # L^H x = y
            own = slice(self.starts[i] * c, self.starts[i + 1] * c)
            s = self._scalar[i]
            L11, Y = self.diagonal[i], self.coupling[i]
            if s.size:  # x_own -= L21^H x_s, i.e. rows -= conj(conj(rows) L21)
                with blas_threads(cores() if Y.size >= WIDE else 1):
                    r[:, :, own] -= (r[:, :, s].conj() @ Y).conj()
            for g in range(bt):
                # L^H x = y is L^T conj(x) = conj(y).
                r[g, :, own] = _triangular(L11[g], r[g, :, own].conj(), transposed=True).conj()


def _triangular(L: np.ndarray, rows: np.ndarray, transposed: bool) -> np.ndarray:
    """Return ``X^T`` for ``L X = rows^T`` (``L^T X`` with ``transposed``), ``L`` lower.

    BLAS ``trsm`` on the row-major factor read as its Fortran transpose (the upper
    factor ``U = L^T``), so the factor is never copied: ``solve_triangular``
    copied it on every call with several right-hand sides (0.40 s of a 0.66 s
    solve of three columns at 64->64 @16). Complex rows on a real factor are
    solved as their real and imaginary parts.
    """
    if np.iscomplexobj(rows) and not np.iscomplexobj(L):
        both = _triangular(L, np.concatenate([rows.real, rows.imag]), transposed)
        half = rows.shape[0]
        return both[:half] + 1j * both[half:]
    rows = rows.astype(np.result_type(rows, L), copy=False)
    trsm, = scipy.linalg.get_blas_funcs(("trsm",), (L, rows))
    # U^T X = B solves L X = B; U X = B solves L^T X = B.
    return trsm(1.0, L.T, rows.T, side=0, lower=0, trans_a=0 if transposed else 1).T


def _in_place(result: np.ndarray, target: np.ndarray) -> None:
    """Copy a LAPACK wrapper's Fortran-order ``result`` into ``target`` unless it is there."""
    if not np.may_share_memory(result, target):  # the wrapper had to copy its input
        target[...] = result.T


def _extend_add(front: tuple[np.ndarray, np.ndarray, np.ndarray], update: np.ndarray,
                starts: np.ndarray, c: int, n_own: int, tail: bool) -> None:
    """Add a child's Schur complement to the lower triangle of its parent's front.

    ``front`` is ``(F11, F21, F22)``, split after front row ``n_own``; the parts
    that land in ``F22`` are added with ``tail``, the others without. ``starts``
    (increasing) are the front rows of the child's pixels, ``c`` rows each. Runs of
    adjacent pixels (on one side of ``n_own``) become slices, so the additions are
    a few dense block operations rather than one scatter over every entry. Only
    the lower triangle is kept (the upper one may hold anything).
    """
    breaks = np.flatnonzero((np.diff(starts) != c) | (starts[1:] == n_own)) + 1
    first = np.concatenate([[0], breaks]) * c  # run starts in the update
    last = np.concatenate([breaks, [starts.size]]) * c
    rows = starts[np.concatenate([[0], breaks])]  # run starts in the front
    lower = rows >= n_own  # the run lies in F21/F22's rows (or F22's columns)
    rows = np.where(lower, rows - n_own, rows)
    for i in range(first.size):
        target = slice(rows[i], rows[i] + last[i] - first[i])
        for j in range(i + 1):
            if tail != (lower[i] and lower[j]):
                continue
            part = front[0] if not lower[i] else front[2] if lower[j] else front[1]
            part[:, target, rows[j]:rows[j] + last[j] - first[j]] += (
                update[:, first[i]:last[i], first[j]:last[j]])


def _bisect(pixels: np.ndarray, P: sp.csr_array, coords: np.ndarray, leaf: int
            ) -> list[_Node]:
    """Dissect a set of pixels; return the roots of its subtrees (children first)."""
    if pixels.size == 0:
        return []
    xyz = coords[pixels]
    extent = xyz.max(axis=0) - xyz.min(axis=0)
    if pixels.size <= max(leaf, 2) or not extent.any():
        return [_Node(pixels)]
    axis = int(np.argmax(extent))
    values = xyz[:, axis]
    cut = np.partition(values, values.size // 2)[values.size // 2]
    if cut == values.min():
        cut += 1
    left, right = pixels[values < cut], pixels[values >= cut]
    side = np.zeros(P.shape[0])
    side[right] = 1.0
    touch_left = left[(P[left] @ side) > 0]
    side[:] = 0.0
    side[left] = 1.0
    touch_right = right[(P[right] @ side) > 0]
    if touch_left.size <= touch_right.size:
        separator, left = touch_left, np.setdiff1d(left, touch_left, assume_unique=True)
    else:
        separator, right = touch_right, np.setdiff1d(right, touch_right, assume_unique=True)
    below = _bisect(left, P, coords, leaf) + _bisect(right, P, coords, leaf)
    if separator.size == 0:  # the halves do not touch
        return below
    return [_Node(separator, below)]


def _postorder(roots: list[_Node]) -> list[_Node]:
    """Return the nodes children first, numbering them."""
    order: list[_Node] = []
    stack: list[tuple[_Node, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        node, seen = stack.pop()
        if seen:
            order.append(node)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.children))
    for i, node in enumerate(order):
        node.index = i  # type: ignore[attr-defined]
    return order
