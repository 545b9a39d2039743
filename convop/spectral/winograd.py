"""Winograd F(2x2, 3x3): 2-D 3x3 stride-1 correlations with 2.25x fewer multiplications.

Lavin and Gray (2016): on a 4x4 input tile ``d`` a 3x3 filter ``g`` gives the 2x2
output ``A^T [(G g G^T) * (B^T d B)] A``. With channels, the 16 products of the
transformed tiles become 16 GEMMs ``(C_out x C_in) @ (C_in x tiles)``. The
transforms add and subtract only (B, A) or halve (G), so the result differs
from the direct correlation by a few units of rounding: the Lanczos products of
the spectral norm use it, the exact matrices never do.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# F(2, 3): G (4x3) transforms the filter.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def applies(kernel_size: tuple[int, ...], stride: tuple[int, ...],
            dilation: tuple[int, ...]) -> bool:
    """Whether a correlation is 2-D, 3x3, stride 1 and dilation 1."""
    return kernel_size == (3, 3) and stride == (1, 1) and dilation == (1, 1)


class Correlation:
    """``y[g, m, o] = sum_{c, u} w[g, m, c, u] x[g, c, o + u]`` (valid), groups batched.

    ``w`` has shape ``(G, C_out/G, C_in/G, 3, 3)``; inputs ``(C_in, H, W)`` give
    outputs ``(C_out, H - 2, W - 2)``. Buffers are allocated once for the given
    input size.
    """

    def __init__(self, w: np.ndarray, input_size: tuple[int, int], dtype: Any,
                 pool: Any = None) -> None:
        groups, c_out_g, c_in_g = w.shape[:3]
        self.groups, self.c_out_g, self.c_in_g = groups, c_out_g, c_in_g
        self.dtype = np.dtype(dtype)
        h, wd = input_size
        self.output_size = (h - 2, wd - 2)
        self.tiles = (math.ceil((h - 2) / 2), math.ceil((wd - 2) / 2))
        ty, tx = self.tiles
        self.pool = pool
        # U[xi, nu, g, m, c] = (G w G^T)[xi, nu], as 16 matrices (g, m, c).
        u = np.einsum("ia,gmcab,jb->ijgmc", _G, w.astype(np.result_type(w, np.float64)), _G)
        self._u = np.ascontiguousarray(u.reshape(16, groups, c_out_g, c_in_g)).astype(self.dtype)
        # The input, zero-extended to whole tiles: (C_in, 2*ty + 2, 2*tx + 2).
        self._input = np.zeros((groups * c_in_g, 2 * ty + 2, 2 * tx + 2), dtype=self.dtype)
        self._v = np.empty((16, groups, c_in_g, ty * tx), dtype=self.dtype)
        self._m = np.empty((16, groups, c_out_g, ty * tx), dtype=self.dtype)
        self._rows = np.empty((4, groups * c_in_g, ty, tx, 4), dtype=self.dtype)
        self._stage = np.empty((4, groups * c_out_g, ty, tx, 2), dtype=self.dtype)
        self._y = np.empty((groups * c_out_g, 2 * ty, 2 * tx), dtype=self.dtype)
        parts = 1 if pool is None else pool.workers
        self._in_parts = _chunks(groups * c_in_g, parts)
        self._out_parts = _chunks(groups * c_out_g, parts)
        self._point_parts = _chunks(16, parts)

    def __call__(self, x: np.ndarray, out: np.ndarray) -> None:
        """Write the correlation of ``x`` ``(C_in, H, W)`` into ``out`` ``(C_out, H-2, W-2)``."""
        h, wd = x.shape[1:]
        ty, tx = self.tiles

        def transform_input(channels: slice) -> None:
            self._input[channels, :h, :wd] = x[channels]
            d = self._input[channels]
            n = d.shape[0]
            # Tiles d[c, 2 t + i, 2 s + j] as a strided view (c, ty, tx, 4, 4).
            tiles = np.lib.stride_tricks.as_strided(
                d, shape=(n, ty, tx, 4, 4),
                strides=(d.strides[0], 2 * d.strides[1], 2 * d.strides[2], d.strides[1],
                         d.strides[2]))
            rows = self._rows[:, channels]  # B^T d along the tile's first axis
            np.subtract(tiles[..., 0, :], tiles[..., 2, :], out=rows[0])
            np.add(tiles[..., 1, :], tiles[..., 2, :], out=rows[1])
            np.subtract(tiles[..., 2, :], tiles[..., 1, :], out=rows[2])
            np.subtract(tiles[..., 1, :], tiles[..., 3, :], out=rows[3])
            v = self._v.reshape(4, 4, self.groups * self.c_in_g, ty, tx)[:, :, channels]
            for i in range(4):  # ... then d B along the second
                r = rows[i]
                np.subtract(r[..., 0], r[..., 2], out=v[i, 0])
                np.add(r[..., 1], r[..., 2], out=v[i, 1])
                np.subtract(r[..., 2], r[..., 1], out=v[i, 2])
                np.subtract(r[..., 1], r[..., 3], out=v[i, 3])

        def multiply(points: slice) -> None:
            np.matmul(self._u[points], self._v[points], out=self._m[points])

        def transform_output(channels: slice) -> None:
            m = self._m.reshape(4, 4, self.groups * self.c_out_g, ty, tx)[:, :, channels]
            stage = self._stage[:, channels]
            for i in range(4):  # M A along the second axis
                mi = m[i]
                np.add(mi[0], mi[1], out=stage[i, ..., 0])
                stage[i, ..., 0] += mi[2]
                np.subtract(mi[1], mi[2], out=stage[i, ..., 1])
                stage[i, ..., 1] -= mi[3]
            y = self._y[channels].reshape(-1, ty, 2, tx, 2)
            for j in range(2):  # A^T (M A) along the first
                s = stage[..., j]
                np.add(s[0], s[1], out=y[:, :, 0, :, j])
                y[:, :, 0, :, j] += s[2]
                np.subtract(s[1], s[2], out=y[:, :, 1, :, j])
                y[:, :, 1, :, j] -= s[3]
            oh, ow = self.output_size
            out[channels] = self._y[channels, :oh, :ow]

        self._run(transform_input, self._in_parts)
        self._run(multiply, self._point_parts)
        self._run(transform_output, self._out_parts)

    def _run(self, task: Any, parts: list[slice]) -> None:
        if self.pool is None or len(parts) == 1:
            for part in parts:
                task(part)
        else:
            self.pool.map([task] * len(parts), parts)


def _chunks(count: int, parts: int) -> list[slice]:
    parts = max(1, min(parts, count))
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
