"""Hypothesis strategies that build valid convolution layers constructively.

Kernel, dilation, stride and padding are drawn first; the input size is then
derived so that the layer has at least one output. No ``assume`` loops.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st


class Layer(NamedTuple):
    """One convolution layer as the public functions take it."""

    weight_shape: tuple[int, ...]
    input_size: tuple[int, ...]
    stride: Any
    padding: Any
    dilation: Any
    groups: int
    pads: tuple[tuple[int, int], ...]  # the padding as (before, after) pairs, for oracles

    @property
    def ndim(self) -> int:
        return len(self.input_size)

    @property
    def in_channels(self) -> int:
        return self.weight_shape[1] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weight_shape[0]

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.weight_shape[2:]

    def kwargs(self) -> dict[str, Any]:
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }

    def input_shape(self, batch: int) -> tuple[int, ...]:
        return (batch, self.in_channels, *self.input_size)


def _per_axis(draw: Any, values: tuple[int, ...]) -> Any:
    """Spell a per-axis tuple as an int when it allows, sometimes."""
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return values


@st.composite
def layers(
    draw: Any,
    ndims: tuple[int, ...] = (1, 2, 3),
    max_kernel: int = 3,
    max_dilation: int = 3,
    max_stride: int = 3,
    max_pad: int = 3,
    max_extra: int = 4,
    max_groups: int = 3,
    max_group_channels: int = 2,
) -> Layer:
    ndim = draw(st.sampled_from(ndims))
    axis = st.integers
    kernel = tuple(draw(axis(1, max_kernel)) for _ in range(ndim))
    dilation = tuple(draw(axis(1, max_dilation)) for _ in range(ndim))
    form = draw(st.sampled_from(["int", "tuple", "pairs", "valid", "same"]))
    if form == "same":
        stride = (1,) * ndim
    else:
        stride = tuple(draw(axis(1, max_stride)) for _ in range(ndim))
    if form == "int":
        p = draw(axis(0, max_pad))
        pads = ((p, p),) * ndim
        padding: Any = p
    elif form == "tuple":
        ps = tuple(draw(axis(0, max_pad)) for _ in range(ndim))
        pads = tuple((p, p) for p in ps)
        padding = ps
    elif form == "pairs":
        pads = tuple((draw(axis(0, max_pad)), draw(axis(0, max_pad))) for _ in range(ndim))
        padding = pads
    elif form == "valid":
        pads = ((0, 0),) * ndim
        padding = "valid"
    else:
        totals = [d * (k - 1) for k, d in zip(kernel, dilation)]
        pads = tuple((t // 2, t - t // 2) for t in totals)
        padding = "same"
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    input_size = tuple(
        max(1, e - lo - hi) + draw(axis(0, max_extra)) for e, (lo, hi) in zip(extent, pads)
    )
    groups = draw(axis(1, max_groups))
    c_in_g = draw(axis(1, max_group_channels))
    c_out_g = draw(axis(1, max_group_channels))
    return Layer(
        weight_shape=(groups * c_out_g, c_in_g, *kernel),
        input_size=input_size,
        stride=_per_axis(draw, stride),
        padding=padding,
        dilation=_per_axis(draw, dilation),
        groups=groups,
        pads=pads,
    )


def tiny_layers(**kwargs: Any) -> st.SearchStrategy[Layer]:
    """Layers small enough for a pure-Python loop over every entry."""
    defaults = dict(max_kernel=3, max_dilation=2, max_stride=3, max_pad=2, max_extra=2,
                    max_groups=2, max_group_channels=2)
    defaults.update(kwargs)
    return layers(**defaults)


def integer_array(rng: np.random.Generator, shape: tuple[int, ...], low: int = -4,
                  high: int = 5, dtype: Any = np.float64) -> np.ndarray:
    """Small integer values in a float array: sums of products are exact."""
    return rng.integers(low, high, size=shape).astype(dtype)


def seeds() -> st.SearchStrategy[int]:
    return st.integers(0, 2**32 - 1)


def output_size(layer: Layer) -> tuple[int, ...]:
    """Independent of convop: the floor formula of seed 001, axis by axis."""
    out = []
    for n, k, (lo, hi), s, d in zip(
        layer.input_size,
        layer.kernel_size,
        layer.pads,
        _tuple(layer.stride, layer.ndim),
        _tuple(layer.dilation, layer.ndim),
    ):
        out.append(math.floor((n + lo + hi - d * (k - 1) - 1) / s) + 1)
    return tuple(out)


def _tuple(value: Any, ndim: int) -> tuple[int, ...]:
    return (value,) * ndim if isinstance(value, int) else tuple(value)


def stride_of(layer: Layer) -> tuple[int, ...]:
    return _tuple(layer.stride, layer.ndim)


def dilation_of(layer: Layer) -> tuple[int, ...]:
    return _tuple(layer.dilation, layer.ndim)


def valid_modes(layer: Layer) -> list[str]:
    """PyTorch's limits: reflect padding < size, circular padding <= size."""
    modes = ["zeros", "replicate"]
    if all(max(p) < n for p, n in zip(layer.pads, layer.input_size)):
        modes.append("reflect")
    if all(max(p) <= n for p, n in zip(layer.pads, layer.input_size)):
        modes.append("circular")
    return modes


@st.composite
def moded_layers(draw: Any, **kwargs: Any) -> tuple[Layer, str]:
    """A layer and a padding mode PyTorch accepts for it."""
    layer = draw(layers(**kwargs))
    return layer, draw(st.sampled_from(valid_modes(layer)))
