"""The convop command: through main(argv) and as a subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convop.cli import main

TESTS = Path(__file__).resolve().parent


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_demo():
    code, text = run("demo")
    assert code == 0 and text.strip().endswith("OK")


def test_check_convop_itself_passes():
    code, text = run("check", "convop:conv", "--configs", "quick")
    assert code == 0
    assert "PASSED (8/8 configurations)" in text and text.strip().endswith("all checks passed")


@pytest.mark.parametrize("kind", ["input_grad", "weight_grad", "transpose"])
def test_check_other_kinds(kind):
    target = {"input_grad": "convop:conv_input_grad", "weight_grad": "convop:conv_weight_grad",
              "transpose": "convop:conv_transpose"}[kind]
    code, text = run("check", target, "--kind", kind, "--configs", "quick", "--dtype", "float32")
    assert code == 0 and f"kind='{kind}'" in text and "float32" in text


def test_check_failing_implementation_exits_1():
    code, text = run("check", "wrong_impls:flipped_conv", "--configs", "quick")
    assert code == 1
    assert "FAILED (0/8 configurations)" in text and "kernel flipped" in text
    assert text.strip().endswith("some checks FAILED")


def test_check_torch():
    pytest.importorskip("torch")
    code, text = run("check", "torch", "--configs", "quick")
    assert code == 0
    for kind in ("forward", "input_grad", "weight_grad", "transpose"):
        assert f"check_conv(kind='{kind}') of convop.torch." in text


@pytest.mark.parametrize(("argv", "message"), [
    (["check", "nosuch_module:f"], "argument target: cannot load 'nosuch_module:f'"),
    (["check", "wrong_impls:missing"], "argument target: cannot load 'wrong_impls:missing'"),
    (["check", "wrong_impls:not_callable"], "is not callable"),
    (["check", "convop"], "expected 'torch' or MODULE:FUNCTION"),
    (["check", "convop:conv", "--kind", "all"], "argument --kind: 'all' needs the target 'torch'"),
    (["check", "convop:conv", "--kind", "sideways"], "argument --kind: invalid choice"),
    (["check", "convop:conv", "--seed", "x"], "argument --seed: invalid int value"),
    (["frobnicate"], "argument command: invalid choice"),
    ([], "the following arguments are required: command"),
])
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys):
    code, _ = run(*argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("convop: error: ") and message in err


def test_subprocess_exit_codes():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    good = subprocess.run([sys.executable, "-m", "convop", "check", "convop:conv", "--configs",
                           "quick"], capture_output=True, text=True, env=env, timeout=300)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run([sys.executable, "-m", "convop", "check", "wrong_impls:flipped_conv",
                          "--configs", "quick"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert bad.returncode == 1 and "kernel flipped" in bad.stdout
    usage = subprocess.run([sys.executable, "-m", "convop", "check"], capture_output=True,
                           text=True, env=env, timeout=300)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
