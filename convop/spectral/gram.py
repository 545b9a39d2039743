"""A layer's Gram matrix ``A^H A`` (or ``A A^H``) in pixel blocks, built from tap pairs.

Per group, the layer is ``A = sum_t S_t (x) W_t``: ``S_t`` picks for each output
pixel the input pixel tap ``t`` reads (through the padding mode, or nothing),
``W_t`` is the ``(C_out/G, C_in/G)`` matrix of tap ``t``. Hence

    A^H A = sum_{t, u} (S_t^T S_u) (x) (W_t^H W_u),
    A A^H = sum_{t, u} (S_t S_u^T) (x) (W_t W_u^H):

a pixel pattern (pixels that share an output window, or outputs that share an
input pixel) whose every coupled pair holds a dense channel block, the sum of
the tap-pair products weighted by how often the pair occurs. The counts form a
small sparse matrix and the blocks come out of one sparse-dense product, so
nothing the size of the layer's matrix is ever formed, and padding modes that
fold several taps onto one pixel need nothing special.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import _memory
from ..geometry import ConvGeometry
from ..padding import axis_sources


@dataclass(frozen=True)
class BlockGram:
    """A Gram matrix as pixel pattern plus dense channel blocks, one set per group.

    The unknown ``(group, pixel, channel)`` is the entry ``channel`` of pixel
    ``pixel`` (row-major over ``shape``) in group ``group``. Pixel pairs whose
    tap pairs coincide (all pairs at one offset away from the border, for a
    translation-invariant layer) share one block, so the blocks take the
    memory of the distinct border cases rather than of every coupled pair.

    Attributes
    ----------
    pattern : scipy.sparse.csr_array
        ``(pixels, pixels)`` coupling pattern, sorted indices; entry ``k`` of its
        ``indices`` couples row pixel and ``indices[k]`` through ``table[:, index[k]]``.
    table : numpy.ndarray
        ``(groups, distinct, C, C)``: the distinct blocks.
    index : numpy.ndarray
        ``(pattern.nnz,)``: the block of each pattern entry.
    shape : tuple of int
        The spatial grid of the side (input or output).
    """

    pattern: sp.csr_array
    table: np.ndarray
    index: np.ndarray
    shape: tuple[int, ...]

    @property
    def channels(self) -> int:
        """Unknowns per pixel and group."""
        return int(self.table.shape[-1])

    @property
    def groups(self) -> int:
        """Independent groups (the matrix is block diagonal over them)."""
        return int(self.table.shape[0])

    @property
    def dtype(self) -> np.dtype:
        """The blocks' data type."""
        return self.table.dtype

    def blocks(self, entries: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Return the blocks of pattern ``entries``, ``(groups, len(entries), C, C)`` (a copy)."""
        return self.table[:, self.index[entries]]

    def negated(self) -> BlockGram:
        """Return the Gram matrix times -1 (sharing the pattern and the index)."""
        return BlockGram(self.pattern, -self.table, self.index, self.shape)

    def diagonal(self) -> np.ndarray:
        """Return the diagonal, ``(groups, pixels, channels)``."""
        p = self.pattern
        rows = np.repeat(np.arange(p.shape[0]), np.diff(p.indptr))
        at = np.flatnonzero(p.indices == rows)  # one per pixel: every pixel couples to itself
        diag = np.zeros((self.groups, p.shape[0], self.channels), dtype=self.dtype)
        diag[:, rows[at]] = np.diagonal(self.blocks(at), axis1=-2, axis2=-1)
        return diag.real

    def points(self) -> np.ndarray:
        """Return the grid coordinates of every pixel, ``(pixels, ndim)``."""
        return np.stack(np.unravel_index(np.arange(math.prod(self.shape)), self.shape), axis=1)

    def to_sparse(self) -> sp.csr_array:
        """Return the scalar matrix, unknowns ordered ``(group, pixel, channel)`` (for tests)."""
        p = self.pattern.tocoo()
        c = self.channels
        npix = self.pattern.shape[0]
        blocks = self.blocks()
        parts = []
        for g in range(self.groups):
            row = (g * npix + p.row)[:, None, None] * c + np.arange(c)[None, :, None]
            col = (g * npix + p.col)[:, None, None] * c + np.arange(c)[None, None, :]
            row, col = np.broadcast_arrays(row, col)
            parts.append((blocks[g].reshape(-1), row.reshape(-1), col.reshape(-1)))
        data, rows, cols = (np.concatenate(x) for x in zip(*parts))
        n = self.groups * npix * c
        return sp.csr_array((data, (rows, cols)), shape=(n, n))


def tap_sources(g: ConvGeometry) -> np.ndarray:
    """Return the input pixel (row-major) each tap reads for each output pixel, or -1.

    Shape ``(taps, output pixels)``, taps in the weight's C order.
    """
    flat = np.zeros((1,) * (2 * g.ndim), dtype=np.int64)
    valid = np.ones_like(flat, dtype=bool)
    step = 1
    for axis in range(g.ndim - 1, -1, -1):
        n, (lo, hi) = g.input_size[axis], g.padding[axis]
        src = axis_sources(n, lo, hi, g.padding_mode)
        k, o = g.kernel_size[axis], g.output_size[axis]
        pos = src[np.arange(k)[:, None] * g.dilation[axis]
                  + np.arange(o)[None, :] * g.stride[axis]]  # (k, o)
        shape = [1] * (2 * g.ndim)
        shape[axis], shape[g.ndim + axis] = k, o
        pos = pos.reshape(shape)
        flat = flat + np.where(pos >= 0, pos, 0) * step
        valid = valid & (pos >= 0)
        step *= n
    flat, valid = np.broadcast_arrays(flat, valid)
    taps, outputs = math.prod(g.kernel_size), math.prod(g.output_size)
    return np.where(valid, flat, -1).reshape(taps, outputs)


def gram_bytes(g: ConvGeometry, side: str, itemsize: int) -> int:
    """Bound the bytes :func:`block_gram` allocates before it knows its distinct blocks.

    The index arrays over the tap pairs and the tap-pair products; the table of
    distinct blocks is checked once counted (:func:`block_gram`).
    """
    taps = math.prod(g.kernel_size)
    pairs = taps * taps * math.prod(g.output_size)  # tap pairs over the outputs
    if g.padding_mode == "reflect":
        pairs *= 2  # the output side pairs incidences per pixel; a mirror doubles them
    c = g.in_per_group if side == "input" else g.out_per_group
    return 64 * pairs + g.groups * taps * taps * c * c * itemsize


def block_gram(g: ConvGeometry, weight: np.ndarray, side: str, dtype: np.dtype,
               max_bytes: int | None = None) -> BlockGram:
    """Return ``A^H A`` (``side="input"``) or ``A A^H`` of the layer, in pixel blocks."""
    dtype = np.dtype(dtype)
    what = f"the {side}-side Gram matrix of {g.describe()}"
    _memory.check_budget(gram_bytes(g, side, dtype.itemsize), max_bytes, what)
    src = tap_sources(g)
    taps, outputs = src.shape
    if side == "input":
        # Pixels p, q share output o through taps t, u.
        t, u, o = np.meshgrid(np.arange(taps), np.arange(taps), np.arange(outputs),
                              indexing="ij")
        p, q = src[t, o], src[u, o]
        npix = math.prod(g.input_size)
    else:
        # Outputs o, r read input pixel p through taps t, u.
        tap, out = np.nonzero(src >= 0)
        pixel = src[tap, out]
        order = np.argsort(pixel, kind="stable")
        tap, out, pixel = tap[order], out[order], pixel[order]
        starts = np.searchsorted(pixel, np.arange(math.prod(g.input_size) + 1))
        degree = np.diff(starts)
        width = int(degree.max(initial=0))
        slots = starts[:-1, None] + np.arange(width)[None, :]
        filled = np.arange(width)[None, :] < degree[:, None]
        slots = np.where(filled, slots, -1)
        a, b = slots[:, :, None], slots[:, None, :]
        both = (a >= 0) & (b >= 0)
        a, b = np.broadcast_to(a, both.shape)[both], np.broadcast_to(b, both.shape)[both]
        t, u, p, q = tap[a], tap[b], out[a], out[b]
        npix = outputs
    keep = (p >= 0) & (q >= 0)
    t, u, p, q = t[keep], u[keep], p[keep], q[keep]
    keys, pair = np.unique(p * npix + q, return_inverse=True)
    counts = sp.csr_array((np.ones(pair.size), (pair.reshape(-1), t * taps + u)),
                          shape=(keys.size, taps * taps))
    counts.sum_duplicates()
    del t, u, p, q, pair
    distinct, index = _distinct_rows(counts, max_bytes, what)
    c = g.in_per_group if side == "input" else g.out_per_group
    _memory.check_budget(g.groups * distinct.shape[0] * c * c * dtype.itemsize, max_bytes,
                         f"the {distinct.shape[0]} distinct blocks of {what}")
    w = weight.astype(dtype).reshape(g.groups, g.out_per_group, g.in_per_group, taps)
    w = np.moveaxis(w, -1, 1)  # (G, taps, Co/G, Ci/G)
    if side == "input":
        products = np.einsum("gtab,guac->gtubc", w.conj(), w)  # W_t^H W_u
    else:
        products = np.einsum("gtab,guvb->gtuav", w, w.conj())  # W_t W_u^H
    flat = np.moveaxis(products, 0, 2).reshape(taps * taps, g.groups * c * c)
    # One product for every group; the result is viewed (not copied) group-first.
    product = np.asarray(distinct @ flat).reshape(distinct.shape[0], g.groups, c, c)
    table = np.ascontiguousarray(np.moveaxis(product, 1, 0)).astype(dtype, copy=False)
    indptr = np.searchsorted(keys // npix, np.arange(npix + 1))
    pattern = sp.csr_array((np.ones(keys.size), keys % npix, indptr), shape=(npix, npix))
    shape = g.input_size if side == "input" else g.output_size
    return BlockGram(pattern, table, index, tuple(shape))


def _distinct_rows(counts: sp.csr_array, max_bytes: int | None, what: str
                   ) -> tuple[sp.csr_array, np.ndarray]:
    """Return the distinct rows of the tap-pair counts and each row's one among them.

    Rows are compared exactly, as their (tap pair, count) lists padded to the
    longest; the counts are whole numbers.
    """
    lengths = np.diff(counts.indptr)
    width = int(lengths.max(initial=0))
    rows = counts.shape[0]
    _memory.check_budget(16 * rows * width, max_bytes, f"the tap-pair lists of {what}")
    position = np.arange(counts.nnz) - np.repeat(counts.indptr[:-1], lengths)
    row = np.repeat(np.arange(rows), lengths)
    signature = np.full((rows, 2 * width), -1, dtype=np.int64)
    signature[row, position] = counts.indices
    signature[row, width + position] = counts.data.astype(np.int64)
    _, first, index = np.unique(signature, axis=0, return_index=True, return_inverse=True)
    return counts[first], index.reshape(-1).astype(np.intp)


def scaled_block_gram(g: ConvGeometry, weight: np.ndarray, side: str, dtype: np.dtype,
                      max_bytes: int | None = None) -> tuple[BlockGram, float]:
    """Return the Gram matrix of ``weight / scale`` and ``scale``, a power of two.

    Dividing by a power of two is exact, and squares of the scaled weights
    neither overflow nor underflow: the Gram matrix of the layer is the one
    returned times ``scale**2``.
    """
    peak = float(np.abs(weight).max())
    scale = 2.0 ** round(math.log2(peak)) if peak > 0 else 1.0
    return block_gram(g, np.asarray(weight) / scale, side, dtype, max_bytes), scale


def touched(g: ConvGeometry, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return which columns and rows of the layer's matrix (input domain) a nonzero tap reaches.

    Boolean ``(C_in, input pixels)`` and ``(C_out, output pixels)``, row-major
    pixels. An untouched line is empty; a touched one may still cancel to zero
    where padding folds taps onto one pixel (then its zero singular value is
    found like any other).
    """
    src = tap_sources(g)
    taps = src.shape[0]
    nonzero = (weight.reshape(g.out_channels, g.in_per_group, taps) != 0).astype(np.int64)
    valid = (src >= 0).astype(np.int64)
    rows = nonzero.sum(axis=1) @ valid  # (C_out, outputs)
    tap = np.nonzero(src >= 0)[0]
    counts = np.bincount(src[src >= 0] * taps + tap,
                         minlength=math.prod(g.input_size) * taps).reshape(-1, taps)
    per_group = nonzero.reshape(g.groups, g.out_per_group, g.in_per_group, taps).sum(axis=1)
    cols = per_group.reshape(g.in_channels, taps) @ counts.T  # (C_in, input pixels)
    return cols > 0, rows > 0
