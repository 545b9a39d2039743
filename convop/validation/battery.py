"""The layers every implementation is run through: the standard and quick batteries."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._typing import PaddingMode
from .._validation import (
    check_choice,
)

KINDS = ("forward", "input_grad", "weight_grad", "transpose", "integer", "quantized")
#: Relative tolerance against ``|W| @ |x|`` per dtype (float16: see :func:`tolerance`).
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5, np.dtype(np.float16): 2.0**-10}
#: Unit roundoffs of the storage dtypes held to a float32 accumulation rounded once.
LOW_PRECISION = {"float16": 2.0**-11, "bfloat16": 2.0**-8}
#: The smallest magnitude float16 rounds to infinity (65504 is its largest finite value).
FLOAT16_OVERFLOW = 65520.0
#: Unit roundoffs of float16 and float32.
_U16, _U32 = 2.0**-11, 2.0**-24


def tolerance(dtype: np.dtype, scale: np.ndarray, exact: np.ndarray | None = None,
              terms: np.ndarray | None = None) -> np.ndarray:
    """Return the elementwise tolerance of an output whose ``|W| @ |x|`` is ``scale``.

    float16 and bfloat16 (with the exact result ``exact`` and the number of
    products ``terms`` each output sums; ``u`` their unit roundoff, 2**-11 and
    2**-8): ``u |exact| + terms * u32 * scale``, the rounding of a
    sum accumulated in float32 and rounded once to float16. That is the length
    of the accumulation at float32's precision: an implementation that
    accumulates in float16 (bfloat16) rounds every partial sum, and its error,
    about ``sqrt(terms) * u`` of the output, exceeds it; one that accumulates in
    float32 never does. (Without ``exact`` and ``terms``, float16 falls back to
    the general rule with ``rtol = 2**-10``.)

    Otherwise:
    Two terms. ``rtol * scale``: a direct sum's rounding is bounded by the unit
    roundoff times the sum of the magnitudes of its terms, so an output that is
    structurally zero (``scale`` 0) must be exactly 0 for a direct method. And
    ``rtol * max(scale)`` over the whole output: FFT- and Winograd-based methods
    mix every output through their transforms, and their rounding, about
    ``eps * log2(N)`` of the output's norm, lands everywhere, structural zeros
    included (PyLops' FFT ``Convolve2D``: 6e-16 where the exact value is 0).
    ``rtol`` is 4 500 float64 (84 float32) unit roundoffs, above
    ``eps * log2(N)`` for any size a battery uses, so such methods pass, while
    every deliberate error of the test suite is many orders larger.
    """
    low = LOW_PRECISION.get(np.dtype(dtype).name)
    if low is not None and exact is not None and terms is not None:
        # |fl(s) - y| <= u |s| + |s - y|, |s - y| <= terms u32 scale; s is the float32 sum.
        # And a float32 unit where the output is tiny (float16's subnormals are 2**-24).
        return low * np.abs(exact) + (1 + low) * terms * _U32 * scale + _U32
    rtol = rtol_for(dtype)
    return rtol * (scale + np.max(scale, initial=0.0)) + np.finfo(np.float64).tiny


def rtol_for(dtype: Any) -> float:
    """Return the general rule's relative tolerance of a dtype (bfloat16: 2**-7)."""
    dt = np.dtype(dtype)
    return RTOL[dt] if dt in RTOL else 2 * LOW_PRECISION[dt.name]


def checkable_float(dtype: np.dtype) -> bool:
    """Return whether a check runs in ``dtype``: float64, float32, float16 or bfloat16."""
    return dtype in RTOL or dtype.name == "bfloat16"


class LayerConfig(NamedTuple):
    """One layer of a battery.

    For ``kind="transpose"`` the weight shape is PyTorch's transposed layout
    ``(C_in, C_out // groups, *kernel)``. ``dtype=None`` uses the check's dtype.
    ``layout`` is how the data arrays (input, output gradient) are laid out in
    memory: ``"contiguous"``, ``"channels_last"`` (the same values, channels
    fastest) or ``"strided"`` (a view with a step of 2 on the last axis).
    ``scale`` multiplies the random data, weights and bias (standard normal):
    100 takes float16 outputs and partial sums past its largest value, 65504.

    Examples
    --------
    >>> from convop import LayerConfig, check_conv, conv
    >>> mine = [LayerConfig("5x5 stride 2", (8, 4, 5, 5), (17, 17), stride=2, padding=2)]
    >>> check_conv(conv, configs=mine).passed
    True
    """

    name: str
    weight_shape: tuple[int, ...]
    input_size: tuple[int, ...]
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    padding_mode: PaddingMode = "zeros"
    output_padding: Any = 0
    batch: int = 2
    bias: bool = True
    dtype: str | None = None
    layout: str = "contiguous"
    scale: float = 1.0


_STANDARD = [
    LayerConfig("3x3 pad 1", (4, 3, 3, 3), (7, 8), padding=1),
    LayerConfig("1x1 kernel", (5, 3, 1, 1), (6, 5)),
    LayerConfig("kernel = input", (2, 3, 5, 4), (5, 4)),
    LayerConfig("kernel = padded input", (2, 2, 5, 6), (3, 4), padding=1),
    LayerConfig("stride 2", (4, 3, 3, 3), (9, 8), stride=2, padding=1),
    LayerConfig("stride > kernel", (3, 2, 2, 2), (10, 9), stride=3),
    LayerConfig("stride > input", (2, 2, 2, 2), (4, 4), stride=5),
    LayerConfig("dilation 2 + padding 2", (3, 2, 3, 3), (8, 9), dilation=2, padding=2),
    LayerConfig("dilation 3", (2, 2, 3, 2), (9, 8), dilation=3),
    LayerConfig("asymmetric padding", (3, 2, 3, 3), (6, 7), padding=((1, 2), (0, 1))),
    LayerConfig("same, even kernel", (3, 2, 4, 4), (7, 6), padding="same"),
    LayerConfig("same, dilation 2", (2, 3, 3, 3), (8, 8), padding="same", dilation=2),
    LayerConfig("depthwise", (6, 1, 3, 3), (7, 7), padding=1, groups=6),
    LayerConfig("groups 2", (4, 2, 3, 3), (6, 6), padding=1, groups=2),
    LayerConfig("non-square 1x5", (3, 2, 1, 5), (6, 9), padding=(0, 2)),
    LayerConfig("non-square 3x1 stride (2,1)", (3, 2, 3, 1), (9, 5), stride=(2, 1)),
    LayerConfig("single pixel", (3, 2, 1, 1), (1, 1)),
    LayerConfig("single pixel, padding 1", (2, 2, 3, 3), (1, 1), padding=1),
    LayerConfig("zero batch", (3, 2, 3, 3), (5, 5), padding=1, batch=0),
    LayerConfig("batch 3", (3, 2, 3, 3), (5, 6), padding=1, batch=3),
    LayerConfig("reflect", (3, 2, 3, 3), (6, 7), padding=1, padding_mode="reflect"),
    LayerConfig("replicate", (3, 2, 3, 3), (6, 7), padding=2, padding_mode="replicate"),
    LayerConfig("circular", (3, 2, 3, 3), (6, 7), padding=1, padding_mode="circular"),
    LayerConfig("reflect asymmetric", (2, 2, 3, 2), (5, 6), padding=((2, 1), (0, 1)),
                padding_mode="reflect"),
    LayerConfig("circular 7x7 on 3x3", (2, 2, 7, 7), (3, 3), padding=3, padding_mode="circular"),
    LayerConfig("1-D", (4, 3, 3), (11,), padding=1),
    LayerConfig("1-D stride 2 dilation 2", (3, 2, 3), (15,), stride=2, dilation=2, padding=2),
    LayerConfig("1-D reflect", (2, 2, 4), (9,), padding=((2, 1),), padding_mode="reflect"),
    LayerConfig("3-D", (3, 2, 3, 3, 3), (5, 4, 6), padding=1),
    LayerConfig("3-D stride, asymmetric", (2, 2, 2, 3, 2), (6, 5, 4), stride=(2, 1, 2),
                padding=((1, 0), (1, 1), (0, 1))),
    LayerConfig("3-D circular", (2, 2, 3, 3, 3), (4, 4, 4), padding=1, padding_mode="circular"),
    LayerConfig("float32", (4, 3, 3, 3), (7, 8), padding=1, dtype="float32"),
    LayerConfig("float32 groups", (4, 2, 3, 3), (6, 6), padding=1, groups=2, dtype="float32"),
    LayerConfig("no bias", (3, 3, 3, 3), (6, 6), padding=1, bias=False),
    LayerConfig("16 -> 16", (16, 16, 3, 3), (8, 8), padding=1),
    LayerConfig("3 -> 8 rectangular", (8, 3, 3, 3), (5, 9), padding=1),
    LayerConfig("stride 2 even input", (3, 3, 3, 3), (8, 8), stride=2, padding=1),
    LayerConfig("dilation + replicate", (2, 2, 3, 3), (7, 7), dilation=2, padding=2,
                padding_mode="replicate"),
    LayerConfig("grouped 1x1", (6, 2, 1, 1), (4, 5), groups=3),
    LayerConfig("channels-last input", (4, 3, 3, 3), (6, 7), padding=1, layout="channels_last"),
    LayerConfig("non-contiguous input", (3, 2, 3, 3), (5, 6), stride=2, padding=1,
                layout="strided"),
    # Layers real frameworks got wrong: circular padding with one side 0 (pytorch#24504)
    # and on a non-square layer, where the axes can be mixed up (#29712, #37844); a
    # depthwise layer with stride and dilation (tensorflow#27667); a 3-D grouped layer
    # strided on two axes (pytorch#68868).
    LayerConfig("circular, one side 0", (3, 2, 3, 3), (6, 7), padding=((1, 0), (0, 1)),
                padding_mode="circular"),
    LayerConfig("circular, one axis", (2, 2, 3, 1), (5, 7), padding=((1, 1), (0, 0)),
                padding_mode="circular"),
    LayerConfig("depthwise stride 2 dilation 2", (4, 1, 3, 3), (9, 10), stride=2,
                dilation=2, padding=2, groups=4),
    LayerConfig("3-D groups 3 stride (4, 4, 1)", (6, 2, 3, 3, 3), (9, 9, 4),
                stride=(4, 4, 1), padding=1, groups=3),
    LayerConfig("5x5 stride 2 pad 2", (3, 2, 5, 5), (9, 10), stride=2, padding=2),
    # Every axis its own stride, dilation and padding: an implementation that applies
    # axis 0's value to every axis passes all of the above.
    LayerConfig("anisotropic stride, dilation, padding", (3, 2, 3, 3), (11, 10),
                stride=(1, 2), dilation=(2, 1), padding=((2, 1), (0, 2))),
    LayerConfig("anisotropic dilation (1, 3)", (2, 2, 3, 3), (9, 11), dilation=(1, 3),
                padding=(1, 3)),
    LayerConfig("stride 3 not dividing H + 2p - k", (3, 2, 3, 3), (11, 12), stride=3,
                padding=1),
    # Stride and dilation both above 1 on the same axes: tf.nn.convolution refuses the
    # combination; kernels that accept it must still index the dilated taps right.
    LayerConfig("stride 2 + dilation 2", (3, 2, 3, 3), (11, 10), stride=2, dilation=2,
                padding=1),
    LayerConfig("3-D anisotropic", (2, 2, 2, 3, 2), (6, 7, 5), stride=(1, 2, 1),
                dilation=(2, 1, 2), padding=((1, 0), (0, 1), (1, 1))),
    # Values of 100: products of 1e4, sums of 36 of them. In float16 about a third of the
    # outputs overflow to inf, which is right; a float16 accumulator also overflows where
    # the output fits (pytorch/pytorch#44109, #153700).
    LayerConfig("large values (float16 overflow)", (4, 4, 3, 3), (6, 6), padding=1,
                scale=100.0),
]

_QUICK_NAMES = ("3x3 pad 1", "stride 2", "asymmetric padding", "groups 2", "reflect", "1-D",
                "3-D", "float32")

# Transposed convolutions: PyTorch's weight layout (C_in, C_out // groups, *kernel).
_TRANSPOSE = [
    LayerConfig("3x3", (3, 4, 3, 3), (5, 6)),
    LayerConfig("3x3 pad 1", (3, 4, 3, 3), (5, 6), padding=1),
    LayerConfig("stride 2 output_padding 1", (3, 2, 3, 3), (4, 5), stride=2, padding=1,
                output_padding=1),
    LayerConfig("stride 2 output_padding 0", (3, 2, 3, 3), (4, 5), stride=2, padding=1),
    LayerConfig("stride 3 output_padding 2", (2, 3, 2, 2), (3, 4), stride=3, output_padding=2),
    LayerConfig("even kernel stride 2", (2, 2, 4, 4), (4, 4), stride=2, padding=1),
    LayerConfig("dilation 2 output_padding 1", (2, 3, 3, 3), (4, 4), dilation=2,
                output_padding=1),
    LayerConfig("asymmetric padding", (2, 3, 3, 3), (5, 5), stride=2,
                padding=((1, 0), (0, 2)), output_padding=(1, 0)),
    LayerConfig("groups 2", (4, 2, 3, 3), (5, 5), stride=2, padding=1, groups=2),
    LayerConfig("depthwise", (4, 1, 3, 3), (5, 5), padding=1, groups=4),
    LayerConfig("1x1 stride 2", (3, 2, 1, 1), (4, 4), stride=2, output_padding=1),
    LayerConfig("non-square", (2, 3, 1, 3), (4, 5), stride=(1, 2), padding=(0, 1),
                output_padding=(0, 1)),
    LayerConfig("single pixel", (2, 3, 3, 3), (1, 1)),
    LayerConfig("zero batch", (2, 3, 3, 3), (4, 4), stride=2, batch=0),
    LayerConfig("batch 3", (2, 3, 3, 3), (4, 5), stride=2, padding=1, output_padding=1,
                batch=3),
    LayerConfig("no bias", (3, 3, 3, 3), (4, 4), stride=2, padding=1, bias=False),
    LayerConfig("1-D", (3, 2, 4), (7,), stride=2, padding=1, output_padding=1),
    LayerConfig("3-D", (2, 2, 3, 3, 3), (3, 4, 3), stride=2, padding=1, output_padding=1),
    LayerConfig("float32", (3, 4, 3, 3), (5, 6), stride=2, padding=1, dtype="float32"),
    LayerConfig("stride 3 output_padding (1, 2)", (2, 3, 3, 3), (4, 5), stride=3, padding=1,
                output_padding=(1, 2)),
    LayerConfig("anisotropic stride, dilation", (2, 3, 3, 2), (4, 5), stride=(2, 3),
                dilation=(2, 1), padding=(1, 0), output_padding=(1, 2)),
]


# Quantized layers (zero padding: ONNX's ConvInteger and QLinearConv pad with the zero
# point, the real value 0). Deep windows (64 and 144 products) make 16-bit pairs overflow.
_QUANTIZED = [
    LayerConfig("3x3 pad 1", (4, 3, 3, 3), (7, 8), padding=1),
    LayerConfig("1x1 kernel", (5, 3, 1, 1), (6, 5)),
    LayerConfig("stride 2", (4, 3, 3, 3), (9, 8), stride=2, padding=1),
    LayerConfig("dilation 2 + padding 2", (3, 2, 3, 3), (8, 9), dilation=2, padding=2),
    LayerConfig("asymmetric padding", (3, 2, 3, 3), (6, 7), padding=((1, 2), (0, 1))),
    LayerConfig("groups 2", (4, 2, 3, 3), (6, 6), padding=1, groups=2),
    LayerConfig("depthwise", (6, 1, 3, 3), (7, 7), padding=1, groups=6),
    LayerConfig("non-square 1x5", (3, 2, 1, 5), (6, 9), padding=(0, 2)),
    LayerConfig("1-D", (4, 3, 3), (11,), padding=1),
    LayerConfig("3-D", (3, 2, 3, 3, 3), (5, 4, 6), padding=1),
    LayerConfig("batch 3", (3, 2, 3, 3), (5, 6), padding=1, batch=3),
    LayerConfig("no bias", (3, 3, 3, 3), (6, 6), padding=1, bias=False),
    LayerConfig("deep 1x1: 64 -> 8", (8, 64, 1, 1), (5, 5)),
    LayerConfig("16 -> 16", (16, 16, 3, 3), (8, 8), padding=1),
]


def standard_configs(kind: str = "forward", which: str = "standard") -> list[LayerConfig]:
    """Return the built-in battery of layers for ``kind`` (``"standard"`` or ``"quick"``).

    Examples
    --------
    >>> from convop import standard_configs
    >>> len(standard_configs("forward")) >= 40, len(standard_configs("forward", "quick"))
    (True, 8)
    """
    check_choice(kind, "kind", KINDS)
    return battery_configs(kind, check_choice(which, "which", ("standard", "quick")))


def battery_configs(kind: str, which: str) -> list[LayerConfig]:
    """Return the battery ``which`` (standard or quick) for one kind, as a fresh list."""
    if kind == "transpose":
        return list(_TRANSPOSE if which == "standard" else _TRANSPOSE[:6])
    if kind in ("integer", "quantized"):
        return list(_QUANTIZED if which == "standard" else _QUANTIZED[:6])
    if which == "quick":
        return [c for c in _STANDARD if c.name in _QUICK_NAMES]
    return list(_STANDARD)
