"""PyTorch interoperability: exact matrices of ``nn.Conv*d`` modules and checks through autograd.

torch stays optional: it is imported when a function here is called, never
when convop is imported.

- :func:`conv_matrix_from_module`: the exact matrix of an ``nn.Conv{1,2,3}d`` or
  ``nn.ConvTranspose{1,2,3}d``, read from its weight and arguments.
- :func:`check_module`: forward pass, input gradient and weight gradient of a
  module through autograd, against the exact operator.
- ``conv``, ``conv_input_grad``, ``conv_weight_grad``, ``conv_transpose``:
  PyTorch behind convop's signatures (numpy in, numpy out), so that
  :func:`convop.check_conv` can run its battery against PyTorch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from ._validation import as_int_tuple, as_rng
from .geometry import conv_geometry
from .matrix import conv_matrix
from .transposed import _transpose_padding, conv_transpose_matrix
from .validation import RTOL, CheckReport, LayerConfig, _compare
from .validation.battery import tolerance
from .weight_grad import conv_weight_grad as _exact_weight_grad

__all__ = [
    "check_module",
    "conv",
    "conv_input_grad",
    "conv_matrix_from_module",
    "conv_transpose",
    "conv_weight_grad",
]


def _torch() -> Any:
    try:
        import torch
    except ImportError as err:  # pragma: no cover - exercised only without torch
        raise ImportError(
            "this needs PyTorch: python -m pip install torch==2.13.0 (CPU build)"
        ) from err
    return torch


# Module -> matrix -----------------------------------------------------------------------


def _module_layer(module: Any) -> tuple[np.ndarray, dict[str, Any], bool]:
    torch = _torch()
    conv_types = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    transpose_types = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
                       torch.nn.ConvTranspose3d)
    if not isinstance(module, conv_types + transpose_types):
        raise TypeError(
            f"`module` must be a torch.nn.Conv{{1,2,3}}d or ConvTranspose{{1,2,3}}d; got "
            f"{type(module).__name__}."
        )
    weight = module.weight.detach().cpu().numpy()
    layer = dict(stride=tuple(module.stride), dilation=tuple(module.dilation),
                 groups=int(module.groups))
    padding = module.padding
    layer["padding"] = padding if isinstance(padding, str) else tuple(padding)
    transposed = isinstance(module, transpose_types)
    if transposed:
        layer["output_padding"] = tuple(module.output_padding)
    else:
        layer["padding_mode"] = module.padding_mode
    return weight, layer, transposed


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
    weight, layer, transposed = _module_layer(module)
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
    torch = _torch()
    weight, layer, transposed = _module_layer(module)
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
        rows.append(_compare(cfg, kind, actual, exact.reshape(actual.shape), tol))
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


def _functional(ndim: int, transposed: bool = False) -> Any:
    F = _torch().nn.functional
    if transposed:
        return {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[ndim]
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[ndim]


def _forward_torch(x: Any, weight: Any, bias: Any, layer: dict[str, Any]) -> Any:
    """F.pad (any mode, asymmetric) then F.conv*d: PyTorch's own padding semantics."""
    torch = _torch()
    ndim = weight.dim() - 2
    geom = conv_geometry(tuple(weight.shape), tuple(x.shape[2:]), **layer)
    flat = [p for pair in reversed(geom.padding) for p in pair]
    if any(flat):
        mode = "constant" if geom.padding_mode == "zeros" else geom.padding_mode
        x = torch.nn.functional.pad(x, flat, mode=mode)
    return _functional(ndim)(x, weight, bias, stride=geom.stride, dilation=geom.dilation,
                             groups=geom.groups)


def _layer_kwargs(stride: Any, padding: Any, dilation: Any, groups: Any,
                  padding_mode: Any) -> dict[str, Any]:
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode)


def conv(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
         dilation: Any = 1, groups: int = 1, padding_mode: str = "zeros") -> np.ndarray:
    """PyTorch's convolution with :func:`convop.conv`'s signature (numpy in and out).

    Examples
    --------
    >>> import numpy as np, pytest
    >>> _ = pytest.importorskip("torch")
    >>> import convop, convop.torch
    >>> x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    >>> bool(np.allclose(convop.torch.conv(x, w, padding=((1, 0), (0, 1))),
    ...                  convop.conv(x, w, padding=((1, 0), (0, 1)))))
    True
    """
    torch = _torch()
    b = None if bias is None else torch.from_numpy(np.asarray(bias))
    with torch.no_grad():
        y = _forward_torch(torch.from_numpy(np.asarray(x)), torch.from_numpy(np.asarray(weight)),
                           b, _layer_kwargs(stride, padding, dilation, groups, padding_mode))
    return y.numpy()


def conv_input_grad(grad_output: Any, weight: Any, input_size: Any, *, stride: Any = 1,
                    padding: Any = 0, dilation: Any = 1, groups: int = 1,
                    padding_mode: str = "zeros") -> np.ndarray:
    """PyTorch's input gradient (autograd) with :func:`convop.conv_input_grad`'s signature."""
    torch = _torch()
    dy = torch.from_numpy(np.asarray(grad_output))
    w = torch.from_numpy(np.asarray(weight))
    size = tuple(input_size) if isinstance(input_size, (tuple, list)) else (input_size,)
    x = torch.zeros((dy.shape[0], w.shape[1] * groups, *size), dtype=w.dtype, requires_grad=True)
    y = _forward_torch(x, w, None, _layer_kwargs(stride, padding, dilation, groups, padding_mode))
    (grad,) = torch.autograd.grad(y, x, dy, allow_unused=True)
    return np.zeros(tuple(x.shape), dtype=np.asarray(weight).dtype) if grad is None else (
        grad.numpy())


def conv_weight_grad(x: Any, grad_output: Any, kernel_size: Any, *, stride: Any = 1,
                     padding: Any = 0, dilation: Any = 1, groups: int = 1,
                     padding_mode: str = "zeros") -> np.ndarray:
    """PyTorch's weight gradient (autograd) with :func:`convop.conv_weight_grad`'s signature."""
    torch = _torch()
    xt = torch.from_numpy(np.asarray(x))
    dy = torch.from_numpy(np.asarray(grad_output))
    kernel = tuple(kernel_size) if isinstance(kernel_size, (tuple, list)) else (kernel_size,) * (
        xt.dim() - 2)
    w = torch.zeros((dy.shape[1], xt.shape[1] // groups, *kernel), dtype=xt.dtype,
                    requires_grad=True)
    y = _forward_torch(xt, w, None, _layer_kwargs(stride, padding, dilation, groups, padding_mode))
    (grad,) = torch.autograd.grad(y, w, dy, allow_unused=True)
    return np.zeros(tuple(w.shape), dtype=xt.numpy().dtype) if grad is None else grad.numpy()


def conv_transpose(x: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
                   output_padding: Any = 0, dilation: Any = 1, groups: int = 1) -> np.ndarray:
    """PyTorch's transposed convolution with :func:`convop.conv_transpose`'s signature.

    Asymmetric ``(before, after)`` padding, which PyTorch lacks, is applied by
    cropping the unpadded result.
    """
    torch = _torch()
    xt = torch.from_numpy(np.asarray(x))
    w = torch.from_numpy(np.asarray(weight))
    ndim = w.dim() - 2
    pads = _transpose_padding(padding, ndim, tuple(w.shape[2:]),
                              as_int_tuple(dilation, "dilation", ndim, minimum=1),
                              as_int_tuple(stride, "stride", ndim, minimum=1))
    op = (output_padding,) * ndim if isinstance(output_padding, int) else tuple(output_padding)
    with torch.no_grad():
        y = _functional(ndim, transposed=True)(
            xt, w, None if bias is None else torch.from_numpy(np.asarray(bias)), stride=stride,
            padding=0, output_padding=op, groups=groups, dilation=dilation)
    crop = (slice(None), slice(None)) + tuple(
        slice(lo, y.shape[2 + i] - hi) for i, (lo, hi) in enumerate(pads)
    )
    return y[crop].numpy()
