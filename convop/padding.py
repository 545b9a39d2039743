"""Padding as a linear map: ``vec(X_pad) = P vec(X)`` for PyTorch's four padding modes.

Every mode is described per axis by a *source index*: padded position ``p``
copies input position ``source_index(...)[p]``, or nothing (``-1``) for zero
padding. ``"reflect"`` mirrors without repeating the edge (``-1 -> 1``),
``"replicate"`` repeats the edge, ``"circular"`` wraps around; these are
``torch.nn.functional.pad``'s modes (``numpy.pad``'s ``reflect``, ``edge`` and
``wrap``).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from . import _memory, _sparse
from ._dtypes import check_dtype
from ._progress import building
from ._typing import IntOrTuple, Order, PaddingLike, PaddingMode
from ._validation import (
    as_int,
    as_int_tuple,
    as_padding,
    check_max_bytes,
    check_order,
    check_padding_mode,
    spatial_ndim_from,
)
from .layout import flat_strides
from .modes import MODES

__all__ = ["pad", "pad_adjoint", "pad_matrix", "source_index"]

def source_index(size: int, before: int, after: int, mode: str, *,
                 max_bytes: int | None = None) -> np.ndarray:
    """Input position copied to each padded position along one axis (``-1``: a zero).

    Parameters
    ----------
    size : int
        Input size along the axis.
    before, after : int
        Padding on each side.
    mode : {"zeros", "reflect", "replicate", "circular"}
        PyTorch's padding modes (their limits apply: reflect padding smaller
        than ``size``, circular padding at most ``size``).
    max_bytes : int, optional
        Memory budget for the result (default: 75% of the available memory).

    Returns
    -------
    numpy.ndarray
        int64 array of length ``size + before + after``.

    Examples
    --------
    >>> from convop import source_index
    >>> source_index(3, 2, 2, "reflect").tolist()
    [2, 1, 0, 1, 2, 1, 0]
    >>> source_index(3, 2, 2, "circular").tolist()
    [1, 2, 0, 1, 2, 0, 1]
    """
    n = as_int(size, "size", minimum=1)
    lo = as_int(before, "before", minimum=0)
    hi = as_int(after, "after", minimum=0)
    check_padding_mode(mode, "mode")
    if not MODES[mode].limit_ok(max(lo, hi), n):
        raise ValueError(f"`before` and `after` must be {MODES[mode].limit_rule} `size` ({n}) for "
                         f"`mode` {mode!r} (PyTorch's rule); got {lo} and {hi}.")
    _memory.check_budget(8 * (n + lo + hi), check_max_bytes(max_bytes),
                         f"the source index of {n + lo + hi} padded positions")
    return axis_sources(n, lo, hi, mode)


def axis_sources(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """:func:`source_index` for validated arguments."""
    return map_positions(np.arange(size + before + after, dtype=np.int64) - before, size, mode)


def map_positions(q: np.ndarray, size: int, mode: str) -> np.ndarray:
    """Map positions ``q`` relative to the input (possibly outside it) to input positions."""
    if mode == "zeros":
        return np.where((q >= 0) & (q < size), q, -1)
    if mode == "replicate":
        return np.clip(q, 0, size - 1)
    if mode == "circular":
        return np.mod(q, size)
    if size == 1:  # reflect on a 1-pixel axis: only zero padding is valid there
        return np.zeros_like(q)
    period = 2 * (size - 1)
    r = np.mod(q, period)
    return np.where(r < size, r, period - r)


def check_mode_limits(
    input_size: tuple[int, ...], padding: tuple[tuple[int, int], ...], mode: str
) -> None:
    """Apply PyTorch's limits: reflect padding < size, circular padding <= size."""
    why = {"smaller": "PyTorch's rule", "at most": "it would wrap more than once"}
    for axis, (n, (lo, hi)) in enumerate(zip(input_size, padding)):
        if not MODES[mode].limit_ok(max(lo, hi), n):
            raise ValueError(
                f"`padding` {(lo, hi)} on spatial axis {axis} must be {MODES[mode].limit_rule} "
                f"the input size {n} there for `padding_mode={mode!r}` "
                f"({why[MODES[mode].limit]})."
            )


def pad_matrix(
    channels: int,
    input_size: IntOrTuple,
    padding: PaddingLike,
    *,
    padding_mode: PaddingMode = "zeros",
    order: Order = "F",
    dtype: npt.DTypeLike = np.float64,
    max_bytes: int | None = None,
) -> sp.csr_array:
    """Build the sparse ``P`` with ``vec(X_pad) = P vec(X)``.

    Parameters
    ----------
    channels : int
        Number of channels ``C``.
    input_size : int or tuple of int
        Spatial size of the unpadded input.
    padding : int, tuple or tuple of pairs
        As in :func:`convop.conv_matrix` (``"same"`` and ``"valid"`` need a
        kernel and are not accepted here).
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        PyTorch's padding modes.
    order : {"F", "C"}
        Vectorization of rows and columns.
    dtype : dtype
        Data type of the entries (ones).
    max_bytes : int, optional
        Memory budget for the matrix and its assembly scratch (default: 75% of
        the available memory).

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(C*prod(padded), C*prod(input_size))`` with one entry per padded
        pixel that copies an input pixel (every pixel, except zero padding).

    Examples
    --------
    >>> from convop import pad_matrix
    >>> pad_matrix(1, 3, 1, padding_mode="reflect").toarray()
    array([[0., 1., 0.],
           [1., 0., 0.],
           [0., 1., 0.],
           [0., 0., 1.],
           [0., 1., 0.]])
    """
    channels = as_int(channels, "channels", minimum=1)
    ndim = spatial_ndim_from(dict(input_size=input_size, padding=padding))
    size = as_int_tuple(input_size, "input_size", ndim, minimum=1)
    if isinstance(padding, str):
        raise ValueError(f"`padding` must be ints or (before, after) pairs here; got {padding!r}.")
    pads = as_padding(padding, ndim, kernel_size=(1,) * ndim, dilation=(1,) * ndim,
                      stride=(1,) * ndim)
    check_padding_mode(padding_mode)
    check_order(order)
    dt = check_dtype(dtype)
    check_mode_limits(size, pads, padding_mode)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(size, pads))
    rows, cols = channels * math.prod(padded), channels * math.prod(size)
    nnz = rows if MODES[padding_mode].folds else cols
    idx = _sparse.index_dtype(max(rows, cols))
    # The matrix, channel 0's source columns and mask (int64 and bool), and its kept part.
    needed = (nnz * (dt.itemsize + idx.itemsize) + (rows + 1) * idx.itemsize
              + math.prod(padded) * (9 + 8 + idx.itemsize))
    _memory.check_budget(needed, check_max_bytes(max_bytes),
                         f"the padding matrix of shape ({rows}, {cols}) with {nnz} stored "
                         f"entries ({dt} data, {idx} indices)")

    with building(f"building the {rows} x {cols} padding matrix", needed):
        return _fill(channels, size, pads, padded, padding_mode, order, dt, idx, rows, cols)


def _fill(channels: int, size: tuple[int, ...], pads: tuple[tuple[int, int], ...],
          padded: tuple[int, ...], padding_mode: str, order: str, dt: np.dtype, idx: np.dtype,
          rows: int, cols: int) -> sp.csr_array:
    """Write the CSR arrays of :func:`pad_matrix` for checked arguments."""
    ndim = len(size)
    # Source column of every padded pixel of channel 0, in `order`: a sum of per-axis terms.
    src_strides = flat_strides(size, order)
    axes_slow_first = range(ndim) if order == "C" else reversed(range(ndim))
    source: np.ndarray = np.zeros((), dtype=np.int64)
    valid: np.ndarray = np.ones((), dtype=bool)
    for axis in axes_slow_first:
        s = axis_sources(size[axis], *pads[axis], padding_mode)
        source = np.add.outer(source, np.maximum(s, 0) * src_strides[axis])
        valid = np.logical_and.outer(valid, s >= 0)
    valid_flat = valid.reshape(-1)
    kept = source.reshape(-1)[valid_flat].astype(idx)
    per_padded = math.prod(padded)
    # Written in place, in the final index dtype: channel c's block is channel 0's plus
    # c * prod(input_size) (columns) and c * kept.size (row pointers).
    indices = np.empty(channels * kept.size, dtype=idx)
    np.add(kept[np.newaxis, :],
           (np.arange(channels, dtype=idx) * idx.type(math.prod(size)))[:, np.newaxis],
           out=indices.reshape(channels, kept.size))
    indptr = np.empty(rows + 1, dtype=idx)
    indptr[0] = 0
    if kept.size == per_padded:  # every padded pixel copies one: one entry per row
        indptr[1:] = np.arange(1, rows + 1, dtype=idx)
    else:
        np.add(np.cumsum(valid_flat, dtype=idx)[np.newaxis, :],
               (np.arange(channels, dtype=idx) * idx.type(kept.size))[:, np.newaxis],
               out=indptr[1:].reshape(channels, per_padded))
    data = np.ones(indices.size, dtype=dt)
    return _sparse.csr_from_parts(data, indices, indptr, (rows, cols))


def pad(x: np.ndarray, padding: tuple[tuple[int, int], ...], mode: str) -> np.ndarray:
    """Pad the spatial axes of a batch ``(N, C, *spatial)`` as PyTorch's ``F.pad`` does."""
    widths = ((0, 0), (0, 0), *padding)
    if not MODES[mode].folds:
        return np.pad(x, widths)
    return np.pad(x, widths, mode=MODES[mode].numpy)  # type: ignore[call-overload]


def pad_adjoint(
    grad_padded: np.ndarray,
    input_size: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    mode: str,
) -> np.ndarray:
    """Adjoint of :func:`pad`: crop the border and add it back onto the pixels it copied.

    One slice addition per border position (a loop over the padding width, not
    over pixels); for zero padding this is a plain crop.
    """
    grad = grad_padded
    for axis, (n, (lo, hi)) in enumerate(zip(input_size, padding)):
        ax = axis + 2
        inner = np.take(grad, np.arange(lo, lo + n), axis=ax)  # a copy we may add into
        if MODES[mode].folds and (lo or hi):
            src = axis_sources(n, lo, hi, mode)
            for p in (*range(lo), *range(lo + n, lo + n + hi)):
                target: list[slice | int] = [slice(None)] * grad.ndim
                target[ax] = int(src[p])
                source: list[slice | int] = [slice(None)] * grad.ndim
                source[ax] = p
                inner[tuple(target)] += grad[tuple(source)]
        grad = inner
    return np.ascontiguousarray(grad)
