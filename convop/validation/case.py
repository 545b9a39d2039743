"""One configuration: its inputs, the exact result, and the call of the implementation."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._dtypes import as_weight_shape
from .._validation import as_int, as_real
from ..functional import conv, conv_input_grad
from ..geometry import conv_geometry
from ..transposed import conv_transpose, transposed_output_size
from ..weight_grad import conv_weight_grad
from .battery import FLOAT16_OVERFLOW, RTOL, LayerConfig
from .quantized import (
    KEYWORDS,
    QUANTIZED_KINDS,
    quantized_exact,
    quantized_inputs,
)


class Case(NamedTuple):
    """One configuration of a battery run: the layer, the kind, the dtype and its inputs."""

    cfg: LayerConfig
    kind: str
    dtype: np.dtype
    arrays: dict[str, Any]

    def layer(self, **override: Any) -> dict[str, Any]:
        """Return the layer keywords of the call (with ``override`` applied)."""
        kw = dict(stride=self.cfg.stride, padding=self.cfg.padding, dilation=self.cfg.dilation,
                  groups=self.cfg.groups)
        if self.kind == "transpose":
            kw["output_padding"] = self.cfg.output_padding
        else:
            kw["padding_mode"] = self.cfg.padding_mode
        kw.update(override)
        return kw


#: How an implementation is called for each kind: positional names, then keywords.
CALLS = {
    "forward": (("x", "weight", "bias"),
                ("stride", "padding", "dilation", "groups", "padding_mode")),
    "input_grad": (("grad_output", "weight", "input_size"),
                   ("stride", "padding", "dilation", "groups", "padding_mode")),
    "weight_grad": (("x", "grad_output", "kernel_size"),
                    ("stride", "padding", "dilation", "groups", "padding_mode")),
    "transpose": (("x", "weight", "bias"),
                  ("stride", "padding", "dilation", "groups", "output_padding")),
    "integer": (("x", "weight"),
                (*KEYWORDS["integer"], "stride", "padding", "dilation", "groups",
                 "padding_mode")),
    "quantized": (("x", "weight", "bias"),
                  (*KEYWORDS["quantized"], "stride", "padding", "dilation", "groups",
                   "padding_mode")),
}


def call_problem(impl: Callable[..., Any], kind: str) -> str | None:
    """Why ``impl`` cannot take the call ``check_conv`` makes for ``kind``; None if it can."""
    import inspect

    try:
        signature = inspect.signature(impl)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return None
    positional, keywords = CALLS[kind]
    try:
        signature.bind(*positional, **dict.fromkeys(keywords))
    except TypeError as err:
        expected = f"({', '.join(positional)}, *, {', '.join(keywords)})"
        return (f"its signature {signature} does not take the call of kind {kind!r}, "
                f"{expected}: {err}")
    return None


def case_inputs(cfg: LayerConfig, kind: str, dtype: np.dtype, gen: np.random.Generator,
            shapes_only: bool = False) -> dict[str, Any]:
    """Random inputs of a configuration (with ``shapes_only``, just its validation)."""
    shape = as_weight_shape(cfg.weight_shape, "weight_shape")
    batch = as_int(cfg.batch, "batch", minimum=0, maximum=2**16)
    if cfg.dtype is not None and np.dtype(cfg.dtype) not in RTOL:
        raise TypeError(f"`dtype` must be None, 'float32' or 'float64'; got {cfg.dtype!r}.")
    if cfg.layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {', '.join(LAYOUTS)}; got {cfg.layout!r}.")
    scale = as_real(cfg.scale, "scale", low=0.0, high=math.inf,
                    rule="a finite positive number")
    if kind == "transpose":
        out = transposed_output_size(shape, cfg.input_size, stride=cfg.stride,
                                     padding=cfg.padding, output_padding=cfg.output_padding,
                                     dilation=cfg.dilation, groups=cfg.groups)
        if shapes_only:
            geom = conv_geometry(shape, out, stride=cfg.stride, padding=cfg.padding,
                                 dilation=cfg.dilation, groups=cfg.groups)
            return {"bytes": _config_bytes(geom, batch)}
        weight = (scale * gen.standard_normal(shape)).astype(dtype)
        c_in, c_out = shape[0], shape[1] * cfg.groups
        x = (scale * gen.standard_normal((batch, c_in, *cfg.input_size))).astype(dtype)
        bias = (scale * gen.standard_normal(c_out)).astype(dtype) if cfg.bias else None
        return {"x": laid_out(x, cfg.layout), "weight": weight, "bias": bias}
    geom = conv_geometry(shape, cfg.input_size, stride=cfg.stride,
                         padding=cfg.padding, dilation=cfg.dilation, groups=cfg.groups,
                         padding_mode=cfg.padding_mode)
    if shapes_only:
        return {"bytes": _config_bytes(geom, batch)}
    if kind in QUANTIZED_KINDS:
        arrays = quantized_inputs(cfg, kind, dtype, gen, geom, batch)
        arrays["x"] = laid_out(arrays["x"], cfg.layout)
        return arrays
    weight = (scale * gen.standard_normal(shape)).astype(dtype)
    x = (scale * gen.standard_normal((batch, geom.in_channels, *geom.input_size))).astype(dtype)
    dy = (scale * gen.standard_normal((batch, geom.out_channels, *geom.output_size))).astype(
        dtype)
    bias = (scale * gen.standard_normal(geom.out_channels)).astype(dtype) if cfg.bias else None
    return {"x": laid_out(x, cfg.layout), "weight": weight, "bias": bias,
            "grad_output": laid_out(dy, cfg.layout)}


#: The memory layouts a configuration can give its data arrays.
LAYOUTS = ("contiguous", "channels_last", "strided")


def laid_out(array: np.ndarray, layout: str) -> np.ndarray:
    """Return ``array``'s values in another memory layout (same shape, same values)."""
    if layout == "channels_last":  # channels fastest, as torch.channels_last
        return np.moveaxis(np.ascontiguousarray(np.moveaxis(array, 1, -1)), -1, 1)
    if layout == "strided":  # every other element of a twice-as-wide buffer
        wide = np.repeat(array, 2, axis=-1)
        return wide[..., ::2]
    return array


def _config_bytes(geom: Any, batch: int) -> int:
    """Bytes one configuration needs: inputs, outputs and the exact results, with a matrix."""
    dense = batch * (geom.vector_size("input") + geom.vector_size("padded")
                     + geom.vector_size("output")) * 8
    return 6 * dense + 2 * geom.matrix_nbytes("padded")


def exact_result(case: Case, weight: np.ndarray | None = None, bias: Any = "same",
           absolute: bool = False, **override: Any) -> np.ndarray:
    """Convop's exact result in float64 (optionally on absolute values, or with changes)."""
    a = case.arrays
    if case.kind in QUANTIZED_KINDS:
        return quantized_exact(case.kind, a, case.dtype, case.layer(**override), weight, bias)
    cast = (lambda v: np.abs(v).astype(np.float64)) if absolute else (
        lambda v: v.astype(np.float64))
    w = cast(a["weight"] if weight is None else weight)
    b = a["bias"] if isinstance(bias, str) else bias
    b = None if b is None else cast(b)
    kw = case.layer(**override)
    if case.kind == "forward":
        return conv(cast(a["x"]), w, b, **kw)
    if case.kind == "input_grad":
        return conv_input_grad(cast(a["grad_output"]), w, case.cfg.input_size, **kw)
    if case.kind == "weight_grad":
        return conv_weight_grad(cast(a["x"]), cast(a["grad_output"]), w.shape[2:], **kw)
    return conv_transpose(cast(a["x"]), w, b, **kw)


def call_impl(impl: Callable[..., Any], case: Case) -> Any:
    """Call an implementation on a case's inputs with the signature of its kind.

    Returns what it returned, as it returned it (the caller reads it as an array
    and can say what it was when its dtype is wrong).
    """
    a = case.arrays
    kw = case.layer()
    if case.kind in QUANTIZED_KINDS:
        quantization = {name: a[name] for name in KEYWORDS[case.kind]}
        if case.kind == "integer":
            return impl(a["x"], a["weight"], **quantization, **kw)
        return impl(a["x"], a["weight"], a["bias"], **quantization, **kw)
    if case.kind == "forward":
        out = impl(a["x"], a["weight"], a["bias"], **kw)
    elif case.kind == "input_grad":
        out = impl(a["grad_output"], a["weight"], case.cfg.input_size, **kw)
    elif case.kind == "weight_grad":
        out = impl(a["x"], a["grad_output"], case.cfg.weight_shape[2:], **kw)
    else:
        out = impl(a["x"], a["weight"], a["bias"], **kw)
    return out


def overflow_allowed(case: Case, expected: np.ndarray, tol: np.ndarray) -> np.ndarray | None:
    """Where an output may be infinite: float16 outputs that round past 65504 (else None)."""
    if case.dtype != np.float16 or case.kind in QUANTIZED_KINDS:
        return None
    return np.abs(expected) + tol >= FLOAT16_OVERFLOW
