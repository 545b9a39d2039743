"""A Lipschitz bound of a whole network that holds across residual connections.

The product of the layers' norms bounds a purely sequential network only. Here
the network's dataflow graph (``torch.fx`` for a torch module, the graph of an
ONNX model) is walked back from its output, each tensor ``t`` getting a bound
``L(t)`` of the Lipschitz constant (l2 norms) of the map from the network's
input to ``t``:

- a convolution multiplies by its norm (the audited value), a linear layer by
  its weight's spectral norm, an eval-mode batch norm by ``max |gamma| /
  sqrt(var + eps)``, an activation by its largest slope (ReLU 1, sigmoid 1/4,
  GELU 1.13, SiLU 1.1);
- a pooling layer whose windows cover a pixel at most ``m`` times, with at
  least ``K`` pixels each, multiplies by ``sqrt(m)`` (max) or ``sqrt(m / K)``
  (average);
- a sum ``u + v`` adds ``L(u) + L(v)`` (both are functions of the same input:
  a residual block ``x + f(x)`` gets ``(1 + ||f||) L(x)``, not ``||f|| L(x)``),
  a concatenation gives ``sqrt(L(u)^2 + L(v)^2)``, a reshape keeps ``L``, a
  constant has ``L = 0``.

An operation without a rule makes the bound unknown, and the report says which.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layer import Norms

__all__ = ["Step", "network_bounds", "onnx_network_bounds", "walk"]

#: Largest slope of each activation (torch module class names and ONNX op types).
SLOPES = {"ReLU": 1.0, "ReLU6": 1.0, "Tanh": 1.0, "Hardtanh": 1.0, "Sigmoid": 0.25,
          "GELU": 1.13, "SiLU": 1.1, "Identity": 1.0, "Dropout": 1.0, "Flatten": 1.0,
          "Unflatten": 1.0, "Relu": 1.0, "Gelu": 1.13, "Reshape": 1.0, "Squeeze": 1.0,
          "Unsqueeze": 1.0, "Transpose": 1.0}
#: torch functions and methods that keep the bound (reshapes, slope-1 activations).
_KEEP = {"relu", "flatten", "view", "reshape", "contiguous", "dropout", "squeeze",
         "unsqueeze", "permute", "transpose", "tanh"}
#: The note of a bound that was found.
FOUND = ("a Lipschitz bound (l2) of the whole network, valid across residual connections: "
         "norms multiply along paths and add where paths join")


class NoRule(Exception):
    """An operation of the graph has no Lipschitz rule."""


@dataclass(frozen=True)
class Step:
    """How one tensor's bound follows from its inputs' bounds.

    ``rule`` is ``"input"`` (the network's input, 1), ``"constant"`` (0),
    ``"scale"`` (``factor`` times the one input's), ``"sum"`` (the inputs'
    sum) or ``"concat"`` (root of the sum of squares). ``factor`` may be a
    callable of the norm field (a convolution's audited value per field).
    """

    rule: str
    inputs: tuple[Any, ...] = ()
    factor: float | Callable[[str], float] = 1.0


def walk(steps: dict[Any, Step | NoRule], output: Any, field: str) -> float:
    """Return the bound of ``output`` for one norm field (only what it depends on).

    Iterative, in dependency order: a deep network's graph is deeper than
    Python's recursion limit.
    """
    memo: dict[Any, float] = {}
    stack = [output]
    while stack:
        key = stack[-1]
        if key in memo:
            stack.pop()
            continue
        step = steps.get(key)
        if step is None:
            raise NoRule(f"{key!r} is not a tensor of the graph")
        if isinstance(step, NoRule):
            raise step
        missing = [k for k in step.inputs if k not in memo]
        if missing:
            stack.extend(missing)
            continue
        values = [memo[k] for k in step.inputs]
        if step.rule == "input":
            memo[key] = 1.0
        elif step.rule == "constant":
            memo[key] = 0.0
        elif step.rule == "sum":
            memo[key] = sum(values)
        elif step.rule == "concat":
            memo[key] = math.sqrt(sum(v * v for v in values))
        else:
            factor = step.factor(field) if callable(step.factor) else step.factor
            memo[key] = factor * values[0]
        stack.pop()
    return memo[output]


def _bounds(steps: dict[Any, Step | NoRule], output: Any,
            norms: Norms
            ) -> tuple[dict[str, float] | None, str]:
    """Return the bound of ``output`` for every norm field the audit has, or None and why."""
    fields = list(next(iter(norms.values()))) if norms else ["sigma_max"]
    try:
        return {field: walk(steps, output, field) for field in fields}, FOUND
    except NoRule as why:
        return None, f"no network bound: {why}"


def _audited(norms: Norms, name: str,
             size: tuple[int, ...]) -> Callable[[str], float]:
    def factor(field: str) -> float:
        values = norms.get((name, size))
        if values is None or not math.isfinite(values.get(field, math.nan)):
            raise NoRule(f"{name} at {size} has no audited {field}")
        return values[field]
    return factor


# Pooling ------------------------------------------------------------------------------------


def pool_factor(kernel: Sequence[int], stride: Sequence[int], dilation: Sequence[int],
                average: bool, smallest_window: int | None = None) -> float:
    """Return ``sqrt(m)`` (max) or ``sqrt(m / K)`` (average) of a pooling layer.

    ``m`` bounds the windows covering one pixel: at most ``k`` per axis, and at
    most ``ceil(span / stride)``. ``K`` is the smallest window (``prod(kernel)``
    unless ``smallest_window`` says less, e.g. padding not counted).
    """
    covers = math.prod(min(k, -(-((k - 1) * d + 1) // s))
                       for k, s, d in zip(kernel, stride, dilation))
    if not average:
        return math.sqrt(covers)
    return math.sqrt(covers / (smallest_window or math.prod(kernel)))


def adaptive_factor(size_in: Sequence[int], size_out: Sequence[int], average: bool) -> float:
    """Return the factor of an adaptive pooling from ``size_in`` to ``size_out``."""
    covers, smallest = 1, 1
    for n, o in zip(size_in, size_out):
        starts = [(i * n) // o for i in range(o)]
        ends = [-(-((i + 1) * n) // o) for i in range(o)]
        count = np.zeros(n, dtype=int)
        for a, b in zip(starts, ends):
            count[a:b] += 1
        covers *= int(count.max())
        smallest *= min(b - a for a, b in zip(starts, ends))
    return math.sqrt(covers / smallest if average else covers)


def _tuple(value: Any, ndim: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (
        (int(value),) * ndim)


# torch.fx ----------------------------------------------------------------------------------


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
        return None, f"no network bound: torch.fx cannot trace the model ({err})"[:300]
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
    return _bounds(steps, output, norms)


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
    if name in _KEEP:
        return Step("scale", inputs[:1])
    if name == "sigmoid":
        return Step("scale", inputs[:1], 0.25)
    raise NoRule(f"no Lipschitz rule for {node.op} {name!r} ({node.name})")


def _module_factor(node: Any, module: Any, norms: Norms) -> float | Callable[[str], float]:
    kind = type(module).__name__
    shape_in = tuple(int(v) for v in node.args[0].meta["tensor_meta"].shape[2:])
    if kind.startswith(("Conv", "ConvTranspose")):
        return _audited(norms, node.target, shape_in)
    if kind in SLOPES:
        return SLOPES[kind]
    if kind == "LeakyReLU":
        return max(1.0, abs(module.negative_slope))
    if kind == "Linear":
        return float(np.linalg.norm(module.weight.detach().double().numpy(), 2))
    if kind.startswith("BatchNorm"):
        if module.training or module.running_var is None:
            raise NoRule(f"{node.target}: a batch norm in training mode is not a fixed map")
        scale = 1.0 / np.sqrt(module.running_var.detach().double().numpy() + module.eps)
        if module.weight is not None:
            scale = scale * np.abs(module.weight.detach().double().numpy())
        return float(np.max(scale))
    ndim = len(shape_in)
    if kind.startswith(("MaxPool", "AvgPool")):
        kernel = _tuple(module.kernel_size, ndim)
        padded = any(_tuple(module.padding, ndim))
        smallest = 1 if (kind.startswith("AvgPool") and padded
                         and not module.count_include_pad) else None
        return pool_factor(kernel, _tuple(module.stride or module.kernel_size, ndim),
                           _tuple(getattr(module, "dilation", 1), ndim),
                           kind.startswith("AvgPool"), smallest)
    if kind.startswith(("AdaptiveAvgPool", "AdaptiveMaxPool")):
        shape_out = tuple(int(v) for v in node.meta["tensor_meta"].shape[2:])
        return adaptive_factor(shape_in, shape_out, kind.startswith("AdaptiveAvg"))
    raise NoRule(f"no Lipschitz rule for the module {node.target} ({kind})")


# ONNX --------------------------------------------------------------------------------------


def onnx_network_bounds(graph: Any, folded: dict[str, str], input_name: str,
                        norms: Norms,
                        conv_keys: dict[str, tuple[str, tuple[int, ...]]]
                        ) -> tuple[dict[str, float] | None, str]:
    """Return ``{field: bound}`` of an ONNX graph (see :func:`network_bounds`).

    ``graph`` is the audit's parsed graph (constants, producers, shapes);
    ``folded`` maps a convolution's padded input to the tensor before the
    padding it folded (its norm includes that padding); ``conv_keys`` maps a
    convolution's output to its row's ``(name, input size)``.
    """
    steps: dict[Any, Step | NoRule] = {input_name: Step("input")}
    for name in graph.constants:
        steps[name] = Step("constant")
    for node in graph.nodes:
        step: Step | NoRule
        try:
            step = _onnx_step(node, graph, folded, norms, conv_keys)
        except NoRule as why:
            step = why
        for out in node.output:
            steps[out] = step
    outputs = [v.name for v in graph.model.graph.output]
    if len(outputs) != 1:
        return None, f"no network bound: the model has {len(outputs)} outputs"
    return _bounds(steps, outputs[0], norms)


def _onnx_step(node: Any, graph: Any, folded: dict[str, str],
               norms: Norms,
               conv_keys: dict[str, tuple[str, tuple[int, ...]]]) -> Step:
    from .onnx_model import _attributes, text_attribute

    op, inputs = node.op_type, [i for i in node.input if i]
    if op in ("Conv", "ConvTranspose"):
        name, size = conv_keys[node.output[0]]
        return Step("scale", (folded.get(inputs[0], inputs[0]),), _audited(norms, name, size))
    if op == "Constant":
        return Step("constant")
    if op in SLOPES:
        return Step("scale", (inputs[0],), SLOPES[op])
    attrs = _attributes(node)
    if op == "LeakyRelu":
        return Step("scale", (inputs[0],), max(1.0, abs(float(attrs.get("alpha", 0.01)))))
    if op in ("Add", "Sub"):
        return Step("sum", tuple(inputs))
    if op == "Concat":
        return Step("concat", tuple(inputs))
    if op == "Mul":
        constants = [graph.constant(i) for i in inputs]
        scalars = [c for c in constants if c is not None and np.size(c) == 1]
        if len(inputs) == 2 and len(scalars) == 1:
            tensor = next(i for i, c in zip(inputs, constants) if c is None or np.size(c) != 1)
            return Step("scale", (tensor,), abs(float(np.ravel(scalars[0])[0])))
        raise NoRule(f"{node.name or op}: a product of two tensors has no Lipschitz rule")
    if op == "BatchNormalization":
        scale, _, _, var = (graph.constant(i) for i in inputs[1:5])
        if scale is None or var is None:
            raise NoRule(f"{node.name or op}: a batch norm without constant statistics")
        eps = float(attrs.get("epsilon", 1e-5))
        return Step("scale", (inputs[0],), float(np.max(np.abs(scale) / np.sqrt(var + eps))))
    if op in ("Gemm", "MatMul"):
        weight = graph.constant(inputs[1])
        if weight is None:
            raise NoRule(f"{node.name or op}: its weight is not a constant")
        alpha = abs(float(attrs.get("alpha", 1.0)))
        return Step("scale", (inputs[0],),
                    alpha * float(np.linalg.norm(np.atleast_2d(weight), 2)))
    if op in ("MaxPool", "AveragePool"):
        kernel = tuple(attrs["kernel_shape"])
        ndim = len(kernel)
        padded = any(attrs.get("pads", ())) or text_attribute(
            attrs, "auto_pad", "NOTSET") not in ("NOTSET", "VALID")
        smallest = 1 if op == "AveragePool" and padded and not attrs.get(
            "count_include_pad", 0) else None
        return Step("scale", (inputs[0],), pool_factor(
            kernel, _tuple(attrs.get("strides", 1), ndim),
            _tuple(attrs.get("dilations", 1), ndim), op == "AveragePool", smallest))
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        shape_in = graph.shape(inputs[0])
        if shape_in is None:
            raise NoRule(f"{node.name or op}: its input size is unknown")
        factor = 1.0 if op == "GlobalMaxPool" else 1.0 / math.sqrt(math.prod(shape_in[2:]))
        return Step("scale", (inputs[0],), factor)
    if op == "Pad":
        # By position: an absent optional input is an empty name.
        value = (graph.constant(node.input[2]) if len(node.input) > 2 and node.input[2]
                 else None)
        if text_attribute(attrs, "mode", "constant") == "constant" and (
                value is None or not np.any(value)):
            return Step("scale", (inputs[0],))  # zero padding: an isometric embedding
    raise NoRule(f"no Lipschitz rule for the ONNX op {op} ({node.name or 'unnamed'})")
