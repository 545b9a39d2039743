"""JAX behind convop's signatures: ``jax.lax`` convolutions and ``jax.vjp``, checked exactly.

JAX stays optional: it is imported when a function here is called, never when
convop is imported.

- ``conv``: :func:`jax.lax.conv_general_dilated` (channels first, explicit
  ``(before, after)`` padding, ``feature_group_count``); padding modes other than
  zeros through :func:`jax.numpy.pad`.
- ``conv_input_grad``, ``conv_weight_grad``: ``jax.vjp`` of that forward pass.
- ``conv_transpose``: :func:`jax.lax.conv_transpose` with
  ``transpose_kernel=True``, PyTorch's transposed convolution. JAX's default,
  ``transpose_kernel=False``, correlates with the kernel as given, which is
  *not* PyTorch's: :func:`convop.check_conv` names that cause. ``conv_transpose``
  has no groups argument, so grouped layers are skipped.
- ``bridge``: the :class:`convop.bridge.AutodiffBridge` behind them.

float64 runs inside ``jax.enable_x64(True)``: without it JAX silently computes
float64 input in float32, which :func:`convop.check_conv` reports as precision
lost.

Examples
--------
>>> import pytest
>>> _ = pytest.importorskip("jax")
>>> import convop, convop.jax
>>> convop.check_conv(convop.jax.conv_input_grad, kind="input_grad", configs="quick").passed
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._optional import require
from .bridge import AutodiffBridge, Layer, bridge_functions
from .modes import MODES

__all__ = [
    "JaxBridge",
    "bridge",
    "conv",
    "conv_input_grad",
    "conv_transpose",
    "conv_weight_grad",
]



def _jax() -> Any:
    return require("jax")


def dimension_numbers(ndim: int, transposed_weight: bool = False) -> tuple[str, str, str]:
    """Return ``jax.lax`` dimension numbers for channels-first data and convop's weight layout.

    Parameters
    ----------
    ndim : int
        Spatial axes (1 to 3).
    transposed_weight : bool
        The weight is PyTorch's transposed layout ``(C_in, C_out/G, *k)`` as
        ``jax.lax.conv_transpose`` with its default ``transpose_kernel=False``
        reads it; with ``transpose_kernel=True`` pass False (JAX then reads the
        forward convolution's layout, which *is* PyTorch's transposed weight).

    Examples
    --------
    >>> from convop.jax import dimension_numbers
    >>> dimension_numbers(2), dimension_numbers(1, transposed_weight=True)
    (('NCHW', 'OIHW', 'NCHW'), ('NCW', 'IOW', 'NCW'))
    """
    spatial = "DHW"[3 - ndim:]
    weight = ("IO" if transposed_weight else "OI") + spatial
    return f"NC{spatial}", weight, f"NC{spatial}"


def conv_transpose_padding(layer: Layer, kernel_size: tuple[int, ...]) -> list[tuple[int, int]]:
    """Return ``jax.lax.conv_transpose``'s padding for PyTorch's transposed layer.

    JAX pads the stride-dilated input; PyTorch crops ``padding`` from the full
    result and adds ``output_padding`` after it, so each axis gets
    ``(d (k - 1) - before, d (k - 1) - after + output_padding)`` (negative values
    crop).

    Examples
    --------
    >>> from convop.bridge import Layer
    >>> from convop.jax import conv_transpose_padding
    >>> conv_transpose_padding(Layer((2, 2), ((1, 1), (0, 0)), (1, 1), 1, "zeros", (1, 0)), (3, 3))
    [(1, 2), (2, 2)]
    """
    return [(d * (k - 1) - lo, d * (k - 1) - hi + op) for (lo, hi), d, k, op in zip(
        layer.padding, layer.dilation, kernel_size, layer.output_padding)]


class JaxBridge(AutodiffBridge):
    """JAX (``jax.lax``, ``jax.vjp``) behind convop's signatures."""

    name = "JAX"

    def run(self, function: Callable[[], np.ndarray], dtype: np.dtype) -> np.ndarray:
        """Run in x64 mode for float64, so that JAX keeps the precision asked for."""
        with _jax().enable_x64(np.dtype(dtype) == np.float64):
            return function()

    def tensor(self, array: np.ndarray) -> Any:
        """Return a jax array of the same dtype."""
        return _jax().numpy.asarray(array)

    def numpy(self, tensor: Any) -> np.ndarray:
        """Return a numpy copy."""
        return np.asarray(tensor)

    def pad(self, x: Any, layer: Layer) -> Any:
        """Pad with ``jnp.pad`` (reflect, edge, wrap)."""
        widths = [(0, 0), (0, 0), *layer.padding]
        return _jax().numpy.pad(x, widths, mode=MODES[layer.padding_mode].jax)

    def correlate(self, x: Any, weight: Any, bias: Any, layer: Layer) -> Any:
        """Run ``lax.conv_general_dilated`` with explicit padding pairs."""
        lax = _jax().lax
        y = lax.conv_general_dilated(
            x, weight, window_strides=layer.stride, padding=list(layer.padding),
            rhs_dilation=layer.dilation, dimension_numbers=dimension_numbers(layer.ndim),
            feature_group_count=layer.groups, precision=lax.Precision.HIGHEST)
        return y if bias is None else y + bias.reshape((1, -1) + (1,) * layer.ndim)

    def correlate_transpose(self, x: Any, weight: Any, bias: Any, layer: Layer) -> Any:
        """Run ``lax.conv_transpose(..., transpose_kernel=True)``."""
        if layer.groups != 1:
            raise NotImplementedError("jax.lax.conv_transpose has no feature_group_count: "
                                      "JAX cannot express a grouped transposed convolution")
        lax = _jax().lax
        y = lax.conv_transpose(
            x, weight, layer.stride, conv_transpose_padding(layer, tuple(weight.shape[2:])),
            rhs_dilation=layer.dilation, dimension_numbers=dimension_numbers(layer.ndim),
            transpose_kernel=True, precision=lax.Precision.HIGHEST)
        return y if bias is None else y + bias.reshape((1, -1) + (1,) * layer.ndim)

    def vjp(self, function: Callable[[Any], Any], primal: Any, cotangent: Any) -> Any:
        """Differentiate through ``jax.vjp``."""
        _, pullback = _jax().vjp(function, primal)
        (grad,) = pullback(cotangent)
        return grad


#: The bridge behind ``conv``, ``conv_input_grad``, ``conv_weight_grad`` and ``conv_transpose``.
bridge = JaxBridge()
conv, conv_input_grad, conv_weight_grad, conv_transpose = bridge_functions(bridge, __name__)[:4]
