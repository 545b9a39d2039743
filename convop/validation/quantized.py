"""Quantized convolutions, checked bit-exactly against the exact integer result.

Two kinds of :func:`convop.check_conv`, with ``dtype`` uint8 or int8 (the
input's; weights are int8):

- ``"integer"``, ONNX ``ConvInteger``'s contract:
  ``impl(x, weight, *, x_zero_point, weight_zero_point, <layer>)`` returns the
  int32 sums ``sum (x - x_zero_point) (weight - weight_zero_point)`` over each
  window, the padding being the real value 0 (``x_zero_point`` quantized).
  Held to exact equality.
- ``"quantized"``, ``QLinearConv``'s and PyTorch's quantized convolution:
  ``impl(x, weight, bias, *, x_scale, x_zero_point, weight_scale,
  weight_zero_point, y_scale, y_zero_point, <layer>)`` (int32 ``bias`` in units
  of ``x_scale * weight_scale``, ``weight_scale`` one per output channel)
  returns, in ``x``'s dtype,
  ``saturate(round_half_even((acc + bias) * x_scale * weight_scale / y_scale) + y_zero_point)``.
  Exact, except that a value within ``REQUANTIZE_SLACK`` (relative) of a tie
  may round either way: frameworks requantize in float32.

Tolerances are half an integer unit (1.5 where either neighbour is right): any
wrong integer fails.

The sums are exact in int64 (convop's integer arithmetic), so any difference is
a finding; the causes named here are the quantization mistakes real kernels
made (16-bit saturation of product pairs: pytorch/pytorch#44939,
microsoft/onnxruntime#31573).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..functional import conv
from ..geometry import conv_geometry
from .battery import LayerConfig

QUANTIZED_KINDS = ("integer", "quantized")
#: The input dtypes of the quantized kinds; weights are int8.
QUANTIZED_DTYPES = (np.dtype(np.uint8), np.dtype(np.int8))
WEIGHT_DTYPE = np.dtype(np.int8)
#: The quantization keywords each kind passes to the implementation.
KEYWORDS = {
    "integer": ("x_zero_point", "weight_zero_point"),
    "quantized": ("x_scale", "x_zero_point", "weight_scale", "weight_zero_point", "y_scale",
                  "y_zero_point"),
}
#: A requantized value this close (relative) to a tie may round either way.
REQUANTIZE_SLACK = 2.0**-18


def output_dtype(kind: str, dtype: np.dtype) -> np.dtype:
    """Return the dtype an implementation of ``kind`` must return for ``dtype`` inputs."""
    return np.dtype(np.int32) if kind == "integer" else dtype


def quantized_inputs(cfg: LayerConfig, kind: str, dtype: np.dtype, gen: np.random.Generator,
                     geom: Any, batch: int) -> dict[str, Any]:
    """Random quantized inputs over the full ranges, zero points and scales."""
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    x = gen.integers(low, high + 1, (batch, geom.in_channels, *geom.input_size)).astype(dtype)
    weight = gen.integers(-127, 128, cfg.weight_shape).astype(WEIGHT_DTYPE)
    arrays: dict[str, Any] = {
        "x": x, "weight": weight,
        "x_zero_point": dtype.type(gen.integers(low, high + 1)),
        "weight_zero_point": WEIGHT_DTYPE.type(gen.integers(-8, 9)),
    }
    if kind == "integer":
        return arrays
    out_channels = cfg.weight_shape[0]
    # Powers of two for x_scale, y_scale and every other channel's weight scale: their
    # real values are exact in float32 too, with ties a rounding mode must break to even;
    # the other channels' scales are arbitrary.
    arrays["x_scale"] = np.float32(2.0 ** -int(gen.integers(5, 9)))
    scales = gen.uniform(0.002, 0.02, out_channels)
    scales[::2] = 2.0 ** -gen.integers(6, 10, scales[::2].size).astype(np.float64)
    arrays["weight_scale"] = scales.astype(np.float32)
    bias = (gen.integers(-2000, 2001, out_channels).astype(np.int32) if cfg.bias else None)
    arrays["bias"] = bias
    # y_scale spreads the outputs over the range: about 3 standard deviations at the edges.
    acc = accumulate(arrays, dict(stride=cfg.stride, padding=cfg.padding,
                                  dilation=cfg.dilation, groups=cfg.groups))
    real = acc * (arrays["x_scale"] * arrays["weight_scale"]).reshape(1, -1, *(1,) * (
        acc.ndim - 2))
    spread = float(np.std(real)) if real.size else 1.0
    arrays["y_scale"] = np.float32(2.0 ** round(np.log2(max(spread, 1e-3) * 6 / (high - low))))
    arrays["y_zero_point"] = dtype.type(gen.integers(low // 2, high // 2 + 1))
    return arrays


def accumulate(arrays: dict[str, Any], layer: dict[str, Any], *, weight: Any = None,
               x_zero_point: Any = None, weight_zero_point: Any = None) -> np.ndarray:
    """Return the exact int64 sums ``sum (x - zx)(w - zw)`` (zero padding: the real 0)."""
    zx = arrays["x_zero_point"] if x_zero_point is None else x_zero_point
    zw = arrays["weight_zero_point"] if weight_zero_point is None else weight_zero_point
    w = arrays["weight"] if weight is None else weight
    x = arrays["x"].astype(np.int64) - np.int64(zx)
    return conv(x, w.astype(np.int64) - np.int64(zw), None, **layer)


def requantize(acc: np.ndarray, arrays: dict[str, Any], dtype: np.dtype, *,
               rounding: Callable[[np.ndarray], np.ndarray] = np.rint, saturate: bool = True,
               bias: Any = "same", weight_scale: Any = None, y_zero_point: Any = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Return the requantized output (float64 holding integers) and the real values rounded."""
    b = arrays["bias"] if isinstance(bias, str) else bias
    total = acc if b is None else acc + np.asarray(b, dtype=np.int64).reshape(
        1, -1, *(1,) * (acc.ndim - 2))
    scale = arrays["weight_scale"] if weight_scale is None else weight_scale
    # float64 of the float32 scales: the real value the contract defines.
    multiplier = (np.float64(arrays["x_scale"]) * np.asarray(scale, dtype=np.float64)
                  / np.float64(arrays["y_scale"])).reshape(1, -1, *(1,) * (acc.ndim - 2))
    real = total * multiplier
    zy = arrays["y_zero_point"] if y_zero_point is None else y_zero_point
    q = rounding(real) + np.float64(zy)
    info = np.iinfo(dtype)
    if saturate:
        q = np.clip(q, info.min, info.max)
    else:
        span = info.max - info.min + 1
        q = (q - info.min) % span + info.min
    return q, real


def quantized_exact(kind: str, arrays: dict[str, Any], dtype: np.dtype, layer: dict[str, Any],
                    weight: Any = None, bias: Any = "same") -> np.ndarray:
    """Return the exact result of a quantized case as float64 (integers)."""
    acc = accumulate(arrays, layer, weight=weight)
    if kind == "integer":
        return acc.astype(np.float64)
    return requantize(acc, arrays, dtype, bias=bias)[0]


def quantized_tolerance(kind: str, arrays: dict[str, Any], dtype: np.dtype,
                        layer: dict[str, Any]) -> np.ndarray:
    """Return half a unit everywhere (exact integers), 1.5 where either neighbour is right.

    That is where float32 requantization may round the other way: a value within
    the slack of a tie, unless float32 computes it exactly (a power-of-two
    multiplier on sums below 2**24).
    """
    acc = accumulate(arrays, layer)
    if kind == "integer":
        return np.full(acc.shape, 0.5)
    q, real = requantize(acc, arrays, dtype)
    near_tie = np.abs(np.abs(real - np.floor(real)) - 0.5) <= REQUANTIZE_SLACK * np.maximum(
        np.abs(real), 1.0)
    multiplier = (np.float64(arrays["x_scale"]) * arrays["weight_scale"].astype(np.float64)
                  / np.float64(arrays["y_scale"]))
    exact = (np.frexp(multiplier)[0] == 0.5).reshape(1, -1, *(1,) * (acc.ndim - 2))
    b = arrays["bias"]
    total = np.abs(acc if b is None else acc + b.astype(np.int64).reshape(
        1, -1, *(1,) * (acc.ndim - 2)))
    return np.where(near_tie & ~(exact & (total < 2**24)), 1.5, 0.5)


def quantized_causes(kind: str, arrays: dict[str, Any], dtype: np.dtype, layer: dict[str, Any],
                     actual: np.ndarray, expected: np.ndarray, tol: np.ndarray) -> str:
    """Name the quantization mistake the implementation's result reproduces ('' if none)."""
    acc = accumulate(arrays, layer)
    candidates: list[tuple[str, Callable[[], np.ndarray]]] = []

    def from_acc(value: Callable[[], np.ndarray]) -> Callable[[], np.ndarray]:
        if kind == "integer":
            return lambda: value().astype(np.float64)
        return lambda: requantize(value(), arrays, dtype)[0]

    if arrays["x_zero_point"] != 0:
        candidates.append(("x_zero_point ignored (the input's zero point not subtracted)",
                           from_acc(lambda: accumulate(arrays, layer, x_zero_point=0))))
        candidates.append((
            "padded with the integer 0 instead of x_zero_point (the padding is the real value "
            "0, which quantizes to the zero point)",
            from_acc(lambda: _padded_with_zero(arrays, layer))))
    if arrays["weight_zero_point"] != 0:
        candidates.append(("weight_zero_point ignored",
                           from_acc(lambda: accumulate(arrays, layer, weight_zero_point=0))))
    if kind == "quantized":
        candidates += [
            ("rounds half away from zero (ONNX and PyTorch round half to even)",
             lambda: requantize(acc, arrays, dtype, rounding=_half_away)[0]),
            ("rounds half up, toward +infinity, as fixed-point requantization adding "
             "2**(shift - 1) before the shift does (ONNX rounds half to even)",
             lambda: requantize(acc, arrays, dtype, rounding=_half_up)[0]),
            ("truncates toward zero instead of rounding to nearest",
             lambda: requantize(acc, arrays, dtype, rounding=np.trunc)[0]),
            ("wraps around instead of saturating to the dtype's range",
             lambda: requantize(acc, arrays, dtype, saturate=False)[0]),
            ("y_zero_point ignored", lambda: requantize(acc, arrays, dtype, y_zero_point=0)[0]),
            ("per-channel weight scales read as one (the first channel's)",
             lambda: requantize(acc, arrays, dtype,
                                weight_scale=np.full_like(arrays["weight_scale"],
                                                          arrays["weight_scale"][0]))[0]),
        ]
        if arrays["bias"] is not None:
            candidates.append(("bias missing",
                               lambda: requantize(acc, arrays, dtype, bias=None)[0]))
    got = actual.astype(np.float64)
    for label, candidate in candidates:
        guess = candidate()
        if guess.shape != got.shape or np.all(np.abs(guess - expected) <= tol):
            continue  # not this layer's mistake, or one that changes nothing here
        if np.all(np.abs(got - guess) <= tol):
            return label
    return _saturated_pairs(arrays, layer, got, expected, tol) if kind == "integer" else ""


def _padded_with_zero(arrays: dict[str, Any], layer: dict[str, Any]) -> np.ndarray:
    """Return the sums with the input padded by the integer 0 (the real -x_zero_point)."""
    geom = conv_geometry(arrays["weight"].shape, arrays["x"].shape[2:], **layer)
    pads = ((0, 0), (0, 0), *geom.padding)
    x = np.pad(arrays["x"].astype(np.int64), pads) - np.int64(arrays["x_zero_point"])
    w = arrays["weight"].astype(np.int64) - np.int64(arrays["weight_zero_point"])
    return conv(x, w, None, **dict(layer, padding=0))


def _half_away(real: np.ndarray) -> np.ndarray:
    return np.sign(real) * np.floor(np.abs(real) + 0.5)


def _half_up(real: np.ndarray) -> np.ndarray:
    return np.floor(real + 0.5)


def _saturated_pairs(arrays: dict[str, Any], layer: dict[str, Any], got: np.ndarray,
                     expected: np.ndarray, tol: np.ndarray) -> str:
    """Name a 16-bit saturation of product pairs when it explains exactly the wrong outputs.

    Every wrong output must be one where two same-sign products of the window
    sum beyond int16, whatever order a kernel pairs them in.
    """
    wrong = np.abs(got - expected) > tol
    if not wrong.any():
        return ""
    if np.all(_largest_pair(arrays, layer)[wrong] > 32767):
        return ("a 16-bit intermediate saturated: every wrong output has two products whose "
                "sum exceeds the int16 range (pairs of uint8 x int8 products saturated as "
                "VPMADDUBSW does: pytorch/pytorch#44939, microsoft/onnxruntime#31573)")
    return ""


def _largest_pair(arrays: dict[str, Any], layer: dict[str, Any]) -> np.ndarray:
    """Per output, the largest magnitude of a sum of two same-sign products of its window."""
    x = arrays["x"].astype(np.int64) - np.int64(arrays["x_zero_point"])
    w = arrays["weight"].astype(np.int64) - np.int64(arrays["weight_zero_point"])
    best = None
    # One tap of one input channel at a time: its products over every output.
    geom = conv_geometry(w.shape, x.shape[2:], **layer)
    out_shape = (x.shape[0], geom.out_channels, *geom.output_size)
    pos1 = np.zeros(out_shape, dtype=np.int64)
    pos2 = np.zeros(out_shape, dtype=np.int64)
    neg1 = np.zeros(out_shape, dtype=np.int64)
    neg2 = np.zeros(out_shape, dtype=np.int64)
    for index in np.ndindex(*w.shape[1:]):
        single = np.zeros_like(w)
        where = (slice(None),) + index
        single[where] = w[where]
        products = conv(x, single, None, **layer)
        pos2 = np.maximum(pos2, np.minimum(pos1, products))
        pos1 = np.maximum(pos1, products)
        neg2 = np.minimum(neg2, np.maximum(neg1, products))
        neg1 = np.minimum(neg1, products)
        best = np.maximum(pos1 + pos2, -(neg1 + neg2))
    return np.zeros(out_shape, dtype=np.int64) if best is None else best
