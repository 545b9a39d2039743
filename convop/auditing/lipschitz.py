"""A Lipschitz bound of a whole torch network that holds across residual connections.

The product of the layers' norms bounds a purely sequential network only. Here
the network's dataflow graph (``torch.fx``) is walked from its input, each
tensor ``t`` getting a bound ``L(t)`` of the Lipschitz constant (l2 norms) of
the map from the network's input to ``t``:

- a convolution multiplies by its norm (the audited value), a linear layer by
  its weight's spectral norm, an eval-mode batch norm by ``max |gamma| /
  sqrt(var + eps)``, an activation by its largest slope (ReLU 1, sigmoid 1/4,
  GELU 1.13, SiLU 1.1);
- a pooling layer whose windows cover a pixel at most ``m`` times, with at
  least ``K`` pixels each, multiplies by ``sqrt(m)`` (max) or ``sqrt(m / K)``
  (average);
- a sum ``u + v`` adds ``L(u) + L(v)`` (both are functions of the same input:
  a residual block ``x + f(x)`` gets ``(1 + ||f||) L(x)``, not ``||f|| L(x)``),
  a concatenation gives ``sqrt(L(u)^2 + L(v)^2)``, a reshape keeps ``L``.

An operation without a rule makes the bound unknown, and the report says which.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

__all__ = ["network_bounds"]

#: Largest slope of each activation module (by class name).
SLOPES = {"ReLU": 1.0, "ReLU6": 1.0, "Tanh": 1.0, "Hardtanh": 1.0, "Sigmoid": 0.25,
          "GELU": 1.13, "SiLU": 1.1, "Identity": 1.0, "Dropout": 1.0, "Flatten": 1.0,
          "Unflatten": 1.0}
#: Functions and methods that keep the bound (reshapes, activations of slope 1).
_KEEP = {"relu", "flatten", "view", "reshape", "contiguous", "dropout", "squeeze",
         "unsqueeze", "permute", "transpose", "tanh"}


class _NoRule(Exception):
    pass


def network_bounds(model: Any, input_shape: tuple[int, ...],
                   norms: dict[tuple[str, tuple[int, ...]], dict[str, float]]
                   ) -> tuple[dict[str, float] | None, str]:
    """Return ``{field: bound}`` over the network for each norm field, or None and why.

    ``norms[(module name, input size)]`` holds each convolution's values
    (``sigma_max`` and the estimators) as audited.
    """
    import torch
    import torch.fx
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        traced = torch.fx.symbolic_trace(model)
        ShapeProp(traced).propagate(
            torch.zeros((1, *input_shape), dtype=next(model.parameters()).dtype))
    except Exception as err:  # noqa: BLE001 - any tracing failure: no graph, no bound
        return None, f"no network bound: torch.fx cannot trace the model ({err})"[:300]
    modules = dict(traced.named_modules())
    fields = list(next(iter(norms.values()))) if norms else ["sigma_max"]
    bounds: dict[str, float] = {}
    for field in fields:
        bound: dict[Any, float] = {}
        try:
            for node in traced.graph.nodes:
                if node.op == "output":
                    bounds[field] = _arg_bound(node.args[0], bound)
                    break
                bound[node] = _node_bound(node, bound, modules, norms, field)
        except _NoRule as why:
            return None, f"no network bound: {why}"
    return bounds, ("a Lipschitz bound (l2) of the whole network, valid across residual "
                    "connections: norms multiply along paths and add where paths join")


def _arg_bound(arg: Any, bound: dict[Any, float]) -> float:
    if isinstance(arg, (tuple, list)):
        if len(arg) != 1:
            raise _NoRule(f"the model returns {len(arg)} tensors")
        return _arg_bound(arg[0], bound)
    if arg in bound:
        return bound[arg]
    raise _NoRule(f"the output {arg!r} is not a tensor of the graph")


def _tensor_args(node: Any) -> list[Any]:
    import torch.fx

    return [a for a in node.args if isinstance(a, torch.fx.Node)]


def _node_bound(node: Any, bound: dict[Any, float], modules: dict[str, Any],
                norms: dict[tuple[str, tuple[int, ...]], dict[str, float]], field: str) -> float:
    if node.op == "placeholder":
        return 1.0
    if node.op == "get_attr":
        return 0.0  # a constant
    inputs = _tensor_args(node)
    if node.op == "call_module":
        module = modules[node.target]
        factor = _module_factor(node, module, norms, field)
        return factor * bound[inputs[0]]
    name = getattr(node.target, "__name__", str(node.target))
    if node.target in (operator.add, operator.iadd, operator.sub) or name in ("add", "sub",
                                                                            "add_", "sub_"):
        return sum(bound[a] for a in inputs)
    if node.target in (operator.mul, operator.truediv) or name in ("mul", "div"):
        scalars = [a for a in node.args if isinstance(a, (int, float))]
        if len(inputs) == 1 and len(scalars) == 1:
            c = abs(float(scalars[0]))
            return (c if node.target is not operator.truediv and name != "div"
                    else 1.0 / c) * bound[inputs[0]]
        raise _NoRule(f"{node.name}: a product of two tensors has no Lipschitz rule")
    if name == "cat":
        parts = node.args[0]
        return math.sqrt(sum(bound[a] ** 2 for a in parts))
    if name in _KEEP:
        return bound[inputs[0]]
    if name == "sigmoid":
        return 0.25 * bound[inputs[0]]
    raise _NoRule(f"no Lipschitz rule for {node.op} {name!r} ({node.name})")


def _module_factor(node: Any, module: Any, norms: dict[tuple[str, tuple[int, ...]],
                   dict[str, float]], field: str) -> float:
    kind = type(module).__name__
    if kind.startswith(("Conv", "ConvTranspose")):
        size = tuple(int(v) for v in node.args[0].meta["tensor_meta"].shape[2:])
        values = norms.get((node.target, size))
        if values is None or not math.isfinite(values.get(field, math.nan)):
            raise _NoRule(f"{node.target} at {size} has no audited {field}")
        return values[field]
    if kind in SLOPES:
        return SLOPES[kind]
    if kind == "LeakyReLU":
        return max(1.0, abs(module.negative_slope))
    if kind == "Linear":
        return float(np.linalg.norm(module.weight.detach().double().numpy(), 2))
    if kind.startswith("BatchNorm"):
        if module.training or module.running_var is None:
            raise _NoRule(f"{node.target}: a batch norm in training mode is not a fixed map")
        scale = 1.0 / np.sqrt(module.running_var.detach().double().numpy() + module.eps)
        if module.weight is not None:
            scale = scale * np.abs(module.weight.detach().double().numpy())
        return float(np.max(scale))
    shape_in = tuple(int(v) for v in node.args[0].meta["tensor_meta"].shape[2:])
    shape_out = tuple(int(v) for v in node.meta["tensor_meta"].shape[2:])
    if kind.startswith(("MaxPool", "AvgPool")):
        ndim = len(shape_in)
        kernel = _tuple(module.kernel_size, ndim)
        stride = _tuple(module.stride or module.kernel_size, ndim)
        dilation = _tuple(getattr(module, "dilation", 1), ndim)
        # Windows covering one pixel: at most k, and at most ceil(span / stride).
        covers = math.prod(min(k, -(-((k - 1) * d + 1) // s))
                           for k, s, d in zip(kernel, stride, dilation))
        if kind.startswith("MaxPool"):
            return math.sqrt(covers)
        smallest = math.prod(kernel) if module.count_include_pad or not any(
            _tuple(module.padding, ndim)) else 1
        return math.sqrt(covers / smallest)
    if kind.startswith(("AdaptiveAvgPool", "AdaptiveMaxPool")):
        covers, smallest = 1, 1
        for n, o in zip(shape_in, shape_out):
            starts = [(i * n) // o for i in range(o)]
            ends = [-(-((i + 1) * n) // o) for i in range(o)]
            count = np.zeros(n, dtype=int)
            for a, b in zip(starts, ends):
                count[a:b] += 1
            covers *= int(count.max())
            smallest *= min(b - a for a, b in zip(starts, ends))
        return math.sqrt(covers if kind.startswith("AdaptiveMax") else covers / smallest)
    raise _NoRule(f"no Lipschitz rule for the module {node.target} ({kind})")


def _tuple(value: Any, ndim: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * ndim
