"""A matrix-free ``scipy.sparse.linalg.LinearOperator`` for a convolution layer.

For layers whose matrix is too large to build, or when only products are
needed (Lanczos for the spectral norm), :class:`LayerOperator` applies the
layer's own map ``vec(X) -> vec(Y)`` (the input-domain matrix of
:func:`convop.conv_matrix`) and its exact adjoint with the seed's im2col
method: one GEMM ``W_row @ X_col`` per group (``W_row.T @ dY`` and a col2im
for the adjoint), the batch processed in chunks so the patch buffer stays
small. Its memory is ``C_in * prod(kernel) * prod(out)`` per sample, a
``C_out / groups``-th of the explicit matrix's entries.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from ._typing import IntOrTuple, Order, PaddingLike, PaddingMode
from ._validation import as_weight, check_dtype, check_order
from .geometry import ConvGeometry, conv_geometry
from .im2col import receptive_fields
from .layout import unvec, vec
from .matrix import assemble
from .padding import pad, pad_adjoint

__all__ = ["LayerOperator"]


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

    Attributes
    ----------
    geometry : ConvGeometry
        The layer's sizes.
    weight : numpy.ndarray
        The filters, as floating point.

    Notes
    -----
    ``A @ v`` equals ``conv_matrix(..., domain="input") @ v`` and ``A.H @ w``
    its transpose (the weight is real, so the adjoint is the transpose), for
    every padding mode. :meth:`to_matrix` builds that sparse matrix.

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
    ) -> None:
        w = as_weight(weight)
        self.geometry: ConvGeometry = conv_geometry(
            w.shape,
            input_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            padding_mode=padding_mode,
        )
        self.order: Order = check_order(order)
        dtype = check_dtype(np.result_type(w.dtype, np.float32))
        self.weight = w.astype(dtype, copy=False)
        g = self.geometry
        # (G, C_out/G, C_in/G * taps): the seed's W_row of each group.
        self._rows = self.weight.reshape(g.groups, g.out_per_group, -1)
        super().__init__(dtype=dtype, shape=g.matrix_shape("input"))

    def describe(self) -> str:
        """One line naming the operator: the layer's geometry."""
        return self.geometry.describe()

    def to_matrix(self, *, max_bytes: int | None = None) -> sp.csr_array:
        """Build the explicit sparse matrix of this operator (:func:`convop.conv_matrix`)."""
        return assemble(
            self.geometry,
            self.weight,
            domain="input",
            order=self.order,
            dtype=self.dtype,
            max_bytes=max_bytes,
        )

    # Products ---------------------------------------------------------------------------

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the layer (without bias) to a batch ``(N, C_in, *input_size)``."""
        g = self.geometry
        y = np.empty((x.shape[0], g.out_channels, *g.output_size), dtype=self.dtype)
        for batch in self._chunks(x.shape[0]):
            cols = self._im2col(x[batch])  # (n, G, C_in/G * taps, P)
            y[batch] = (self._rows @ cols).reshape(-1, g.out_channels, *g.output_size)
        return y

    def adjoint_apply(self, y: np.ndarray) -> np.ndarray:
        """Apply the exact adjoint to a batch ``(N, C_out, *output_size)``."""
        g = self.geometry
        grad = np.empty((y.shape[0], g.in_channels, *g.input_size), dtype=self.dtype)
        rows_t = np.swapaxes(self._rows, 1, 2)  # (G, C_in/G * taps, C_out/G)
        for batch in self._chunks(y.shape[0]):
            part = y[batch].astype(self.dtype, copy=False)
            n = part.shape[0]
            cols = rows_t @ part.reshape(n, g.groups, g.out_per_group, -1)
            grad[batch] = self._col2im(cols)
        return grad

    def _im2col(self, x: np.ndarray) -> np.ndarray:
        g = self.geometry
        n = x.shape[0]
        xp = pad(x.astype(self.dtype, copy=False), g.padding, g.padding_mode)
        windows = receptive_fields(xp, g)
        # (n, C, *out, *kernel) -> (n, C, *kernel, *out): rows (channel, tap), columns pixels
        order = (0, 1, *range(2 + g.ndim, 2 + 2 * g.ndim), *range(2, 2 + g.ndim))
        return windows.transpose(order).reshape(
            n, g.groups, g.in_per_group * math.prod(g.kernel_size), math.prod(g.output_size)
        )

    def _col2im(self, cols: np.ndarray) -> np.ndarray:
        g = self.geometry
        n = cols.shape[0]
        blocks = cols.reshape(n, g.in_channels, math.prod(g.kernel_size), *g.output_size)
        grad = np.zeros((n, g.in_channels, *g.padded_size), dtype=self.dtype)
        for t, window in enumerate(g.tap_windows()):
            index: tuple[slice, ...] = (slice(None), slice(None), *window)
            grad[index] += blocks[:, :, t]
        return pad_adjoint(grad, g.input_size, g.padding, g.padding_mode)

    def _chunks(self, n: int) -> list[slice]:
        """Batch slices whose im2col buffer stays within about 256 MiB."""
        g = self.geometry
        per_sample = g.in_channels * math.prod(g.kernel_size) * math.prod(g.output_size)
        step = max(1, (2**28 // max(1, per_sample * self.dtype.itemsize)))
        return [slice(i, min(n, i + step)) for i in range(0, max(n, 1), step)]

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        g = self.geometry
        x = unvec(X, (g.in_channels, *g.input_size), self.order)
        return vec(self.forward(x), self.order, batch=True)

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        g = self.geometry
        y = unvec(Y, (g.out_channels, *g.output_size), self.order)
        return vec(self.adjoint_apply(y), self.order, batch=True)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return self._matmat(np.reshape(x, (-1, 1)))[:, 0]

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return self._rmatmat(np.reshape(y, (-1, 1)))[:, 0]

    def _adjoint(self) -> LinearOperator:
        return _Adjoint(self)

    def __repr__(self) -> str:
        return f"<LayerOperator {self.shape[0]}x{self.shape[1]}: {self.describe()}>"


class _Adjoint(LinearOperator):
    """The adjoint of a :class:`LayerOperator`, sharing its weight."""

    def __init__(self, op: LayerOperator) -> None:
        self.op = op
        super().__init__(dtype=op.dtype, shape=(op.shape[1], op.shape[0]))

    def _matmat(self, X: Any) -> np.ndarray:
        return self.op._rmatmat(X)

    def _matvec(self, x: Any) -> np.ndarray:
        return self.op._rmatvec(x)

    def _rmatmat(self, Y: Any) -> np.ndarray:
        return self.op._matmat(Y)

    def _rmatvec(self, y: Any) -> np.ndarray:
        return self.op._matvec(y)

    def _adjoint(self) -> LinearOperator:
        return self.op
