"""Optional dependencies: imported on first use, with an install hint from convop's extras.

The hint names the extra of ``pyproject.toml`` that brings a module and the
requirements that extra pins (read from the installed package's metadata, so
the two never disagree): ``python -m pip install "convop[torch]"`` (torch>=2.0).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from functools import cache
from importlib import metadata
from types import ModuleType

#: The extra that brings each optional module, and the name a person knows it by.
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "PyTorch"),
    "jax": ("jax", "JAX"),
    "tensorflow": ("tensorflow", "TensorFlow"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnx", "ONNX Runtime"),
    "matplotlib": ("plot", "matplotlib"),
    "ml_dtypes": ("bfloat16", "ml_dtypes"),
}

_EXTRA_MARKER = re.compile(r"""^(?P<req>[^;]+);\s*extra\s*==\s*['"](?P<extra>[\w.-]+)['"]\s*$""")


@cache
def extra_requirements(extra: str) -> tuple[str, ...]:
    """Return the requirements of one of convop's extras, e.g. ``("torch>=2.0",)``.

    Empty when convop's metadata is not installed (a plain source tree).
    """
    try:
        declared = metadata.requires("convop") or []
    except metadata.PackageNotFoundError:
        return ()
    found = []
    for line in declared:
        match = _EXTRA_MARKER.match(line)
        if match and match["extra"] == extra:
            found.append(match["req"].strip())
    return tuple(found)


def install_hint(module: str, purpose: str = "this") -> str:
    """Return ``'<purpose> needs <name>: python -m pip install "convop[<extra>]" (<reqs>)'``."""
    extra, name = EXTRAS[module]
    pins = extra_requirements(extra)
    tail = f" ({', '.join(pins)})" if pins else ""
    return f'{purpose} needs {name}: python -m pip install "convop[{extra}]"{tail}'


def missing(*modules: str) -> list[str]:
    """Return the modules among ``modules`` that are not installed (without importing them)."""
    absent = []
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                absent.append(name)
        except ValueError:  # a module set to None in sys.modules (tests hide one so)
            absent.append(name)
    return absent


def require(module: str, purpose: str = "this") -> ModuleType:
    """Import an optional module, or raise ``ImportError`` with its install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(install_hint(module, purpose)) from err
