"""The convolution as a linear map of its weight: ``vec(Y) = M vec(weight) + b``.

For a fixed input the output is linear in the weight. ``M`` has the rows of
:func:`convop.conv_matrix` (one per output pixel, samples stacked slowest) and
one column per weight entry; row ``(n, m, o)`` holds the padded input values
that filter ``m``'s taps read at output position ``o``, the seed's ``X_col``
rearranged. Its transpose gives the weight gradient, the seed's
``dW = dout_flat @ X_col.T``.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from . import _memory, _sparse
from ._dtypes import (
    as_numeric_array,
    as_weight,
    check_dtype,
    check_exact_integers,
    check_representable,
    compute_dtype,
    matrix_dtype,
)
from ._progress import building
from ._typing import IntOrTuple, Order, PaddingLike, PaddingMode
from ._validation import (
    as_int,
    as_int_tuple,
    check_domain,
    check_groups,
    check_max_bytes,
    check_order,
    ieee,
    spatial_ndim_for_kernel,
    spatial_ndim_from,
)
from .geometry import ConvGeometry, make_geometry
from .layout import vec
from .matrix import assemble, channel_block, check_bias
from .padding import pad

__all__ = ["affine_matrix", "conv_bias_grad", "conv_weight_grad", "weight_matrix"]


@ieee
def weight_matrix(
    x: npt.ArrayLike,
    kernel_size: IntOrTuple,
    out_channels: int,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    order: Order = "F",
    dtype: npt.DTypeLike | None = None,
    max_bytes: int | None = None,
) -> sp.csr_array:
    r"""Build ``M`` with ``vec(Y) = M vec(weight) + b`` for a fixed input ``x``.

    Parameters
    ----------
    x : array_like
        A batch ``(N, C_in, *spatial)``; with a tuple ``kernel_size`` also one
        sample ``(C_in, *spatial)``.
    kernel_size : int or tuple of int
        With an int, ``x`` must be a batch and the spatial rank is ``x.ndim - 2``.
    out_channels : int
        ``C_out``; the weight has shape ``(C_out, C_in // groups, *kernel)``.
    stride, padding, dilation, groups, padding_mode
        As in :func:`convop.conv_matrix`.
    order : {"F", "C"}
        Vectorization of the output (rows) and of the weight (columns). With
        ``"F"`` each filter is flattened as the seed's ``k^(m)`` (channel
        slowest, first kernel axis fastest) and the filters are stacked, i.e.
        ``vec(weight, "F", batch=True).ravel(order="F")``; ``"C"`` is
        PyTorch's ``weight.reshape(-1)``.
    dtype : dtype, optional
        Data type of the entries; default ``x``'s.
    max_bytes : int, optional
        Memory budget, as in :func:`convop.conv_matrix`.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(N*C_out*prod(out), C_out*(C_in//groups)*prod(kernel))`` (``N = 1``
        for one sample), canonical, one stored entry per output pixel and tap
        (taps on zero padding are stored as zeros, so the pattern depends on the
        geometry only).

    Notes
    -----
    With ``order="F"``, row ``R = n C_{out} \prod O + m \prod O + flat_O(o)`` and
    column ``m T + c \prod k + flat_k(u)`` (``T = C_{in}/G \prod k``) hold
    ``X_{pad}[n, g(m) C_{in}/G + c, o s + u d]``.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import conv, vec, weight_matrix
    >>> rng = np.random.default_rng(0)
    >>> x, w = rng.standard_normal((2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    >>> M = weight_matrix(x, (3, 3), 3, padding=1)
    >>> M.shape
    (75, 54)
    >>> w_vec = vec(w, batch=True).ravel(order="F")        # filters stacked, each k^(m)
    >>> bool(np.allclose(M @ w_vec, vec(conv(x, w, padding=1))))
    True
    """
    check_order(order)
    c_out = as_int(out_channels, "out_channels", minimum=1)
    xb, geom = _input_and_geometry(
        x, kernel_size, c_out, stride, padding, dilation, groups, padding_mode, "out_channels"
    )
    dt = matrix_dtype(xb.dtype, dtype)
    return _assemble_weight_matrix(geom, xb, order, dt, check_max_bytes(max_bytes))


@ieee
def conv_weight_grad(
    x: npt.ArrayLike,
    grad_output: npt.ArrayLike,
    kernel_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    max_bytes: int | None = None,
) -> np.ndarray:
    """Gradient of a convolution layer with respect to its weight, ``M^H vec(dY)``.

    Summed over the batch; equal to the seed's ``dW = dout_flat @ X_col.T`` and
    to ``torch.nn.grad.conv{1,2,3}d_weight`` / autograd (for complex data the
    adjoint ``M.conj().T``, as PyTorch's autograd).

    Parameters
    ----------
    x : array_like
        The layer's input, ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``.
    grad_output : array_like
        ``dY``, ``(N, C_out, *out)`` or ``(C_out, *out)`` matching ``x``.
    kernel_size : int or tuple of int
        As in :func:`weight_matrix`.
    stride, padding, dilation, groups, padding_mode, max_bytes
        As in :func:`convop.conv`.

    Returns
    -------
    numpy.ndarray
        ``dW`` of shape ``(C_out, C_in // groups, *kernel)``, dtypes as in
        :func:`convop.conv`.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import conv_weight_grad
    >>> x = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> conv_weight_grad(x, np.ones((1, 1, 2, 2)), 2)[0, 0]   # sums of 2x2 windows
    array([[ 8., 12.],
           [20., 24.]])
    """
    arr = as_numeric_array(x, "x")
    dy_arr = as_numeric_array(grad_output, "grad_output")
    spatial_ndim_from(dict(kernel_size=kernel_size, stride=stride, padding=padding,
                           dilation=dilation))  # the per-axis arguments agree
    ndim = spatial_ndim_for_kernel(kernel_size, arr.ndim, "x")
    single = arr.ndim == ndim + 1
    if dy_arr.ndim != arr.ndim:
        raise ValueError(
            f"`grad_output` must have as many dimensions as `x` ({arr.ndim}); got shape "
            f"{dy_arr.shape}."
        )
    out_channels = dy_arr.shape[0 if single else 1]
    if out_channels == 0:
        raise ValueError(f"`grad_output` must have at least one channel; got shape "
                         f"{dy_arr.shape}.")
    xb, geom = _input_and_geometry(
        arr, kernel_size, out_channels, stride, padding, dilation, groups, padding_mode,
        "grad_output"
    )
    dyb = dy_arr[np.newaxis] if single else dy_arr
    expected = (xb.shape[0], geom.out_channels, *geom.output_size)
    if dyb.shape != expected:
        raise ValueError(
            f"`grad_output` must have shape {expected[1:] if single else expected} for this "
            f"input and layer; got {dy_arr.shape}."
        )
    dtype = compute_dtype(xb, dyb)
    if dtype.kind == "i":
        check_exact_integers(xb.shape[0] * math.prod(geom.output_size),
                             [("x", xb), ("grad_output", dyb)])
    if np.iscomplexobj(xb):
        xb = np.conj(xb)  # M^H dY: the adjoint, as autograd computes it
    M = _assemble_weight_matrix(geom, xb, "C", dtype, check_max_bytes(max_bytes))
    return (M.T @ dyb.astype(dtype, copy=False).reshape(-1)).reshape(geom.weight_shape)


@ieee
def conv_bias_grad(grad_output: npt.ArrayLike, *, batch: bool | None = None) -> np.ndarray:
    """Gradient with respect to the bias: ``dY`` summed over the batch and all pixels.

    Parameters
    ----------
    grad_output : array_like
        ``dY`` of shape ``(N, C_out, *out)`` or ``(C_out, *out)``.
    batch : bool, optional
        Whether axis 0 indexes samples; by default, as in :func:`convop.vec`,
        arrays of 2 or 3 dimensions are one sample and of 4 or 5 a batch.

    Returns
    -------
    numpy.ndarray
        ``db`` of shape ``(C_out,)``, dtypes as in :func:`convop.conv`.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import conv_bias_grad
    >>> conv_bias_grad(np.ones((2, 3, 4, 4)))
    array([32., 32., 32.])
    """
    dy = as_numeric_array(grad_output, "grad_output")
    if batch is not None and not isinstance(batch, (bool, np.bool_)):
        raise TypeError(f"`batch` must be True, False or None; got {batch!r}.")
    batch = dy.ndim >= 4 if batch is None else bool(batch)
    channel = 1 if batch else 0
    if not channel + 2 <= dy.ndim <= channel + 4:
        raise ValueError(
            f"`grad_output` must be (N, C_out, *out) or (C_out, *out) with 1 to 3 spatial "
            f"axes; got shape {dy.shape}."
        )
    dtype = compute_dtype(dy)
    if dtype.kind == "i":
        check_exact_integers(dy.size // max(1, dy.shape[channel]), [("grad_output", dy)])
    return dy.sum(axis=tuple(a for a in range(dy.ndim) if a != channel), dtype=dtype)


@ieee
def affine_matrix(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    bias: npt.ArrayLike | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    domain: str = "input",
    order: Order = "F",
    dtype: npt.DTypeLike | None = None,
    max_bytes: int | None = None,
) -> sp.csr_array:
    """Build the augmented ``[W | b]`` acting on ``[vec(x); 1]``: the whole layer as one matrix.

    Parameters
    ----------
    weight, input_size, stride, padding, dilation, groups, padding_mode, domain, order, dtype
        As in :func:`convop.conv_matrix` (the default domain here is the layer's
        own map, ``"input"``).
    bias : array_like, shape (C_out,), optional
        Zero when omitted; the last column is stored in full either way.
    max_bytes : int, optional
        Memory budget.

    Returns
    -------
    scipy.sparse.csr_array
        Shape ``(rows, cols + 1)`` of the matching ``conv_matrix`` plus one column.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import affine_matrix, conv, vec
    >>> w, b, x = np.ones((2, 1, 2, 2)), np.array([1.0, -1.0]), np.ones((1, 3, 3))
    >>> Wb = affine_matrix(w, (3, 3), b)
    >>> bool(np.allclose(Wb @ np.append(vec(x), 1.0), vec(conv(x, w, b))))
    True
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
    b = check_bias(bias, geom.out_channels)
    dt = (compute_dtype(w, *(() if b is None else (b,))) if dtype is None
          else check_dtype(dtype))
    if b is not None:
        check_representable(b, dt)
    rows = geom.vector_size("output")
    # The stacked copy: every entry and index again, plus the bias column.
    idx = _sparse.index_dtype(max(geom.nnz(domain) + rows, rows, geom.matrix_shape(domain)[1] + 1))
    stacked = geom.matrix_nbytes(domain, dt) + rows * (2 * dt.itemsize + 2 * idx.itemsize)
    W = assemble(geom, w, domain=domain, order=order, dtype=dt,
                 max_bytes=check_max_bytes(max_bytes), extra_bytes=stacked)
    column = np.repeat(np.zeros(geom.out_channels, dt) if b is None else b.astype(dt),
                       math.prod(geom.output_size))
    return sp.hstack([W, sp.csr_array(column.reshape(-1, 1))], format="csr")


def _input_and_geometry(
    x: npt.ArrayLike,
    kernel_size: IntOrTuple,
    out_channels: int,
    stride: IntOrTuple,
    padding: PaddingLike,
    dilation: IntOrTuple,
    groups: int,
    padding_mode: PaddingMode,
    out_name: str,
) -> tuple[np.ndarray, ConvGeometry]:
    arr = as_numeric_array(x, "x")
    spatial_ndim_from(dict(kernel_size=kernel_size, stride=stride, padding=padding,
                           dilation=dilation))  # the per-axis arguments agree
    ndim = spatial_ndim_for_kernel(kernel_size, arr.ndim, "x")
    xb = arr[np.newaxis] if arr.ndim == ndim + 1 else arr
    kernel = as_int_tuple(kernel_size, "kernel_size", ndim, minimum=1)
    groups = check_groups(groups, out_channels, out_name=out_name)
    c_in = xb.shape[1]
    if c_in == 0 or c_in % groups:
        raise ValueError(
            f"`groups` must divide the input channels: `x` has C_in={c_in}, which {groups} "
            f"groups do not divide."
        )
    if 0 in xb.shape[2:]:
        raise ValueError(f"`x` must have a positive spatial size; got shape {arr.shape}.")
    geom = make_geometry(
        (out_channels, c_in // groups, *kernel),
        xb.shape[2:],
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        input_name="x",
        weight_name="kernel_size",
    )
    return xb, geom


def _assemble_weight_matrix(
    geom: ConvGeometry, xb: np.ndarray, order: Order, dtype: np.dtype, max_bytes: int | None
) -> sp.csr_array:
    n = xb.shape[0]
    taps = geom.taps
    rows = n * geom.vector_size("output")
    cols = geom.out_channels * taps
    nnz = rows * taps
    idx_dtype = _sparse.index_dtype(max(nnz, rows, cols))
    needed = nnz * (dtype.itemsize + idx_dtype.itemsize) + (rows + 1) * idx_dtype.itemsize
    scratch = n * geom.vector_size("padded") * dtype.itemsize * 2
    _memory.check_budget(
        needed + scratch,
        max_bytes,
        f"the weight matrix of shape ({rows}, {cols}) with {nnz} stored entries "
        f"({dtype} data, {idx_dtype} indices)",
    )
    with building(f"building the {rows} x {cols} weight matrix", needed + scratch):
        return _fill_weight_matrix(geom, xb, order, dtype, idx_dtype)


def _fill_weight_matrix(geom: ConvGeometry, xb: np.ndarray, order: Order, dtype: np.dtype,
                        idx_dtype: np.dtype) -> sp.csr_array:
    """Write the CSR arrays of the weight matrix for a checked request."""
    n = xb.shape[0]
    taps = geom.taps
    rows = n * geom.vector_size("output")
    cols = geom.out_channels * taps
    # Positions each tap of one output channel reads, and which weight it multiplies.
    positions, c_taps, _, _ = channel_block(geom, "padded", order)
    per_channel = positions.size  # prod(out) * taps
    tap_column = np.argsort(vec(np.arange(taps).reshape(geom.weight_shape[1:]), order,
                                batch=False))  # C-order tap index -> column in `order`

    check_representable(xb, dtype)
    padded = pad(xb.astype(dtype, copy=False), geom.padding, geom.padding_mode)
    flat = np.ascontiguousarray(vec(padded, order, batch=True).T)  # (N, C_in * prod(padded))
    groups, c_out_g = geom.groups, geom.out_per_group
    per_group = geom.in_per_group * math.prod(geom.padded_size)
    values = np.take(flat.reshape(n, groups, per_group), positions, axis=2)  # (N, G, block)
    data = np.empty((n, groups, c_out_g, per_channel), dtype=dtype)
    data[...] = values[:, :, np.newaxis, :]

    indices = np.empty((n, geom.out_channels, per_channel), dtype=idx_dtype)
    np.add(
        tap_column[c_taps].astype(idx_dtype)[np.newaxis, np.newaxis, :],
        (np.arange(geom.out_channels, dtype=idx_dtype) * taps)[np.newaxis, :, np.newaxis],
        out=indices,
    )
    indptr = np.arange(rows + 1, dtype=idx_dtype) * taps
    return _sparse.csr_from_parts(data.reshape(-1), indices.reshape(-1), indptr, (rows, cols))

