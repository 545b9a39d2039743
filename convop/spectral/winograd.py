"""Stride-1 3x3 correlations by Winograd's minimal filtering F(2x2, 3x3), for cheap products.

A 2x2 block of outputs from a 4x4 tile of input takes 16 multiplications per
channel pair instead of 36: the tile and the filter go to a transformed
domain (``V = B^T d B``, ``U = G g G^T``), the channel sums there are 16
GEMMs of 2.25x fewer flops than im2col's one, and ``Y = A^T M A`` brings
the products back. The transforms here are GEMMs too (``kron(B^T, B^T)`` on
the 16 values of every tile), so the whole product is copies and GEMMs.

Its rounding is a few times a direct sum's (the filter transform halves), so
:class:`~convop.spectral.products.GramProduct` uses it for its low-precision
(float32) products only, whose error the mixed-precision Lanczos measures and
certifies past; exact (float64) products stay im2col.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_BT = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0],
                [0.0, 1.0, 0.0, -1.0]])
_AT = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]])


def applies(kernel_size: tuple[int, ...], stride: tuple[int, ...],
            dilation: tuple[int, ...]) -> bool:
    """Return whether :class:`Winograd3x3` computes this correlation (2-D, 3x3, stride 1)."""
    return (tuple(kernel_size) == (3, 3) and tuple(stride) == (1, 1)
            and tuple(dilation) == (1, 1))


class Winograd3x3:
    """``out[o, y, x] = sum_{c, u, v} w[o, c, u, v] src[c, y + u, x + v]`` per group.

    ``weight`` is ``(C_out, C_in // groups, 3, 3)``; ``out_size`` the output's
    ``(H, W)``. The source buffer must hold at least :attr:`source_shape`: the
    input the output needs, plus a row or column of zeros where an output size
    is odd (tiles are 2x2). Only that corner of a larger buffer is read.
    """

    def __init__(self, weight: np.ndarray, groups: int, out_size: tuple[int, ...],
                 dtype: Any) -> None:
        dt = self.dtype = np.dtype(dtype)
        c_out, per_group = weight.shape[:2]
        self.groups = groups
        self.in_channels = per_group * groups
        self.out_channels = c_out
        self.out_size = out_size
        self.tiles = tuple(-(-n // 2) for n in out_size)
        tiles = math.prod(self.tiles)
        self.source_shape = (self.in_channels, *(2 * t + 2 for t in self.tiles))
        transformed = np.einsum("ia,ocab,jb->ijoc", _G, weight, _G)  # (4, 4, C_out, C_in/G)
        self._u = np.ascontiguousarray(transformed.reshape(
            16, groups, c_out // groups, per_group)).astype(dt)
        self._bb = np.kron(_BT, _BT).astype(dt)
        self._aa = np.kron(_AT, _AT).astype(dt)
        self._d = np.empty((4, 4, self.in_channels, *self.tiles), dtype=dt)
        self._v = np.empty((16, self.in_channels * tiles), dtype=dt)
        self._m = np.empty((16, groups, c_out // groups, tiles), dtype=dt)
        self._y = np.empty((2, 2, c_out, *self.tiles), dtype=dt)

    def gather(self, source: np.ndarray, channels: slice) -> None:
        """Stage 1 for some input channels: their tiles, transformed."""
        c, h, w = source.strides
        th, tw = self.tiles
        tiles = as_strided(source, (4, 4, self.in_channels, th, tw), (h, w, c, 2 * h, 2 * w),
                           writeable=False)
        np.copyto(self._d[:, :, channels], tiles[:, :, channels])
        cols = slice(channels.start * th * tw, channels.stop * th * tw)
        np.matmul(self._bb, self._d.reshape(16, -1)[:, cols], out=self._v[:, cols])

    def multiply(self, positions: slice) -> None:
        """Stage 2 for some of the 16 transformed positions: the channel sums (GEMMs)."""
        v = self._v.reshape(16, self.groups, self.in_channels // self.groups, -1)
        np.matmul(self._u[positions], v[positions], out=self._m[positions])

    def scatter(self, out: np.ndarray, channels: slice) -> None:
        """Stage 3 for some output channels: back from the transformed domain into ``out``."""
        th, tw = self.tiles
        cols = slice(channels.start * th * tw, channels.stop * th * tw)
        np.matmul(self._aa, self._m.reshape(16, -1)[:, cols],
                  out=self._y.reshape(4, -1)[:, cols])
        for a in range(2):
            for b in range(2):
                target = out[channels, a::2, b::2]
                np.copyto(target, self._y[a, b, channels, :target.shape[1], :target.shape[2]])
