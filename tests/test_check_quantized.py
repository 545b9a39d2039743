"""Quantized convolutions: bit-exact checks, the integer bugs real kernels shipped, causes named."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convop
from convop.validation.quantized import QUANTIZED_DTYPES

# Reference implementations written here, independently of convop.validation.quantized:
# products tap by tap in int64, requantization as the ONNX specification states it.


def _products(x, weight, x_zero_point, weight_zero_point, layer):
    """Every product's contribution, one input channel and tap at a time (int64)."""
    xs = x.astype(np.int64) - int(x_zero_point)
    ws = weight.astype(np.int64) - int(weight_zero_point)
    for index in np.ndindex(*ws.shape[1:]):
        single = np.zeros_like(ws)
        where = (slice(None),) + index
        single[where] = ws[where]
        yield convop.conv(xs, single, None, **layer)


def integer_reference(x, weight, *, x_zero_point, weight_zero_point, **layer):
    return sum(_products(x, weight, x_zero_point, weight_zero_point, layer)).astype(np.int32)


def _requantize(acc, x, bias, x_scale, weight_scale, y_scale, y_zero_point, *,
                rounding=np.rint, saturate=True):
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    if bias is not None:
        acc = acc + bias.astype(np.int64).reshape(shape)
    real = acc * (np.float64(x_scale) * np.asarray(weight_scale, np.float64)
                  / np.float64(y_scale)).reshape(shape)
    q = rounding(real) + int(y_zero_point)
    info = np.iinfo(x.dtype)
    if saturate:
        return np.clip(q, info.min, info.max).astype(x.dtype)
    return ((q - info.min) % 256 + info.min).astype(x.dtype)


def quantized_reference(x, weight, bias, *, x_scale, x_zero_point, weight_scale,
                        weight_zero_point, y_scale, y_zero_point, _rounding=np.rint,
                        _saturate=True, **layer):
    acc = sum(_products(x, weight, x_zero_point, weight_zero_point, layer))
    return _requantize(acc, x, bias, x_scale, weight_scale, y_scale, y_zero_point,
                       rounding=_rounding, saturate=_saturate)


# The bugs, one wrong implementation each -------------------------------------------------


def saturating_pairs(x, weight, *, x_zero_point, weight_zero_point, **layer):
    """Pairs of uint8 x int8 products summed with int16 saturation (VPMADDUBSW).

    pytorch/pytorch#44939, microsoft/onnxruntime#31573.
    """
    products = list(_products(x, weight, x_zero_point, weight_zero_point, layer))
    total = np.zeros_like(products[0])
    for i in range(0, len(products), 2):
        pair = products[i] + (products[i + 1] if i + 1 < len(products) else 0)
        total += np.clip(pair, -32768, 32767)
    return total.astype(np.int32)


def ignores_x_zero_point(x, weight, *, x_zero_point, weight_zero_point, **layer):
    return integer_reference(x, weight, x_zero_point=0, weight_zero_point=weight_zero_point,
                             **layer)


def ignores_weight_zero_point(x, weight, *, x_zero_point, weight_zero_point, **layer):
    return integer_reference(x, weight, x_zero_point=x_zero_point, weight_zero_point=0,
                             **layer)


def pads_with_integer_zero(x, weight, *, x_zero_point, weight_zero_point, **layer):
    geom = convop.conv_geometry(weight.shape, x.shape[2:], **layer)
    padded = np.pad(x, ((0, 0), (0, 0), *geom.padding))  # the integer 0, not the zero point
    return integer_reference(padded, weight, x_zero_point=x_zero_point,
                             weight_zero_point=weight_zero_point, **dict(layer, padding=0))


def returns_int64(x, weight, **kw):
    return integer_reference(x, weight, **kw).astype(np.int64)


def rounds_half_away(x, weight, bias, **kw):
    return quantized_reference(x, weight, bias, _rounding=lambda r: np.sign(r) * np.floor(
        np.abs(r) + 0.5), **kw)


def wraps_around(x, weight, bias, **kw):
    return quantized_reference(x, weight, bias, _saturate=False, **kw)


def first_channel_scale(x, weight, bias, *, weight_scale, **kw):
    return quantized_reference(x, weight, bias, weight_scale=np.full_like(
        weight_scale, weight_scale[0]), **kw)


def drops_bias(x, weight, bias, **kw):
    return quantized_reference(x, weight, None, **kw)


@pytest.mark.parametrize("dtype", QUANTIZED_DTYPES, ids=str)
def test_the_references_written_here_pass_bit_exactly(dtype):
    for kind, impl in (("integer", integer_reference), ("quantized", quantized_reference)):
        report = convop.check_conv(impl, kind=kind, dtype=dtype, rng=0)
        assert report.passed, report
        assert report.dtype == str(dtype)


@pytest.mark.parametrize(("impl", "kind", "cause"), [
    (saturating_pairs, "integer", "a 16-bit intermediate saturated"),
    (ignores_x_zero_point, "integer", "x_zero_point ignored"),
    (ignores_weight_zero_point, "integer", "weight_zero_point ignored"),
    (pads_with_integer_zero, "integer", "padded with the integer 0 instead of x_zero_point"),
    (rounds_half_away, "quantized", "rounds half away from zero"),
    (wraps_around, "quantized", "wraps around instead of saturating"),
    (first_channel_scale, "quantized", "per-channel weight scales read as one"),
    (drops_bias, "quantized", "bias missing"),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_each_bug_is_caught_and_named(impl, kind, cause):
    report = convop.check_conv(impl, kind=kind, rng=0)
    assert not report.passed
    assert all(f.cause.startswith(cause) for f in report.failures), [
        (f.config.name, f.cause) for f in report.failures]


def test_saturation_is_caught_on_the_deep_layers():
    report = convop.check_conv(saturating_pairs, kind="integer", rng=0)
    failed = {f.config.name for f in report.failures}
    assert {"deep 1x1: 64 -> 8", "16 -> 16"} <= failed


def test_an_int64_result_is_not_conv_integers_int32():
    report = convop.check_conv(returns_int64, kind="integer", configs="quick", rng=0)
    assert not report.passed
    assert report.failures[0].where.startswith("returned int64 for uint8 inputs (expected int32)")


def test_a_quantized_reproducer_runs_on_its_own(tmp_path):
    (tmp_path / "myquantized.py").write_text(
        "import numpy as np, convop\n"
        "def conv_integer(x, weight, *, x_zero_point, weight_zero_point, **layer):\n"
        "    shift = 0 if BUGGY else int(x_zero_point)\n"
        "    return convop.conv(x.astype(np.int64) - shift, weight.astype(np.int64)\n"
        "                       - int(weight_zero_point), **layer).astype(np.int32)\n"
        "BUGGY = True\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import myquantized

        report = convop.check_conv(myquantized.conv_integer, kind="integer", configs="quick",
                                   rng=0)
    finally:
        sys.path.remove(str(tmp_path))
    assert report.failures[0].cause.startswith("x_zero_point ignored")
    path = Path(report.write_reproducers(tmp_path / "repro")[0])
    assert "quantization = {'x_zero_point':" in path.read_text()
    env = {"PYTHONPATH": str(tmp_path)}
    bug = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                         timeout=60, env=env, check=True)
    assert " entries off" in bug.stdout and not bug.stdout.startswith("0 of"), bug.stdout
    (tmp_path / "myquantized.py").write_text(
        (tmp_path / "myquantized.py").read_text().replace("BUGGY = True", "BUGGY = False"))
    good = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          timeout=60, env=env, check=True)
    assert good.stdout.startswith("0 of "), good.stdout


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(kind="integer", dtype=np.float32), "`dtype` must be uint8 or int8 for kind='integer'"),
    (dict(kind="quantized", dtype="int16"), "`dtype` must be uint8 or int8"),
    (dict(kind="forward", dtype=np.uint8), "uint8 and int8 are for the quantized kinds"),
])
def test_dtypes_are_checked_per_kind(kwargs, match):
    with pytest.raises(TypeError, match=match):
        convop.check_conv(integer_reference, **kwargs)


@pytest.mark.parametrize("dtype", QUANTIZED_DTYPES, ids=str)
def test_onnx_runtime_conv_integer_and_qlinearconv_are_bit_exact(dtype):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import convop.onnx

    for kind, impl in (("integer", convop.onnx.conv_integer),
                       ("quantized", convop.onnx.conv_quantized)):
        report = convop.check_conv(impl, kind=kind, dtype=dtype, rng=1)
        assert report.passed, report
        assert not report.skips


def test_cli_checks_onnx_runtimes_quantized_kinds(capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from convop.cli import main

    assert main(["check", "onnxruntime", "--kind", "quantized", "--dtype", "int8",
                 "--configs", "quick"]) == 0
    out = capsys.readouterr().out
    assert "check_conv(kind='quantized') of convop.onnx.conv_quantized, int8: PASSED" in out
    assert main(["check", "onnxruntime", "--configs", "quick", "--dtype", "uint8"]) == 0
    out = capsys.readouterr().out
    assert "kind='integer') of convop.onnx.conv_integer, uint8: PASSED" in out
    assert "kind='forward') of convop.onnx.conv, float32: PASSED" in out
    assert main(["check", "onnxruntime", "--kind", "forward", "--dtype", "uint8"]) == 2
    assert "uint8 is for the quantized kinds" in capsys.readouterr().err


def test_pytorchs_quantized_convolution_is_bit_exact_but_rounds_ties_half_up():
    pytest.importorskip("torch")
    import convop.torch

    # A finding: PyTorch 2.13's x86 quantized convolution (fbgemm's fixed-point
    # requantization) rounds an exact tie half up, -79.5 to -79, where QLinearConv and
    # torch.quantize_per_tensor round half to even. Everything else is bit-exact.
    report = convop.check_conv(convop.torch.conv_quantized, kind="quantized", rng=0)
    assert report.failures, "the tie at rng=0 is rounded half to even now: update the docs"
    for failure in report.failures:
        assert failure.cause.startswith("rounds half up, toward +infinity"), failure
    assert {r.config.name for r in report.skips} == {"asymmetric padding"}
    assert convop.check_conv(convop.torch.conv_quantized, kind="quantized", rng=1).passed
    with pytest.raises(TypeError, match="`dtype` must be uint8 or int8"):
        convop.check_conv(convop.torch.conv_quantized, kind="quantized", dtype=np.float32)
    int8 = convop.check_conv(convop.torch.conv_quantized, kind="quantized", dtype=np.int8)
    assert not int8.results or all(r.status == "skip" for r in int8.results)
