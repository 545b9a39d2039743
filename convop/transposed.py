"""Transposed convolution, computed with the transpose of the convolution matrix.

A transposed convolution with weight ``(C_in, C_out // groups, *kernel)`` is the
adjoint of the convolution that has the same weight read as
``(C_out_conv, C_in_conv // groups, *kernel)`` and maps the transposed
convolution's output size back to its input size. Its output size is

    out = (in - 1) * stride - (pad_before + pad_after) + dilation * (kernel - 1)
          + output_padding + 1

where ``output_padding < max(stride, dilation)`` picks one of the sizes that
the forward convolution maps onto ``in`` (PyTorch's rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from . import _sparse
from ._dtypes import as_batch, as_weight, check_exact_integers, compute_dtype, matrix_dtype
from ._typing import IntOrTuple, Order
from ._validation import (
    as_int_tuple,
    as_padding,
    check_groups,
    check_max_bytes,
    check_order,
    ieee,
    spatial_ndim_from,
)
from .functional import adjoint_terms, input_grad_batch
from .geometry import ConvGeometry, check_ranks, make_geometry
from .layout import vec
from .matrix import assemble, check_bias

__all__ = ["conv_transpose", "conv_transpose_matrix", "output_padding_for"]


@dataclass(frozen=True)
class _TransposeLayer:
    """A transposed convolution described by its forward convolution."""

    conv: ConvGeometry  # maps `output_size` back onto at least `input_size`
    input_size: tuple[int, ...]
    output_size: tuple[int, ...]

    @property
    def trimmed(self) -> bool:
        """True when the convolution has extra output rows (output_padding >= stride)."""
        return self.conv.output_size != self.input_size


@ieee
def conv_transpose(
    x: npt.ArrayLike,
    weight: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: Any = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Transposed convolution, equal to ``torch.nn.functional.conv_transpose{1,2,3}d``.

    Parameters
    ----------
    x : array_like
        Input ``(N, C_in, *spatial)`` or one sample ``(C_in, *spatial)``.
    weight : array_like, shape (C_in, C_out // groups, *kernel)
        PyTorch's transposed-convolution layout.
    bias : array_like, shape (C_out,), optional
        One value per output channel.
    stride, dilation : int or tuple of int
        Per spatial axis.
    padding : int, tuple of int or tuple of (before, after) pairs
        Removed from each side of the full transposed output (no strings).
    output_padding : int or tuple of int
        Extra size on the high side, each smaller than ``max(stride, dilation)``.
    groups : int
        Blocked connections.
    max_bytes : int, optional
        Memory budget, as in :func:`convop.conv`.

    Returns
    -------
    numpy.ndarray
        ``(N, C_out, *out)`` or ``(C_out, *out)``.

    See Also
    --------
    conv_transpose_matrix : its matrix.
    output_padding_for : the ``output_padding`` giving a wanted size.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import conv_transpose
    >>> conv_transpose(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), stride=2)[0, 0]
    array([[1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.],
           [1., 1., 1., 1.]])
    """
    w = as_weight(weight)
    ndim = w.ndim - 2
    check_groups(groups, w.shape[0])
    xb, single = as_batch(x, "x", channels=w.shape[0], ndim=ndim)
    layer = transposed_layer(w.shape, xb.shape[2:], stride, padding, output_padding, dilation,
                             groups, input_name="x")
    b = check_bias(bias, layer.conv.in_channels)
    dtype = compute_dtype(xb, w, *(() if b is None else (b,)))
    if dtype.kind == "i":
        check_exact_integers(adjoint_terms(layer.conv), [("x", xb), ("weight", w)],
                             None if b is None else ("bias", b))
    # PyTorch's transposed convolution is the transpose W^T, not the adjoint W^H. Rows the
    # convolution has beyond `input_size` take no part (padding x with zeros instead would
    # turn a NaN weight into NaN * 0 = NaN there; PyTorch has no such rows).
    rows = _kept_rows(layer, "C") if layer.trimmed else None
    y = input_grad_batch(layer.conv, w, xb, dtype, check_max_bytes(max_bytes), conjugate=False,
                         rows=rows)
    if b is not None:
        y += b.astype(dtype, copy=False).reshape(-1, *([1] * ndim))
    return y[0] if single else y


@ieee
def conv_transpose_matrix(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: Any = 0,
    output_padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    order: Order = "F",
    dtype: npt.DTypeLike | None = None,
    max_bytes: int | None = None,
) -> sp.csr_array:
    """Build the exact matrix of a transposed convolution, ``vec(Y) = T vec(X)``.

    ``T`` is the transpose of the input-domain matrix of the matching
    convolution (:func:`convop.conv_matrix` with the same weight, on the
    transposed convolution's output size), restricted to its first
    ``input_size`` output positions when ``output_padding >= stride``.

    Parameters
    ----------
    weight : array_like, shape (C_in, C_out // groups, *kernel)
        PyTorch's transposed-convolution layout.
    input_size : int or tuple of int
        Spatial size of the transposed convolution's input.
    stride, padding, output_padding, dilation, groups
        As in :func:`conv_transpose`.
    order : {"F", "C"}
        Vectorization of rows and columns.
    dtype : dtype, optional
        Data type of the entries; default as in :func:`convop.conv_matrix`.
    max_bytes : int, optional
        Memory budget for the matrix and its transpose.

    Returns
    -------
    scipy.sparse.csr_array
        Canonical CSR of shape ``(C_out*prod(out), C_in*prod(input_size))``.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import conv_matrix, conv_transpose_matrix
    >>> w = np.arange(1.0, 19.0).reshape(2, 1, 3, 3)
    >>> T = conv_transpose_matrix(w, (4, 4), stride=2, padding=1, output_padding=1)
    >>> A = conv_matrix(w, (8, 8), stride=2, padding=1, domain="input")
    >>> T.shape, bool((T != A.T).nnz == 0)
    ((64, 32), True)
    """
    w = as_weight(weight)
    check_order(order)
    dt = matrix_dtype(w.dtype, dtype)
    layer = transposed_layer(w.shape, input_size, stride, padding, output_padding, dilation, groups)
    budget = check_max_bytes(max_bytes)
    conv = layer.conv
    extra = _transposed_copy_bytes(conv, dt)
    if layer.trimmed:  # the kept rows' mask and index array, and the trimmed copy
        extra += conv.vector_size("output") * 10 + conv.matrix_nbytes("input", dt)
    A = assemble(conv, w, domain="input", order=order, dtype=dt, max_bytes=budget,
                 extra_bytes=extra, extra_what="its transposed copy")
    if layer.trimmed:
        A = A[_kept_rows(layer, order)]
    T = A.T.tocsr()
    T.has_canonical_format = True  # the CSC->CSR conversion sorts every row
    return T


def output_padding_for(
    input_size: IntOrTuple,
    output_size: IntOrTuple,
    kernel_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: Any = 0,
    dilation: IntOrTuple = 1,
) -> tuple[int, ...]:
    """Return the ``output_padding`` that makes a transposed convolution produce ``output_size``.

    Raises
    ------
    ValueError
        When ``output_size`` is not reachable, naming the reachable range.

    Examples
    --------
    >>> from convop import output_padding_for
    >>> output_padding_for((4, 4), (8, 7), 3, stride=2, padding=1)
    (1, 0)
    """
    ndim = spatial_ndim_from(dict(input_size=input_size, output_size=output_size,
                                  kernel_size=kernel_size, stride=stride, padding=padding,
                                  dilation=dilation))
    size = as_int_tuple(input_size, "input_size", ndim, minimum=1)
    wanted = as_int_tuple(output_size, "output_size", ndim, minimum=1)
    kernel = as_int_tuple(kernel_size, "kernel_size", ndim, minimum=1)
    stride_t = as_int_tuple(stride, "stride", ndim, minimum=1)
    dilation_t = as_int_tuple(dilation, "dilation", ndim, minimum=1)
    pads = _transpose_padding(padding, ndim, kernel, dilation_t, stride_t)
    result = []
    for axis in range(ndim):
        base = _base_size(size[axis], kernel[axis], stride_t[axis], dilation_t[axis], pads[axis])
        limit = max(stride_t[axis], dilation_t[axis])
        op = wanted[axis] - base
        if not 0 <= op < limit:
            raise ValueError(
                f"`output_size` {wanted[axis]} on spatial axis {axis} is not reachable: with "
                f"input size {size[axis]}, kernel {kernel[axis]}, stride {stride_t[axis]}, "
                f"padding {pads[axis]} and dilation {dilation_t[axis]} a transposed "
                f"convolution gives sizes {base} to {base + limit - 1}."
            )
        result.append(op)
    return tuple(result)


def _transposed_copy_bytes(conv: ConvGeometry, dtype: np.dtype) -> int:
    """Bytes of ``A.T.tocsr()``: ``A``'s entries, and a row pointer over ``A``'s *columns*.

    The columns are the transposed convolution's output pixels, which a huge stride
    or dilation makes far more than ``A``'s rows; scipy picks the copy's index
    dtype from them too.
    """
    rows, cols = conv.matrix_shape("input")
    nnz = conv.nnz("input")
    index = _sparse.index_dtype(max(nnz, rows, cols)).itemsize
    return nnz * (np.dtype(dtype).itemsize + index) + (cols + 1) * index


def _kept_rows(layer: _TransposeLayer, order: Order) -> np.ndarray:
    """Rows of the convolution's matrix inside the transposed convolution's input size."""
    keep = np.zeros((layer.conv.out_channels, *layer.conv.output_size), dtype=bool)
    keep[(slice(None),) + tuple(slice(0, i) for i in layer.input_size)] = True
    return np.flatnonzero(vec(keep, order, batch=False))


def transposed_output_size(weight_shape: tuple[int, ...], input_size: Any, *, stride: Any = 1,
                           padding: Any = 0, output_padding: Any = 0, dilation: Any = 1,
                           groups: Any = 1) -> tuple[int, ...]:
    """Validate a transposed convolution and return its output size (internal helper)."""
    layer = transposed_layer(weight_shape, input_size, stride, padding, output_padding, dilation,
                             groups)
    return layer.output_size


def transposed_layer(
    weight_shape: tuple[int, ...],
    input_size: Any,
    stride: Any,
    padding: Any,
    output_padding: Any,
    dilation: Any,
    groups: Any,
    input_name: str = "input_size",
) -> _TransposeLayer:
    ndim = len(weight_shape) - 2
    kernel = tuple(weight_shape[2:])
    check_ranks({input_name: input_size, "stride": stride, "dilation": dilation,
                 "padding": padding, "output_padding": output_padding}, weight_shape, "weight")
    size = as_int_tuple(input_size, input_name, ndim, minimum=1)
    stride_t = as_int_tuple(stride, "stride", ndim, minimum=1)
    dilation_t = as_int_tuple(dilation, "dilation", ndim, minimum=1)
    pads = _transpose_padding(padding, ndim, kernel, dilation_t, stride_t)
    out_pad = as_int_tuple(output_padding, "output_padding", ndim, minimum=0)
    for axis, (op, s, d) in enumerate(zip(out_pad, stride_t, dilation_t)):
        if op >= max(s, d):
            raise ValueError(
                f"`output_padding` must be smaller than either `stride` or `dilation` on each "
                f"axis (PyTorch's rule); got output_padding {op} with stride {s} and "
                f"dilation {d} on spatial axis {axis}."
            )
    out = tuple(
        _base_size(n, k, s, d, p) + op
        for n, k, s, d, p, op in zip(size, kernel, stride_t, dilation_t, pads, out_pad)
    )
    if any(o < 1 for o in out):
        raise ValueError(
            f"the transposed convolution's output size {out} must be positive; reduce "
            f"`padding` {pads} (input size {size}, kernel {kernel})."
        )
    conv = make_geometry(
        weight_shape, out, stride=stride_t, padding=pads, dilation=dilation_t, groups=groups
    )
    return _TransposeLayer(conv=conv, input_size=size, output_size=out)


def _transpose_padding(
    padding: Any,
    ndim: int,
    kernel: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        raise ValueError(
            f"`padding` of a transposed convolution must be ints or (before, after) pairs, "
            f"as in PyTorch; got {padding!r}."
        )
    return as_padding(padding, ndim, kernel_size=kernel, dilation=dilation, stride=stride)


def _base_size(n: int, k: int, s: int, d: int, pad: tuple[int, int]) -> int:
    return (n - 1) * s - pad[0] - pad[1] + d * (k - 1) + 1

