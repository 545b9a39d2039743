"""A matrix-free ``scipy.sparse.linalg.LinearOperator`` for a convolution layer.

For layers whose matrix is too large to build, or when only products are
needed (Lanczos for the spectral norm), :class:`LayerOperator` applies the
layer's own map ``vec(X) -> vec(Y)`` (the input-domain matrix of
:func:`convop.conv_matrix`) and its exact adjoint with the seed's im2col
method: one GEMM ``W_row @ X_col`` per group (``W_row^H @ dY`` and a col2im
for the adjoint), the batch processed in chunks so the patch buffer stays
small. Its memory is ``C_in * prod(kernel) * prod(out)`` per sample, a
``C_out / groups``-th of the explicit matrix's entries.

Products follow scipy's promotion: a real operator applied to complex or
wider vectors computes in the promoted dtype (the weights are exact there),
and ``rmatvec``/``.H`` apply the adjoint, the conjugate transpose.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from . import _memory
from ._dtypes import as_weight, check_dtype, float_dtype
from ._typing import IntOrTuple, Order, PaddingLike, PaddingMode
from ._validation import as_contiguous_range, check_max_bytes, check_order, ieee
from .geometry import ConvGeometry, make_geometry
from .im2col import receptive_fields
from .layout import unvec, vec
from .matrix import assemble
from .padding import pad, pad_adjoint

__all__ = ["LayerOperator"]


def channel_range(channels: range | slice | None, count: int) -> range:
    """Resolve ``channels`` (a range or slice of output channels, step 1) to a non-empty range."""
    if channels is None:
        return range(count)
    channels = as_contiguous_range(channels, "channels", count,
                                   "a range or slice of output channels")
    if not 0 <= channels.start < channels.stop <= count:
        raise ValueError(f"`channels` must be a non-empty range within the {count} output "
                         f"channels; got {channels}.")
    return channels

#: The dtypes a :class:`LayerOperator` computes in (longdouble as ``conv`` does: numpy's
#: own loops, no BLAS).
OPERATOR_DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.longdouble,
                                               np.complex64, np.complex128, np.clongdouble))


class LayerOperator(LinearOperator):
    """The layer map ``vec(X) -> vec(Y)`` of a convolution, without building its matrix.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        Filters with 1, 2 or 3 spatial axes.
    input_size : int or tuple of int
        Spatial size of the unpadded input.
    stride, padding, dilation, groups, padding_mode
        As in :func:`convop.conv_matrix`.
    order : {"F", "C"}
        Vectorization of inputs and outputs, as in :func:`convop.conv_matrix`.
    dtype : dtype, optional
        Floating dtype of the operator (float32, float64, longdouble,
        complex64, complex128 or clongdouble). Default: the weight's (float64
        for integer weights, float32 for float16).
    max_bytes : int, optional
        Memory budget of one product (the padded input, the patch buffer and
        the output of one sample); by default 75% of the available memory.
        Batches are processed in chunks that stay within it.

    channels : range or slice, optional
        Only these output channels (step 1): the operator is the row block
        ``conv_matrix(..., domain="input")[rows]`` of those channels (see
        :meth:`ConvGeometry.row_partition`), for one process of a distributed
        product. Default: all.

    Attributes
    ----------
    geometry : ConvGeometry
        The layer's sizes.
    channels : range
        The output channels it produces.
    weight : numpy.ndarray
        The filters, in the operator's dtype.

    Notes
    -----
    ``A @ v`` equals ``conv_matrix(..., domain="input") @ v`` and ``A.H @ w``
    its conjugate transpose, for every padding mode. :meth:`to_matrix` builds
    that sparse matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import LayerOperator, conv_matrix
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> A = LayerOperator(w, (8, 8), padding=1)
    >>> A.shape
    (256, 192)
    >>> v = np.ones(192)
    >>> bool(np.allclose(A @ v, conv_matrix(w, (8, 8), padding=1, domain="input") @ v))
    True
    """

    def __init__(
        self,
        weight: npt.ArrayLike,
        input_size: IntOrTuple,
        *,
        stride: IntOrTuple = 1,
        padding: PaddingLike = 0,
        dilation: IntOrTuple = 1,
        groups: int = 1,
        padding_mode: PaddingMode = "zeros",
        order: Order = "F",
        dtype: npt.DTypeLike | None = None,
        max_bytes: int | None = None,
        channels: range | slice | None = None,
    ) -> None:
        w = as_weight(weight)
        self.geometry: ConvGeometry = make_geometry(
            w.shape,
            input_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=padding_mode,
        )
        self.order: Order = check_order(order)
        dt = float_dtype(w.dtype) if dtype is None else check_dtype(dtype)
        if dt not in OPERATOR_DTYPES:
            raise TypeError(f"`dtype` must be float32, float64, longdouble, complex64, "
                            f"complex128 or clongdouble; got {dt}.")
        if np.iscomplexobj(w) and dt.kind != "c":
            raise TypeError(f"`dtype` {dt} cannot hold the complex `weight`.")
        self.max_bytes = check_max_bytes(max_bytes)
        g = self.geometry
        _memory.check_budget(self.sample_bytes(dt), self.max_bytes,
                             f"one product of the layer operator {g.matrix_shape('input')}")
        self.weight = w.astype(dt, copy=False)
        self.channels = channel_range(channels, g.out_channels)
        # Per group the spanned output channels: (group, first, stop) within the group.
        per = g.out_per_group
        self._spans = [(group, max(self.channels.start - group * per, 0),
                        min(self.channels.stop - group * per, per))
                       for group in range(self.channels.start // per,
                                          -(-self.channels.stop // per))]
        self._rows_by_dtype: dict[np.dtype, np.ndarray] = {}
        rows = len(self.channels) * math.prod(g.output_size)
        super().__init__(dtype=dt, shape=(rows, g.vector_size("input")))

    def sample_bytes(self, dtype: npt.DTypeLike | None = None) -> int:
        """Bytes one sample of a product allocates: padded input, patches, output, vectors."""
        g = self.geometry
        item = np.dtype(self.dtype if dtype is None else dtype).itemsize
        patches = g.in_channels * math.prod(g.kernel_size) * math.prod(g.output_size)
        return item * (patches + 2 * g.vector_size("padded") + 3 * g.vector_size("output")
                       + 2 * g.vector_size("input"))

    def _rows(self, dtype: np.dtype) -> np.ndarray:
        """Return the seed's ``W_row`` of each group, ``(G, C_out/G, C_in/G * taps)``."""
        rows = self._rows_by_dtype.get(dtype)
        if rows is None:
            g = self.geometry
            rows = self.weight.astype(dtype).reshape(g.groups, g.out_per_group, -1)
            self._rows_by_dtype[dtype] = rows
        return rows

    def _work_dtype(self, data: np.ndarray) -> np.dtype:
        """Scipy's promotion: the operator's dtype, widened by the data's (integers as float)."""
        return np.result_type(self.dtype, float_dtype(data.dtype))

    def describe(self) -> str:
        """One line naming the operator: the layer's geometry."""
        return self.geometry.describe()

    def to_matrix(self, *, max_bytes: int | None = None) -> sp.csr_array:
        """Build the explicit sparse matrix of this operator (:func:`convop.conv_matrix`)."""
        per_channel = math.prod(self.geometry.output_size)
        rows = None if len(self.channels) == self.geometry.out_channels else (
            self.channels.start * per_channel, self.channels.stop * per_channel)
        return assemble(
            self.geometry,
            self.weight,
            domain="input",
            order=self.order,
            dtype=self.dtype,
            max_bytes=max_bytes if max_bytes is not None else self.max_bytes,
            rows=rows,
        )

    # Products ---------------------------------------------------------------------------

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the layer (without bias) to a batch ``(N, C_in, *input_size)``.

        Returns the operator's output channels, ``(N, len(channels), *output_size)``.
        """
        g = self.geometry
        dt = self._work_dtype(x)
        rows = self._rows(dt)
        y = np.empty((x.shape[0], len(self.channels), *g.output_size), dtype=dt)
        out = y.reshape(x.shape[0], len(self.channels), -1)
        for batch in self._chunks(x.shape[0], dt):
            cols = self._im2col(x[batch], dt)  # (n, G, C_in/G * taps, P)
            if len(self.channels) == g.out_channels:  # every group at once
                out[batch] = (rows @ cols).reshape(cols.shape[0], g.out_channels, -1)
                continue
            at = 0
            for group, first, stop in self._spans:
                out[batch, at:at + stop - first] = rows[group, first:stop] @ cols[:, group]
                at += stop - first
        return y

    def adjoint_apply(self, y: np.ndarray) -> np.ndarray:
        """Apply the exact adjoint (conjugate transpose) to a batch ``(N, len(channels), *out)``."""
        g = self.geometry
        dt = self._work_dtype(y)
        rows_h = np.swapaxes(self._rows(dt), 1, 2).conj()  # (G, C_in/G * taps, C_out/G)
        grad = np.empty((y.shape[0], g.in_channels, *g.input_size), dtype=dt)
        taps = g.in_per_group * math.prod(g.kernel_size)
        for batch in self._chunks(y.shape[0], dt):
            part = y[batch].astype(dt, copy=False)
            n = part.shape[0]
            flat = part.reshape(n, len(self.channels), -1)
            if len(self.channels) == g.out_channels:  # every group at once
                grad[batch] = self._col2im(
                    rows_h @ part.reshape(n, g.groups, g.out_per_group, -1), dt)
                continue
            cols = np.zeros((n, g.groups, taps, flat.shape[-1]), dtype=dt)
            at = 0
            for group, first, stop in self._spans:
                cols[:, group] = rows_h[group, :, first:stop] @ flat[:, at:at + stop - first]
                at += stop - first
            grad[batch] = self._col2im(cols, dt)
        return grad

    def _im2col(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        g = self.geometry
        n = x.shape[0]
        xp = pad(x.astype(dtype, copy=False), g.padding, g.padding_mode)
        windows = receptive_fields(xp, g)
        # (n, C, *out, *kernel) -> (n, C, *kernel, *out): rows (channel, tap), columns pixels
        order = (0, 1, *range(2 + g.ndim, 2 + 2 * g.ndim), *range(2, 2 + g.ndim))
        return windows.transpose(order).reshape(
            n, g.groups, g.in_per_group * math.prod(g.kernel_size), math.prod(g.output_size)
        )

    def _col2im(self, cols: np.ndarray, dtype: np.dtype) -> np.ndarray:
        g = self.geometry
        n = cols.shape[0]
        blocks = cols.reshape(n, g.in_channels, math.prod(g.kernel_size), *g.output_size)
        grad = np.zeros((n, g.in_channels, *g.padded_size), dtype=dtype)
        for t, window in enumerate(g.tap_windows()):
            index: tuple[slice, ...] = (slice(None), slice(None), *window)
            grad[index] += blocks[:, :, t]
        return pad_adjoint(grad, g.input_size, g.padding, g.padding_mode)

    def _chunks(self, n: int, dtype: np.dtype) -> list[slice]:
        """Batch slices whose buffers stay within about 256 MiB (and the budget)."""
        per_sample = max(1, self.sample_bytes(dtype))
        limit = 2**28 if self.max_bytes is None else min(2**28, self.max_bytes)
        step = max(1, limit // per_sample)
        return [slice(i, min(n, i + step)) for i in range(0, max(n, 1), step)]

    @ieee
    def _matmat(self, X: np.ndarray) -> np.ndarray:
        g = self.geometry
        x = unvec(X, (g.in_channels, *g.input_size), self.order)
        return vec(self.forward(x), self.order, batch=True)

    @ieee
    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        g = self.geometry
        y = unvec(Y, (len(self.channels), *g.output_size), self.order)
        return vec(self.adjoint_apply(y), self.order, batch=True)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(np.reshape(x, (-1, 1)))[:, 0]

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self._rmatmat(np.reshape(y, (-1, 1)))[:, 0]

    def __repr__(self) -> str:
        return f"<LayerOperator {self.shape[0]}x{self.shape[1]}: {self.describe()}>"
