"""The seed's im2col / col2im method, kept as an independent reference.

``im2col`` gathers every receptive field of the padded input into a column:
rows are ordered (channel, kernel row, kernel column) and columns (output row,
output column, image) with the image index fastest, exactly as in the seed
``000_6ffdd64fa23dcdab.txt``; N-d inputs extend both orders axis by axis.
The forward pass is then ``W_row @ X_col + b`` and the input gradient
``col2im(W_row.T @ dout_flat)``. It shares no index arithmetic with
:func:`convop.conv_matrix`: im2col reads strided windows and col2im adds
strided slices.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _memory
from ._dtypes import as_numeric_array, check_exact_integers, compute_dtype
from ._typing import IntOrTuple, PaddingLike
from ._validation import (
    as_int_tuple,
    as_shape,
    check_max_bytes,
    ieee,
    spatial_ndim_for_kernel,
    spatial_ndim_from,
)
from .geometry import ConvGeometry, make_geometry

__all__ = ["col2im", "im2col"]


def im2col(
    x: npt.ArrayLike,
    kernel_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Stretch every receptive field of ``x`` into a column (the seed's ``X_col``).

    Parameters
    ----------
    x : array_like
        A batch ``(N, C, *spatial)``; with a tuple ``kernel_size`` also one
        sample ``(C, *spatial)``, treated as a batch of one.
    kernel_size : int or tuple of int
        With an int, ``x`` must be a batch and the spatial rank is ``x.ndim - 2``.
    stride, padding, dilation
        As in :func:`convop.conv_matrix`.
    max_bytes : int, optional
        Memory budget for the result (default: 75% of the available memory).

    Returns
    -------
    numpy.ndarray
        ``X_col`` of shape ``(C*prod(kernel), prod(out)*N)``: rows ordered
        (channel, kernel axes), columns (output axes, image) with the image
        fastest.

    See Also
    --------
    col2im : its adjoint.

    Examples
    --------
    The seed's example: a 4x4 image, 2x2 filter, stride 1, padding 1.

    >>> import numpy as np
    >>> from convop import im2col
    >>> x = np.arange(16).reshape(1, 1, 4, 4)
    >>> X_col = im2col(x, 2, padding=1)
    >>> X_col.shape
    (4, 25)
    >>> X_col[0]
    array([ 0,  0,  0,  0,  0,  0,  0,  1,  2,  3,  0,  4,  5,  6,  7,  0,  8,
            9, 10, 11,  0, 12, 13, 14, 15])
    """
    arr = as_numeric_array(x, "x")
    _check_axes(kernel_size, stride, padding, dilation)
    ndim = spatial_ndim_for_kernel(kernel_size, arr.ndim, "x")
    if arr.ndim == ndim + 1:
        arr = arr[np.newaxis]
    geom = _geometry(arr.shape[1], kernel_size, arr.shape[2:], stride, padding, dilation, "x")
    n = arr.shape[0]
    rows = geom.in_channels * math.prod(geom.kernel_size)
    cols = math.prod(geom.output_size) * n
    _memory.check_budget(
        rows * cols * arr.itemsize + _padded_bytes(geom, n, arr.itemsize),
        check_max_bytes(max_bytes),
        f"im2col of shape ({rows}, {cols})",
    )
    windows = receptive_fields(np.pad(arr, ((0, 0), (0, 0), *geom.padding)), geom)
    # (N, C, *out, *kernel) -> (C, *kernel, *out, N)
    perm = (1, *range(2 + ndim, 2 + 2 * ndim), *range(2, 2 + ndim), 0)
    return windows.transpose(perm).reshape(rows, cols)


def receptive_fields(padded: np.ndarray, geom: ConvGeometry) -> np.ndarray:
    """Return a strided view ``(N, C, *out, *kernel)`` of every receptive field of a batch."""
    spatial = tuple(range(2, 2 + geom.ndim))
    windows = np.lib.stride_tricks.sliding_window_view(
        padded, geom.dilated_kernel_size, axis=spatial
    )
    return windows[
        (slice(None), slice(None))
        + tuple(slice(None, None, s) for s in geom.stride)
        + tuple(slice(None, None, d) for d in geom.dilation)
    ]


@ieee
def col2im(
    cols: npt.ArrayLike,
    input_shape: tuple[int, ...],
    kernel_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: add every column back onto its receptive field.

    Overlapping fields are summed and the padding is cropped, so
    ``<im2col(x), C> == <x, col2im(C)>`` for all ``x`` and ``C``.

    Parameters
    ----------
    cols : array_like, shape (C*prod(kernel), prod(out)*N)
        Columns in the layout :func:`im2col` produces.
    input_shape : tuple of int
        Shape of the unpadded input, ``(N, C, *spatial)``; with a tuple
        ``kernel_size`` also ``(C, *spatial)`` for one sample.
    kernel_size, stride, padding, dilation
        As in :func:`im2col`.
    max_bytes : int, optional
        Memory budget for the result (default: 75% of the available memory).

    Returns
    -------
    numpy.ndarray
        An array of shape ``input_shape``; int64 for integer or boolean
        ``cols`` (sums are exact), float32 for float16, else ``cols``'s dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import col2im
    >>> col2im(np.ones((4, 4)), (1, 1, 3, 3), 2)[0, 0]   # how many windows see each pixel
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    arr = as_numeric_array(cols, "cols")
    _check_axes(kernel_size, stride, padding, dilation)
    shape = as_shape(input_shape, "input_shape")
    ndim = spatial_ndim_for_kernel(kernel_size, len(shape), "input_shape")
    single = len(shape) == ndim + 1
    full_shape = (1, *shape) if single else shape
    n, c = full_shape[0], full_shape[1]
    geom = _geometry(c, kernel_size, full_shape[2:], stride, padding, dilation, "input_shape")
    out = geom.output_size
    expected = (c * math.prod(geom.kernel_size), math.prod(out) * n)
    if arr.shape != expected:
        raise ValueError(
            f"`cols` must have shape {expected} for input_shape {shape}, kernel "
            f"{geom.kernel_size} and output {out}; got {arr.shape}."
        )
    dtype = compute_dtype(arr)
    if dtype.kind == "i":  # a pixel sums at most one entry per tap
        check_exact_integers(math.prod(geom.kernel_size), [("cols", arr)])
    _memory.check_budget(_padded_bytes(geom, n, dtype.itemsize), check_max_bytes(max_bytes),
                         f"col2im of shape {tuple(full_shape)}")
    blocks = arr.reshape(c, *geom.kernel_size, *out, n)
    padded = np.zeros((n, c, *geom.padded_size), dtype=dtype)
    taps = itertools.product(*(range(k) for k in geom.kernel_size))
    for tap, window in zip(taps, geom.tap_windows()):
        # (C, *out, N) -> (N, C, *out)
        tap_index: tuple[slice | int, ...] = (slice(None), *tap)
        block = np.moveaxis(blocks[tap_index], -1, 0)
        window_index = (slice(None), slice(None), *window)
        padded[window_index] += block
    crop = (slice(None), slice(None)) + tuple(
        slice(lo, lo + size) for (lo, _), size in zip(geom.padding, geom.input_size)
    )
    result = padded[crop]
    return result[0] if single else result


def _check_axes(kernel_size: Any, stride: Any, padding: Any, dilation: Any) -> None:
    """Check that the per-axis arguments agree on the spatial rank."""
    spatial_ndim_from(dict(kernel_size=kernel_size, stride=stride, padding=padding,
                           dilation=dilation))


def _geometry(
    channels: int,
    kernel_size: IntOrTuple,
    spatial: tuple[int, ...],
    stride: IntOrTuple,
    padding: PaddingLike,
    dilation: IntOrTuple,
    input_name: str,
) -> ConvGeometry:
    kernel = as_int_tuple(kernel_size, "kernel_size", len(spatial), minimum=1)
    if channels < 1:
        raise ValueError(f"`{input_name}` must have at least one channel; got {channels}.")
    return make_geometry(
        (1, channels, *kernel), spatial, stride=stride, padding=padding, dilation=dilation,
        input_name=input_name, weight_name="kernel_size",
    )


def _padded_bytes(geom: ConvGeometry, n: int, itemsize: int) -> int:
    return n * geom.in_channels * math.prod(geom.padded_size) * itemsize
