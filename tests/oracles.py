"""Independent references for the convolution matrix and its products.

Nothing here uses convop's assembly: the loop oracle follows the seed's
formula entry by entry with ``numpy.ravel_multi_index``, the im2col
references use the seed's ``W_row @ X_col`` and ``col2im(W_row.T @ dout)``,
and the correlate reference uses ``scipy.signal.correlate``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import signal
from strategies import Layer, dilation_of, output_size, stride_of

import convop


def source_pixel(q: int, n: int, mode: str) -> int | None:
    """Input pixel that padded position q (relative to the input) copies, by definition."""
    if 0 <= q < n:
        return q
    if mode == "zeros":
        return None
    if mode == "replicate":
        return 0 if q < 0 else n - 1
    if mode == "circular":
        return q % n
    reflected = -q if q < 0 else 2 * (n - 1) - q  # reflect: PyTorch allows one bounce only
    assert 0 <= reflected < n
    return reflected


def loop_matrix(weight: np.ndarray, layer: Layer, domain: str, order: str,
                mode: str = "zeros") -> tuple[np.ndarray, np.ndarray]:
    """Dense W and its pattern (entries a tap visits), one Python loop iteration per entry."""
    out = output_size(layer)
    stride, dilation = stride_of(layer), dilation_of(layer)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(layer.input_size, layer.pads))
    cols_size = padded if domain == "padded" else layer.input_size
    c_out, c_in_g = weight.shape[:2]
    c_out_g = c_out // layer.groups
    rows = c_out * math.prod(out)
    cols = layer.in_channels * math.prod(cols_size)
    dense = np.zeros((rows, cols), dtype=np.complex128 if np.iscomplexobj(weight) else np.float64)
    pattern = np.zeros((rows, cols), dtype=bool)
    for m in range(c_out):
        g = m // c_out_g
        for o in itertools.product(*(range(v) for v in out)):
            row = m * math.prod(out) + int(np.ravel_multi_index(o, out, order=order))
            for ci in range(c_in_g):
                c = g * c_in_g + ci
                for u in itertools.product(*(range(k) for k in layer.kernel_size)):
                    p = [oo * s + uu * d for oo, uu, s, d in zip(o, u, stride, dilation)]
                    if domain == "input":
                        q = [source_pixel(pp - lo, n, mode)
                             for pp, (lo, _), n in zip(p, layer.pads, layer.input_size)]
                        if any(qq is None for qq in q):
                            continue
                        p = q
                    col = c * math.prod(cols_size) + int(
                        np.ravel_multi_index(p, cols_size, order=order))
                    dense[row, col] += weight[(m, ci, *u)]
                    pattern[row, col] = True
    return dense, pattern


def _row_blocks(weight: np.ndarray, groups: int) -> list[np.ndarray]:
    c_out_g = weight.shape[0] // groups
    return [weight[g * c_out_g:(g + 1) * c_out_g].reshape(c_out_g, -1) for g in range(groups)]


def im2col_forward(x: np.ndarray, weight: np.ndarray, layer: Layer) -> np.ndarray:
    """The seed's ``W_row @ X_col`` per group, reshaped to (N, C_out, *out)."""
    n = x.shape[0]
    x_col = convop.im2col(x, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                          dilation=layer.dilation)
    taps = math.prod(layer.kernel_size)
    c_in_g = weight.shape[1]
    per_channel = x_col.reshape(layer.in_channels, taps, -1)
    outs = [w_row @ per_channel[g * c_in_g:(g + 1) * c_in_g].reshape(c_in_g * taps, -1)
            for g, w_row in enumerate(_row_blocks(weight, layer.groups))]
    out = np.concatenate(outs, axis=0).reshape(layer.out_channels, *output_size(layer), n)
    return np.moveaxis(out, -1, 0)


def im2col_input_grad(dy: np.ndarray, weight: np.ndarray, layer: Layer) -> np.ndarray:
    """The seed's ``col2im(W_flat.T @ dout_flat)`` per group."""
    n = dy.shape[0]
    c_out_g = weight.shape[0] // layer.groups
    dout_flat = np.moveaxis(dy, 0, -1).reshape(layer.out_channels, -1)  # (C_out, P*N)
    cols = np.concatenate(
        [w_row.T @ dout_flat[g * c_out_g:(g + 1) * c_out_g]
         for g, w_row in enumerate(_row_blocks(weight, layer.groups))], axis=0)
    return convop.col2im(cols, layer.input_shape(n), layer.kernel_size, stride=layer.stride,
                         padding=layer.padding, dilation=layer.dilation)


def correlate_forward(x: np.ndarray, weight: np.ndarray, layer: Layer) -> np.ndarray:
    """scipy.signal.correlate per (output, input) channel pair on the padded input."""
    stride, dilation = stride_of(layer), dilation_of(layer)
    xp = np.pad(x, ((0, 0), (0, 0), *layer.pads))
    c_out, c_in_g = weight.shape[:2]
    c_out_g = c_out // layer.groups
    out = output_size(layer)
    y = np.zeros((x.shape[0], c_out, *out), dtype=np.result_type(x, weight))
    take = tuple(slice(0, s * (o - 1) + 1, s) for s, o in zip(stride, out))
    for m in range(c_out):
        g = m // c_out_g
        for ci in range(c_in_g):
            k = weight[m, ci]
            dilated = np.zeros([d * (kk - 1) + 1 for kk, d in zip(k.shape, dilation)], k.dtype)
            dilated[tuple(slice(None, None, d) for d in dilation)] = k
            for b in range(x.shape[0]):
                full = signal.correlate(xp[b, g * c_in_g + ci], dilated, mode="valid",
                                        method="direct")
                y[b, m] += full[take]
    return y


def abs_scale(x: np.ndarray, weight: np.ndarray, layer: Layer) -> np.ndarray:
    """``|W| @ |x|``, the size of the terms summed into each output."""
    return im2col_forward(np.abs(x).astype(np.float64), np.abs(weight).astype(np.float64), layer)


def assert_scaled_close(actual: np.ndarray, expected: np.ndarray, scale: np.ndarray,
                        rtol: float) -> None:
    """|actual - expected| <= rtol * scale (+ a tiny floor for exact zeros)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    err = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    bound = rtol * scale + np.finfo(np.float64).tiny
    worst = np.max(err - bound, initial=-np.inf)
    assert worst <= 0, f"max excess {worst:.3e}; max error {err.max(initial=0):.3e}"


def assert_canonical_csr(A, expected_index_dtype=None) -> None:
    """Structural checks independent of scipy's flags."""
    rows, cols = A.shape
    assert A.format == "csr"
    assert A.indptr.dtype == A.indices.dtype
    if expected_index_dtype is not None:
        assert A.indices.dtype == np.dtype(expected_index_dtype)
    assert A.indptr.shape == (rows + 1,)
    assert A.indptr[0] == 0 and A.indptr[-1] == A.nnz == A.indices.size == A.data.size
    assert np.all(np.diff(A.indptr) >= 0)
    if A.nnz:
        assert A.indices.min() >= 0 and A.indices.max() < cols
        steps = np.diff(A.indices.astype(np.int64))
        row_starts = A.indptr[1:-1]
        inside_row = np.ones(A.nnz - 1, dtype=bool)
        inside_row[row_starts[(row_starts > 0) & (row_starts < A.nnz)] - 1] = False
        assert np.all(steps[inside_row] > 0), "column indices not strictly increasing in a row"


def im2col_weight_grad(x: np.ndarray, dy: np.ndarray, layer: Layer, mode: str = "zeros"
                       ) -> np.ndarray:
    """The seed's ``dW = dout_flat @ X_col.T`` per group (non-zero modes pad first)."""
    n = x.shape[0]
    if mode != "zeros":
        numpy_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
        x = np.pad(x, ((0, 0), (0, 0), *layer.pads), mode=numpy_mode)
        padding = 0
    else:
        padding = layer.padding
    x_col = convop.im2col(x, layer.kernel_size, stride=layer.stride, padding=padding,
                          dilation=layer.dilation)
    taps = math.prod(layer.kernel_size)
    c_in_g = layer.weight_shape[1]
    c_out_g = layer.out_channels // layer.groups
    per_channel = x_col.reshape(layer.in_channels, taps, -1)
    dout_flat = np.moveaxis(dy, 0, -1).reshape(layer.out_channels, -1)
    blocks = [dout_flat[g * c_out_g:(g + 1) * c_out_g]
              @ per_channel[g * c_in_g:(g + 1) * c_in_g].reshape(c_in_g * taps, -1).T
              for g in range(layer.groups)]
    assert n == dy.shape[0]
    return np.concatenate(blocks, axis=0).reshape(layer.weight_shape)


def torch_pad_conv(torch, layer: Layer, x, weight, mode: str = "zeros"):
    """PyTorch reference: F.pad in the layer's mode (asymmetric allowed), then F.conv*d."""
    F = torch.nn.functional
    flat = [p for pair in reversed(layer.pads) for p in pair]  # F.pad: last axis first
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[layer.ndim]
    padded = F.pad(x, flat, mode="constant" if mode == "zeros" else mode)
    return conv(padded, weight, stride=layer.stride, dilation=layer.dilation,
                groups=layer.groups)
