"""ONNX Runtime behind convop's signatures: one-node ``Conv``/``ConvTranspose`` models.

onnx and onnxruntime stay optional: they are imported when a function here is
called, never when convop is imported.

- ``conv``: an ONNX ``Conv`` node (explicit ``pads``, ``strides``,
  ``dilations``, ``group``) run by ONNX Runtime's CPU provider; padding modes
  other than zeros through a ``Pad`` node before it (``reflect``, ``edge``,
  ``wrap``).
- ``conv_transpose``: a ``ConvTranspose`` node (``pads`` and
  ``output_padding`` as PyTorch's, except that ONNX Runtime refuses an
  ``output_padding`` not below the stride, which PyTorch allows up to the
  dilation: such layers are skipped).
- ``conv_input_grad``, ``conv_weight_grad``: ONNX Runtime does not
  differentiate (inference only); :func:`convop.check_conv` skips them.
- ``conv_integer``: a ``ConvInteger`` node (uint8/int8 input, int8 weight, zero
  points; int32 sums): ``check_conv(kind="integer")``.
- ``conv_quantized``: a ``QLinearConv`` node (scales and zero points, per-channel
  weight scales, int32 bias): ``check_conv(kind="quantized")``.
- :func:`auto_pad_pairs`: what ``auto_pad`` (``NOTSET`` with ``pads``,
  ``VALID``, ``SAME_UPPER``, ``SAME_LOWER``) means as convop's padding pairs.
- ``bridge``: the :class:`convop.bridge.Bridge` behind them.

ONNX Runtime's CPU ``Conv`` has float32 kernels only: float64 layers are skipped
with that reason, so check it with ``dtype="float32"``.

Examples
--------
>>> import pytest
>>> _ = pytest.importorskip("onnxruntime"); _ = pytest.importorskip("onnx")
>>> import convop, convop.onnx
>>> convop.check_conv(convop.onnx.conv, configs="quick", dtype="float32").passed
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._optional import require
from ._validation import as_int_tuple, check_choice
from .adapters import same_padding_pairs
from .bridge import Bridge, Layer, bridge_functions
from .modes import MODES

__all__ = [
    "OnnxRuntimeBridge",
    "auto_pad_pairs",
    "bridge",
    "conv",
    "conv_input_grad",
    "conv_integer",
    "conv_quantized",
    "conv_transpose",
    "conv_weight_grad",
]

#: The ONNX opset of the models built here (Pad's ``wrap`` mode needs 19).
OPSET = 21
AUTO_PADS = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _modules() -> tuple[Any, Any]:
    return require("onnx"), require("onnxruntime")


def auto_pad_pairs(auto_pad: str, input_size: Any, kernel_size: Any, *, stride: Any = 1,
                   dilation: Any = 1, pads: Sequence[int] | None = None
                   ) -> tuple[tuple[int, int], ...]:
    """Return an ONNX ``Conv``'s padding as convop's ``(before, after)`` pairs.

    Parameters
    ----------
    auto_pad : {"NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"}
        ``SAME_UPPER`` puts an odd total's extra pixel after (as TensorFlow's
        ``"SAME"``), ``SAME_LOWER`` before; both depend on the input size and
        the stride.
    input_size, kernel_size : tuple of int
    stride, dilation : int or tuple of int
    pads : sequence of int, optional
        ONNX's ``pads`` (all begins, then all ends), read with ``NOTSET``;
        zeros when absent.

    Returns
    -------
    tuple of (int, int)

    Examples
    --------
    >>> from convop.onnx import auto_pad_pairs
    >>> auto_pad_pairs("SAME_LOWER", (8, 8), (3, 3), stride=2)
    ((1, 0), (1, 0))
    >>> auto_pad_pairs("NOTSET", (8, 8), (3, 3), pads=[1, 0, 2, 1])
    ((1, 2), (0, 1))
    """
    check_choice(auto_pad, "auto_pad", AUTO_PADS)
    ndim = len(kernel_size) if isinstance(kernel_size, (tuple, list)) else 1
    as_int_tuple(kernel_size, "kernel_size", ndim, minimum=1)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return same_padding_pairs(input_size, kernel_size, stride=stride, dilation=dilation,
                                  odd="after" if auto_pad == "SAME_UPPER" else "before")
    if auto_pad == "VALID" or pads is None:
        return ((0, 0),) * ndim
    flat = as_int_tuple(tuple(pads), "pads", 2 * ndim, minimum=0)
    return tuple(zip(flat[:ndim], flat[ndim:]))


def _onnx_pads(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """Return padding pairs as ONNX's ``pads``: every begin, then every end."""
    return [lo for lo, _ in pairs] + [hi for _, hi in pairs]


def _check_dtype(x: np.ndarray) -> None:
    if x.dtype != np.float32:
        raise NotImplementedError(f"ONNX Runtime's CPU Conv has float32 kernels only "
                                  f"(no {x.dtype}); check with dtype='float32'")


class OnnxRuntimeBridge(Bridge):
    """ONNX Runtime (one-node ONNX models, CPU provider) behind convop's signatures."""

    name = "ONNX Runtime"
    dtypes = ("float32",)

    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                layer: Layer) -> np.ndarray:
        """Run a ``Conv`` node (after a ``Pad`` node for reflect, replicate, circular)."""
        _check_dtype(x)
        onnx, _ = _modules()
        helper = onnx.helper
        nodes, initializers = [], []
        source, pairs = "x", layer.padding
        if MODES[layer.padding_mode].folds and any(p for pair in pairs for p in pair):
            # Pad pads every axis, batch and channels (by 0) included.
            pads = _onnx_pads(((0, 0), (0, 0), *pairs))
            initializers.append(onnx.numpy_helper.from_array(np.array(pads, dtype=np.int64),
                                                             "pads"))
            nodes.append(helper.make_node("Pad", ["x", "pads"], ["x_padded"],
                                          mode=MODES[layer.padding_mode].onnx))
            source, pairs = "x_padded", ((0, 0),) * layer.ndim
        nodes.append(helper.make_node(
            "Conv", [source, "w"] + (["b"] if bias is not None else []), ["y"],
            kernel_shape=list(weight.shape[2:]), pads=_onnx_pads(pairs),
            strides=list(layer.stride), dilations=list(layer.dilation), group=layer.groups))
        return self._run(nodes, initializers, x, weight, bias)

    def transpose(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                  layer: Layer) -> np.ndarray:
        """Run a ``ConvTranspose`` node."""
        _check_dtype(x)
        for op, s in zip(layer.output_padding, layer.stride):
            if op >= s:  # PyTorch allows up to max(stride, dilation) - 1
                raise NotImplementedError(
                    f"ONNX Runtime's ConvTranspose needs output_padding < stride; got "
                    f"{layer.output_padding} with stride {layer.stride}")
        onnx, _ = _modules()
        node = onnx.helper.make_node(
            "ConvTranspose", ["x", "w"] + (["b"] if bias is not None else []), ["y"],
            kernel_shape=list(weight.shape[2:]), pads=_onnx_pads(layer.padding),
            strides=list(layer.stride), dilations=list(layer.dilation), group=layer.groups,
            output_padding=list(layer.output_padding))
        return self._run([node], [], x, weight, bias)

    def integer(self, x: np.ndarray, weight: np.ndarray, quantization: dict[str, Any],
                layer: Layer) -> np.ndarray:
        """Run a ``ConvInteger`` node (zero padding only)."""
        self._check_quantized(x, weight, layer)
        onnx, _ = _modules()
        feeds = {"x": x, "w": weight,
                 "x_zero_point": np.asarray(quantization["x_zero_point"], dtype=x.dtype),
                 "w_zero_point": np.asarray(quantization["weight_zero_point"],
                                            dtype=weight.dtype)}
        node = onnx.helper.make_node(
            "ConvInteger", list(feeds), ["y"], kernel_shape=list(weight.shape[2:]),
            pads=_onnx_pads(layer.padding), strides=list(layer.stride),
            dilations=list(layer.dilation), group=layer.groups)
        return self._run([node], [], feeds=feeds, output=np.dtype(np.int32))

    def quantized(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                  quantization: dict[str, Any], layer: Layer) -> np.ndarray:
        """Run a ``QLinearConv`` node (zero padding only; per-channel weight scales)."""
        self._check_quantized(x, weight, layer)
        onnx, _ = _modules()
        q = quantization
        feeds = {"x": x, "x_scale": np.asarray(q["x_scale"], dtype=np.float32),
                 "x_zero_point": np.asarray(q["x_zero_point"], dtype=x.dtype), "w": weight,
                 "w_scale": np.asarray(q["weight_scale"], dtype=np.float32),
                 "w_zero_point": np.asarray(q["weight_zero_point"], dtype=weight.dtype),
                 "y_scale": np.asarray(q["y_scale"], dtype=np.float32),
                 "y_zero_point": np.asarray(q["y_zero_point"], dtype=x.dtype)}
        if bias is not None:
            feeds["b"] = np.asarray(bias, dtype=np.int32)
        node = onnx.helper.make_node(
            "QLinearConv", list(feeds), ["y"], kernel_shape=list(weight.shape[2:]),
            pads=_onnx_pads(layer.padding), strides=list(layer.stride),
            dilations=list(layer.dilation), group=layer.groups)
        return self._run([node], [], feeds=feeds, output=x.dtype)

    @staticmethod
    def _check_quantized(x: np.ndarray, weight: np.ndarray, layer: Layer) -> None:
        if layer.padding_mode != "zeros":
            raise NotImplementedError("ONNX's ConvInteger and QLinearConv pad with the zero "
                                      "point only (padding_mode='zeros')")
        if x.dtype not in (np.uint8, np.int8) or weight.dtype not in (np.uint8, np.int8):
            raise NotImplementedError(f"ONNX's quantized convolutions take uint8/int8 data; "
                                      f"got {x.dtype} and {weight.dtype}")

    def _run(self, nodes: list[Any], initializers: list[Any], x: np.ndarray | None = None,
             weight: np.ndarray | None = None, bias: np.ndarray | None = None, *,
             feeds: dict[str, np.ndarray] | None = None,
             output: np.dtype | None = None) -> np.ndarray:
        onnx, ort = _modules()
        helper = onnx.helper
        if feeds is None:
            assert x is not None and weight is not None
            feeds = {"x": x, "w": weight}
            if bias is not None:
                feeds["b"] = bias
        out = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(output or np.float32))
        graph = helper.make_graph(
            nodes, "convop_check",
            [helper.make_tensor_value_info(
                name, helper.np_dtype_to_tensor_dtype(value.dtype), list(value.shape))
             for name, value in feeds.items()],
            [helper.make_tensor_value_info("y", out, None)], initializer=initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = 10
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        (y,) = session.run(None, feeds)
        return np.asarray(y)


#: The bridge behind ``conv``, ``conv_input_grad``, ``conv_weight_grad`` and ``conv_transpose``.
bridge = OnnxRuntimeBridge()
(conv, conv_input_grad, conv_weight_grad, conv_transpose, conv_integer,
 conv_quantized) = bridge_functions(bridge, __name__)
