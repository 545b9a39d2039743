"""PyTorch interoperability: exact matrices of ``nn.Conv*d`` modules and checks through autograd.

torch stays optional: it is imported when a function here is called, never
when convop is imported.

- :func:`conv_matrix_from_module`: the exact matrix of an ``nn.Conv{1,2,3}d`` or
  ``nn.ConvTranspose{1,2,3}d``, read from its weight and arguments.
- :func:`check_module`: forward pass, input gradient and weight gradient of a
  module through autograd, against the exact operator.
- :func:`spectral_norm`, :func:`certify`, :func:`clip_singular_values_`: train
  with the true norm (:mod:`convop.normalization`, :mod:`convop.certification`).
- ``conv``, ``conv_input_grad``, ``conv_weight_grad``, ``conv_transpose``:
  PyTorch behind convop's signatures (numpy in, numpy out), so that
  :func:`convop.check_conv` can run its battery against PyTorch; ``bridge``
  is the :class:`convop.bridge.AutodiffBridge` behind them.

Example: ``convop.check_conv(convop.torch.conv_input_grad, kind="input_grad")``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from ._optional import require
from ._torch_layers import load_torch, module_layer
from ._validation import as_rng
from .bridge import AutodiffBridge, Layer, bridge_functions
from .certification import Certificate, LayerCertificate, certify
from .geometry import conv_geometry
from .matrix import conv_matrix
from .normalization import clip_singular_values_, spectral_norm
from .transposed import conv_transpose_matrix
from .validation import RTOL, CheckReport, LayerConfig
from .validation.battery import tolerance
from .validation.compare import compare_results
from .weight_grad import conv_weight_grad as _exact_weight_grad

__all__ = [
    "Certificate",
    "LayerCertificate",
    "certify",
    "clip_singular_values_",
    "spectral_norm",
    "check_module",
    "conv",
    "conv_input_grad",
    "conv_quantized",
    "conv_matrix_from_module",
    "conv_transpose",
    "conv_weight_grad",
    "TorchBridge",
    "bridge",
]


def conv_matrix_from_module(module: Any, input_size: Any, **matrix_kwargs: Any) -> sp.csr_array:
    """Build the exact matrix of a PyTorch convolution module.

    Parameters
    ----------
    module : torch.nn.Conv{1,2,3}d or torch.nn.ConvTranspose{1,2,3}d
        Its weight, stride, padding (also ``"same"``/``"valid"``), dilation,
        groups, padding_mode and output_padding are read.
    input_size : int or tuple of int
        Spatial size of the module's input.
    **matrix_kwargs
        Passed on to :func:`convop.conv_matrix` (or
        :func:`convop.conv_transpose_matrix`). The defaults here are
        ``domain="input"`` and ``order="C"``, so that
        ``W @ x.reshape(-1) == (module(x) - bias).reshape(-1)`` for one sample.

    Returns
    -------
    scipy.sparse.csr_array

    Examples
    --------
    >>> import numpy as np, pytest
    >>> torch = pytest.importorskip("torch")
    >>> from convop.torch import conv_matrix_from_module
    >>> m = torch.nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", bias=False).double()
    >>> W = conv_matrix_from_module(m, (5, 5))
    >>> x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    >>> bool(np.allclose(W @ x.numpy().ravel(), m(x).detach().numpy().ravel()))
    True
    """
    weight, layer, transposed = module_layer(module)
    kwargs: dict[str, Any] = {"order": "C", **matrix_kwargs}
    if transposed:
        return conv_transpose_matrix(weight, input_size, **layer, **kwargs)
    return conv_matrix(weight, input_size, **layer, **{"domain": "input", **kwargs})


def check_module(module: Any, input_size: Any, *, batch: int = 2, rng: Any = None) -> CheckReport:
    """Check a module's forward pass, input gradient and weight gradient against the exact matrix.

    The module runs forward and backward through autograd on random data; each
    result is compared with the exact operator (``W @ x + b``, ``W.T @ dY`` and
    ``M.T @ dY``) with the tolerance of :func:`convop.check_conv`.

    Parameters
    ----------
    module : torch.nn.Conv{1,2,3}d or torch.nn.ConvTranspose{1,2,3}d
    input_size : int or tuple of int
        Spatial size of the input.
    batch : int
        Samples in the random batch.
    rng : None, int or numpy.random.Generator
        Source of the random data.

    Returns
    -------
    CheckReport
        Rows ``forward``, ``input gradient`` and ``weight gradient``.

    Examples
    --------
    >>> import pytest
    >>> torch = pytest.importorskip("torch")
    >>> from convop.torch import check_module
    >>> check_module(torch.nn.ConvTranspose1d(2, 3, 4, stride=2).double(), 7, rng=0).passed
    True
    """
    torch = load_torch()
    weight, layer, transposed = module_layer(module)
    dtype = np.dtype(weight.dtype)
    if dtype not in RTOL:
        raise TypeError(f"the module's weight must be float32 or float64; got {dtype}.")
    gen = as_rng(rng)
    ndim = weight.ndim - 2
    size = tuple(input_size) if isinstance(input_size, (tuple, list)) else (input_size,) * ndim
    c_in = weight.shape[0] if transposed else weight.shape[1] * layer["groups"]
    x = gen.standard_normal((batch, c_in, *size)).astype(dtype)
    xt = torch.from_numpy(x).requires_grad_(True)
    module.zero_grad(set_to_none=True)
    yt = module(xt)
    dy = gen.standard_normal(tuple(yt.shape)).astype(dtype)
    yt.backward(torch.from_numpy(dy))
    y = yt.detach().numpy()
    dx = xt.grad.numpy()
    dw = module.weight.grad.detach().numpy()
    bias = None if module.bias is None else module.bias.detach().numpy().astype(np.float64)

    W = conv_matrix_from_module(module, size, dtype=np.float64)
    absW = abs(W)
    x64, dy64 = x.astype(np.float64).reshape(batch, -1), dy.astype(np.float64).reshape(batch, -1)
    out_shape = y.shape
    b_full = 0.0 if bias is None else np.broadcast_to(
        bias.reshape(-1, *[1] * ndim), out_shape[1:]).reshape(-1)
    exact_y = (W @ x64.T).T + b_full
    scale_y = (absW @ np.abs(x64).T).T + np.abs(b_full)
    exact_dx = (W.T @ dy64.T).T
    scale_dx = (absW.T @ np.abs(dy64).T).T
    exact_dw, scale_dw = _module_weight_grad(weight, layer, transposed, size, x, dy)

    rows = []
    for name, kind, actual, exact, scale in (
        ("forward", "forward", y, exact_y, scale_y),
        ("input gradient", "forward", dx, exact_dx, scale_dx),
        ("weight gradient", "weight_grad", dw, exact_dw, scale_dw),
    ):
        cfg = LayerConfig(name, weight_shape=tuple(weight.shape), input_size=size, batch=batch)
        tol = tolerance(dtype, scale.reshape(actual.shape))
        rows.append(compare_results(cfg, kind, actual, exact.reshape(actual.shape), tol))
    return CheckReport("module", repr(module), str(dtype), tuple(rows))


def _module_weight_grad(weight: np.ndarray, layer: dict[str, Any], transposed: bool,
                        size: tuple[int, ...], x: np.ndarray, dy: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Exact weight gradient (and its |.|-scale) of a module, from the weight matrix."""
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    kernel = weight.shape[2:]
    if not transposed:
        kw = dict(layer)
        return (_exact_weight_grad(x64, dy64, kernel, **kw),
                _exact_weight_grad(np.abs(x64), np.abs(dy64), kernel, **kw))
    # y = A(w)^T x with A the convolution from the output size back to `size`:
    # d<y, dy>/dw = d<x, A(w) dy>/dw, the weight gradient of A at input dy, output x.
    kw = {k: v for k, v in layer.items() if k != "output_padding"}
    out_size = dy.shape[2:]
    geom = conv_geometry(weight.shape, out_size, **kw)
    extra = [(0, 0), (0, 0)] + [(0, o - n) for o, n in zip(geom.output_size, size)]
    xx = np.pad(x64, extra)
    return (_exact_weight_grad(dy64, xx, kernel, **kw),
            _exact_weight_grad(np.abs(dy64), np.abs(xx), kernel, **kw))


# PyTorch behind convop's signatures -----------------------------------------------------


class TorchBridge(AutodiffBridge):
    """PyTorch (``torch.nn.functional``, autograd) behind convop's signatures."""

    name = "PyTorch"

    def tensor(self, array: np.ndarray) -> Any:
        """Wrap a numpy array without copying (bfloat16 through float32, exactly)."""
        torch = load_torch()
        if array.dtype.name == "bfloat16":  # ml_dtypes' bfloat16: torch cannot wrap it
            return torch.from_numpy(array.astype(np.float32)).to(torch.bfloat16)
        return torch.from_numpy(np.ascontiguousarray(array))

    def numpy(self, tensor: Any) -> np.ndarray:
        """Detach and return as numpy (bfloat16 as ml_dtypes' bfloat16, exactly)."""
        torch = load_torch()
        if tensor.dtype == torch.bfloat16:
            return tensor.detach().float().numpy().astype(require("ml_dtypes").bfloat16)
        return tensor.detach().numpy()

    def pad(self, x: Any, layer: Layer) -> Any:
        """Pad with ``F.pad`` in the layer's mode."""
        flat = [p for pair in reversed(layer.padding) for p in pair]
        return load_torch().nn.functional.pad(x, flat, mode=layer.padding_mode)

    def correlate(self, x: Any, weight: Any, bias: Any, layer: Layer) -> Any:
        """Run ``F.conv*d`` (symmetric padding native, the rest by ``F.pad``)."""
        pads = layer.padding
        symmetric = all(lo == hi for lo, hi in pads)
        if not symmetric:  # F.conv*d pads both sides alike: pad the difference first
            flat = [p for pair in reversed(pads) for p in pair]
            x = load_torch().nn.functional.pad(x, flat)
        return _functional(layer.ndim)(
            x, weight, bias, stride=layer.stride, dilation=layer.dilation, groups=layer.groups,
            padding=tuple(lo for lo, _ in pads) if symmetric else 0)

    def correlate_transpose(self, x: Any, weight: Any, bias: Any, layer: Layer) -> Any:
        """Run ``F.conv_transpose*d``."""
        # Asymmetric (before, after) padding, which PyTorch lacks, crops the unpadded result.
        y = _functional(layer.ndim, transposed=True)(
            x, weight, bias, stride=layer.stride, padding=0,
            output_padding=layer.output_padding, groups=layer.groups, dilation=layer.dilation)
        crop = (slice(None), slice(None)) + tuple(
            slice(lo, y.shape[2 + i] - hi) for i, (lo, hi) in enumerate(layer.padding))
        return y[crop]

    def vjp(self, function: Callable[[Any], Any], primal: Any, cotangent: Any) -> Any:
        """Differentiate through ``torch.autograd.grad``."""
        torch = load_torch()
        primal = primal.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(function(primal), primal, cotangent, allow_unused=True)
        return torch.zeros_like(primal) if grad is None else grad

    def quantized(self, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                  quantization: dict[str, Any], layer: Layer) -> np.ndarray:
        """Run ``torch.ao.nn.quantized.functional.conv{n}d`` (quint8 data, qint8 weights)."""
        torch = load_torch()
        if x.dtype != np.uint8 or weight.dtype != np.int8:
            raise NotImplementedError(f"PyTorch's quantized convolutions take quint8 data and "
                                      f"qint8 weights; got {x.dtype} and {weight.dtype}")
        if layer.padding_mode != "zeros" or any(lo != hi for lo, hi in layer.padding):
            raise NotImplementedError("PyTorch's quantized convolutions pad symmetrically "
                                      "with the zero point only")
        import torch.ao.nn.quantized.functional as qF

        q = quantization
        scales = np.asarray(q["weight_scale"], dtype=np.float64).reshape(-1)
        out_channels = weight.shape[0]
        with warnings.catch_warnings():  # quantized tensors are deprecated, not gone
            warnings.filterwarnings("ignore", message=".*quantized tensor creation.*")
            qx = torch._make_per_tensor_quantized_tensor(
                torch.from_numpy(np.ascontiguousarray(x)), float(q["x_scale"]),
                int(q["x_zero_point"]))
            qw = torch._make_per_channel_quantized_tensor(
                torch.from_numpy(np.ascontiguousarray(weight)),
                torch.from_numpy(np.broadcast_to(scales, (out_channels,)).copy()),
                torch.full((out_channels,), int(q["weight_zero_point"]), dtype=torch.long), 0)
            # The float bias PyTorch quantizes back with scale x_scale * weight_scale.
            b = None if bias is None else torch.from_numpy(
                bias.astype(np.float64) * float(q["x_scale"]) * scales).float()
            function = {1: qF.conv1d, 2: qF.conv2d, 3: qF.conv3d}[layer.ndim]
            y = function(qx, qw, bias=b, stride=layer.stride,
                         padding=tuple(lo for lo, _ in layer.padding),
                         dilation=layer.dilation, groups=layer.groups,
                         scale=float(q["y_scale"]), zero_point=int(q["y_zero_point"]))
        return y.int_repr().numpy()


#: The bridge behind ``conv``, ``conv_input_grad``, ``conv_weight_grad``, ``conv_transpose``
#: and ``conv_quantized``.
bridge = TorchBridge()
conv, conv_input_grad, conv_weight_grad, conv_transpose, _, conv_quantized = bridge_functions(
    bridge, __name__)


def _functional(ndim: int, transposed: bool = False) -> Any:
    F = load_torch().nn.functional
    if transposed:
        return {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[ndim]
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[ndim]
