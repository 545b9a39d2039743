"""Framework bridges: each one's correct use passes the standard battery, skipping exactly
what its framework cannot express; each framework's known different semantics is caught
and named."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import convop
from convop import LayerConfig, check_conv, standard_configs
from convop.bridge import BRIDGES as FRAMEWORKS
from convop.bridge import Bridge, bridge_functions

#: Each bridge module and what it needs, from the one table (convop.bridge.BRIDGES).
BRIDGES = dict(FRAMEWORKS.values())
DTYPES = ("float64", "float32")


def _load(module: str):
    for name in BRIDGES[module]:
        pytest.importorskip(name)
    return importlib.import_module(module)


def _any(value, test) -> bool:
    return any(test(v) for v in (value if isinstance(value, tuple) else (value,)))


def _expected_skip(module: str, kind: str, cfg: LayerConfig, dtype: str) -> str | None:
    """What the framework cannot express, by the rules the bridge documents; None if it can."""
    dtype = cfg.dtype or dtype
    padded = cfg.padding not in (0, "valid") and cfg.padding_mode != "zeros"
    dilated = _any(cfg.dilation, lambda d: d > 1)
    if module == "convop.jax":
        return "feature_group_count" if kind == "transpose" and cfg.groups > 1 else None
    if module == "convop.onnx":
        if kind in ("input_grad", "weight_grad"):
            return "no gradients"
        if dtype == "float64":
            return "float32 kernels only"
        ndim = len(cfg.input_size)
        op = cfg.output_padding if isinstance(cfg.output_padding, tuple) else (
            cfg.output_padding,) * ndim
        stride = cfg.stride if isinstance(cfg.stride, tuple) else (cfg.stride,) * ndim
        if kind == "transpose" and any(o >= s for o, s in zip(op, stride)):
            return "output_padding < stride"
        return None
    if module == "convop.tensorflow":
        if kind == "transpose":
            if cfg.groups > 1:
                return "has no groups"
            return "TensorFlow:" if dilated else None
        if padded and cfg.padding_mode in ("replicate", "circular"):
            return "tf.pad has no"
        if len(cfg.input_size) == 3 and dilated:
            return "Conv3D currently only supports"
        if kind != "forward" and (dilated or cfg.groups > 1):
            return "TensorFlow:"
        return None
    return None


#: Refusals of TensorFlow's float64 CPU kernels that its float32 (oneDNN) kernels may not
#: make: some dilated 1-D and 3-D layers run there (and pass).
MAY_RUN = {"TensorFlow:", "Conv3D currently only supports"}

#: What TensorFlow 2.21's oneDNN float32 kernel gets wrong: an empty batch comes back with
#: the input's channel count, so adding the bias fails (a finding, not a bridge bug).
KNOWN_FINDINGS = {("convop.tensorflow", "forward", "float32"): {"zero batch"}}


#: The float kinds every bridge is run through here (the quantized kinds have their own
#: tests: tests/test_check_quantized.py).
FLOAT_KINDS = ("forward", "input_grad", "weight_grad", "transpose")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", FLOAT_KINDS)
@pytest.mark.parametrize("module", list(BRIDGES))
def test_bridge_passes_the_standard_battery_skipping_only_what_it_cannot_express(
        module, kind, dtype):
    bridge_module = _load(module)
    report = check_conv(getattr(bridge_module, {
        "forward": "conv", "input_grad": "conv_input_grad", "weight_grad": "conv_weight_grad",
        "transpose": "conv_transpose"}[kind]), kind=kind, dtype=dtype, rng=0)
    assert report.implementation.startswith(module + ".")
    findings = KNOWN_FINDINGS.get((module, kind, dtype), set())
    for result in report.results:
        expected = _expected_skip(module, kind, result.config, dtype)
        name = result.config.name
        if name in findings:
            assert result.status in ("error", "fail"), name
        elif expected is None or (expected in MAY_RUN and result.status == "pass"):
            assert result.status == "pass", (name, result.status, result.where, result.cause)
        else:
            assert result.status == "skip" and expected in result.where, (name, result.where)
    ran = [r for r in report.results if r.status != "skip"]
    assert report.passed == (bool(ran) and not findings)


@pytest.mark.parametrize("module", list(BRIDGES))
def test_bridge_declares_its_kinds_and_dtypes(module):
    bridge = _load(module).bridge
    assert isinstance(bridge, Bridge)
    expected = {"convop.onnx": ("forward", "transpose", "integer", "quantized"),
                "convop.torch": (*FLOAT_KINDS, "quantized")}.get(module, FLOAT_KINDS)
    assert set(bridge.kinds()) == set(expected)
    assert bridge.dtypes == (("float32",) if module == "convop.onnx" else DTYPES)


def test_bridge_functions_validate_like_convop():
    fns = bridge_functions(_load("convop.torch").bridge, "convop.torch")
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    with pytest.raises(ValueError, match="padding_mode"):
        fns.conv(x, w, padding=1, padding_mode="mirror")
    with pytest.raises(ValueError, match="output_padding"):
        fns.conv_transpose(x, np.ones((2, 3, 3, 3)), stride=2, output_padding=2)
    with pytest.raises(TypeError, match="bridge"):
        bridge_functions(object(), "x")


# Known different semantics, each named --------------------------------------------------

STRIDED = [LayerConfig("3x3 stride 2 pad 1, even input", (4, 3, 3, 3), (8, 10), stride=2,
                       padding=1)]


def _jax_same(x, weight, bias=None, *, stride, padding, dilation, groups, padding_mode):
    """A port of PyTorch's padding=1 to JAX's padding="SAME"."""
    import jax

    with jax.enable_x64(x.dtype == np.float64):
        y = jax.lax.conv_general_dilated(x, weight, tuple(np.broadcast_to(stride, 2)), "SAME",
                                         rhs_dilation=tuple(np.broadcast_to(dilation, 2)),
                                         feature_group_count=groups,
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return np.asarray(y if bias is None else y + bias[:, None, None])


def test_jax_same_with_stride_is_named():
    _load("convop.jax")
    report = check_conv(_jax_same, configs=STRIDED, rng=0)
    assert not report.passed
    assert report.failures[0].cause.startswith(
        "padding is TensorFlow's/JAX's 'SAME' (ONNX SAME_UPPER) for stride (2, 2): "
        "[(0, 1), (0, 1)] instead of [(1, 1), (1, 1)]")


def test_tensorflow_same_with_stride_is_named():
    tf = _load("convop.tensorflow").__dict__["_tf"]()

    def tf_same(x, weight, bias=None, *, stride, padding, dilation, groups, padding_mode):
        y = tf.nn.conv2d(np.moveaxis(x, 1, -1), np.transpose(weight, (2, 3, 1, 0)),
                         strides=list(np.broadcast_to(stride, 2)), padding="SAME")
        y = np.moveaxis(y.numpy(), -1, 1)
        return y if bias is None else y + bias[:, None, None]

    report = check_conv(tf_same, configs=STRIDED, rng=0)
    assert report.failures[0].cause.startswith("padding is TensorFlow's/JAX's 'SAME'")


def test_jax_default_conv_transpose_is_named_as_a_transpose_mistake():
    _load("convop.jax")
    import jax

    from convop.jax import dimension_numbers

    def jax_default(x, weight, bias=None, *, stride, padding, output_padding, dilation,
                    groups):
        # PyTorch's weight and padding, but JAX's default transpose_kernel=False.
        ndim = weight.ndim - 2
        layer = convop.bridge.Layer(tuple(np.broadcast_to(stride, ndim)),
                                    convop.padding_pairs(padding, weight.shape[2:]),
                                    tuple(np.broadcast_to(dilation, ndim)), groups, "zeros",
                                    tuple(np.broadcast_to(output_padding, ndim)))
        with jax.enable_x64(True):
            y = jax.lax.conv_transpose(
                x, weight, layer.stride,
                convop.jax.conv_transpose_padding(layer, weight.shape[2:]),
                rhs_dilation=layer.dilation,
                dimension_numbers=dimension_numbers(ndim, transposed_weight=True))
            y = np.asarray(y)
        return y if bias is None else y + bias.reshape((-1,) + (1,) * ndim)

    report = check_conv(jax_default, kind="transpose",
                        configs=[c for c in standard_configs("transpose") if c.groups == 1],
                        rng=0)
    assert report.failures
    for result in report.results:
        # A 1x1 kernel is its own flip; an empty batch has nothing to be wrong.
        if max(result.config.weight_shape[2:]) == 1 or result.config.batch == 0:
            assert result.passed
        else:
            assert result.cause.startswith("transposed convolution without the kernel "
                                           "transpose"), (result.config.name, result.cause)
            assert "jax.lax.conv_transpose" in result.cause


def _onnx_auto_pad(auto_pad: str):
    onnx, ort = _load("convop.onnx")._modules()

    def impl(x, weight, bias=None, *, stride, padding, dilation, groups, padding_mode):
        node = onnx.helper.make_node("Conv", ["x", "w"], ["y"], auto_pad=auto_pad,
                                     strides=list(np.broadcast_to(stride, weight.ndim - 2)),
                                     group=groups)
        f32 = onnx.TensorProto.FLOAT
        graph = onnx.helper.make_graph(
            [node], "g", [onnx.helper.make_tensor_value_info("x", f32, list(x.shape)),
                          onnx.helper.make_tensor_value_info("w", f32, list(weight.shape))],
            [onnx.helper.make_tensor_value_info("y", f32, None)])
        model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)])
        model.ir_version = 10
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"x": x, "w": weight})
        return y if bias is None else y + bias.reshape(-1, 1, 1)
    return impl


def test_onnx_same_lower_is_named():
    # PyTorch's "same" with an even kernel puts the odd pixel after; SAME_LOWER before.
    configs = [LayerConfig("same, even kernel", (3, 2, 4, 4), (7, 6), padding="same")]
    report = check_conv(_onnx_auto_pad("SAME_LOWER"), configs=configs, dtype="float32", rng=0)
    assert report.failures[0].cause == (
        "padding is ONNX's SAME_LOWER (the odd pixel before) for stride (1, 1): "
        "[(2, 1), (2, 1)] instead of [(1, 2), (1, 2)]")
    assert check_conv(_onnx_auto_pad("SAME_UPPER"), configs=configs, dtype="float32").passed


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("size, stride", [((8, 9), (2, 2)), ((7, 6), (3, 1)), ((5, 5), (1, 1))])
def test_auto_pad_pairs_match_onnx_runtime(auto_pad, size, stride):
    from convop.onnx import auto_pad_pairs

    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, *size)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    actual = _onnx_auto_pad(auto_pad)(x, w, stride=stride, padding=0, dilation=1, groups=1,
                                      padding_mode="zeros")
    pairs = auto_pad_pairs(auto_pad, size, (3, 4), stride=stride)
    exact = convop.conv(x.astype(np.float64), w.astype(np.float64), stride=stride,
                        padding=pairs)
    np.testing.assert_allclose(actual, exact, rtol=1e-5, atol=1e-5)


def test_pylops_true_convolution_is_named_and_its_fft_adjoint_passes():
    pylops = pytest.importorskip("pylops")
    configs = [LayerConfig(f"1 -> 1, {k}x{k}", (1, 1, k, k), (9, 8), padding=k // 2)
               for k in (3, 5)]

    def operator(weight, size):
        k = weight.shape[2:]
        return pylops.signalprocessing.Convolve2D(size, h=weight[0, 0], offset=(
            k[0] // 2, k[1] // 2), method="fft", dtype=weight.dtype)

    def pylops_forward(x, weight, bias=None, **layer):
        op = operator(weight, x.shape[2:])
        y = np.stack([(op @ xi[0].ravel()).reshape(x.shape[2:]) for xi in x])[:, None]
        return y + bias.reshape(1, -1, 1, 1) if bias is not None else y

    def pylops_adjoint(x, weight, bias=None, **layer):
        # Convolve2D.H correlates: a cross-correlation, as the forward pass should be.
        op = operator(weight, x.shape[2:])
        y = np.stack([(op.H @ xi[0].ravel()).reshape(x.shape[2:]) for xi in x])[:, None]
        return y + bias.reshape(1, -1, 1, 1) if bias is not None else y

    report = check_conv(pylops_forward, configs=configs, rng=0)
    assert [r.cause for r in report.results] == [
        "kernel flipped (convolution instead of cross-correlation)"] * 2
    # FFT rounding lands on structural zeros too; the global tolerance term accepts it.
    assert check_conv(pylops_adjoint, configs=configs, rng=0).passed


def test_cli_checks_each_installed_framework(capsys):
    from convop.cli import main

    for target, module in (("jax", "convop.jax"), ("onnxruntime", "convop.onnx")):
        _load(module)
        assert main(["check", target, "--configs", "quick"]) == 0
        text = capsys.readouterr().out
        assert f"of {module}.conv," in text and "all checks passed" in text
    # ONNX Runtime has no float64 Conv: nothing runs, which fails, with the reason listed.
    assert main(["check", "onnxruntime", "--dtype", "float64", "--configs", "quick"]) == 1
    assert "float32 kernels only" in capsys.readouterr().out
