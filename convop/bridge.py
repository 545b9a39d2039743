"""The protocol of framework bridges: a framework's convolution behind convop's signatures.

A bridge (``convop.torch``, ``convop.jax``, ``convop.tensorflow``, ``convop.onnx``)
is one small module holding one :class:`Bridge` subclass. :func:`bridge_functions`
turns it into the four callables :func:`convop.check_conv` runs, with the
signatures of :func:`convop.conv`, :func:`convop.conv_input_grad`,
:func:`convop.conv_weight_grad` and :func:`convop.conv_transpose` (numpy in,
numpy out, in the dtype of the inputs).

A bridge gets every layer as a :class:`Layer`: explicit ``(before, after)``
padding pairs, per-axis stride and dilation, already validated. It implements

- :meth:`Bridge.forward` and :meth:`Bridge.transpose`, and
- :meth:`Bridge.input_grad` and :meth:`Bridge.weight_grad` when the framework
  differentiates.

A framework with eager tensors and reverse-mode autodiff subclasses
:class:`AutodiffBridge` instead and implements six tensor primitives (convert,
pad, correlate, transposed correlate, vector-Jacobian product); both gradients
then come from the framework's own autodiff of its own forward pass.

Whatever a framework cannot express (a padding mode, groups in a transposed
convolution, float64) raises ``NotImplementedError`` with the reason:
:func:`convop.check_conv` lists that configuration as skipped.

Examples
--------
A fifth framework is one subclass; here numpy's own reference stands in:

>>> import numpy as np
>>> import convop
>>> from convop.bridge import Bridge, bridge_functions
>>> class Reference(Bridge):
...     name = "convop itself"
...     def forward(self, x, weight, bias, layer):
...         return convop.conv(x, weight, bias, stride=layer.stride, padding=layer.padding,
...                            dilation=layer.dilation, groups=layer.groups,
...                            padding_mode=layer.padding_mode)
>>> fns = bridge_functions(Reference(), "example")
>>> convop.check_conv(fns.conv, configs="quick").passed
True
>>> len(convop.check_conv(fns.conv_transpose, kind="transpose", configs="quick").skips)
6
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ._validation import as_int, as_int_tuple
from .geometry import conv_geometry
from .modes import MODES
from .transposed import transposed_layer
from .validation.battery import KINDS

__all__ = ["BRIDGES", "AutodiffBridge", "Bridge", "BridgeFunctions", "Layer",
           "bridge_functions"]

#: The framework bridges ``convop check NAME`` runs: the module holding the bridge
#: (its ``bridge`` attribute) and the modules it needs installed. A new framework is
#: one module and one row here.
BRIDGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "torch": ("convop.torch", ("torch",)),
    "jax": ("convop.jax", ("jax",)),
    "tensorflow": ("convop.tensorflow", ("tensorflow",)),
    "onnxruntime": ("convop.onnx", ("onnx", "onnxruntime")),
}


class Layer(NamedTuple):
    """A layer as a bridge receives it: every argument explicit, one entry per spatial axis.

    For a transposed convolution ``padding`` is PyTorch's (what is cropped from
    the full output) and ``padding_mode`` is ``"zeros"``.
    """

    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int
    padding_mode: str = "zeros"
    output_padding: tuple[int, ...] = ()

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.stride)


def _conv_layer(weight_shape: tuple[int, ...], input_size: tuple[int, ...], stride: Any,
                padding: Any, dilation: Any, groups: Any, padding_mode: Any) -> Layer:
    geom = conv_geometry(weight_shape, input_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, padding_mode=padding_mode)
    return Layer(geom.stride, geom.padding, geom.dilation, geom.groups, geom.padding_mode,
                 (0,) * len(geom.stride))


def _transpose_layer(weight_shape: tuple[int, ...], input_size: tuple[int, ...], stride: Any,
                     padding: Any, output_padding: Any, dilation: Any, groups: Any) -> Layer:
    # Validated as convop.conv_transpose validates; its convolution holds the padding pairs.
    geom = transposed_layer(weight_shape, input_size, stride, padding, output_padding, dilation,
                       groups).conv
    return Layer(geom.stride, geom.padding, geom.dilation, geom.groups, "zeros",
                 as_int_tuple(output_padding, "output_padding", len(geom.stride), minimum=0))


class Bridge:
    """A framework's convolution, numpy in and numpy out, on layers given as :class:`Layer`.

    Subclasses override what their framework computes; the rest raises
    ``NotImplementedError``, which :func:`convop.check_conv` reports as a skip.
    Inputs arrive as numpy arrays in float32 or float64; results must come back
    in the same dtype (a bridge must not hide its framework's promotions).
    """

    #: The framework's name, as reports and skip reasons print it.
    name = "framework"
    #: The dtypes the framework computes in, the one to check by default first.
    dtypes: tuple[str, ...] = ("float64", "float32")

    def kinds(self) -> tuple[str, ...]:
        """Return the ``check_conv`` kinds this bridge implements (the methods it overrides)."""
        # Each kind is the name of its method.
        return tuple(kind for kind in KINDS
                     if getattr(type(self), kind) is not getattr(Bridge, kind))

    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                layer: Layer) -> np.ndarray:
        """Return the cross-correlation ``(N, C_in, *size) -> (N, C_out, *out)``.

        The weight is ``(C_out, C_in/G, *k)``.
        """
        raise NotImplementedError(f"{self.name} has no forward convolution in this bridge")

    def transpose(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                  layer: Layer) -> np.ndarray:
        """Return PyTorch's transposed convolution, weight ``(C_in, C_out/G, *k)``."""
        raise NotImplementedError(f"{self.name} has no transposed convolution in this bridge")

    def input_grad(self, grad_output: np.ndarray, weight: np.ndarray,
                   input_size: tuple[int, ...], layer: Layer) -> np.ndarray:
        """Return the forward pass's gradient with respect to its input."""
        raise NotImplementedError(f"{self.name} computes no gradients in this bridge")

    def weight_grad(self, x: np.ndarray, grad_output: np.ndarray,
                    kernel_size: tuple[int, ...], layer: Layer) -> np.ndarray:
        """Return the forward pass's gradient with respect to its weight."""
        raise NotImplementedError(f"{self.name} computes no gradients in this bridge")

    def integer(self, x: np.ndarray, weight: np.ndarray, quantization: dict[str, Any],
                layer: Layer) -> np.ndarray:
        """Return ONNX ``ConvInteger``'s int32 sums (``x_zero_point``, ``weight_zero_point``)."""
        raise NotImplementedError(f"{self.name} has no integer convolution in this bridge")

    def quantized(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                  quantization: dict[str, Any], layer: Layer) -> np.ndarray:
        """Return ``QLinearConv``'s requantized output (scales and zero points by name)."""
        raise NotImplementedError(f"{self.name} has no quantized convolution in this bridge")


class AutodiffBridge(Bridge):
    """A framework with eager tensors and reverse-mode autodiff.

    Subclasses implement the primitives below on channels-first tensors (a
    channels-last framework moves axes inside them); the gradients are the
    framework's vector-Jacobian products of its own forward pass.
    """

    def tensor(self, array: np.ndarray) -> Any:
        """Return a numpy array as a framework tensor of the same dtype."""
        raise NotImplementedError

    def numpy(self, tensor: Any) -> np.ndarray:
        """Return a framework tensor as a numpy array of the same dtype."""
        raise NotImplementedError

    def pad(self, x: Any, layer: Layer) -> Any:
        """``x`` padded by ``layer.padding`` in ``layer.padding_mode`` (not ``"zeros"``)."""
        raise NotImplementedError(f"{self.name} has no {layer.padding_mode!r} padding")

    def correlate(self, x: Any, weight: Any, bias: Any, layer: Layer) -> Any:
        """Return the framework's convolution with zero padding ``layer.padding``."""
        raise NotImplementedError

    def correlate_transpose(self, x: Any, weight: Any, bias: Any, layer: Layer) -> Any:
        """Return the framework's transposed convolution."""
        raise NotImplementedError(f"{self.name} has no transposed convolution in this bridge")

    def vjp(self, function: Callable[[Any], Any], primal: Any, cotangent: Any) -> Any:
        """Return the gradient of ``<function(p), cotangent>`` in ``p`` at ``primal``."""
        raise NotImplementedError

    def run(self, function: Callable[[], np.ndarray], dtype: np.dtype) -> np.ndarray:
        """Run ``function`` in the framework's context for ``dtype`` (e.g. JAX's x64 mode)."""
        return function()

    def _forward_tensor(self, x: Any, weight: Any, bias: Any, layer: Layer) -> Any:
        if MODES[layer.padding_mode].folds and any(p for pair in layer.padding for p in pair):
            x = self.pad(x, layer)
            layer = layer._replace(padding=((0, 0),) * layer.ndim)
        return self.correlate(x, weight, bias, layer)

    def _optional(self, array: np.ndarray | None) -> Any:
        return None if array is None else self.tensor(array)

    def forward(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                layer: Layer) -> np.ndarray:
        """Run the framework's forward pass (numpy in and out)."""
        return self.run(lambda: self.numpy(self._forward_tensor(
            self.tensor(x), self.tensor(weight), self._optional(bias), layer)), x.dtype)

    def transpose(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                  layer: Layer) -> np.ndarray:
        """Run the framework's transposed convolution (numpy in and out)."""
        return self.run(lambda: self.numpy(self.correlate_transpose(
            self.tensor(x), self.tensor(weight), self._optional(bias), layer)), x.dtype)

    def input_grad(self, grad_output: np.ndarray, weight: np.ndarray,
                   input_size: tuple[int, ...], layer: Layer) -> np.ndarray:
        """Differentiate the forward pass with respect to its input."""
        groups = layer.groups
        x0 = np.zeros((grad_output.shape[0], weight.shape[1] * groups, *input_size),
                      dtype=grad_output.dtype)

        def grad() -> np.ndarray:
            w = self.tensor(weight)
            return self.numpy(self.vjp(lambda x: self._forward_tensor(x, w, None, layer),
                                       self.tensor(x0), self.tensor(grad_output)))
        return self.run(grad, grad_output.dtype)

    def weight_grad(self, x: np.ndarray, grad_output: np.ndarray,
                    kernel_size: tuple[int, ...], layer: Layer) -> np.ndarray:
        """Differentiate the forward pass with respect to its weight."""
        w0 = np.zeros((grad_output.shape[1], x.shape[1] // layer.groups, *kernel_size),
                      dtype=x.dtype)

        def grad() -> np.ndarray:
            xt = self.tensor(x)
            return self.numpy(self.vjp(lambda w: self._forward_tensor(xt, w, None, layer),
                                       self.tensor(w0), self.tensor(grad_output)))
        return self.run(grad, x.dtype)


class BridgeFunctions(NamedTuple):
    """A bridge behind convop's signatures, one callable per ``check_conv`` kind."""

    conv: Callable[..., np.ndarray]
    conv_input_grad: Callable[..., np.ndarray]
    conv_weight_grad: Callable[..., np.ndarray]
    conv_transpose: Callable[..., np.ndarray]
    conv_integer: Callable[..., np.ndarray] | None = None
    conv_quantized: Callable[..., np.ndarray] | None = None

    def by_kind(self) -> dict[str, Callable[..., np.ndarray]]:
        """``{"forward": conv, "input_grad": ..., "weight_grad": ..., ...}`` per kind."""
        kinds = {"forward": self.conv, "input_grad": self.conv_input_grad,
                 "weight_grad": self.conv_weight_grad, "transpose": self.conv_transpose}
        if self.conv_integer is not None:
            kinds["integer"] = self.conv_integer
        if self.conv_quantized is not None:
            kinds["quantized"] = self.conv_quantized
        return kinds


def _spatial(value: Any, ndim: int) -> tuple[int, ...]:
    return as_int_tuple(value, "input_size", ndim, minimum=1)


def bridge_functions(bridge: Bridge, module: str) -> BridgeFunctions:
    """Return ``bridge`` as four functions with convop's signatures, named as in ``module``.

    Parameters
    ----------
    bridge : Bridge
    module : str
        The module the functions are published in (``__module__``), so that a
        report names them ``convop.jax.conv`` and so on.

    Returns
    -------
    BridgeFunctions
        ``conv``, ``conv_input_grad``, ``conv_weight_grad`` and ``conv_transpose``.
    """
    if not isinstance(bridge, Bridge):
        raise TypeError(f"`bridge` must be a convop.bridge.Bridge; got {type(bridge).__name__}.")

    def conv(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
             dilation: Any = 1, groups: int = 1, padding_mode: str = "zeros") -> np.ndarray:
        x, weight = np.asarray(x), np.asarray(weight)
        layer = _conv_layer(weight.shape, x.shape[2:], stride, padding, dilation, groups,
                            padding_mode)
        return bridge.forward(x, weight, None if bias is None else np.asarray(bias), layer)

    def conv_input_grad(grad_output: Any, weight: Any, input_size: Any, *, stride: Any = 1,
                        padding: Any = 0, dilation: Any = 1, groups: int = 1,
                        padding_mode: str = "zeros") -> np.ndarray:
        grad_output, weight = np.asarray(grad_output), np.asarray(weight)
        size = _spatial(input_size, weight.ndim - 2)
        layer = _conv_layer(weight.shape, size, stride, padding, dilation, groups, padding_mode)
        return bridge.input_grad(grad_output, weight, size, layer)

    def conv_weight_grad(x: Any, grad_output: Any, kernel_size: Any, *, stride: Any = 1,
                         padding: Any = 0, dilation: Any = 1, groups: int = 1,
                         padding_mode: str = "zeros") -> np.ndarray:
        x, grad_output = np.asarray(x), np.asarray(grad_output)
        kernel = as_int_tuple(kernel_size, "kernel_size", x.ndim - 2, minimum=1)
        shape = (grad_output.shape[1], x.shape[1] // as_int(groups, "groups", minimum=1),
                 *kernel)
        layer = _conv_layer(shape, x.shape[2:], stride, padding, dilation, groups, padding_mode)
        return bridge.weight_grad(x, grad_output, kernel, layer)

    def conv_transpose(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1,
                       padding: Any = 0, output_padding: Any = 0, dilation: Any = 1,
                       groups: int = 1) -> np.ndarray:
        x, weight = np.asarray(x), np.asarray(weight)
        layer = _transpose_layer(weight.shape, x.shape[2:], stride, padding, output_padding,
                                 dilation, groups)
        return bridge.transpose(x, weight, None if bias is None else np.asarray(bias), layer)

    def conv_integer(x: Any, weight: Any, *, x_zero_point: Any, weight_zero_point: Any,
                     stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1,
                     padding_mode: str = "zeros") -> np.ndarray:
        x, weight = np.asarray(x), np.asarray(weight)
        layer = _conv_layer(weight.shape, x.shape[2:], stride, padding, dilation, groups,
                            padding_mode)
        return bridge.integer(x, weight, {"x_zero_point": x_zero_point,
                                          "weight_zero_point": weight_zero_point}, layer)

    def conv_quantized(x: Any, weight: Any, bias: Any = None, *, x_scale: Any,
                       x_zero_point: Any, weight_scale: Any, weight_zero_point: Any,
                       y_scale: Any, y_zero_point: Any, stride: Any = 1, padding: Any = 0,
                       dilation: Any = 1, groups: int = 1,
                       padding_mode: str = "zeros") -> np.ndarray:
        x, weight = np.asarray(x), np.asarray(weight)
        layer = _conv_layer(weight.shape, x.shape[2:], stride, padding, dilation, groups,
                            padding_mode)
        quantization = dict(x_scale=x_scale, x_zero_point=x_zero_point,
                            weight_scale=weight_scale, weight_zero_point=weight_zero_point,
                            y_scale=y_scale, y_zero_point=y_zero_point)
        return bridge.quantized(x, weight, None if bias is None else np.asarray(bias),
                                quantization, layer)

    docs = {
        conv: ("forward pass", ":func:`convop.conv`"),
        conv_input_grad: ("input gradient (through its autodiff)",
                          ":func:`convop.conv_input_grad`"),
        conv_weight_grad: ("weight gradient (through its autodiff)",
                           ":func:`convop.conv_weight_grad`"),
        conv_transpose: ("transposed convolution", ":func:`convop.conv_transpose`"),
        conv_integer: ("integer convolution (ONNX ConvInteger's contract)",
                       ":mod:`convop.validation.quantized`"),
        conv_quantized: ("quantized convolution (QLinearConv's contract)",
                         ":mod:`convop.validation.quantized`"),
    }
    for function, (what, twin) in docs.items():
        function.__module__ = module
        function.__qualname__ = function.__name__
        function.__doc__ = (
            f"{bridge.name}'s {what} with {twin}'s signature (numpy in and out).\n\n"
            f"A configuration {bridge.name} cannot express raises NotImplementedError "
            f"(a skip in :func:`convop.check_conv`).")
    return BridgeFunctions(conv, conv_input_grad, conv_weight_grad, conv_transpose,
                           conv_integer, conv_quantized)
