"""The convop command: through main(argv) and as a subprocess."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import convop
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
    (["check", "convop"], "expected torch, jax, tensorflow, onnxruntime or MODULE:FUNCTION"),
    (["check", "convop:conv", "--kind", "all"], "argument --kind: 'all' needs a framework target (torch, jax, tensorflow, onnxruntime)"),
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


# convop inspect -------------------------------------------------------------------------


def inspect_json(*argv: str) -> dict:
    code, text = run("inspect", "--json", *argv)
    assert code == 0, text
    return json.loads(text)


def test_inspect_default_layer():
    code, text = run("inspect")
    assert code == 0
    lines = text.splitlines()
    assert lines[0].startswith("layer      2-D conv 3->8, kernel 3x3, input 16x16")
    assert "2048 x 972, nnz 55296" in text and "int32 indices" in text
    assert "dot test   passed" in text
    for key in ("spectral norm", "smallest", "condition number"):
        assert key in text


def test_inspect_json_matches_the_library():
    report = inspect_json()
    weight = np.random.default_rng(0).standard_normal((8, 3, 3, 3))
    geom = convop.conv_geometry(weight.shape, (16, 16), padding=1)
    assert report["matrix"]["shape"] == list(geom.matrix_shape("padded"))
    assert report["matrix"]["nnz"] == geom.nnz("padded")
    assert report["matrix"]["bytes"] == geom.matrix_nbytes("padded")
    assert report["dot_test"]["passed"] is True
    expected = convop.singular_values(convop.conv_matrix(weight, (16, 16), padding=1,
                                                         domain="input"))
    assert abs(report["spectrum"]["spectral_norm"] - expected[0]) <= 1e-9 * expected[0]
    assert abs(report["spectrum"]["sigma_min"] - expected[-1]) <= 1e-9 * expected[0]
    assert abs(report["spectrum"]["condition_number"] - expected[0] / expected[-1]) <= 1e-6


@pytest.mark.parametrize("argv", [
    ["--in", "2x9", "--kernel", "5", "--stride", "2", "--padding", "2"],
    ["--in", "2x6x7x5", "--kernel", "3x1x2", "--padding", "1:0x0:0x1:1", "--out-channels", "4"],
    ["--padding", "same", "--dilation", "2"],
    ["--padding", "valid", "--stride", "2x1"],
    ["--padding", "1:2x0:1", "--domain", "input", "--order", "C"],
    ["--in", "4x10x10", "--groups", "2", "--out-channels", "6", "--padding-mode", "reflect"],
    ["--padding-mode", "circular", "--spectrum", "none"],
    ["--padding-mode", "replicate", "--padding", "3", "--spectrum", "full", "--seed", "5"],
])
def test_inspect_options_match_the_library(argv):
    report = inspect_json(*argv)
    layer = report["layer"]
    geom = convop.conv_geometry(tuple(layer["weight_shape"]), tuple(layer["input_size"]),
                                stride=tuple(layer["stride"]),
                                padding=tuple(map(tuple, layer["padding"])),
                                dilation=tuple(layer["dilation"]), groups=layer["groups"],
                                padding_mode=layer["padding_mode"])
    domain = report["matrix"]["domain"]
    assert report["matrix"]["nnz"] == geom.nnz(domain)
    assert report["matrix"]["shape"] == list(geom.matrix_shape(domain))
    assert report["dot_test"]["passed"]
    if "--spectrum" in argv and "none" in argv:
        assert "spectral_norm" not in report["spectrum"]


def test_inspect_weight_file_and_save_round_trip(tmp_path):
    weight = np.random.default_rng(3).standard_normal((5, 2, 3, 2))
    np.save(tmp_path / "w.npy", weight)
    out = tmp_path / "W.npz"
    report = inspect_json("--in", "2x7x8", "--weight", str(tmp_path / "w.npy"), "--save",
                          str(out), "--domain", "input", "--order", "C")
    assert report["layer"]["weight_shape"] == [5, 2, 3, 2]
    saved = sp.load_npz(out)
    expected = convop.conv_matrix(weight, (7, 8), padding=1, domain="input", order="C")
    assert (saved != expected).nnz == 0 and saved.shape == expected.shape


def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as fh:
        header = fh.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_inspect_plot_writes_pngs(mode, tmp_path):
    pytest.importorskip("matplotlib")
    report = inspect_json("--in", "2x12x12", "--out-channels", "4", "--padding-mode", mode,
                          "--plot", str(tmp_path))
    names = sorted(p.split("/")[-1] for p in report["plots"])
    expected = ["frequency.png", "spectrum.png", "structure.png"] if mode == "circular" else [
        "spectrum.png", "structure.png"]
    assert names == expected
    sizes = {"structure.png": (1300, 600), "spectrum.png": (700, 450),
             "frequency.png": (600, 600)}
    for name in names:
        path = tmp_path / name
        assert path.stat().st_size > 5000 and png_size(path) == sizes[name]


def test_inspect_plot_without_matplotlib(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _ = run("inspect", "--plot", str(tmp_path))
    err = capsys.readouterr().err
    assert code == 2 and 'pip install "convop[plot]"' in err and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("argv", "message"), [
    (["--in", "3"], "argument --in: expected C x 1 to 3 spatial sizes"),
    (["--in", "3xa"], "argument --in: expected integers joined by 'x'"),
    (["--kernel", "3x3x3"], "argument --kernel: expected 1 or 2 values"),
    (["--padding", "1:2:3"], "argument --padding: expected before:after integers per axis"),
    (["--padding", "1:2x3"], "argument --padding: expected before:after integers per axis"),
    (["--padding", "same", "--stride", "2"], "--padding same needs --stride 1"),
    (["--stride", "0"], "--stride must be a positive int"),
    (["--groups", "2"], "argument --groups: 2 must divide the 3 input channels"),
    (["--groups", "0"], "argument --groups: must be a positive integer; got 0"),
    (["--kernel", "0"], "argument --kernel: sizes must be positive; got '0'"),
    (["--out-channels", "0"], "argument --out-channels: must be a positive integer; got 0"),
    (["--seed", "-1"], "argument --seed: must be a non-negative integer; got -1"),
    (["--in", "0x8x8"], "argument --in: expected C x 1 to 3 spatial sizes, all positive"),
    (["--save", "/nonexistent/W.npz"], "argument --save: cannot write '/nonexistent/W.npz'"),
    (["--plot", "/proc/x"], "argument --plot: cannot create '/proc/x'"),
    (["--in", "3x4x4", "--kernel", "7"], "larger than the padded input"),
    (["--weight", "missing.npy"], "argument --weight: cannot read 'missing.npy'"),
    (["--weight", "w.npy", "--kernel", "3"], "argument --weight: replaces --kernel"),
    (["--padding-mode", "mirror"], "argument --padding-mode: invalid choice"),
    (["--padding", "4", "--padding-mode", "reflect", "--in", "1x4x4"], "padding_mode='reflect'"),
    (["--spectrum", "some"], "argument --spectrum: invalid choice"),
])
def test_inspect_bad_arguments(argv, message, capsys):
    code, _ = run("inspect", *argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(("weight", "message"), [
    (np.ones((2, 3, 3, 3), np.float16), "holds float16; expected one of float32"),
    (np.full((2, 3, 3, 3), np.nan), "holds NaN or infinite entries"),
    (np.ones((2, 3, 0, 3)), "is not (C_out, C_in/groups, *kernel)"),
    (np.array(["a"]), "holds <U1"),
])
def test_inspect_bad_weight_files(weight, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("w.npy", weight)
    code, _ = run("inspect", "--weight", "w.npy", "--in", "3x8x8")
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_inspect_float32_weights_pass_the_dot_test(tmp_path, capsys, monkeypatch):
    # float32 weights are exact numbers: the dot test runs in float64 and must pass.
    monkeypatch.chdir(tmp_path)
    np.save("w32.npy", np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32))
    code, out = run("inspect", "--weight", "w32.npy", "--in", "3x16x16", "--json")
    report = json.loads(out)
    assert code == 0 and report["dot_test"]["passed"] and report["dot_test"]["dtype"] == "float64"
    assert report["matrix"]["dtype"] == "float32"


def test_every_stage_reports_progress(tmp_path, capsys, monkeypatch):
    from convop import _progress

    monkeypatch.setattr(_progress, "DELAY", 0.0)
    monkeypatch.setattr(_progress, "INTERVAL", 0.01)
    code, _ = run("inspect", "--in", "2x6x6", "--out-channels", "2", "--padding-mode",
                  "circular", "--save", str(tmp_path / "W.npz"), "--plot", str(tmp_path))
    err = capsys.readouterr().err
    assert code == 0, err
    for stage in ("building the matrix", "the dot test", "the spectral norm",
                  "the smallest singular value", "saving", "drawing structure.png",
                  "drawing spectrum.png", "drawing frequency.png"):
        assert f"{stage}" in err and "done in" in err, (stage, err)


def test_inspect_weight_shape_mismatch(tmp_path, capsys):
    np.save(tmp_path / "w.npy", np.ones((4, 2, 3, 3)))
    code, _ = run("inspect", "--in", "3x8x8", "--weight", str(tmp_path / "w.npy"))
    assert code == 2 and "argument --in: 3 channels" in capsys.readouterr().err


def test_inspect_skips_a_huge_smallest_singular_value(monkeypatch):
    import convop.cli.inspect as cli_inspect

    monkeypatch.setattr(cli_inspect, "AUTO_SMALLEST_LIMIT", 100)
    report = inspect_json()
    assert report["spectrum"]["sigma_min"] is None
    assert "pass --spectrum full" in report["spectrum"]["skipped"]


def test_inspect_refuses_a_matrix_beyond_memory(capsys):
    code, text = run("inspect", "--in", "512x2048x2048", "--out-channels", "512",
                     "--spectrum", "none")
    assert code == 1
    nnz = convop.conv_geometry((512, 512, 3, 3), (2048, 2048), padding=1).nnz()
    assert f"nnz {nnz}" in text and "TiB" in text  # sizes are printed before building
    assert "needs an estimated" in capsys.readouterr().err


def test_inspect_subprocess_json():
    result = subprocess.run([sys.executable, "-m", "convop", "inspect", "--json"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["matrix"]["nnz"] == 55296


def test_output_into_a_closed_pipe_is_quiet():
    # `convop inspect | head -1`: the reader stops early; no traceback.
    result = subprocess.run(
        f"{sys.executable} -m convop inspect | head -1", shell=True, capture_output=True,
        text=True, timeout=300)
    assert result.stdout.startswith("layer") and "Traceback" not in result.stderr


def test_large_builds_report_on_a_terminal_or_when_asked(capsys, monkeypatch):
    from convop import _progress

    monkeypatch.setattr(_progress, "DELAY", 0.0)
    monkeypatch.setattr(_progress, "LARGE_BYTES", 1)
    # A library is quiet unless asked: stderr here is a pipe (pytest's capture).
    convop.conv_matrix(np.ones((2, 2, 3, 3)), (8, 8), padding=1)
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("CONVOP_PROGRESS", "1")
    convop.conv_matrix(np.ones((2, 2, 3, 3)), (8, 8), padding=1)
    convop.pad_matrix(2, (8, 8), 1)
    err = capsys.readouterr().err
    assert "building the 128 x 200 conv matrix" in err and "padding matrix" in err
    monkeypatch.setenv("CONVOP_PROGRESS", "0")
    with _progress.command_line():
        convop.conv_matrix(np.ones((2, 2, 3, 3)), (8, 8), padding=1)
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_the_reports(monkeypatch):
    import io

    from convop import _progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(_progress, "DELAY", 0.0)
    monkeypatch.setattr(_progress, "LARGE_BYTES", 1)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    convop.conv_matrix(np.ones((2, 2, 3, 3)), (8, 8), padding=1)
    assert "building the 128 x 200 conv matrix" in terminal.getvalue()


def test_a_loop_of_library_calls_stays_quiet(capsys):
    # After one call printed (asked for), later quick calls print nothing: the silence
    # of a stage counts from an earlier stage's last line only on the command line.
    w = np.random.default_rng(0).standard_normal((4, 4, 3, 3))
    convop.spectral_norm(w, (8, 8), padding=1, progress=True)
    assert "done in" in capsys.readouterr().err
    for _ in range(5):
        convop.spectral_norm(w, (8, 8), padding=1)
    assert capsys.readouterr().err == ""


def test_nested_stages_print_one_line_each(tmp_path, capsys, monkeypatch):
    # inspect's "building the matrix" holds the builder's own stage: one line, not two.
    from convop import _progress

    monkeypatch.setattr(_progress, "DELAY", 0.0)
    monkeypatch.setattr(_progress, "LARGE_BYTES", 1)
    code, _ = run("inspect", "--in", "2x6x6", "--out-channels", "2", "--spectrum", "none")
    err = capsys.readouterr().err
    assert code == 0 and "building the matrix ..." in err, err
    assert "conv matrix" not in err, err


def test_check_a_module_in_the_current_directory_with_the_console_script(tmp_path):
    (tmp_path / "myconv.py").write_text(
        "import convop\n"
        "def forward(x, weight, bias=None, **layer):\n"
        "    return convop.conv(x, weight, bias, **layer)\n"
        "def two_args(x, weight):\n"
        "    return x\n")
    script = shutil.which("convop")
    assert script, "the console script is installed with the package"
    good = subprocess.run([script, "check", "myconv:forward", "--configs", "quick"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    bad = subprocess.run([script, "check", "myconv:two_args", "--configs", "quick"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "does not take the call of kind 'forward'" in bad.stderr
    assert "x, weight, bias, *, stride" in bad.stderr


# convop audit ---------------------------------------------------------------------------


def test_audit_a_model_factory_from_the_current_directory(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    (tmp_path / "mymodels.py").write_text(
        "import torch\n"
        "def small():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),\n"
        "                               torch.nn.Conv2d(4, 2, 3, stride=2))\n"
        "def not_a_model():\n"
        "    return 3\n")
    monkeypatch.chdir(tmp_path)
    code, text = run("audit", "mymodels:small", "--in", "3x8x8", "--json", "--sigma-min")
    assert code == 0
    data = json.loads(text)
    assert [row["name"] for row in data["layers"]] == ["0", "2"]
    assert all(row["sigma_min"] is not None for row in data["layers"])
    assert data["layers"][0]["ratios"]["gram_bound"] >= 1 - 1e-12
    code, text = run("audit", "mymodels:small", "--in", "3x8x8", "--plot", str(tmp_path / "pics"))
    assert code == 0 and "reshaped" in text and "sequential network only" in text
    assert (tmp_path / "pics" / "audit.png").stat().st_size > 5000
    capsys.readouterr()  # the runs above may have reported progress (a loaded machine)
    for argv, message in ((["mymodels:not_a_model", "--in", "3x8x8"], "not a torch.nn.Module"),
                          (["model.onnx", "--in", "3x8x8"], "'model.onnx' is not a file"),
                          (["mymodels:small", "--in", "3x0"], "argument --in"),
                          (["mymodels:small", "--in", "3x8x8", "--rtol", "2"], "--rtol")):
        code, _ = run("audit", *argv)
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1


def test_stages_in_a_row_are_never_silent_for_longer_than_the_delay():
    import io
    import time

    from convop._progress import Progress, command_line

    out = io.StringIO()
    with command_line():
        with Progress("first", stream=out, delay=0.2):
            time.sleep(0.35)  # prints its line and "done"
        time.sleep(0.1)  # a quick stage, silent
        with Progress("second", stream=out, delay=0.2):
            time.sleep(0.15)  # under its own delay, but 0.25 s after the last line
    lines = out.getvalue().splitlines()
    assert lines[0] == "first ..." and lines[-1].startswith("second: done")


def test_audit_norms_flag(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    (tmp_path / "normsmodel.py").write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(),\n"
        "                               torch.nn.Conv2d(3, 2, 3))\n")
    monkeypatch.chdir(tmp_path)
    assert main(["audit", "normsmodel:build", "--in", "2x6x6", "--norms", "1,inf",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data["network_bound"]) >= {"norm_1", "norm_inf"}
    assert all(row["norm_1"] > 0 and row["norm_inf"] > 0 for row in data["layers"])
    assert main(["audit", "normsmodel:build", "--in", "2x6x6", "--norms", "3"]) == 2
    assert "argument --norms" in capsys.readouterr().err


def test_check_writes_reproducers(tmp_path, monkeypatch, capsys):
    (tmp_path / "mybug.py").write_text(
        "import convop\n"
        "def forward(x, weight, bias=None, **layer):\n"
        "    return convop.conv(x, weight, None, **layer)  # drops the bias\n")
    monkeypatch.chdir(tmp_path)
    code = main(["check", "mybug:forward", "--configs", "quick", "--reproducers", "out"])
    text = capsys.readouterr().out
    assert code == 1 and "reproducers written to out" in text
    files = sorted((tmp_path / "out").glob("*.py"))
    assert files and "from mybug import forward" in files[0].read_text()
    assert "bias missing" in files[0].read_text()
