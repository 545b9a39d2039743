"""TensorFlow behind convop's signatures: ``tf.nn`` convolutions and ``tf.GradientTape``.

TensorFlow stays optional: it is imported when a function here is called, never
when convop is imported.

- ``conv``: ``tf.nn.conv2d`` with explicit paddings for 2-D layers, ``tf.pad`` and
  ``tf.nn.convolution`` for 1-D and 3-D; channels-last (NHWC data, HWIO
  weights) as TensorFlow's CPU kernels need, moved from and to convop's
  channels-first layout inside the call. Reflect padding through ``tf.pad``;
  ``tf.pad`` has no replicate or circular mode, so those layers are skipped.
- ``conv_input_grad``, ``conv_weight_grad``: ``tf.GradientTape`` of that
  forward pass.
- ``conv_transpose``: ``tf.nn.conv_transpose`` (VALID, the padding cropped
  after, as PyTorch defines it); it has no groups, so grouped layers are
  skipped.
- ``bridge``: the :class:`convop.bridge.AutodiffBridge` behind them.

What TensorFlow's CPU kernels refuse (no gradient of a dilated convolution,
no dilated transposed convolution) is a skip with TensorFlow's own message.

Examples
--------
>>> import pytest
>>> _ = pytest.importorskip("tensorflow")
>>> import convop, convop.tensorflow
>>> convop.check_conv(convop.tensorflow.conv, configs="quick").passed
True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._optional import require
from .bridge import AutodiffBridge, Layer, bridge_functions

__all__ = [
    "TensorFlowBridge",
    "bridge",
    "conv",
    "conv_input_grad",
    "conv_transpose",
    "conv_weight_grad",
]

#: Words in TensorFlow's errors for a configuration its CPU kernels do not implement.
_REFUSALS = ("do not yet support", "currently only supports", "not supported",
             "is not implemented", "could not create a primitive descriptor")


def _tf() -> Any:
    return require("tensorflow")


def _last(ndim: int) -> list[int]:
    """Permutation channels-first -> channels-last."""
    return [0, *range(2, ndim + 2), 1]


def _first(ndim: int) -> list[int]:
    """Permutation channels-last -> channels-first."""
    return [0, ndim + 1, *range(1, ndim + 1)]


def _op_message(message: str) -> str:
    """TensorFlow's message without its ``{{function_node ...}}`` prefix."""
    return message.split("}}", 1)[-1].strip()


class TensorFlowBridge(AutodiffBridge):
    """TensorFlow (``tf.nn``, ``tf.GradientTape``) behind convop's signatures."""

    name = "TensorFlow"

    def run(self, function: Callable[[], np.ndarray], dtype: np.dtype) -> np.ndarray:
        """Run eagerly; a kernel TensorFlow's CPU build lacks becomes NotImplementedError."""
        tf = _tf()
        try:
            return function()
        except tf.errors.UnimplementedError as err:
            raise NotImplementedError(f"TensorFlow: {_op_message(err.message)}") from err
        except (tf.errors.InvalidArgumentError, tf.errors.AbortedError) as err:
            if any(words in err.message for words in _REFUSALS):
                raise NotImplementedError(f"TensorFlow: {_op_message(err.message)}") from err
            raise

    def tensor(self, array: np.ndarray) -> Any:
        """Return a tf.Tensor of the same dtype."""
        return _tf().convert_to_tensor(array)

    def numpy(self, tensor: Any) -> np.ndarray:
        """Return the tensor's numpy value."""
        return np.asarray(tensor.numpy())

    def pad(self, x: Any, layer: Layer) -> Any:
        """Pad with ``tf.pad`` (REFLECT only: TensorFlow has no replicate or circular mode)."""
        if layer.padding_mode != "reflect":
            raise NotImplementedError(f"tf.pad has no {layer.padding_mode!r} mode (CONSTANT, "
                                      f"REFLECT and SYMMETRIC only)")
        return _tf().pad(x, [[0, 0], [0, 0], *map(list, layer.padding)], mode="REFLECT")

    def correlate(self, x: Any, weight: Any, bias: Any, layer: Layer) -> Any:
        """Run ``tf.nn.conv2d`` (explicit paddings) or ``tf.pad`` + ``tf.nn.convolution``."""
        tf, n = _tf(), layer.ndim
        x = tf.transpose(x, _last(n))
        w = tf.transpose(weight, [*range(2, n + 2), 1, 0])  # OI* -> *IO
        padding = [[0, 0], *map(list, layer.padding), [0, 0]]
        if n == 2:
            y = tf.nn.conv2d(x, w, strides=list(layer.stride), padding=padding,
                             dilations=list(layer.dilation))
        else:  # conv1d and conv3d take no explicit paddings
            if any(p for pair in layer.padding for p in pair):
                x = tf.pad(x, padding)
            if n == 1:
                y = tf.nn.conv1d(x, w, stride=layer.stride[0], padding="VALID",
                                 dilations=layer.dilation[0])
            else:  # data_format given: its eager gradient reads the attribute
                y = tf.nn.conv3d(x, w, strides=[1, *layer.stride, 1], padding="VALID",
                                 dilations=[1, *layer.dilation, 1], data_format="NDHWC")
        if bias is not None:
            y = tf.nn.bias_add(y, bias)
        return tf.transpose(y, _first(n))

    def correlate_transpose(self, x: Any, weight: Any, bias: Any, layer: Layer) -> Any:
        """Run ``tf.nn.conv_transpose`` to the full size, then crop PyTorch's padding."""
        if layer.groups != 1:
            raise NotImplementedError("tf.nn.conv_transpose has no groups: TensorFlow cannot "
                                      "express a grouped transposed convolution")
        tf, n = _tf(), layer.ndim
        kernel = tuple(weight.shape[2:])
        full = [(size - 1) * s + d * (k - 1) + 1 + op for size, s, d, k, op in zip(
            x.shape[2:], layer.stride, layer.dilation, kernel, layer.output_padding)]
        c_out = int(weight.shape[1])
        xl = tf.transpose(x, _last(n))
        w = tf.transpose(weight, [*range(2, n + 2), 1, 0])  # IO* -> *OI (TensorFlow's order)
        y = tf.nn.conv_transpose(xl, w, [int(x.shape[0]), *full, c_out],
                                 strides=list(layer.stride), padding="VALID",
                                 dilations=list(layer.dilation))
        y = y[(slice(None),) + tuple(slice(lo, f - hi) for (lo, hi), f in zip(
            layer.padding, full))]
        if bias is not None:
            y = tf.nn.bias_add(y, bias)
        return tf.transpose(y, _first(n))

    def vjp(self, function: Callable[[Any], Any], primal: Any, cotangent: Any) -> Any:
        """Differentiate through ``tf.GradientTape``."""
        tf = _tf()
        with tf.GradientTape() as tape:
            tape.watch(primal)
            out = function(primal)
        grad = tape.gradient(out, primal, output_gradients=cotangent)
        return tf.zeros_like(primal) if grad is None else grad


#: The bridge behind ``conv``, ``conv_input_grad``, ``conv_weight_grad`` and ``conv_transpose``.
bridge = TensorFlowBridge()
conv, conv_input_grad, conv_weight_grad, conv_transpose = bridge_functions(bridge, __name__)[:4]
