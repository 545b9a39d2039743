"""A standalone reproducer for each failing configuration: inputs, the call, expected values.

The snippet holds everything a framework's bug report needs and nothing of
convop's: the exact inputs the check used (as array literals, so no seed or
generator is involved), the layer's arguments, the call of the implementation
under test, and convop's exact expected output with its tolerance. Run, it
prints how many entries are off and the worst error.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import Any

import numpy as np

from .case import CALLS, Case
from .quantized import KEYWORDS

__all__ = ["reproducer", "snippet_name"]


def reproducer(impl: Callable[..., Any], label: str, case: Case, expected: np.ndarray,
               tol: np.ndarray, finding: str) -> str:
    """Return Python source that reproduces one configuration's failure on its own."""
    positional, _ = CALLS[case.kind]
    lines = [
        f'"""Reproducer: {label} on layer {case.cfg.name!r} ({case.kind}, {case.dtype}).',
        "",
        f"convop's check found: {finding}.",
        "The inputs below are the ones the check used; `expected` is the exact result",
        "(float64, from the exact operator), `tolerance` the allowed error per entry.",
        '"""',
        "import numpy as np",
        "",
    ]
    sizes = {"input_size": tuple(case.cfg.input_size),
             "kernel_size": tuple(case.cfg.weight_shape[2:])}
    for name in positional:
        if name in case.arrays:
            lines.append(f"{name} = {_literal(case.arrays[name])}")
    if case.cfg.layout == "channels_last":
        lines.append("# The check passed the data channels-last in memory (same values):")
        lines += [f"{name} = np.moveaxis(np.ascontiguousarray(np.moveaxis({name}, 1, -1)), -1, 1)"
                  for name in positional if name in ("x", "grad_output")]
    elif case.cfg.layout == "strided":
        lines.append("# The check passed the data as a strided view (same values):")
        lines += [f"{name} = np.repeat({name}, 2, axis=-1)[..., ::2]"
                  for name in positional if name in ("x", "grad_output")]
    lines.append(f"layer = {case.layer()!r}")
    call_args = ", ".join(name if name in case.arrays else repr(sizes[name])
                          for name in positional)
    if case.kind in KEYWORDS:
        lines.append("quantization = {" + ", ".join(
            f"{name!r}: {_literal(case.arrays[name])}" for name in KEYWORDS[case.kind]) + "}")
        call_args += ", **quantization"
    lines += ["", *_import(impl), f"actual = {_callable_name(impl)}({call_args}, **layer)",
              "actual = np.asarray(actual, dtype=np.float64)", "",
              f"expected = {_literal(expected)}", f"tolerance = {_literal(tol)}",
              "bad = ~(np.abs(actual - expected) <= tolerance)",
              'print(f"{int(bad.sum())} of {bad.size} entries off; worst error '
              '{np.max(np.abs(actual - expected)):.3e}")']
    return "\n".join(lines) + "\n"


def snippet_name(index: int, case_name: str, kind: str) -> str:
    """Return a file name for a reproducer, e.g. ``03_forward_stride_2.py``."""
    slug = re.sub(r"[^a-z0-9]+", "_", case_name.lower()).strip("_") or "layer"
    return f"{index:02d}_{kind}_{slug}.py"


def _literal(array: Any) -> str:
    """Return a numpy expression that rebuilds ``array`` exactly (None stays None)."""
    if array is None:
        return "None"
    a = np.asarray(array)
    # tolist() gives Python floats: exact for float32 and float64 values alike.
    values = textwrap.fill(repr(a.ravel().tolist()), 88, subsequent_indent="    ",
                           break_long_words=False, break_on_hyphens=False)
    return f"np.array({values}, dtype={a.dtype.name!r}).reshape({a.shape!r})"


def _importable(impl: Callable[..., Any]) -> tuple[str, str] | None:
    """Return ``(module, qualname)`` when ``impl`` can be imported by name, else None."""
    module = getattr(impl, "__module__", None)
    qualname = getattr(impl, "__qualname__", "")
    if module and module != "__main__" and qualname and "<" not in qualname:
        return module, qualname
    return None


def _import(impl: Callable[..., Any]) -> list[str]:
    found = _importable(impl)
    if found is not None:
        return [f"from {found[0]} import {found[1].split('.')[0]}  # the implementation checked"]
    return ["# The implementation checked was not importable (defined in __main__ or a",
            "# lambda): define `implementation` here, with the same signature.",
            "implementation = None"]


def _callable_name(impl: Callable[..., Any]) -> str:
    found = _importable(impl)
    return "implementation" if found is None else found[1]
