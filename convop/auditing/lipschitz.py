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

This module holds the framework-neutral algebra (:class:`Step`, :func:`walk`,
the pooling factors); the rules that read a framework's graph live beside the
code that reads its model: :mod:`.torch_model` (``torch.fx``) and
:mod:`.onnx_model`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .layer import Norms

__all__ = ["NoRule", "Step", "adaptive_factor", "as_tuple", "audited", "graph_bounds",
           "pool_factor", "walk"]

#: Largest slope of each activation (torch module class names and ONNX op types).
SLOPES = {"ReLU": 1.0, "ReLU6": 1.0, "Tanh": 1.0, "Hardtanh": 1.0, "Sigmoid": 0.25,
          "GELU": 1.13, "SiLU": 1.1, "Identity": 1.0, "Dropout": 1.0, "Flatten": 1.0,
          "Unflatten": 1.0, "Relu": 1.0, "Gelu": 1.13, "Reshape": 1.0, "Squeeze": 1.0,
          "Unsqueeze": 1.0, "Transpose": 1.0}
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


def graph_bounds(steps: dict[Any, Step | NoRule], output: Any, norms: Norms
                 ) -> tuple[dict[str, float] | None, str]:
    """Return the bound of ``output`` for every norm field the audit has, or None and why."""
    fields = list(next(iter(norms.values()))) if norms else ["sigma_max"]
    try:
        return {field: walk(steps, output, field) for field in fields}, FOUND
    except NoRule as why:
        return None, f"no network bound: {why}"


def audited(norms: Norms, name: str, size: tuple[int, ...]) -> Callable[[str], float]:
    """Return a convolution's audited value as a factor of the norm field."""
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


def as_tuple(value: Any, ndim: int) -> tuple[int, ...]:
    """Return a per-axis attribute (an int or a sequence) as a tuple of ``ndim`` ints."""
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (
        (int(value),) * ndim)
