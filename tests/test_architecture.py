"""The package's shape: no import cycles, small modules, one table per extension point."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import convop
from convop import _optional
from convop.bridge import BRIDGES
from convop.modes import MODES, mode_from_onnx

PACKAGE = Path(convop.__file__).resolve().parent
MODULES = sorted(PACKAGE.rglob("*.py"))
#: Longest module, in lines.
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """convop modules ``path`` imports, deferred (function-level) imports included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("convop")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("convop"):
                continue
            known = {module_name(p) for p in MODULES}
            for alias in node.names:  # `from . import x` imports the module x
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    graph = {module_name(p): imports_of(p) for p in MODULES}
    # A module's import runs its packages' __init__ first: that is no cycle of ours.
    return {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the import cycles among modules (not through a package's own __init__)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    for node in sorted(graph):
        if node not in state:
            visit(node)
    # Cycles through a package __init__ that only re-exports are how packages work.
    inits = {module_name(p) for p in MODULES if p.name == "__init__.py"}
    return [c for c in found if not set(c) & inits]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"convop.a": {"convop.b"}, "convop.b": {"convop.a"}}) == [
        ["convop.a", "convop.b", "convop.a"]]


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_module_over_500_lines(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{module_name(path)} has {lines} lines"


def test_one_mode_table():
    assert tuple(MODES) == ("zeros", "reflect", "replicate", "circular")
    assert [m for m in MODES.values() if not m.folds] == [MODES["zeros"]]
    assert mode_from_onnx("edge") == "replicate" and mode_from_onnx("bogus") is None
    assert MODES["reflect"].limit_ok(2, 3) and not MODES["reflect"].limit_ok(3, 3)
    assert MODES["circular"].limit_ok(3, 3) and not MODES["circular"].limit_ok(4, 3)
    assert MODES["replicate"].limit_ok(100, 1)


def test_every_bridge_module_has_its_bridge():
    import importlib

    for name, (module, needs) in BRIDGES.items():
        if _optional.missing(*needs):
            continue
        assert importlib.import_module(module).bridge is not None, name


def test_install_hints_come_from_the_extras():
    pyproject = (PACKAGE.parent / "pyproject.toml").read_text()
    hint = _optional.install_hint("torch", "auditing a torch model")
    assert hint.startswith('auditing a torch model needs PyTorch: python -m pip install '
                           '"convop[torch]"')
    for requirement in _optional.extra_requirements("torch"):
        assert f'"{requirement}"' in pyproject  # the pin the extra declares, nothing else
    assert _optional.extra_requirements("onnx") == ("onnx>=1.16", "onnxruntime>=1.18")


def test_a_missing_optional_module_raises_its_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "jax", None)
    assert _optional.missing("jax", "numpy") == ["jax"]
    with pytest.raises(ImportError, match=r'this needs JAX: python -m pip install "convop\[jax\]"'):
        _optional.require("jax")


def test_one_privacy_rule():
    """A name another module imports is plain; ``_name`` stays in its own module.

    (scipy's rule: a package's public surface is its ``__init__``; inside it,
    modules are private (``_memory``) or plainly named, and share plain names.)
    """
    modules = {module_name(p) for p in MODULES}
    shared_private = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if not (node.level or (node.module or "").startswith("convop")):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                is_module = any(m.endswith("." + alias.name) for m in modules)
                if private and not is_module:
                    shared_private.append(f"{module_name(path)} imports {alias.name}")
    assert shared_private == []
