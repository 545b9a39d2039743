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
from ._dtypes import as_weight_shape
from ._typing import IntOrTuple, PaddingLike, PaddingMode
from ._validation import (
    as_int,
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
class RowBlock:
    """Rows of the conv matrix that belong to a range of output channels.

    Attributes
    ----------
    rows : slice
        The block's rows, ``W[rows]``.
    channels : range
        Its output channels.
    nnz : int
        Stored entries of the block.
    index_dtype : numpy.dtype
        int32 when the block's ``max(nnz, rows, columns)`` fits, else int64.
    nbytes : int
        Bytes of its CSR arrays (for the ``dtype`` asked for).
    """

    rows: slice
    channels: range
    nnz: int
    index_dtype: np.dtype
    nbytes: int


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

    def row_block(self, channels: range, domain: str = "padded", dtype: Any = np.float64
                  ) -> RowBlock:
        """Return the rows of output ``channels`` (a range): bounds, nnz and CSR bytes."""
        check_domain(domain)
        per_row = math.prod(self.output_size)
        nnz = self.nnz(domain) // self.out_channels * len(channels)
        rows = len(channels) * per_row
        idx = _sparse.index_dtype(max(nnz, rows, self.matrix_shape(domain)[1]))
        nbytes = nnz * (np.dtype(dtype).itemsize + idx.itemsize) + (rows + 1) * idx.itemsize
        return RowBlock(slice(channels.start * per_row, channels.stop * per_row), channels,
                        nnz, idx, nbytes)

    def row_partition(self, parts: int, domain: str = "padded", dtype: Any = np.float64
                      ) -> list[RowBlock]:
        """Split the rows of the matrix into ``parts`` blocks of whole output channels.

        Channel counts differ by at most one between blocks (every channel has
        the same rows and entries), so each process of a distributed build knows
        its share before building; pass ``block.rows`` to
        :func:`convop.conv_matrix`.

        Examples
        --------
        >>> from convop import conv_geometry
        >>> g = conv_geometry((64, 64, 3, 3), (56, 56), padding=1)
        >>> [(b.rows, b.nnz) for b in g.row_partition(2)]
        [(slice(0, 100352, None), 57802752), (slice(100352, 200704, None), 57802752)]
        """
        count = as_int(parts, "parts", minimum=1)
        if count > self.out_channels:
            raise ValueError(f"`parts` must be at most the {self.out_channels} output channels "
                             f"(blocks are whole channels); got {count}.")
        bounds = [self.out_channels * i // count for i in range(count + 1)]
        return [self.row_block(range(a, b), domain, dtype) for a, b in zip(bounds, bounds[1:])]

    def layer_arguments(self) -> dict[str, Any]:
        """Return the normalized layer keywords (stride, padding pairs, ...) of this geometry."""
        return layer_arguments(self.stride, self.padding, self.dilation, self.groups,
                               self.padding_mode)

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


def layer_arguments(stride: Any, padding: Any, dilation: Any, groups: Any, padding_mode: Any
                    ) -> dict[str, Any]:
    """Return the layer keywords every layer function takes, as one dict.

    The one place the keyword set is spelled: :class:`convop.LayerOperator`,
    :func:`make_geometry` and the spectral, plotting, PETSc and block functions
    take it as ``**layer``.
    """
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode)


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
    shape = as_weight_shape(weight_shape)
    return make_geometry(shape, input_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode, weight_name="weight_shape")


def make_geometry(
    weight_shape: tuple[int, ...],
    input_size: Any,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: Any = 1,
    padding_mode: Any = "zeros",
    input_name: str = "input_size",
    weight_name: str = "weight",
) -> ConvGeometry:
    """:func:`conv_geometry` for a checked weight shape; errors name the caller's parameters.

    ``input_name`` is what the caller calls the input size (``x`` when it is read
    off an array), ``weight_name`` what it calls the weight.
    """
    c_out, c_in_g, *kernel = weight_shape
    ndim = len(kernel)
    kernel_size = tuple(kernel)
    check_ranks({input_name: input_size, "stride": stride, "dilation": dilation,
                 "padding": padding}, weight_shape, weight_name)
    size = as_int_tuple(input_size, input_name, ndim, minimum=1)
    stride_t = as_int_tuple(stride, "stride", ndim, minimum=1)
    dilation_t = as_int_tuple(dilation, "dilation", ndim, minimum=1)
    pads = as_padding(
        padding, ndim, kernel_size=kernel_size, dilation=dilation_t, stride=stride_t
    )
    groups = check_groups(groups, c_out, out_name=weight_name)
    mode = check_padding_mode(padding_mode)
    geom = ConvGeometry(
        in_channels=c_in_g * groups,
        out_channels=c_out,
        groups=groups,
        kernel_size=kernel_size,
        input_size=size,
        stride=stride_t,
        dilation=dilation_t,
        padding=pads,
        padding_mode=mode,  # type: ignore[arg-type]
    )
    for axis, (p, e) in enumerate(zip(geom.padded_size, geom.dilated_kernel_size)):
        if e > p:
            raise ValueError(
                f"the dilated kernel of `{weight_name}` ({_x(geom.dilated_kernel_size)}, with "
                f"`dilation` {_x(dilation_t)}) is larger than the padded input "
                f"({_x(geom.padded_size)} = `{input_name}` {_x(size)} + `padding` "
                f"{list(pads)}) on spatial axis {axis}: {e} > {p}; no output would be produced."
            )
    check_mode_limits(size, pads, mode)
    return geom


def check_ranks(named: dict[str, Any], weight_shape: tuple[int, ...], weight_name: str) -> None:
    """Per-axis arguments given as sequences need one entry per spatial axis of the weight."""
    ndim = len(weight_shape) - 2
    for name, value in named.items():
        length = spatial_ndim_from({name: value}, default=ndim)
        if length != ndim:
            hint = ""
            if name == "padding" and ndim == 1 and length == 2:
                hint = f" For asymmetric padding of 1 axis write ({tuple(value)!r},)."
            raise ValueError(
                f"`{name}` has {length} entries, but `{weight_name}` {tuple(weight_shape)} has "
                f"{ndim} spatial axes; give one entry per spatial axis.{hint}"
            )


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
    ndim = spatial_ndim_from(dict(input_size=input_size, kernel_size=kernel_size, stride=stride,
                                  dilation=dilation, padding=padding))
    kernel = as_int_tuple(kernel_size, "kernel_size", ndim, minimum=1)
    geom = conv_geometry(
        (1, 1, *kernel), input_size, stride=stride, padding=padding, dilation=dilation
    )
    return geom.output_size


def _axis_input_count(n: int, k: int, s: int, d: int, lo: int, n_out: int, mode: str) -> int:
    """Distinct (output, input) index pairs along one axis of the input-domain matrix."""
    inside = _taps_inside(n, k, s, d, lo, n_out)
    if mode == "zeros":
        return inside
    if mode == "circular":
        # Positions a + u*d (mod n) of one row repeat with period n / gcd(d, n) in u.
        return n_out * min(k, n // math.gcd(d, n))
    if mode == "replicate":
        return inside + _replicate_extra(n, k, s, d, lo, n_out)
    # reflect: rows whose taps all land inside read k distinct pixels; count the rest.
    first_inner = -(-lo // s)
    last_inner = min(n_out - 1, (n - 1 + lo - (k - 1) * d) // s)
    if first_inner > last_inner:
        first_inner, last_inner = n_out, n_out - 1
    total = (last_inner - first_inner + 1) * k
    offset = np.arange(k, dtype=np.int64) * d - lo  # input index of tap u at output 0
    chunk = max(1, 2**20 // k)
    for begin, end in ((0, min(first_inner, n_out)), (last_inner + 1, n_out)):
        for start in range(begin, end, chunk):
            rows = np.arange(start, min(end, start + chunk), dtype=np.int64)[:, np.newaxis]
            cols = np.sort(map_positions(rows * s + offset[np.newaxis, :], n, mode), axis=1)
            total += int(rows.size + np.count_nonzero(np.diff(cols, axis=1)))
    return total


def _replicate_extra(n: int, k: int, s: int, d: int, lo: int, n_out: int) -> int:
    """Edge pixels that replicate padding adds to rows beyond what their inside taps read.

    Row ``o`` reads input positions ``o*s + u*d - lo``. Taps below 0 read pixel 0,
    which is new unless an inside tap sits exactly on 0; likewise above ``n - 1``.
    """
    if n == 1:  # every row reads the one pixel, which at most one tap sits on
        return n_out - _taps_inside(n, k, s, d, lo, n_out)
    below_end = min(n_out, -(-lo // s))  # rows with a tap below 0: o*s < lo
    first_hit = max(0, -(-(lo - (k - 1) * d) // s))  # rows whose taps reach back to 0
    below = below_end - _count_congruent(first_hit, below_end, s, lo, d)
    above_start = max(0, (n - 1 + lo - (k - 1) * d) // s + 1)  # last tap beyond n - 1
    last_hit = min(n_out, (n - 1 + lo) // s + 1)  # rows with a tap at or before n - 1
    above = max(0, n_out - above_start) - _count_congruent(above_start, last_hit, s,
                                                           n - 1 + lo, d)
    return below + above


def _count_congruent(a: int, b: int, s: int, r: int, d: int) -> int:
    """How many ``o`` in ``[a, b)`` have ``o*s = r (mod d)``."""
    if b <= a:
        return 0
    g = math.gcd(s, d)
    if r % g:
        return 0
    m = d // g
    o0 = (r // g) * pow(s // g, -1, m) % m if m > 1 else 0
    return (b - 1 - o0) // m - (a - 1 - o0) // m


def _taps_inside(n: int, k: int, s: int, d: int, lo: int, n_out: int) -> int:
    """Pairs (output o, tap u) whose input position ``o*s + u*d - lo`` lies in ``[0, n)``."""
    total = 0
    chunk = 2**20
    for start in range(0, k, chunk):
        offset = np.arange(start, min(k, start + chunk), dtype=np.int64) * d - lo
        first = np.maximum(0, -(offset // s))  # ceil(-offset / s), at least 0
        last = np.minimum(n_out - 1, (n - 1 - offset) // s)
        total += int(np.maximum(last - first + 1, 0).sum())
    return total


def _x(sizes: tuple[int, ...]) -> str:
    return "x".join(str(s) for s in sizes)
