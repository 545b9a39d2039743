"""Gram products of a layer, ``A^H A x`` (or ``A A^H y``), with every buffer reused.

The Lanczos iterations of the spectral functions apply the Gram operator a
hundred times and more. :class:`GramProduct` computes exactly what
:class:`convop.LayerOperator` computes (im2col and one GEMM per group for
``A``), but writes into buffers allocated once: the padded input, the patch
matrix, the output. For stride 1 the adjoint is itself a stride-1 correlation
of the zero-extended output with the flipped, transposed kernel, so it is an
im2col and a GEMM too instead of a col2im of ``k`` strided additions. Float32
(complex64) products of 3x3 stride-1 2-D layers use Winograd's F(2x2, 3x3)
instead (:mod:`convop.spectral.winograd`; ``benchmarks/bench_products.py``
measures both, benchmarks/TUNING.md#winograd); float64 products stay im2col.

Vectors are row-major (``order="C"``), the layout of a PyTorch tensor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..geometry import ConvGeometry
from ..im2col import receptive_fields
from ..modes import MODES
from ..padding import axis_sources, pad_adjoint
from . import winograd as _winograd


def _chunks(count: int, parts: int) -> list[slice]:
    """Split ``range(count)`` into at most ``parts`` contiguous slices."""
    parts = max(1, min(parts, count))
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]


class GramProduct:
    """``v -> A^H A v`` (``side="input"``) or ``v -> A A^H v`` (``"output"``) in ``dtype``.

    Results are views of buffers that the next call overwrites: copy what you keep.
    Inputs of any real or complex dtype are cast as they are copied in; results
    come out in ``result_dtype`` (default ``dtype``), cast as they are copied out:
    float32 products for float64 Lanczos vectors cost no extra pass over memory.
    With ``winograd``, float32 (complex64) products of 3x3 stride-1 2-D layers use
    :mod:`convop.spectral.winograd`.
    With a ``pool`` of worker threads every stage (the im2col copies, the GEMMs, the
    crop) is split over channel chunks and runs on all the pool's cores; BLAS should
    then be single-threaded (:func:`convop._blas.single_threaded`).
    """

    def __init__(self, geometry: ConvGeometry, weight: np.ndarray, dtype: Any,
                 side: str = "input", pool: Any = None, result_dtype: Any = None,
                 winograd: bool = False) -> None:
        g = self.geometry = geometry
        self.dtype = np.dtype(dtype)
        self.result_dtype = self.dtype if result_dtype is None else np.dtype(result_dtype)
        self.side = side
        self.pool = pool
        parts = 1 if pool is None else pool.workers
        self.size = g.vector_size("input" if side == "input" else "output")
        dt = self.dtype
        w = weight.astype(dt)
        taps = math.prod(g.kernel_size)
        self._rows = w.reshape(g.groups, g.out_per_group, -1)  # (G, Co/G, Ci/G * taps)
        self._out = np.empty((g.groups, g.out_per_group, math.prod(g.output_size)), dtype=dt)
        self._unit_stride = all(st == 1 for st in g.stride)
        # Helper products of a mixed-precision solve may use Winograd (2.25x fewer flops,
        # more rounding: the solve measures it and certifies past it). Products a caller
        # asked for in float32 stay im2col: at float32's finest rtol Winograd's rounding
        # would stop Lanczos short of it (benchmarks/TUNING.md#winograd).
        self._winograd = (winograd and dt in (np.dtype(np.float32), np.dtype(np.complex64))
                          and _winograd.applies(g.kernel_size, g.stride, g.dilation))
        if self._winograd:
            self._forward_engine = _winograd.Winograd3x3(w, g.groups, g.output_size, dt)
            shape = tuple(max(p, n) for p, n in zip(
                g.padded_size, self._forward_engine.source_shape[1:]))
            self._padded = np.zeros((g.in_channels, *shape), dtype=dt)
        else:
            self._padded = np.zeros((g.in_channels, *g.padded_size), dtype=dt)
            self._cols = np.empty((g.in_channels, *g.kernel_size, *g.output_size), dtype=dt)
        self._positions = _chunks(16, parts)
        # Work split into chunks: input and output channels for copies, rows for GEMMs.
        self._in_parts = _chunks(g.in_channels, parts)
        self._out_parts = _chunks(g.out_per_group, parts)
        self._in_group_parts = _chunks(g.in_per_group, parts)
        self._out_channel_parts = _chunks(g.out_channels, parts)
        if self._unit_stride:
            # grad_pad[c, q] = sum_{m, u'} conj(W[m, c, k-1-u']) y_ext[m, q + u' d], with
            # y_ext the output padded by (k-1)d before and P - O after on every axis.
            flipped = np.flip(w.reshape(g.groups, g.out_per_group, g.in_per_group,
                                        *g.kernel_size), axis=tuple(range(3, 3 + g.ndim)))
            self._rows_adjoint = np.ascontiguousarray(np.conj(np.swapaxes(flipped, 1, 2))).reshape(
                g.groups, g.in_per_group, g.out_per_group * taps)
            ext = tuple(o + (k - 1) * d + (p - o) for o, k, d, p in zip(
                g.output_size, g.kernel_size, g.dilation, g.padded_size))
            self._inner = (slice(None),) + tuple(
                slice((k - 1) * d, (k - 1) * d + o)
                for k, d, o in zip(g.kernel_size, g.dilation, g.output_size))
            if self._winograd:
                kernel = self._rows_adjoint.reshape(g.in_channels, g.out_per_group,
                                                    *g.kernel_size)
                self._adjoint_engine = _winograd.Winograd3x3(kernel, g.groups, g.padded_size, dt)
                ext = tuple(max(e, n) for e, n in zip(
                    ext, self._adjoint_engine.source_shape[1:]))
            self._extended = np.zeros((g.out_channels, *ext), dtype=dt)
            self._adjoint_geometry = ConvGeometry(
                in_channels=g.out_channels, out_channels=g.in_channels, groups=g.groups,
                kernel_size=g.kernel_size, input_size=ext, stride=(1,) * g.ndim,
                dilation=g.dilation, padding=((0, 0),) * g.ndim)
            if not self._winograd:
                self._cols_adjoint = np.empty(
                    (g.out_channels, *g.kernel_size, *g.padded_size), dtype=dt)
        else:
            self._rows_adjoint = np.ascontiguousarray(np.conj(np.swapaxes(self._rows, 1, 2)))
            self._cols_adjoint = np.empty((g.in_channels, *g.kernel_size, *g.output_size),
                                          dtype=dt)
            self._windows = g.tap_windows()
        # Window views of the fixed buffers, built once (they cost as much as a copy).
        self._order = (0, *range(1 + g.ndim, 1 + 2 * g.ndim), *range(1, 1 + g.ndim))
        if not self._winograd:
            self._windows_forward = receptive_fields(self._padded[np.newaxis], g)[0]
            if self._unit_stride:
                self._windows_adjoint = receptive_fields(self._extended[np.newaxis],
                                                         self._adjoint_geometry)[0]
        self._grad = np.empty((g.groups, g.in_per_group, math.prod(g.padded_size)), dtype=dt)
        self._result = np.empty(g.vector_size("input"), dtype=self.result_dtype)
        self._cast = (np.empty(g.vector_size("output"), dtype=self.result_dtype)
                      if side == "output" and self.result_dtype != dt else None)
        self._sources = [axis_sources(n, lo, hi, g.padding_mode)
                         for n, (lo, hi) in zip(g.input_size, g.padding)]

    @staticmethod
    def bytes_for(geometry: ConvGeometry, dtype: Any) -> int:
        """Bytes a GramProduct of this layer allocates (its buffers, with room for vectors)."""
        g = geometry
        item = np.dtype(dtype).itemsize
        taps = math.prod(g.kernel_size)
        padded = g.in_channels * math.prod(g.padded_size)
        out = g.out_channels * math.prod(g.output_size)
        extended = g.out_channels * math.prod(
            o + (k - 1) * d + p - o for o, k, d, p in zip(
                g.output_size, g.kernel_size, g.dilation, g.padded_size))
        cols = max(g.in_channels * taps * math.prod(g.output_size),
                   g.out_channels * taps * math.prod(g.padded_size))
        return item * (2 * padded + 2 * cols + out + extended + 2 * g.vector_size("input")
                       + 2 * out)

    def __call__(self, v: np.ndarray) -> np.ndarray:
        """Return ``A^H A v`` (side ``"input"``) or ``A A^H v`` (side ``"output"``)."""
        if self.side == "input":
            return self.adjoint(self.forward(v))
        out = self.forward(self.adjoint(v))
        if self._cast is None:
            return out
        np.copyto(self._cast, out)
        return self._cast

    def _run(self, task: Any, parts: list[slice]) -> None:
        if self.pool is None or len(parts) == 1:
            for part in parts:
                task(part)
        else:
            self.pool.map([task] * len(parts), parts)

    def _by_winograd(self, engine: Any, buffer: np.ndarray, fill: Any,
                     fill_parts: list[slice], out: np.ndarray, out_parts: list[slice]) -> None:
        """Correlate ``buffer`` into ``out`` by ``engine``, after ``fill`` wrote its channels."""

        def gather(channels: slice) -> None:
            fill(channels)
            engine.gather(buffer, channels)

        self._run(gather, fill_parts)
        self._run(engine.multiply, self._positions)
        self._run(lambda channels: engine.scatter(out, channels), out_parts)

    # A and A^H on vectors ----------------------------------------------------------------

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return ``A x`` for an input vector, as an output vector (a view of a buffer)."""
        g = self.geometry
        source = x.reshape(g.in_channels, *g.input_size)
        interior = tuple(slice(lo, lo + n) for n, (lo, _) in zip(g.input_size, g.padding))
        order = self._order

        if self._winograd:
            def fill(channels: slice) -> None:
                self._padded[(channels,) + interior] = source[channels]
                self._fill_border(channels)

            self._by_winograd(self._forward_engine, self._padded, fill, self._in_parts,
                              self._out.reshape(g.out_channels, *g.output_size),
                              self._out_channel_parts)
            return self._out.reshape(-1)

        def gather(channels: slice) -> None:
            self._padded[(channels,) + interior] = source[channels]
            self._fill_border(channels)
            np.copyto(self._cols[channels], self._windows_forward[channels].transpose(order))

        def multiply(rows: slice) -> None:
            cols = self._cols.reshape(g.groups, g.in_per_group * math.prod(g.kernel_size), -1)
            np.matmul(self._rows[:, rows], cols, out=self._out[:, rows])

        self._run(gather, self._in_parts)
        self._run(multiply, self._out_parts)
        return self._out.reshape(-1)

    def adjoint(self, y: np.ndarray) -> np.ndarray:
        """Return ``A^H y`` for an output vector, as an input vector (a view of a buffer)."""
        g = self.geometry
        grad = self._grad.reshape(g.in_channels, *g.padded_size)
        if self._unit_stride and self._winograd:
            source = y.reshape(g.out_channels, *g.output_size)

            def fill(channels: slice) -> None:
                self._extended[(channels,) + tuple(self._inner[1:])] = source[channels]

            self._by_winograd(self._adjoint_engine, self._extended, fill,
                              self._out_channel_parts, grad, self._in_parts)
        elif self._unit_stride:
            source = y.reshape(g.out_channels, *g.output_size)
            order = self._order

            def gather(channels: slice) -> None:
                self._extended[(channels,) + tuple(self._inner[1:])] = source[channels]
                np.copyto(self._cols_adjoint[channels],
                          self._windows_adjoint[channels].transpose(order))

            def multiply(rows: slice) -> None:
                cols = self._cols_adjoint.reshape(g.groups, g.out_per_group *
                                                  math.prod(g.kernel_size), -1)
                np.matmul(self._rows_adjoint[:, rows], cols, out=self._grad[:, rows])

            self._run(gather, self._out_channel_parts)
            self._run(multiply, self._in_group_parts)
        else:
            taps = math.prod(g.kernel_size)
            y = np.asarray(y, dtype=self.dtype)

            def multiply(rows: slice) -> None:
                cols = self._cols_adjoint.reshape(g.groups, g.in_per_group * taps, -1)
                rows_t = slice(rows.start * taps, rows.stop * taps)
                np.matmul(self._rows_adjoint[:, rows_t], y.reshape(g.groups, g.out_per_group, -1),
                          out=cols[:, rows_t])

            def scatter(channels: slice) -> None:
                part = grad[channels]
                part.fill(0)
                blocks = self._cols_adjoint[channels].reshape(
                    -1, taps, *g.output_size)
                for t, window in enumerate(self._windows):
                    part[(slice(None),) + tuple(window)] += blocks[:, t]

            self._run(multiply, self._in_group_parts)
            self._run(scatter, self._in_parts)
        if MODES[g.padding_mode].folds:
            return pad_adjoint(grad[np.newaxis], g.input_size, g.padding,
                               g.padding_mode).reshape(-1).astype(self.result_dtype, copy=False)
        crop = tuple(slice(lo, lo + n) for n, (lo, _) in zip(g.input_size, g.padding))
        result = self._result.reshape(g.in_channels, *g.input_size)

        def cut(channels: slice) -> None:
            np.copyto(result[channels], grad[(channels,) + crop])

        self._run(cut, self._in_parts)
        return self._result

    def _fill_border(self, channels: slice) -> None:
        """Fill the padding of some channels of the buffer from its interior (zeros stay 0)."""
        g = self.geometry
        if not MODES[g.padding_mode].folds:
            return
        for axis, ((lo, hi), sources) in enumerate(zip(g.padding, self._sources)):
            ax = 1 + axis
            n = g.input_size[axis]
            for p in (*range(lo), *range(lo + n, lo + n + hi)):
                target: list[Any] = [slice(None)] * self._padded.ndim
                source: list[Any] = [slice(None)] * self._padded.ndim
                target[0] = source[0] = channels
                target[ax], source[ax] = p, lo + int(sources[p])
                self._padded[tuple(target)] = self._padded[tuple(source)]
