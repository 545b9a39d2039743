"""Exact sparse matrices of a convolution layer, written directly as CSR arrays.

Row ``(m, o)`` of the matrix is output channel ``m`` at output position ``o``;
its stored entries are the taps ``(c, u)`` of filter ``m``, at the column of
the (padded or unpadded) input pixel ``o * stride + u * dilation``. The
assembly computes the column and weight index of every tap of one output
channel once (a block of ``nnz / C_out`` entries) and broadcasts it over the
output channels: no Python loop over pixels or channels, no COO detour, no
sort. ``docs/conventions.md`` derives the formulas.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from . import _memory, _sparse
from ._dtypes import as_numeric_array, as_weight, check_representable, compute_dtype, matrix_dtype
from ._memory import format_bytes
from ._progress import building
from ._typing import Domain, IntOrTuple, Order, PaddingLike, PaddingMode
from ._validation import (
    as_contiguous_range,
    as_int_tuple,
    check_domain,
    check_max_bytes,
    check_order,
    ieee,
    spatial_ndim_from,
)
from .geometry import ConvGeometry, make_geometry
from .layout import flat_strides
from .padding import map_positions

__all__ = ["bias_vector", "conv_matrix"]

# Bytes of scratch per entry of one output channel's block (int64 columns,
# int64 tap indices, a bool mask and their compressed copies).
_WORKSPACE_BYTES_PER_BLOCK_ENTRY = 33


@ieee
def conv_matrix(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    domain: Domain = "padded",
    order: Order = "F",
    dtype: npt.DTypeLike | None = None,
    max_bytes: int | None = None,
    rows: slice | None = None,
) -> sp.csr_array:
    r"""Build the exact matrix ``W`` of a convolution layer as a ``scipy.sparse.csr_array``.

    Deep-learning convolution (cross-correlation, as ``torch.nn.functional.conv*d``)
    is linear: ``vec(Y) = W vec(X_pad) + b``. This returns ``W``.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        Filters, with 1, 2 or 3 spatial axes.
    input_size : int or tuple of int
        Spatial size of the unpadded input.
    stride, dilation : int or tuple of int
        Per spatial axis, at least 1.
    padding : int, tuple, tuple of pairs, "valid" or "same"
        Zero padding: one int for every axis, one int per axis, one
        ``(before, after)`` pair per axis, ``"valid"`` (none) or ``"same"``
        (PyTorch's split, stride 1 only).
    groups : int
        Blocked connections: output channels of group ``g`` see only input
        channels ``g*C_in/groups ... (g+1)*C_in/groups - 1``.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}
        How the border is filled, as in ``torch.nn.Conv2d``. The padded-domain
        ``W`` does not depend on it (it acts on ``X_pad`` however that was
        filled); the input-domain matrix is ``W @ P`` with the mode's
        :func:`convop.pad_matrix` ``P``, taps folded onto one input pixel summed.
    domain : {"padded", "input"}
        ``"padded"``: the seed's ``W``, acting on ``vec(X_pad)``.
        ``"input"``: the layer's own map ``vec(X) -> vec(Y)`` with the padding
        folded in (for zero padding, taps that land on padding are absent).
    order : {"F", "C"}
        Vectorization of rows and columns: ``"F"`` is the seed's column-major
        order, ``"C"`` PyTorch's ``reshape`` order. See :func:`convop.vec`.
    dtype : dtype, optional
        Data type of the entries. Default: the weight's (float32 for float16
        weights; int64 for integer or boolean weights in the input domain of the
        folding padding modes, whose entries can be sums of weights; see the
        dtype table in ``docs/conventions.md``). An integer dtype must hold every
        entry exactly.
    max_bytes : int, optional
        Memory budget for the matrix and its assembly scratch; by default 75% of
        the memory available to this process. A larger request raises
        ``MemoryError`` before allocating.
    rows : slice, optional
        Build only the row block ``W[rows]`` (step 1, numpy's slice rules), with
        the global column indices: exactly ``conv_matrix(...)[rows]``, costing
        only the output channels it touches. Rows are channel-major in both
        orders, so :meth:`ConvGeometry.row_partition` gives blocks that are whole
        channels, each built with no waste.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(C_out*prod(out), C_in*prod(padded))`` (``"padded"``) or
        ``(C_out*prod(out), C_in*prod(input_size))`` (``"input"``), canonical
        (sorted, no duplicates), with int32 indices when
        ``max(nnz, rows, cols)`` fits and int64 otherwise. In the padded domain
        it stores exactly ``C_out*prod(out)*(C_in//groups)*prod(kernel)``
        entries, one per output pixel and tap whatever the weight values (zero
        weights are stored as explicit zeros, so the pattern depends on the
        geometry only).

    Raises
    ------
    ValueError, TypeError
        For an invalid argument, naming it.
    MemoryError
        When the estimated bytes exceed ``max_bytes``.

    See Also
    --------
    convop.conv : the forward pass computed with this matrix.
    convop.conv_geometry : sizes, nnz and bytes without building anything.

    Notes
    -----
    With ``order="F"``, output channel ``m`` at output position ``o`` and tap
    ``(c, u)`` of group ``g = m // (C_out/groups)`` give the entry

    .. math::

        W[m \prod O + \sum_k o_k \prod_{j<k} O_j,\;
          (g C_{in}/G + c) \prod P + \sum_k (o_k s_k + u_k d_k) \prod_{j<k} P_j]
        = K[m, c, u]

    where ``P`` is the padded size (or, in the input domain, the input size
    with ``o_k s_k + u_k d_k - p_k`` in place of the padded position and the
    entry absent when that falls outside the input). ``order="C"`` takes the
    products over ``j > k`` instead.

    Examples
    --------
    The seed's worked example: a 4x4 image, one 2x2 filter, stride 1, padding 1.

    >>> import numpy as np
    >>> from convop import conv_matrix, vec
    >>> x = np.arange(16.0).reshape(1, 4, 4)
    >>> k = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> W = conv_matrix(k, (4, 4), padding=1)
    >>> W.shape, W.nnz, W.indices.dtype
    ((25, 36), 100, dtype('int32'))
    >>> x_pad = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    >>> (W @ vec(x_pad))[:5]        # first output column: rows r = 0..4 of Y
    array([ 0., 16., 40., 64., 24.])
    """
    w = as_weight(weight)
    geom = make_geometry(
        w.shape,
        input_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
    )
    check_domain(domain)
    check_order(order)
    dt = matrix_dtype(w.dtype, dtype)
    return assemble(geom, w, domain=domain, order=order, dtype=dt,
                    max_bytes=check_max_bytes(max_bytes),
                    rows=None if rows is None else row_range(rows, geom.matrix_shape(domain)[0]))


def row_range(rows: Any, count: int) -> tuple[int, int]:
    """Resolve ``rows`` (a slice with step 1) against ``count`` rows: ``(start, stop)``."""
    if not isinstance(rows, slice):
        raise TypeError(f"`rows` must be a slice of rows such as slice(r0, r1); got "
                        f"{type(rows).__name__}.")
    block = as_contiguous_range(rows, "rows", count, "a slice of rows")
    return block.start, block.stop


def assemble(
    geom: ConvGeometry,
    weight: np.ndarray,
    *,
    domain: str,
    order: str,
    dtype: np.dtype,
    max_bytes: int | None = None,
    extra_bytes: int = 0,
    rows: tuple[int, int] | None = None,
    extra_what: str = "dense arrays",
) -> sp.csr_array:
    """Assemble the CSR matrix of an already validated layer (internal entry point).

    ``extra_bytes`` are what the caller will allocate beside the matrix
    (``extra_what``, by default dense arrays); they count against the same
    budget. ``rows=(r0, r1)`` builds the row block ``W[r0:r1]`` only.
    """
    if rows is not None:
        return _assemble_rows(geom, weight, domain, order, dtype, max_bytes, rows)
    shape = geom.matrix_shape(domain)
    dense = f" plus {format_bytes(extra_bytes)} of {extra_what}" if extra_bytes else ""
    if domain == "input" and geom.padding_mode == "reflect":
        # Reflect's exact count loops over border rows; the row pointers alone bound the
        # request from below and keep absurd sizes from reaching that loop.
        _memory.check_budget((shape[0] + 1) * 4 + extra_bytes, max_bytes,
                             f"the {domain}-domain conv matrix of shape {shape}{dense}")
    nnz = geom.nnz(domain)  # closed form for the other modes
    idx_dtype = geom.index_dtype(domain)
    block_full = math.prod(geom.output_size) * geom.taps
    needed = geom.matrix_nbytes(domain, dtype) + _WORKSPACE_BYTES_PER_BLOCK_ENTRY * block_full
    _memory.check_budget(
        needed + extra_bytes,
        max_bytes,
        f"the {domain}-domain conv matrix of shape {shape} with {nnz} stored entries "
        f"({dtype} data, {idx_dtype} indices){dense}",
    )
    _sparse.check_index_range(max(nnz, *shape), f"the conv matrix of shape {shape}",
                              "`input_size` or `padding`")
    check_representable(weight, dtype)
    with building(f"building the {shape[0]} x {shape[1]} conv matrix", needed):
        return _fill(geom, weight, domain, order, dtype, idx_dtype, shape)


def _assemble_rows(geom: ConvGeometry, weight: np.ndarray, domain: str, order: str,
                   dtype: np.dtype, max_bytes: int | None, rows: tuple[int, int]
                   ) -> sp.csr_array:
    """Build ``W[r0:r1]``: the output channels it touches, then the rows asked for."""
    r0, r1 = rows
    cols = geom.matrix_shape(domain)[1]
    per_row = math.prod(geom.output_size)
    first, last = r0 // per_row, max(r0 // per_row, -(-r1 // per_row))
    block = geom.row_block(range(first, last), domain, dtype)
    # Reflect's per-channel count loops over border rows; bound absurd sizes first.
    _memory.check_budget((block.rows.stop - block.rows.start + 1) * 4, max_bytes,
                         f"rows {r0}:{r1} of the {domain}-domain conv matrix")
    _memory.check_budget(
        block.nbytes + _WORKSPACE_BYTES_PER_BLOCK_ENTRY * per_row * geom.taps, max_bytes,
        f"rows {r0}:{r1} of the {domain}-domain conv matrix ({block.nnz} stored entries "
        f"in output channels {first}:{last}, {dtype} data, {block.index_dtype} indices)")
    check_representable(weight, dtype)
    shape = (block.rows.stop - block.rows.start, cols)
    with building(f"building rows {r0}:{r1} of the conv matrix", block.nbytes):
        W = _fill(geom, weight, domain, order, dtype, block.index_dtype, shape,
                  channels=block.channels)
    if (r0, r1) == (block.rows.start, block.rows.stop):
        return W
    a, b = r0 - block.rows.start, r1 - block.rows.start
    lo, hi = int(W.indptr[a]), int(W.indptr[b])
    idx = _sparse.index_dtype(max(hi - lo, b - a, cols))
    return _sparse.csr_from_parts(W.data[lo:hi].copy(), W.indices[lo:hi].astype(idx),
                                  (W.indptr[a:b + 1] - lo).astype(idx), (b - a, cols))


def _fill(geom: ConvGeometry, weight: np.ndarray, domain: str, order: str, dtype: np.dtype,
          idx_dtype: np.dtype, shape: tuple[int, int], channels: range | None = None
          ) -> sp.csr_array:
    """Write the CSR arrays of an already checked request (output ``channels`` only)."""
    block_cols, block_taps, row_counts, folds = channel_block(geom, domain, order)
    per_channel = block_cols.size
    channels = range(geom.out_channels) if channels is None else channels
    c_out = len(channels)

    wflat = weight.reshape(geom.out_channels, -1)[channels.start:channels.stop].astype(
        dtype, copy=False)
    data = np.empty(c_out * per_channel, dtype=dtype)
    data2d = data.reshape(c_out, per_channel)
    # Into a C-contiguous buffer: `wflat[:, taps]` is laid out transposed and would
    # cost a second, strided copy. mode="wrap" avoids take's buffered bounds check;
    # every tap index is in range by construction.
    np.take(wflat, block_taps, axis=1, out=data2d, mode="wrap")
    if folds:  # taps that padding folded onto one entry: summed exactly, rounded once
        wide = weight.reshape(geom.out_channels, -1)[channels.start:channels.stop].astype(
            np.result_type(compute_dtype(weight.dtype), compute_dtype(dtype)), copy=False)
        entries = np.unique(np.concatenate([entry for entry, _ in folds]))
        sums = wide[:, block_taps[entries]]
        for entry, tap in folds:  # no entry repeats within one pair, so += is safe
            sums[:, np.searchsorted(entries, entry)] += wide[:, tap]
        check_representable(sums, dtype)
        data2d[:, entries] = sums

    indices = np.empty(c_out * per_channel, dtype=idx_dtype)
    pixels_per_channel = shape[1] // geom.in_channels
    # Each output channel reads its group's input channels.
    group_of = np.arange(channels.start, channels.stop, dtype=idx_dtype) // geom.out_per_group
    offsets = group_of * (geom.in_per_group * pixels_per_channel)
    np.add(
        block_cols.astype(idx_dtype)[np.newaxis, :],
        offsets[:, np.newaxis],
        out=indices.reshape(c_out, per_channel),
    )

    rows_per_channel = row_counts.size
    indptr = np.empty(c_out * rows_per_channel + 1, dtype=idx_dtype)
    indptr[0] = 0
    np.add(
        np.cumsum(row_counts, dtype=idx_dtype)[np.newaxis, :],
        (np.arange(c_out, dtype=idx_dtype) * per_channel)[:, np.newaxis],
        out=indptr[1:].reshape(c_out, rows_per_channel),
    )
    return _sparse.csr_from_parts(data, indices, indptr, shape)


def channel_block(
    geom: ConvGeometry, domain: str, order: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Column index, flat weight index and row lengths of output channel 0's rows.

    Entries come in CSR order: rows by output position in ``order``; within a
    row by input channel, then kernel position in ``order``, which is the order
    of increasing column because the spatial position ``o*s + u*d`` grows with
    ``u`` on every axis. In the input domain, zero padding drops taps; the other
    modes map them onto input pixels, possibly out of order and several onto
    one pixel: then each row is sorted and the taps folded onto an entry are
    returned as ``folds``, pairs of (entry index, tap index) arrays with no
    entry repeated within a pair.
    """
    ndim = geom.ndim
    size = geom.padded_size if domain == "padded" else geom.input_size
    col_strides = flat_strides(size, order)
    tap_strides = flat_strides(geom.kernel_size, "C")  # the weight's own layout
    # Axis layout of the block: ndim output axes, the channel axis, ndim kernel axes,
    # each group of spatial axes slowest-first for `order`.
    slot = list(range(ndim)) if order == "C" else list(reversed(range(ndim)))
    rank = 2 * ndim + 1
    mode = geom.padding_mode if domain == "input" else "padded"

    def placed(values: np.ndarray, axes: dict[int, int]) -> np.ndarray:
        shape = [1] * rank
        for axis, length in axes.items():
            shape[axis] = length
        return values.reshape(shape)

    c_in = geom.in_per_group
    cols = placed(np.arange(c_in, dtype=np.int64) * math.prod(size), {ndim: c_in})
    taps = placed(np.arange(c_in, dtype=np.int64) * math.prod(geom.kernel_size), {ndim: c_in})
    mask = None
    for axis in range(ndim):
        n_out, k = geom.output_size[axis], geom.kernel_size[axis]
        o = np.arange(n_out, dtype=np.int64)[:, np.newaxis]
        u = np.arange(k, dtype=np.int64)[np.newaxis, :]
        pos = o * geom.stride[axis] + u * geom.dilation[axis]
        axes = {slot[axis]: n_out, ndim + 1 + slot[axis]: k}
        if mode != "padded":
            pos = map_positions(pos - geom.padding[axis][0], geom.input_size[axis], mode)
        if mode == "zeros":
            valid = placed(pos >= 0, axes)
            mask = valid if mask is None else mask & valid
        cols = cols + placed(pos * col_strides[axis], axes)
        taps = taps + placed(u.ravel() * tap_strides[axis], {ndim + 1 + slot[axis]: k})

    rows = math.prod(geom.output_size)
    full_taps = np.broadcast_to(taps, cols.shape)
    if mask is not None:
        full_mask = np.broadcast_to(mask, cols.shape)
        row_counts = full_mask.reshape(rows, -1).sum(axis=1)
        return cols[full_mask], full_taps[full_mask], row_counts, []
    if mode in ("padded", "zeros"):
        row_counts = np.full(rows, geom.taps, dtype=np.int64)
        return cols.reshape(-1), full_taps.reshape(-1), row_counts, []
    return _fold_rows(cols.reshape(rows, -1), full_taps.reshape(rows, -1))


def _fold_rows(
    cols: np.ndarray, taps: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """Sort each row by column and fold taps that share a column (reflect/replicate/circular)."""
    perm = np.argsort(cols, axis=1, kind="stable")
    cols = np.take_along_axis(cols, perm, axis=1)
    taps = np.take_along_axis(taps, perm, axis=1)
    new = np.ones(cols.shape, dtype=bool)
    new[:, 1:] = cols[:, 1:] != cols[:, :-1]
    row_counts = new.sum(axis=1)
    is_new, flat_cols, flat_taps = new.reshape(-1), cols.reshape(-1), taps.reshape(-1)
    first = np.flatnonzero(is_new)
    entry = np.cumsum(is_new) - 1  # the stored entry each tap lands on
    multiplicity = np.arange(is_new.size) - first[entry]  # 0 for the first tap of an entry
    folds = []
    for m in range(1, int(multiplicity.max(initial=0)) + 1):
        at = multiplicity == m
        folds.append((entry[at], flat_taps[at]))
    return flat_cols[first], flat_taps[first], row_counts, folds


def bias_vector(bias: npt.ArrayLike, output_size: IntOrTuple, order: Order = "F", *,
                max_bytes: int | None = None) -> np.ndarray:
    """Return the seed's ``b``: each channel's bias repeated over its output pixels.

    Parameters
    ----------
    bias : array_like, shape (C_out,)
        One bias per output channel.
    output_size : int or tuple of int
        Spatial output size.
    order : {"F", "C"}
        Vectorization order. The channel is the slowest index in both orders,
        so ``b`` is the same for both; the argument is checked for symmetry
        with the other functions.
    max_bytes : int, optional
        Memory budget for the result (default: 75% of the available memory).

    Returns
    -------
    numpy.ndarray
        ``b`` of length ``C_out * prod(output_size)``, in the bias's dtype.

    Examples
    --------
    >>> from convop import bias_vector
    >>> bias_vector([1.0, -1.0], (1, 2))
    array([ 1.,  1., -1., -1.])
    """
    check_order(order)
    b = as_numeric_array(bias, "bias")
    if b.ndim != 1:
        raise ValueError(f"`bias` must be one value per output channel (1-D); got shape {b.shape}.")
    ndim = spatial_ndim_from(dict(output_size=output_size))
    size = as_int_tuple(output_size, "output_size", ndim, minimum=1)
    length = b.size * math.prod(size)
    _memory.check_budget(length * b.itemsize, check_max_bytes(max_bytes),
                         f"the bias vector of length {length}")
    return np.repeat(b, math.prod(size))


def check_bias(bias: Any, out_channels: int) -> np.ndarray | None:
    """Validate an optional bias of one value per output channel."""
    if bias is None:
        return None
    b = as_numeric_array(bias, "bias")
    if b.shape != (out_channels,):  # a 0-d or longer bias is a mistake, not a broadcast
        raise ValueError(
            f"`bias` must have shape ({out_channels},), one value per output channel; "
            f"got shape {b.shape}."
        )
    return b
