"""The convolutions of a torch module and the input size each one sees (one forward pass)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from ..adapters import padding_pairs
from .layer import Bounds, LayerRow, Norms
from .lipschitz import (
    SLOPES,
    NoRule,
    Step,
    adaptive_factor,
    as_tuple,
    audited,
    graph_bounds,
    matrix_factor,
    pool_factor,
)

__all__ = ["network_bounds", "torch_layers"]

#: torch functions and methods that keep the bound (reshapes, slope-1 activations).
KEEP = {"relu", "flatten", "view", "reshape", "contiguous", "squeeze",
         "unsqueeze", "permute", "transpose", "tanh"}


def torch_layers(model: Any, input_shape: tuple[int, ...]
                 ) -> tuple[str, list[LayerRow], Bounds]:
    """Return a ``torch.nn.Module``'s convolutions, each with the input size it sees.

    Also its name, and the function that bounds the network from the audited
    norms (:func:`network_bounds`, through ``torch.fx``).

    One forward pass on a zero tensor of ``(1, *input_shape)``, in eval mode
    (restored after), with a pre-hook on every ``Conv{1,2,3}d`` and
    ``ConvTranspose{1,2,3}d``; a module called several times with one input
    size is one row with its ``calls`` counted.
    """
    from .._torch_layers import load_torch, module_layer

    torch = load_torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, an onnx.ModelProto or the path "
                        f"of an .onnx file; got {type(model).__name__}.")
    conv_types = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d,
                  torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    seen: dict[tuple[int, tuple[int, ...]], LayerRow] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, conv_types):
            def hook(mod: Any, args: Any, name: str = name) -> None:
                size = tuple(int(v) for v in args[0].shape[2:])
                key = (id(mod), size)
                if key in seen:
                    seen[key].calls += 1
                    return
                weight, layer, transposed = module_layer(mod)
                # Padding as pairs, as the ONNX path reads it: the same row either way.
                layer["padding"] = padding_pairs(layer["padding"], tuple(weight.shape[2:]),
                                                 stride=layer["stride"],
                                                 dilation=layer["dilation"])
                seen[key] = LayerRow(name, type(mod).__name__, weight, size, layer, transposed)
            handles.append(module.register_forward_pre_hook(hook))
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=next(model.parameters()).dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    def bounds(norms: Norms) -> tuple[dict[str, float] | None, str]:
        training = model.training
        try:
            model.eval()
            return network_bounds(model, input_shape, norms)
        finally:
            model.train(training)
    return type(model).__name__, list(seen.values()), bounds


# Lipschitz rules of torch.fx nodes ----------------------------------------------------------


def network_bounds(model: Any, input_shape: tuple[int, ...],
                   norms: Norms
                   ) -> tuple[dict[str, float] | None, str]:
    """Return ``{field: bound}`` of a torch module for each norm field, or None and why.

    ``norms[(module name, input size)]`` holds each convolution's values
    (``sigma_max`` and the estimators) as audited. The module must be in eval
    mode.
    """
    import torch
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        traced = torch.fx.symbolic_trace(model)
        ShapeProp(traced).propagate(
            torch.zeros((1, *input_shape), dtype=next(model.parameters()).dtype))
    except Exception as err:  # noqa: BLE001 - any tracing failure: no graph, no bound
        return None, (f"no network bound: torch.fx cannot trace the model ({err})"[:300]
                      + "; the rows above are exact regardless. To get the bound, make the "
                      "forward traceable (no data-dependent control flow; torch.fx.wrap for "
                      "helper functions) or audit a traceable submodule on its own")
    modules = dict(traced.named_modules())
    steps: dict[Any, Step | NoRule] = {}
    output = None
    for node in traced.graph.nodes:
        if node.op == "output":
            args = node.args[0]
            output = args[0] if isinstance(args, (tuple, list)) and len(args) == 1 else args
            if isinstance(output, (tuple, list)):
                return None, f"no network bound: the model returns {len(output)} tensors"
            break
        try:
            steps[node] = _fx_step(node, modules, norms)
        except NoRule as why:
            steps[node] = why
    return graph_bounds(steps, output, norms)


def _fx_step(node: Any, modules: dict[str, Any],
             norms: Norms) -> Step:
    import torch.fx

    inputs = tuple(a for a in node.args if isinstance(a, torch.fx.Node))
    if node.op == "placeholder":
        return Step("input")
    if node.op == "get_attr":
        return Step("constant")
    if node.op == "call_module":
        module = modules[node.target]
        return Step("scale", inputs[:1], _module_factor(node, module, norms))
    name = getattr(node.target, "__name__", str(node.target))
    if node.target in (operator.add, operator.iadd, operator.sub) or name in (
            "add", "sub", "add_", "sub_"):
        return Step("sum", inputs)
    if node.target in (operator.mul, operator.truediv) or name in ("mul", "div"):
        scalars = [a for a in node.args if isinstance(a, (int, float))]
        if len(inputs) == 1 and len(scalars) == 1:
            c = abs(float(scalars[0]))
            divide = node.target is operator.truediv or name == "div"
            return Step("scale", inputs, 1.0 / c if divide else c)
        raise NoRule(f"{node.name}: a product of two tensors has no Lipschitz rule")
    if name == "cat":
        return Step("concat", tuple(node.args[0]))
    if name in DROPOUTS:
        if _argument(node, DROPOUTS[name], "training", True):
            raise NoRule(f"{node.name}: {name} with training=True is random, not a fixed map "
                         f"(pass training=self.training)")
        return Step("scale", inputs[:1])
    if name in KEEP:
        return Step("scale", inputs[:1])
    if name.rstrip("123d").rstrip("_") in ("max_pool", "avg_pool", "adaptive_avg_pool",
                                            "adaptive_max_pool"):
        return Step("scale", inputs[:1], _functional_pool(node, name))
    if name == "sigmoid":
        return Step("scale", inputs[:1], 0.25)
    raise NoRule(f"no Lipschitz rule for {node.op} {name!r} ({node.name})")


#: Dropout functions and their parameters in order: the identity in eval (training=False).
DROPOUTS = {name: ("input", "p", "training", "inplace") for name in (
    "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
    "feature_alpha_dropout")}
#: Parameters of torch.nn.functional's pooling functions, in order.
_POOL_PARAMETERS = {
    "max_pool": ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                 "return_indices"),
    "avg_pool": ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                 "divisor_override"),
}


def _argument(node: Any, names: tuple[str, ...], name: str, default: Any) -> Any:
    """Return the value of a traced call's argument, positional or keyword."""
    if name in node.kwargs:
        return node.kwargs[name]
    index = names.index(name)
    return node.args[index] if index < len(node.args) else default


def _functional_pool(node: Any, name: str) -> Callable[[str], float]:
    """Return the factor of ``F.{max,avg}_pool{n}d`` or ``F.adaptive_{avg,max}_pool{n}d``."""
    shape_in = tuple(int(v) for v in node.args[0].meta["tensor_meta"].shape[2:])
    if name.startswith("adaptive"):
        shape_out = tuple(int(v) for v in node.meta["tensor_meta"].shape[2:])
        return adaptive_factor(shape_in, shape_out, "avg" in name)
    average = name.startswith("avg")
    params = _POOL_PARAMETERS["avg_pool" if average else "max_pool"]
    ndim = len(shape_in)
    kernel = as_tuple(_argument(node, params, "kernel_size", None), ndim)
    stride = as_tuple(_argument(node, params, "stride", None) or kernel, ndim)
    dilation = as_tuple(_argument(node, params, "dilation", 1), ndim) if not average else (
        (1,) * ndim)
    smallest = None
    if average:
        if _argument(node, params, "divisor_override", None) is not None:
            raise NoRule(f"{node.name}: {name} with divisor_override has no rule")
        padded = any(as_tuple(_argument(node, params, "padding", 0), ndim))
        ceil = bool(_argument(node, params, "ceil_mode", False))
        if (padded and not _argument(node, params, "count_include_pad", True)) or ceil:
            smallest = 1  # a window at the border may hold a single pixel
    return pool_factor(kernel, stride, dilation, average, smallest)


def _module_factor(node: Any, module: Any, norms: Norms) -> float | Callable[[str], float]:
    # A parametrized module (spectral normalization) is a subclass named Parametrized<Kind>.
    kind = type(module).__name__.removeprefix("Parametrized")
    shape_in = tuple(int(v) for v in node.args[0].meta["tensor_meta"].shape[2:])
    if kind.startswith(("Conv", "ConvTranspose")):
        return audited(norms, node.target, shape_in)
    if kind in SLOPES:
        return SLOPES[kind]
    if kind == "LeakyReLU":
        return max(1.0, abs(module.negative_slope))
    if kind == "Linear":
        return matrix_factor(module.weight.detach().double().numpy())
    if kind.startswith("BatchNorm"):
        if module.training or module.running_var is None:
            raise NoRule(f"{node.target}: a batch norm in training mode is not a fixed map")
        scale = 1.0 / np.sqrt(module.running_var.detach().double().numpy() + module.eps)
        if module.weight is not None:
            scale = scale * np.abs(module.weight.detach().double().numpy())
        return float(np.max(scale))
    ndim = len(shape_in)
    if kind.startswith(("MaxPool", "AvgPool")):
        kernel = as_tuple(module.kernel_size, ndim)
        padded = any(as_tuple(module.padding, ndim))
        smallest = 1 if (kind.startswith("AvgPool") and padded
                         and not module.count_include_pad) else None
        return pool_factor(kernel, as_tuple(module.stride or module.kernel_size, ndim),
                           as_tuple(getattr(module, "dilation", 1), ndim),
                           kind.startswith("AvgPool"), smallest)
    if kind.startswith(("AdaptiveAvgPool", "AdaptiveMaxPool")):
        shape_out = tuple(int(v) for v in node.meta["tensor_meta"].shape[2:])
        return adaptive_factor(shape_in, shape_out, kind.startswith("AdaptiveAvg"))
    raise NoRule(f"no Lipschitz rule for the module {node.target} ({kind})")
