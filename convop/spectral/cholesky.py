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

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .. import _memory
from .._blas import Pool, blas_threads, cores
from .gram import BlockGram

#: Most unknowns (pixels x channels) in a leaf of the dissection.
LEAF = 128


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
    pool : convop._blas.Pool, optional
        Worker threads: independent subtrees are factored on them side by side.
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
                 leaf: int = LEAF, pool: Pool | None = None,
                 max_flops: float | None = None) -> None:
        self.channels = c = gram.channels
        self.groups = gram.groups
        self.pixels = gram.pattern.shape[0]
        self.dtype = gram.blocks.dtype
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
        self._block = by_row  # entry k of the pattern holds blocks[:, k]
        self._row_starts = np.searchsorted(self._rows, np.arange(self.pixels + 1))
        self.structs = self._structure(parent)
        self._check_memory(max_bytes)
        #: Multiply-adds of the numeric factorization, from the symbolic one (an upper estimate).
        self.flops = float(self._flops().sum()) * c**3 * self.groups
        if max_flops is not None and self.flops > max_flops:
            raise CostlyFactor(f"the factor takes {self.flops:.2e} multiply-adds, more than "
                               f"{max_flops:.2e}")
        self.diagonal: list[np.ndarray] = []
        self.coupling: list[np.ndarray] = []  # X = L11^{-1} F12, i.e. L21^H
        self._factor(gram.blocks, extra[:, self.perm], parent, pool)

    # Symbolic ------------------------------------------------------------------------------

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
        self._front = int(np.max(own + sizes, initial=0))
        # The stack of Schur complements waiting for their parents, simulated.
        depth, peak, waiting = 0, 0, [0] * len(sizes)
        for i, s in enumerate(sizes):
            depth -= waiting[i]
            depth += int(s) ** 2
            peak = max(peak, depth)
            if self._parent[i] >= 0:
                waiting[self._parent[i]] += int(s) ** 2
        self._stack = peak
        _memory.check_budget(  # a work buffer and a stack for each of two threads at most
            c2 * (self._factor_entries + 2 * (self._front**2 + peak)), max_bytes,
            f"the Cholesky factor of the {self.groups * self.pixels * self.channels}-unknown "
            f"Gram matrix ({self._factor_entries * self.channels**2 * self.groups} entries)")

    # Numeric -------------------------------------------------------------------------------

    def _factor(self, blocks: np.ndarray, extra: np.ndarray, parent: np.ndarray,
                pool: Pool | None) -> None:
        count = len(self.structs)
        self.diagonal = [np.empty(0)] * count
        self.coupling = [np.empty(0)] * count
        work = self._flops()
        tasks, top = _split(parent, work, 2 if pool is not None and pool.workers > 1 else 1)
        incoming: list[tuple[int, np.ndarray, np.ndarray]] = []
        if pool is not None and len(tasks) > 1:
            bins = _balance(tasks, work, pool.workers)

            def run(subtrees: list[range]) -> list[tuple[int, np.ndarray, np.ndarray]]:
                out = []
                for nodes in subtrees:
                    out += self._factor_nodes(nodes, blocks, extra, parent, [], threaded=False)
                return out

            for result in pool.map([run] * len(bins), bins):
                incoming += result
            rest = top
        else:
            rest = list(range(count))
        self._factor_nodes(rest, blocks, extra, parent, incoming, threaded=True)
        c = self.channels
        self._scalar = [(s[:, None] * c + np.arange(c)).reshape(-1) for s in self.structs]

    def _flops(self) -> np.ndarray:
        """Return the arithmetic of each supernode (up to a constant)."""
        own = np.diff(self.starts).astype(np.float64)
        struct = np.array([s.size for s in self.structs], dtype=np.float64)
        return own**3 / 3 + own**2 * struct + own * struct**2

    def _factor_nodes(self, nodes: Sequence[int], blocks: np.ndarray, extra: np.ndarray,
                      parent: np.ndarray, incoming: list[tuple[int, np.ndarray, np.ndarray]],
                      threaded: bool) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """Factor ``nodes`` (postorder; whole subtrees, or what remains above them).

        ``incoming`` holds Schur complements from outside (``(parent, update, pixels)``);
        the ones for parents outside ``nodes`` are returned.
        """
        c, bt = self.channels, self.groups
        members = set(nodes)
        front = max((self.starts[i + 1] - self.starts[i] + self.structs[i].size
                     for i in nodes), default=0)
        work = np.empty(bt * (front * c) ** 2, dtype=self.dtype)
        stack = np.empty(bt * self._stack * c * c, dtype=self.dtype)
        waiting: list[tuple[int, int, np.ndarray]] = []  # (parent, offset, struct)
        outgoing: list[tuple[int, np.ndarray, np.ndarray]] = []
        top = 0
        local = np.full(self.pixels, -1, dtype=np.intp)
        for i in nodes:
            s = self.structs[i]
            a, b = int(self.starts[i]), int(self.starts[i + 1])
            own, nf = b - a, b - a + s.size
            local[a:b] = np.arange(own)
            local[s] = np.arange(own, nf)
            F = work[: bt * (nf * c) ** 2].reshape(bt, nf * c, nf * c)
            F.fill(0)
            Fv = F.reshape(bt, nf, c, nf, c).transpose(0, 1, 3, 2, 4)  # (bt, nf, nf, c, c)
            lo, hi = self._row_starts[a], self._row_starts[b]
            later = self._cols[lo:hi] >= a
            ri = local[self._rows[lo:hi][later]]
            ci = local[self._cols[lo:hi][later]]
            k = self._block[lo:hi][later]
            Fv[:, ri, ci] = blocks[:, k]
            outside = ci >= own
            Fv[:, ci[outside], ri[outside]] = np.swapaxes(blocks[:, k[outside]], -1, -2).conj()
            d = np.arange(own * c)
            F[:, d, d] += extra[:, a:b].reshape(bt, -1)
            while waiting and waiting[-1][0] == i:  # children's updates are on top
                _, offset, cs = waiting.pop()
                m = cs.size * c
                _extend_add(F, stack[offset: offset + bt * m * m].reshape(bt, m, m),
                            local[cs] * c, c)
                top = offset
            for _, update, cs in (item for item in incoming if item[0] == i):
                _extend_add(F, update, local[cs] * c, c)
            n_own = own * c
            L11 = np.empty((bt, n_own, n_own), dtype=self.dtype)
            X = np.empty((bt, n_own, s.size * c), dtype=self.dtype)
            for g in range(bt):
                try:
                    L11[g] = scipy.linalg.cholesky(F[g, :n_own, :n_own], lower=True,
                                                   check_finite=False)
                    X[g] = scipy.linalg.solve_triangular(
                        L11[g], F[g, n_own:, :n_own].conj().T, lower=True, check_finite=False)
                except np.linalg.LinAlgError as err:
                    raise NotPositiveDefinite(str(err)) from None
            self.diagonal[i] = L11
            self.coupling[i] = X
            if s.size and parent[i] >= 0:
                m = s.size * c
                inside = int(parent[i]) in members
                update = (stack[top: top + bt * m * m].reshape(bt, m, m) if inside
                          else np.empty((bt, m, m), dtype=self.dtype))
                # Both cores for large products only (and only when no other thread
                # factors): after a threaded GEMM OpenBLAS's threads spin and slow the
                # small single-threaded work that follows.
                big = threaded and X.size * m > 2**24
                with blas_threads(cores() if big else 1):
                    np.matmul(np.swapaxes(X, -1, -2).conj(), X, out=update)  # numpy: syrk
                np.subtract(F[:, n_own:, n_own:], update, out=update)
                if inside:
                    waiting.append((int(parent[i]), top, s))
                    top += bt * m * m
                else:
                    outgoing.append((int(parent[i]), update, s))
            local[a:b] = -1
            local[s] = -1
        return outgoing

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
        for i, s in enumerate(self._scalar):  # L y = b
            own = slice(self.starts[i] * c, self.starts[i + 1] * c)
            L11, X = self.diagonal[i], self.coupling[i]
            for g in range(bt):
                x[g, own] = scipy.linalg.solve_triangular(L11[g], x[g, own], lower=True,
                                                          check_finite=False)
            if s.size:
                x[:, s] -= np.swapaxes(X, -1, -2).conj() @ x[:, own]
        for i in range(len(self._scalar) - 1, -1, -1):  # L^H x = y
            own = slice(self.starts[i] * c, self.starts[i + 1] * c)
            s = self._scalar[i]
            L11, X = self.diagonal[i], self.coupling[i]
            if s.size:
                x[:, own] -= X @ x[:, s]
            for g in range(bt):
                x[g, own] = scipy.linalg.solve_triangular(L11[g], x[g, own], lower=True,
                                                          trans="C", check_finite=False)
        out = np.empty_like(x).reshape(bt, self.pixels, c, -1)
        out[:, self.perm] = x.reshape(bt, self.pixels, c, -1)
        return out.reshape(b.shape[:1] + columns)


def _split(parent: np.ndarray, work: np.ndarray, parts: int) -> tuple[list[range], list[int]]:
    """Cut the tree into independent subtrees (postorder ranges) and the nodes above them.

    Starting from the roots, the largest subtree is replaced by its children (its
    root joins the nodes above) until there are ``parts`` subtrees and none
    holds more than half the work, or nothing is left to split.
    """
    count = parent.size
    children: list[list[int]] = [[] for _ in range(count)]
    first = np.arange(count)  # the first node (postorder) of each subtree
    total = work.copy()
    for i in range(count):
        if parent[i] >= 0:
            children[parent[i]].append(i)
            first[parent[i]] = min(first[parent[i]], first[i])
            total[parent[i]] += total[i]
    tasks = [i for i in range(count) if parent[i] < 0]
    above: list[int] = []
    if parts > 1:
        while True:
            biggest = max(tasks, key=lambda t: total[t])
            if (len(tasks) >= parts and total[biggest] <= 0.5 * sum(total[t] for t in tasks)
                    or not children[biggest]):
                break
            tasks.remove(biggest)
            above.append(biggest)
            tasks += children[biggest]
    return [range(first[t], t + 1) for t in tasks], sorted(above)


def _balance(tasks: list[range], work: np.ndarray, bins: int) -> list[list[range]]:
    """Deal subtrees to ``bins`` workers, largest first, to the least loaded."""
    load = [0.0] * bins
    dealt: list[list[range]] = [[] for _ in range(bins)]
    for task in sorted(tasks, key=lambda r: -float(work[r.start:r.stop].sum())):
        at = int(np.argmin(load))
        dealt[at].append(task)
        load[at] += float(work[task.start:task.stop].sum())
    return [d for d in dealt if d]


def _extend_add(F: np.ndarray, update: np.ndarray, starts: np.ndarray, c: int) -> None:
    """Add a child's Schur complement to the lower triangle of its parent's front.

    ``starts`` (increasing) are the front rows of the child's pixels, ``c`` rows
    each; runs of adjacent pixels become slices, so the additions are a few
    dense block operations rather than one scatter over every entry. Only the
    lower triangle is kept (the upper one may hold anything).
    """
    breaks = np.flatnonzero(np.diff(starts) != c) + 1
    first = np.concatenate([[0], breaks]) * c  # run starts in the update
    last = np.concatenate([breaks, [starts.size]]) * c
    rows = starts[np.concatenate([[0], breaks])]  # run starts in the front
    for i in range(first.size):
        target = slice(rows[i], rows[i] + last[i] - first[i])
        for j in range(i + 1):
            F[:, target, rows[j]:rows[j] + last[j] - first[j]] += (
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
