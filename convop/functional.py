"""Convolution forward pass and input gradient computed with the exact matrix.

``conv`` is the seed's ``vec(Y) = W vec(X_pad) + b`` and ``conv_input_grad``
its backward ``dX = P^H W^H vec(dY)``, each one sparse-times-dense product
over the whole batch. Arrays use PyTorch's layout and the matrix is built in
row-major order, so vectorizing a batch is a free reshape. For complex data the
backward is the adjoint (conjugate transpose), what ``torch.autograd`` returns.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ._dtypes import as_batch, as_weight, check_exact_integers, compute_dtype
from ._progress import building
from ._typing import IntOrTuple, PaddingLike, PaddingMode
from ._validation import check_groups, check_max_bytes, ieee
from .geometry import ConvGeometry, make_geometry
from .matrix import assemble, check_bias
from .modes import MODES
from .padding import pad, pad_adjoint

__all__ = ["conv", "conv_input_grad"]


@ieee
def conv(
    x: npt.ArrayLike,
    weight: npt.ArrayLike,
    bias: npt.ArrayLike | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    max_bytes: int | None = None,
) -> np.ndarray:
    """Convolution layer forward pass, ``vec(Y) = W vec(X_pad) + b``.

    Equal to ``torch.nn.functional.conv{1,2,3}d`` (cross-correlation).

    Parameters
    ----------
    x : array_like
        Input ``(N, C_in, *spatial)`` or one sample ``(C_in, *spatial)``.
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        Filters with 1, 2 or 3 spatial axes.
    bias : array_like, shape (C_out,), optional
        One value per output channel.
    stride, padding, dilation, groups, padding_mode
        As in :func:`convop.conv_matrix`.
    max_bytes : int, optional
        Memory budget for the matrix and the dense arrays; by default 75% of
        the available memory.

    Returns
    -------
    numpy.ndarray
        ``(N, C_out, *out)``, or ``(C_out, *out)`` for one sample, in the
        common dtype of ``x``, ``weight`` and ``bias``; exact int64 for integer
        and boolean data (a ``ValueError`` when the exact result could leave
        int64), float32 for float16 data.

    See Also
    --------
    convop.conv_matrix : the matrix ``W`` used here.
    convop.conv_input_grad : the backward pass.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import conv
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> k = np.ones((1, 1, 2, 2))
    >>> conv(x, k, bias=[0.5], stride=2)
    array([[[[10.5, 18.5],
             [42.5, 50.5]]]])
    """
    w = as_weight(weight)
    xb, single = as_batch(
        x, "x", channels=w.shape[1] * check_groups(groups, w.shape[0]), ndim=w.ndim - 2
    )
    geom = make_geometry(
        w.shape,
        xb.shape[2:],
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        input_name="x",
    )
    b = check_bias(bias, geom.out_channels)
    dtype = compute_dtype(xb, w, *(() if b is None else (b,)))
    if dtype.kind == "i":
        check_exact_integers(geom.taps, [("x", xb), ("weight", w)],
                             None if b is None else ("bias", b))
    max_bytes = check_max_bytes(max_bytes)
    n = xb.shape[0]
    dense_bytes = n * (geom.vector_size("padded") + geom.vector_size("output")) * dtype.itemsize
    W = _matrix(geom, w, dtype, max_bytes, dense_bytes)

    with building(f"the convolution of {n} samples", dense_bytes + W.data.nbytes):
        padded = pad(xb.astype(dtype, copy=False), geom.padding, geom.padding_mode)
        y = (W @ padded.reshape(n, W.shape[1]).T).T.reshape(n, geom.out_channels,
                                                            *geom.output_size)
    if b is not None:
        y += b.astype(dtype, copy=False).reshape(-1, *([1] * geom.ndim))
    return y[0] if single else y


@ieee
def conv_input_grad(
    grad_output: npt.ArrayLike,
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    max_bytes: int | None = None,
) -> np.ndarray:
    """Gradient of a convolution layer with respect to its input, ``dX = P^H W^H vec(dY)``.

    Equal to autograd through ``torch.nn.Conv{1,2,3}d`` (and, for zero padding,
    ``torch.nn.grad.conv{1,2,3}d_input``): the seed's backward ``W.T vec(dY)``
    followed by the adjoint of the padding, which crops the border for zero
    padding and adds it back onto the pixels it copied for the other modes.
    For complex data it is the adjoint ``W.conj().T``, as PyTorch's autograd.

    Parameters
    ----------
    grad_output : array_like
        ``dY`` of shape ``(N, C_out, *out)`` or ``(C_out, *out)``.
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        Filters with 1, 2 or 3 spatial axes.
    input_size : int or tuple of int
        Spatial size of the unpadded input, needed because with a stride
        several input sizes give the same output size.
    stride, padding, dilation, groups, padding_mode, max_bytes
        As in :func:`convop.conv`.

    Returns
    -------
    numpy.ndarray
        ``dX`` of shape ``(N, C_in, *input_size)`` or ``(C_in, *input_size)``,
        dtypes as in :func:`conv`.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import conv_input_grad
    >>> conv_input_grad(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), (3, 3))
    array([[[[1., 2., 1.],
             [2., 4., 2.],
             [1., 2., 1.]]]])
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
    dy, single = as_batch(grad_output, "grad_output", channels=geom.out_channels, ndim=geom.ndim)
    if dy.shape[2:] != geom.output_size:
        raise ValueError(
            f"`grad_output` must have spatial size {geom.output_size}, the output size of "
            f"this layer on `input_size` {geom.input_size}; got shape {dy.shape}."
        )
    dtype = compute_dtype(dy, w)
    if dtype.kind == "i":
        check_exact_integers(adjoint_terms(geom), [("grad_output", dy), ("weight", w)])
    grad = input_grad_batch(geom, w, dy, dtype, check_max_bytes(max_bytes), conjugate=True)
    return grad[0] if single else grad


def adjoint_terms(geom: ConvGeometry) -> int:
    """At most how many products one input pixel of ``W^T dY`` (padding folded back) sums."""
    folds = MODES[geom.padding_mode].folds
    fold = math.prod(1 + lo + hi for lo, hi in geom.padding) if folds else 1
    return geom.out_per_group * math.prod(geom.kernel_size) * fold


def input_grad_batch(
    geom: ConvGeometry,
    weight: np.ndarray,
    dy: np.ndarray,
    dtype: np.dtype,
    max_bytes: int | None,
    *,
    conjugate: bool,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """``P^T W^T vec(dY)`` for a validated batch ``dy`` of shape ``(N, C_out, *out)``.

    With ``conjugate`` the weight is conjugated first: the adjoint ``W^H``. With
    ``rows`` (C-order row indices of ``W``), only those rows take part and ``dy``
    holds just their values, ``(N, len(rows))``.
    """
    n = dy.shape[0]
    dense_bytes = n * (geom.vector_size("padded") + geom.vector_size("output")) * dtype.itemsize
    if rows is not None:  # the row selection copies the kept part of W
        dense_bytes += geom.matrix_nbytes("padded", dtype)
    if conjugate and np.iscomplexobj(weight):
        weight = np.conj(weight)
    W = _matrix(geom, weight, dtype, max_bytes, dense_bytes)
    if rows is not None:
        W = W[rows]
    with building(f"the backward pass of {n} samples", dense_bytes + W.data.nbytes):
        flat = dy.astype(dtype, copy=False).reshape(n, W.shape[0]).T
        grad_padded = (W.T @ flat).T.reshape(n, geom.in_channels, *geom.padded_size)
        return pad_adjoint(grad_padded, geom.input_size, geom.padding, geom.padding_mode)


def _matrix(
    geom: ConvGeometry,
    weight: np.ndarray,
    dtype: np.dtype,
    max_bytes: int | None,
    dense_bytes: int,
) -> Any:
    # Row-major order makes vec of a PyTorch-layout batch a free reshape.
    return assemble(
        geom,
        weight,
        domain="padded",
        order="C",
        dtype=dtype,
        max_bytes=max_bytes,
        extra_bytes=dense_bytes,
    )
