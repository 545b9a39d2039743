"""Documentation cannot rot: README and docs code blocks run, commands and API lists stay true."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convop

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted((ROOT / "docs").glob("*.md"))


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def sh_blocks(path: Path) -> list[str]:
    return [b.strip() for b in re.findall(r"```sh\n(.*?)```", path.read_text(), flags=re.S)]


@pytest.mark.parametrize("path", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_python_blocks_run(path):
    blocks = python_blocks(path)
    if path.name in ("README.md", "guide.md"):
        assert blocks, f"{path.name} should show runnable code"
    for block in blocks:
        if "convop.petsc" in block and importlib.util.find_spec("petsc4py") is None:
            continue  # runs under mpiexec with Debian's PETSc: tests/test_petsc.py
        try:
            exec(compile(block, str(path), "exec"), {"__name__": "__docs__"})
        except pytest.skip.Exception:
            continue  # a framework's example (pytest.importorskip): the others still run


def test_ci_sets_up_petsc_exactly_as_the_distributed_doc_says():
    commands = [line for line in (ROOT / ".ci" / "petsc").read_text().splitlines()
                if line and not line.startswith("#") and line not in ("set -euo pipefail",
                                                                       'cd "$(dirname "$0")/.."')]
    doc = sh_blocks(ROOT / "docs" / "distributed.md")[0].splitlines()
    assert commands == doc
    assert "docs/distributed.md" in (ROOT / "README.md").read_text()
    assert "bash .ci/petsc" in (ROOT / ".ci" / "run").read_text()


def test_readme_opens_with_the_two_commands():
    commands = sh_blocks(ROOT / "README.md")
    assert commands[0] == "python -m pip install . && python -m convop demo"
    assert commands[1] == 'python -m pip install -e ".[test,plot]" && python -m pytest'


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert sh_blocks(ROOT / "README.md")[1] in ci


def test_demo_command_runs():
    result = subprocess.run([sys.executable, "-m", "convop", "demo"], capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "W: shape (2048, 972), nnz 55296" in result.stdout
    assert result.stdout.strip().endswith("OK")


def test_api_page_lists_every_public_name():
    api = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in convop.__all__ if name != "__version__" and f"`{name}" not in api]
    assert not missing, f"docs/api.md does not mention {missing}"


EXAMPLES = sorted((ROOT / "docs" / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_scripts_run(script, tmp_path):
    if "convop.petsc" in script.read_text() and importlib.util.find_spec("petsc4py") is None:
        pytest.skip("needs petsc4py: runs under mpiexec in .ci/petsc (docs/distributed.md)")
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_are_examples():
    assert len(EXAMPLES) >= 3


def _top_level_split(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return [*parts, current.strip()] if current.strip() else parts



def _same_default(text: str, value: object) -> bool:
    names = {"float64": np.float64, "float32": np.float32}
    try:
        documented = eval(text, {"__builtins__": {}}, names)  # noqa: S307 - our own page
    except Exception:  # noqa: BLE001 - not a Python expression: compare as text
        return text == repr(value).replace("'", '"')
    if isinstance(documented, type) and value is not None:
        return np.dtype(documented) == np.dtype(value)
    return documented == value


def _check_signature(name: str, params: str) -> None:
    """``name(params)`` as docs/api.md writes it against ``inspect.signature``.

    ``...`` elides parameters; without it every parameter must be listed.
    """
    signature = inspect.signature(getattr(convop, name))
    listed, keyword_only = {}, False
    for token in _top_level_split(params):
        if token == "*":
            keyword_only = True
        elif token != "...":
            param, _, default = token.partition("=")
            listed[param.strip()] = (keyword_only, default.strip() or None)
    for param, (keyword_only, default) in listed.items():
        assert param in signature.parameters, f"{name} has no parameter {param!r}"
        actual = signature.parameters[param]
        assert keyword_only == (actual.kind is actual.KEYWORD_ONLY), f"{name}: {param} kind"
        assert (default is None) == (actual.default is actual.empty), f"{name}: {param} default"
        if default is not None:
            assert _same_default(default, actual.default), (
                f"{name}: {param}={default} in docs/api.md, {actual.default!r} in the code")
    if "..." not in params:
        undocumented = [p for p, v in signature.parameters.items()
                        if p not in listed and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)]
        assert not undocumented, f"docs/api.md leaves out {name}'s {undocumented}"


def documented_signatures() -> list[tuple[str, str]]:
    api = (ROOT / "docs" / "api.md").read_text()
    found = re.findall(r"^- `([A-Za-z_]\w*)\((.*?)\)(?: ->[^`]*)?`", api, flags=re.M)
    return [(name, params) for name, params in found if name in convop.__all__]


def test_api_page_states_signatures():
    assert len(documented_signatures()) >= 30


@pytest.mark.parametrize(("name", "params"), documented_signatures(),
                         ids=[n for n, _ in documented_signatures()])
def test_api_page_signatures_match_the_code(name, params):
    _check_signature(name, params)


@pytest.mark.parametrize("params", ["weight, *, rtol=1e-9", "weight, input_size, *, stride=1",
                                    "weight, input_size=None, stride=1, ...", "x, ..."])
def test_the_signature_check_can_fail(params):
    with pytest.raises(AssertionError):
        _check_signature("spectral_norm", params)
