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

__all__ = ["FIELD_NORMS", "NoRule", "Step", "adaptive_factor", "as_tuple", "audited",
           "graph_bounds", "matrix_factor", "per_norm", "pool_factor", "scaled", "walk"]

#: The vector norm (p of l_p, on input and output alike) each audited field is an operator
#: norm for: the exact sigma_max and its estimators are l2, ``norm_1`` and ``norm_inf``
#: the l1 and l-infinity operator norms (convop.operator_norm).
FIELD_NORMS = {"sigma_max": 2.0, "reshaped_kernel": 2.0, "circular": 2.0, "gram_bound": 2.0,
               "norm_1": 1.0, "norm_inf": math.inf}

#: Largest slope of each activation (torch module class names and ONNX op types).
SLOPES = {"ReLU": 1.0, "ReLU6": 1.0, "Tanh": 1.0, "Hardtanh": 1.0, "Sigmoid": 0.25,
          "GELU": 1.13, "SiLU": 1.1, "Identity": 1.0, "Dropout": 1.0, "Flatten": 1.0,
          "Unflatten": 1.0, "Relu": 1.0, "Gelu": 1.13, "Reshape": 1.0, "Squeeze": 1.0,
          "Unsqueeze": 1.0, "Transpose": 1.0}
#: The note of a bound that was found.
FOUND = ("a Lipschitz bound of the whole network (per norm), valid across residual "
         "connections: norms multiply along paths and add where paths join")


def per_norm(l2: float, l1: float, linf: float) -> Callable[[str], float]:
    """Return a factor of the norm field: ``l2``, ``l1`` or ``linf`` by its field's norm."""
    values = {2.0: l2, 1.0: l1, math.inf: linf}

    def factor(field: str) -> float:
        return values[FIELD_NORMS[field]]

    return factor


class NoRule(Exception):
    """An operation of the graph has no Lipschitz rule."""


@dataclass(frozen=True)
class Step:
    """How one tensor's bound follows from its inputs' bounds.

    ``rule`` is ``"input"`` (the network's input, 1), ``"constant"`` (0),
    ``"scale"`` (``factor`` times the one input's), ``"sum"`` (the inputs'
    sum) or ``"concat"`` (the l_p norm of the inputs' bounds: root of the sum of
    squares for l2, the sum for l1, the largest for l-infinity). ``factor`` may
    be a callable of the norm field (a convolution's audited value per field,
    or a rule whose factor depends on the norm: :func:`per_norm`).
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
            p = FIELD_NORMS[field]
            memo[key] = (math.sqrt(sum(v * v for v in values)) if p == 2 else
                         sum(values) if p == 1 else max(values, default=0.0))
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
                average: bool, smallest_window: int | None = None) -> Callable[[str], float]:
    """Return a pooling layer's factor per norm: l2 ``sqrt(m)``, l1 ``m``, l-infinity 1.

    ``m`` bounds the windows covering one pixel: at most ``k`` per axis, and at
    most ``ceil(span / stride)``. An average divides by the smallest window ``K``
    (``prod(kernel)`` unless ``smallest_window`` says less, e.g. padding not
    counted): ``sqrt(m / K)`` and ``m / K``. A max or a mean of a window moves at
    most as far as the window's largest change, so l-infinity gets 1.
    """
    covers = math.prod(min(k, -(-((k - 1) * d + 1) // s))
                       for k, s, d in zip(kernel, stride, dilation))
    return _window_factor(covers, (smallest_window or math.prod(kernel)) if average else 1)


def _window_factor(covers: int, smallest: int) -> Callable[[str], float]:
    ratio = covers / smallest
    return per_norm(math.sqrt(ratio), ratio, 1.0)


def adaptive_factor(size_in: Sequence[int], size_out: Sequence[int], average: bool
                    ) -> Callable[[str], float]:
    """Return the factor per norm of an adaptive pooling from ``size_in`` to ``size_out``."""
    covers, smallest = 1, 1
    for n, o in zip(size_in, size_out):
        starts = [(i * n) // o for i in range(o)]
        ends = [-(-((i + 1) * n) // o) for i in range(o)]
        count = np.zeros(n, dtype=int)
        for a, b in zip(starts, ends):
            count[a:b] += 1
        covers *= int(count.max())
        smallest *= min(b - a for a, b in zip(starts, ends))
    return _window_factor(covers, smallest if average else 1)


def matrix_factor(matrix: np.ndarray) -> Callable[[str], float]:
    """Return a linear map's factor per norm: its l2, l1 and l-infinity operator norms.

    ``matrix`` maps column vectors (PyTorch's ``Linear.weight``, shape (out, in)).
    """
    m = np.atleast_2d(np.asarray(matrix, dtype=np.float64))
    return per_norm(float(np.linalg.norm(m, 2)), float(np.linalg.norm(m, 1)),
                    float(np.linalg.norm(m, np.inf)))


def scaled(factor: Callable[[str], float], by: float) -> Callable[[str], float]:
    """Return ``factor`` times a constant, per norm field."""
    return lambda field: by * factor(field)


def as_tuple(value: Any, ndim: int) -> tuple[int, ...]:
    """Return a per-axis attribute (an int or a sequence) as a tuple of ``ndim`` ints."""
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (
        (int(value),) * ndim)
