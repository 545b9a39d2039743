"""The geometry of a convolution layer: normalized arguments and every derived size.

A :class:`ConvGeometry` is computed once from the weight shape and the layer
arguments (all validation happens here) and answers every size question
before anything large is allocated: output size, matrix shape, exact number
of stored entries, index dtype and bytes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _sparse
from ._typing import IntOrTuple, PaddingLike, PaddingMode
from ._validation import (
    as_int_tuple,
    as_padding,
    check_domain,
    check_groups,
    check_padding_mode,
    spatial_ndim_from,
)
from .padding import check_mode_limits, map_positions

__all__ = ["ConvGeometry", "conv_geometry", "output_size"]


@dataclass(frozen=True)
class ConvGeometry:
    """Normalized arguments and derived sizes of one convolution layer.

    Build it with :func:`conv_geometry`; every field is already validated.

    Attributes
    ----------
    in_channels, out_channels, groups : int
        Channel counts and number of groups.
    kernel_size, input_size, stride, dilation : tuple of int
        One entry per spatial axis. ``input_size`` is unpadded.
    padding : tuple of (int, int)
        ``(before, after)`` zero padding per spatial axis.
    padding_mode : str
        How the padded border is filled: ``"zeros"``, ``"reflect"``,
        ``"replicate"`` or ``"circular"``.

    Examples
    --------
    >>> from convop import conv_geometry
    >>> g = conv_geometry((64, 3, 7, 7), (224, 224), stride=2, padding=3)
    >>> g.output_size, g.nnz("input"), g.index_dtype("input")
    ((112, 112), 116214528, dtype('int32'))
    """

    in_channels: int
    out_channels: int
    groups: int
    kernel_size: tuple[int, ...]
    input_size: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    padding_mode: PaddingMode = "zeros"

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.kernel_size)

    @property
    def in_per_group(self) -> int:
        """Input channels seen by each filter, ``C_in // groups``."""
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        """Output channels per group, ``C_out // groups``."""
        return self.out_channels // self.groups

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """PyTorch weight layout ``(C_out, C_in // groups, *kernel)``."""
        return (self.out_channels, self.in_per_group, *self.kernel_size)

    @property
    def dilated_kernel_size(self) -> tuple[int, ...]:
        """Extent of the dilated kernel, ``d*(k-1)+1`` per axis."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    @property
    def padded_size(self) -> tuple[int, ...]:
        """Spatial size of the padded input."""
        return tuple(n + lo + hi for n, (lo, hi) in zip(self.input_size, self.padding))

    @property
    def output_size(self) -> tuple[int, ...]:
        """Spatial output size, ``floor((n_pad - d*(k-1) - 1) / s) + 1`` per axis."""
        return tuple(
            (p - e) // s + 1
            for p, e, s in zip(self.padded_size, self.dilated_kernel_size, self.stride)
        )

    def tap_windows(self) -> list[tuple[slice, ...]]:
        """Per kernel tap (in the weight's C order), the padded-input slices it reads.

        Tap ``u`` reads padded positions ``u*d, u*d + s, ..., u*d + s*(O-1)`` on
        every axis: the seed's receptive fields, one strided slice per tap.
        """
        return [
            tuple(
                slice(u * d, u * d + s * (o - 1) + 1, s)
                for u, d, s, o in zip(tap, self.dilation, self.stride, self.output_size)
            )
            for tap in itertools.product(*(range(k) for k in self.kernel_size))
        ]

    @property
    def taps(self) -> int:
        """Entries of one filter, ``(C_in // groups) * prod(kernel)``."""
        return self.in_per_group * math.prod(self.kernel_size)

    def vector_size(self, what: str) -> int:
        """Length of ``vec`` of one sample of ``"input"``, ``"padded"`` or ``"output"``."""
        if what == "output":
            return self.out_channels * math.prod(self.output_size)
        if what == "padded":
            return self.in_channels * math.prod(self.padded_size)
        if what == "input":
            return self.in_channels * math.prod(self.input_size)
        raise ValueError(f"`what` must be 'input', 'padded' or 'output'; got {what!r}.")

    def matrix_shape(self, domain: str = "padded") -> tuple[int, int]:
        """Shape of the convolution matrix acting on the ``domain`` vector."""
        check_domain(domain)
        return (self.vector_size("output"), self.vector_size(domain))

    def axis_tap_counts(self, domain: str = "padded") -> tuple[int, ...]:
        """Per axis, the number of distinct (output index, input index) pairs stored.

        In the padded domain that is ``O_k * k_k``. In the input domain, taps that
        land on zero padding are absent, and taps that other padding modes fold
        onto the same input pixel count once. The matrix stores the product over
        axes times ``C_out * C_in // groups``: the columns of a row are a
        Cartesian product over axes.
        """
        check_domain(domain)
        if domain == "padded":
            return tuple(o * k for o, k in zip(self.output_size, self.kernel_size))
        return tuple(
            _axis_input_count(n, k, s, d, lo, o, self.padding_mode)
            for n, k, s, d, (lo, _), o in zip(
                self.input_size,
                self.kernel_size,
                self.stride,
                self.dilation,
                self.padding,
                self.output_size,
            )
        )

    def nnz(self, domain: str = "padded") -> int:
        """Exact number of stored entries of the matrix: one per output pixel and tap."""
        return self.out_channels * self.in_per_group * math.prod(self.axis_tap_counts(domain))

    def index_dtype(self, domain: str = "padded") -> np.dtype:
        """int32 when ``max(nnz, rows, cols)`` fits, int64 otherwise."""
        return _sparse.index_dtype(max(self.nnz(domain), *self.matrix_shape(domain)))

    def matrix_nbytes(self, domain: str = "padded", dtype: Any = np.float64) -> int:
        """Bytes of the CSR arrays ``data``, ``indices`` and ``indptr``."""
        idx = self.index_dtype(domain).itemsize
        rows = self.matrix_shape(domain)[0]
        return self.nnz(domain) * (np.dtype(dtype).itemsize + idx) + (rows + 1) * idx

    def describe(self) -> str:
        """One-line summary used in reports and error messages."""
        pad = ", ".join(f"{lo}" if lo == hi else f"({lo}, {hi})" for lo, hi in self.padding)
        return (
            f"{self.ndim}-D conv {self.in_channels}->{self.out_channels}, "
            f"kernel {_x(self.kernel_size)}, input {_x(self.input_size)}, "
            f"stride {_x(self.stride)}, padding [{pad}] ({self.padding_mode}), "
            f"dilation {_x(self.dilation)}, groups {self.groups} -> output "
            f"{_x(self.output_size)}"
        )


def conv_geometry(
    weight_shape: tuple[int, ...],
    input_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
) -> ConvGeometry:
    """Validate the layer arguments and return the layer's :class:`ConvGeometry`.

    Parameters
    ----------
    weight_shape : tuple of int
        ``(C_out, C_in // groups, *kernel)`` with 1 to 3 spatial axes.
    input_size : int or tuple of int
        Spatial size of the unpadded input.
    stride, padding, dilation, groups, padding_mode
        As in :func:`convop.conv_matrix`.

    Returns
    -------
    ConvGeometry

    Raises
    ------
    ValueError, TypeError
        For any invalid argument, naming it.

    Examples
    --------
    >>> from convop import conv_geometry
    >>> g = conv_geometry((8, 3, 3, 3), (16, 16), padding=1)
    >>> g.output_size, g.matrix_shape("padded"), g.nnz("padded")
    ((16, 16), (2048, 972), 55296)
    """
    c_out, c_in_g, *kernel = (int(v) for v in weight_shape)
    ndim = len(kernel)
    kernel_size = tuple(kernel)
    size = as_int_tuple(input_size, "input_size", ndim, minimum=1)
    stride_t = as_int_tuple(stride, "stride", ndim, minimum=1)
    dilation_t = as_int_tuple(dilation, "dilation", ndim, minimum=1)
    pads = as_padding(
        padding, ndim, kernel_size=kernel_size, dilation=dilation_t, stride=stride_t
    )
    groups = check_groups(groups, c_out, c_in_g)
    check_padding_mode(padding_mode)
    geom = ConvGeometry(
        in_channels=c_in_g * groups,
        out_channels=c_out,
        groups=groups,
        kernel_size=kernel_size,
        input_size=size,
        stride=stride_t,
        dilation=dilation_t,
        padding=pads,
        padding_mode=padding_mode,
    )
    _check_fits(geom.padded_size, geom.dilated_kernel_size, size, pads)
    check_mode_limits(size, pads, padding_mode)
    return geom


def output_size(
    input_size: IntOrTuple,
    kernel_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
) -> tuple[int, ...]:
    """Spatial output size of a convolution, ``floor((n + p_lo + p_hi - d*(k-1) - 1)/s) + 1``.

    Parameters
    ----------
    input_size, kernel_size : int or tuple of int
        Unpadded input size and kernel size; the spatial rank is the length of
        the first tuple among the arguments (1 when all are ints).
    stride, padding, dilation
        As in :func:`convop.conv_matrix`.

    Returns
    -------
    tuple of int
        One output size per spatial axis.

    Examples
    --------
    >>> from convop import output_size
    >>> output_size((4, 4), 2, padding=1)
    (5, 5)
    >>> output_size(224, 7, stride=2, padding=3)
    (112,)
    """
    ndim = spatial_ndim_from(input_size, kernel_size, stride, dilation, padding)
    kernel = as_int_tuple(kernel_size, "kernel_size", ndim, minimum=1)
    geom = conv_geometry(
        (1, 1, *kernel), input_size, stride=stride, padding=padding, dilation=dilation
    )
    return geom.output_size


def _axis_input_count(n: int, k: int, s: int, d: int, lo: int, n_out: int, mode: str) -> int:
    """Distinct (output, input) index pairs along one axis of the input-domain matrix."""
    offset = np.arange(k, dtype=np.int64) * d - lo  # input index of tap u at output 0
    if mode == "zeros":
        first = np.maximum(0, -(offset // s))  # ceil(-offset / s), at least 0
        last = np.minimum(n_out - 1, (n - 1 - offset) // s)
        return int(np.maximum(last - first + 1, 0).sum())
    # Rows whose taps all land inside the input read k distinct pixels; only the
    # rows near the border can fold taps together. Count those explicitly.
    first_inner = -(-lo // s)
    last_inner = min(n_out - 1, (n - 1 + lo - (k - 1) * d) // s)
    inner = max(0, last_inner - first_inner + 1)
    border = np.arange(n_out, dtype=np.int64)
    if inner:
        border = np.concatenate([border[:first_inner], border[last_inner + 1 :]])
    total = inner * k
    chunk = max(1, 2**20 // k)  # bound the scratch for huge replicate paddings
    for start in range(0, border.size, chunk):
        rows = border[start : start + chunk, np.newaxis]
        cols = np.sort(map_positions(rows * s + offset[np.newaxis, :], n, mode), axis=1)
        total += int(rows.size + np.count_nonzero(np.diff(cols, axis=1)))
    return total


def _check_fits(
    padded: tuple[int, ...],
    dilated_kernel: tuple[int, ...],
    size: tuple[int, ...],
    pads: tuple[tuple[int, int], ...],
) -> None:
    for axis, (p, e) in enumerate(zip(padded, dilated_kernel)):
        if e > p:
            raise ValueError(
                f"the dilated kernel ({_x(dilated_kernel)}) is larger than the padded input "
                f"({_x(padded)} = input {_x(size)} + padding {list(pads)}) on spatial axis "
                f"{axis}: {e} > {p}; no output would be produced."
            )


def _x(sizes: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in sizes)
