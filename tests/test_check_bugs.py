"""The validation kit against the bugs frameworks shipped: each re-created, caught, named.

Also what a user needs to report one: a standalone reproducer of every failure,
and the checks of batch-size dependence, memory layouts and float16 accumulation.
"""

from __future__ import annotations

import numpy as np
import pytest

import convop


def test_a_cause_is_never_named_where_it_cannot_change_the_result():
    # An implementation a few tolerances off (a lower-precision accumulation) fails; on a
    # 1x1 layer a flipped kernel is the kernel itself, so "kernel flipped" matched that
    # failure within its 10x margin. A cause equal to the right result explains nothing.
    from convop.validation.battery import RTOL

    def sloppy(x, weight, bias=None, **layer):
        return convop.conv(x, weight, bias, **layer) * (1 + 15 * RTOL[np.dtype(x.dtype)])

    for config in (convop.LayerConfig("1x1 kernel", (5, 3, 1, 1), (6, 5)),
                   convop.LayerConfig("grouped 1x1", (6, 2, 1, 1), (4, 5), groups=3)):
        report = convop.check_conv(sloppy, configs=[config], rng=0)
        (result,) = report.failures
        assert "flipped" not in result.cause, result


def test_an_implementation_returning_a_list_is_reported_as_a_list():
    def as_list(x, weight, bias=None, **layer):
        return convop.conv(x, weight, bias, **layer).tolist()

    config = convop.LayerConfig("3x3", (2, 2, 3, 3), (5, 5), padding=1)
    report = convop.check_conv(as_list, configs=[config], dtype=np.float32, rng=0)
    (result,) = report.failures
    assert "returned a list, which numpy reads as float64 for float32 inputs" in result.where


def test_every_failure_comes_with_a_standalone_reproducer(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "mybuggyconv.py").write_text(
        "import convop\n"
        "def conv(x, weight, bias=None, **layer):\n"
        "    layer['padding'] = 0 if layer.get('padding_mode', 'zeros') == 'zeros' else "
        "layer['padding']\n"
        "    return convop.conv(x, weight, bias, **layer)\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import mybuggyconv

        report = convop.check_conv(mybuggyconv.conv, configs="quick", rng=0)
    finally:
        sys.path.remove(str(tmp_path))
    assert report.failures and all(r.reproducer for r in report.failures)
    assert all(not r.reproducer for r in report.results if r.passed)
    paths = report.write_reproducers(tmp_path / "repro")
    assert len(paths) == len(report.failures)
    env = {"PYTHONPATH": str(tmp_path)}
    for path in paths[:2]:
        run = subprocess.run([sys.executable, path], capture_output=True, text=True,
                             timeout=60, env=env, check=False)
        # The buggy call is reproduced without convop's check: entries off, or its error.
        assert ("entries off" in run.stdout and not run.stdout.startswith("0 of")
                or run.returncode != 0), run.stdout + run.stderr
    # The same snippet with a correct implementation finds nothing: inputs, expected
    # values and tolerance are right.
    source = Path(paths[0]).read_text().replace(
        "from mybuggyconv import conv", "from convop import conv")
    fixed = tmp_path / "fixed.py"
    fixed.write_text(source)
    run = subprocess.run([sys.executable, str(fixed)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.stdout.startswith("0 of"), run.stdout + run.stderr


def test_results_that_depend_on_the_batch_size_are_caught_and_named():
    # TensorFlow #1299, #9870: an implementation right for a batch and wrong for one sample
    # (here: a batch of 1 drops the bias), and one wrong only for larger batches.
    def single_sample_bug(x, weight, bias=None, **layer):
        return convop.conv(x, weight, None if x.shape[0] == 1 else bias, **layer)

    def batch_bug(x, weight, bias=None, **layer):
        y = convop.conv(x, weight, bias, **layer)
        if x.shape[0] > 2:
            y[2:] = convop.conv(x[1:2], weight, bias, **layer)  # later samples repeat one
        return y

    config = convop.LayerConfig("batch 3", (3, 2, 3, 3), (5, 6), padding=1, batch=3)
    (first,) = convop.check_conv(single_sample_bug, configs=[config], rng=0).failures
    assert first.cause.startswith("results depend on the batch size: the batch of 3 passes")
    assert "the first sample alone" in first.where and first.reproducer
    (second,) = convop.check_conv(batch_bug, configs=[config], rng=0).failures
    assert second.cause.startswith("results depend on the batch size: the first sample alone")
    # Batches under 3 are not run twice: no cost for the rest of the battery.
    small = convop.LayerConfig("batch 2", (3, 2, 3, 3), (5, 6), padding=1)
    assert convop.check_conv(single_sample_bug, configs=[small], rng=0).passed


def test_an_all_zero_output_is_caught_and_named():
    # pytorch/pytorch#19912: grouped 1x1 convolutions returned zeros.
    def zeros_for_grouped_1x1(x, weight, bias=None, **layer):
        y = convop.conv(x, weight, bias, **layer)
        return np.zeros_like(y) if layer["groups"] > 1 and weight.shape[2:] == (1, 1) else y

    report = convop.check_conv(zeros_for_grouped_1x1, rng=0)
    failed = {r.config.name: r for r in report.failures}
    assert set(failed) == {"grouped 1x1"}
    assert failed["grouped 1x1"].cause.startswith("the output is all zeros")


def test_float16_is_held_to_a_float32_accumulation():
    # A tolerance from the accumulation length: float32 sums rounded once to float16 pass,
    # sums accumulated in float16 (every partial sum rounded) fail.
    def float32_accumulation(x, weight, bias=None, **layer):
        return convop.conv(x, weight, bias, **layer).astype(np.float16)  # computed in float32

    def float16_accumulation(x, weight, bias=None, **layer):
        cols = convop.im2col(x, weight.shape[2:], stride=layer["stride"],
                             padding=layer["padding"], dilation=layer["dilation"])
        w = weight.reshape(weight.shape[0], -1)
        y = np.zeros((w.shape[0], cols.shape[1]), dtype=np.float16)
        for t in range(w.shape[1]):  # one rounding to float16 per added product
            y += w[:, t:t + 1] * cols[t]
        if bias is not None:
            y += bias[:, None]
        n = x.shape[0]
        out = convop.output_size(x.shape[2:], weight.shape[2:], stride=layer["stride"],
                                 padding=layer["padding"], dilation=layer["dilation"])
        return np.moveaxis(y.reshape(w.shape[0], *out, n), -1, 0)

    configs = [convop.LayerConfig("16->8 3x3", (8, 16, 3, 3), (6, 6), padding=1),
               convop.LayerConfig("8->8 3x3 stride 2", (8, 8, 3, 3), (7, 7), stride=2)]
    assert convop.check_conv(float32_accumulation, configs=configs, dtype=np.float16,
                             rng=0).passed
    caught = convop.check_conv(float16_accumulation, configs=configs, dtype=np.float16, rng=0)
    assert len(caught.failures) == 2


# Bugs frameworks shipped, re-created --------------------------------------------------------


def _pairs_of(padding, ndim):
    if isinstance(padding, int):
        return ((padding, padding),) * ndim
    return tuple(p if isinstance(p, tuple) else (p, p) for p in padding)


def test_grouped_weight_gradients_from_the_wrong_group_are_named():
    # pytorch/pytorch#51430: weight gradients wrong for groups > 1.
    def first_group_only(x, grad_output, kernel_size, *, groups=1, **layer):
        per = x.shape[1] // groups
        x = np.concatenate([x[:, :per]] * groups, axis=1)
        return convop.conv_weight_grad(x, grad_output, kernel_size, groups=groups, **layer)

    report = convop.check_conv(first_group_only, kind="weight_grad", rng=0)
    failed = {r.config.name: r for r in report.failures}
    grouped = {c.name for c in convop.standard_configs("weight_grad") if c.groups > 1}
    assert set(failed) == grouped - {"zero batch"}
    for r in failed.values():
        assert r.cause.startswith("every group's weight gradient taken from the first"), r


def test_circular_padding_made_symmetric_or_on_reversed_axes_is_named():
    # pytorch/pytorch#24504 (one side 0 padded anyway), #29712 (the axes mixed up).
    def symmetric(x, weight, bias=None, *, padding=0, **layer):
        pairs = _pairs_of(padding, x.ndim - 2) if not isinstance(padding, str) else padding
        if layer.get("padding_mode") == "circular" and not isinstance(pairs, str):
            padding = tuple((max(p), max(p)) for p in pairs)
        return convop.conv(x, weight, bias, padding=padding, **layer)

    def reversed_axes(x, weight, bias=None, *, padding=0, **layer):
        if layer.get("padding_mode") == "circular" and not isinstance(padding, str):
            padding = _pairs_of(padding, x.ndim - 2)[::-1]
        return convop.conv(x, weight, bias, padding=padding, **layer)

    one_side = {r.config.name: r for r in convop.check_conv(symmetric, rng=0).failures}
    assert "circular, one side 0" in one_side
    assert one_side["circular, one side 0"].cause.startswith("padding made symmetric")
    axes = {r.config.name: r for r in convop.check_conv(reversed_axes, rng=0).failures}
    assert axes["circular, one axis"].cause.startswith(
        "padding of the spatial axes in reverse order")


def test_zero_filled_output_padding_rows_are_named():
    # apache/tvm#19524: the rows output_padding adds were left at zero.
    def zero_filled(x, weight, bias=None, *, output_padding=0, **layer):
        y = convop.conv_transpose(x, weight, bias, output_padding=output_padding, **layer)
        extra = _pairs_of(output_padding, x.ndim - 2)
        for axis, (e, _) in enumerate(extra):
            if e:
                rows = [slice(None)] * y.ndim
                rows[2 + axis] = slice(y.shape[2 + axis] - e, None)
                y[tuple(rows)] = 0.0
        return y

    report = convop.check_conv(zero_filled, kind="transpose", rng=0)
    assert report.failures
    for r in report.failures:
        assert r.cause.startswith("output_padding rows zero-filled"), r


def test_channels_last_and_strided_inputs_are_in_the_battery():
    # An implementation that reads its input in memory order: right for contiguous
    # arrays, wrong for the channels-last layer; the reproducer re-creates the layout.
    def memory_order(x, weight, bias=None, **layer):
        x = np.asarray(x).ravel(order="K").reshape(x.shape)
        return convop.conv(x, weight, bias, **layer)

    report = convop.check_conv(memory_order, rng=0)
    assert {r.config.name for r in report.failures} == {"channels-last input"}
    assert "np.moveaxis(np.ascontiguousarray" in report.failures[0].reproducer
    assert convop.check_conv(convop.conv, rng=0).passed  # every layout, the right answer
    with pytest.raises(ValueError, match="`layout`"):
        convop.check_conv(convop.conv, configs=[convop.LayerConfig(
            "bad", (2, 2, 3, 3), (5, 5), layout="fortran")])


def test_an_output_size_without_the_dilation_is_named():
    # tensorflow/tensorflow#27667: a depthwise layer with stride and dilation got the wrong
    # output size. Here the size formula forgets the dilation (values of a cropped output).
    def undilated_size(x, weight, bias=None, *, stride=1, padding=0, dilation=1, **layer):
        y = convop.conv(x, weight, bias, stride=stride, padding=padding, dilation=dilation,
                        **layer)
        size = convop.output_size(x.shape[2:], weight.shape[2:], stride=stride,
                                  padding=padding)
        full = np.zeros((*y.shape[:2], *size))
        common = tuple(slice(0, min(a, b)) for a, b in zip(size, y.shape[2:]))
        full[(slice(None), slice(None), *common)] = y[(slice(None), slice(None), *common)]
        return full

    config = convop.LayerConfig("depthwise stride 2 dilation 2", (4, 1, 3, 3), (9, 10),
                                stride=2, dilation=2, padding=2, groups=4)
    (result,) = convop.check_conv(undilated_size, configs=[config], rng=0).failures
    assert result.cause.startswith("output size (6, 6), as if dilation were 1"), result.cause


def test_asymmetric_same_exported_as_symmetric_pads_is_named():
    # pytorch/pytorch#27602, onnx/tensorflow-onnx#1028: SAME_UPPER's (1, 2) written as (1, 1).
    def symmetric_export(x, weight, bias=None, *, padding=0, dilation=1, **layer):
        if padding == "same":
            pairs = convop.same_padding_pairs(x.shape[2:], weight.shape[2:], dilation=dilation)
            padding = tuple((min(p), min(p)) for p in pairs)
        return convop.conv(x, weight, bias, padding=padding, dilation=dilation, **layer)

    failed = {r.config.name: r for r in convop.check_conv(symmetric_export, rng=0).failures}
    assert set(failed) == {"same, even kernel"}
    assert failed["same, even kernel"].cause.startswith(
        "padding made symmetric on the smaller side")


def test_a_3d_grouped_weight_gradient_wrong_for_an_anisotropic_stride_is_caught():
    # pytorch/pytorch#68868: oneDNN's Conv3d weight gradient with groups 3 and stride
    # (4, 4, 1). Re-created: the last group's gradient reads the input one pixel off on the
    # unit-stride axis, only for 3-D grouped layers whose strides differ.
    def onednn_like(x, grad_output, kernel_size, *, stride=1, groups=1, **layer):
        dw = convop.conv_weight_grad(x, grad_output, kernel_size, stride=stride,
                                     groups=groups, **layer)
        strides = stride if isinstance(stride, tuple) else (stride,) * (x.ndim - 2)
        if x.ndim == 5 and groups > 1 and len(set(strides)) > 1:
            per = x.shape[1] // groups
            rolled = np.roll(x, 1, axis=-1)
            wrong = convop.conv_weight_grad(rolled, grad_output, kernel_size, stride=stride,
                                            groups=groups, **layer)
            out_per = dw.shape[0] // groups
            dw[-out_per:] = wrong[-out_per:]
            assert per  # every group has input channels
        return dw

    report = convop.check_conv(onednn_like, kind="weight_grad", rng=0)
    failed = {r.config.name: r for r in report.failures}
    assert set(failed) == {"3-D groups 3 stride (4, 4, 1)"}
    assert failed["3-D groups 3 stride (4, 4, 1)"].where.startswith("output channels 4-5 of 6")
    assert failed["3-D groups 3 stride (4, 4, 1)"].cause.startswith(
        "wrong in group 2 of 3 only, every channel of it, and right in the others")


def test_an_adjoint_padded_for_the_undilated_kernel_is_named():
    # jax-ml/jax#563: the adjoint of a dilated convolution was wrong. Re-created: the
    # adjoint's padding from the undilated kernel, k - 1 instead of d (k - 1), which moves
    # the gradient by (d - 1)(k - 1) along the dilated axes.
    def undilated_adjoint(grad_output, weight, input_size, *, dilation=1, **layer):
        g = convop.conv_input_grad(grad_output, weight, input_size, dilation=dilation, **layer)
        ndim = grad_output.ndim - 2
        dil = dilation if isinstance(dilation, tuple) else (dilation,) * ndim
        out = np.zeros_like(g)
        target, source = [slice(None)] * 2, [slice(None)] * 2
        for d, k, n in zip(dil, weight.shape[2:], g.shape[2:]):
            s = min((d - 1) * (k - 1), n)
            target.append(slice(s, n))
            source.append(slice(0, n - s))
        out[tuple(target)] = g[tuple(source)]
        return out

    report = convop.check_conv(undilated_adjoint, kind="input_grad", rng=0)
    dilated = {c.name for c in convop.standard_configs("input_grad")
               if c.dilation != 1 and c.batch > 0}
    failed = {r.config.name: r for r in report.failures}
    assert set(failed) == dilated
    for r in failed.values():
        assert r.cause.startswith("input gradient shifted by (d - 1)(k - 1)"), r
        assert r.cause.endswith("computed from the undilated kernel (jax-ml/jax#563)"), r


def _accumulate_in(dtype):
    """A forward pass whose every partial sum is rounded to ``dtype`` (products in float32)."""
    def low_accumulation(x, weight, bias=None, **layer):
        cols = convop.im2col(x.astype(np.float32), weight.shape[2:], stride=layer["stride"],
                             padding=layer["padding"], dilation=layer["dilation"])
        w = weight.reshape(weight.shape[0], -1).astype(np.float32)
        y = np.zeros((w.shape[0], cols.shape[1]), dtype=dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            for t in range(w.shape[1]):
                y = (y.astype(np.float32) + w[:, t:t + 1] * cols[t]).astype(dtype)
            if bias is not None:
                y = (y.astype(np.float32) + bias[:, None].astype(np.float32)).astype(dtype)
        out = convop.output_size(x.shape[2:], weight.shape[2:], stride=layer["stride"],
                                 padding=layer["padding"], dilation=layer["dilation"])
        return np.moveaxis(y.reshape(w.shape[0], *out, x.shape[0]), -1, 0)
    return low_accumulation


def _float32_then(x, weight, bias=None, **layer):
    def f32(a):
        return None if a is None else a.astype(np.float32)

    with np.errstate(over="ignore"):
        return convop.conv(f32(x), f32(weight), f32(bias), **layer).astype(x.dtype)


def test_float16_overflow_in_the_accumulator_is_named_and_true_overflow_passes():
    # pytorch/pytorch#44109, #153700: float16 accumulation overflowed where the output fits.
    (large,) = [c for c in convop.standard_configs() if c.scale != 1.0]
    right = convop.check_conv(_float32_then, configs=[large], dtype=np.float16, rng=0)
    assert right.passed, right  # its infinities are where the exact output passes 65504
    report = convop.check_conv(_accumulate_in(np.float16), configs=[large], dtype=np.float16,
                               rng=0)
    (failure,) = report.failures
    assert failure.cause.startswith("float16 overflow: infinite where the exact output fits")


def test_bfloat16_is_held_to_a_float32_accumulation():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bfloat16 = np.dtype(ml_dtypes.bfloat16)
    configs = [convop.LayerConfig("16->8 3x3", (8, 16, 3, 3), (6, 6), padding=1),
               convop.LayerConfig("8->8 3x3 stride 2", (8, 8, 3, 3), (7, 7), stride=2)]
    right = convop.check_conv(_float32_then, configs=configs, dtype="bfloat16", rng=0)
    assert right.passed and right.dtype == "bfloat16"
    caught = convop.check_conv(_accumulate_in(bfloat16), configs=configs, dtype=bfloat16,
                               rng=0)
    assert len(caught.failures) == 2 and min(r.ratio for r in caught.failures) > 2


def test_pytorch_passes_bfloat16_and_float16():
    pytest.importorskip("ml_dtypes")
    torch_bridge = pytest.importorskip("convop.torch")
    pytest.importorskip("torch")
    for dtype in ("bfloat16", "float16"):
        report = convop.check_conv(torch_bridge.conv, configs="quick", dtype=dtype, rng=0)
        assert report.passed, report


@pytest.mark.parametrize(("scale", "error"), [(0.0, ValueError), (float("nan"), ValueError),
                                              (True, TypeError), ("2", TypeError)])
def test_a_bad_scale_is_named(scale, error):
    with pytest.raises(error, match="`scale` must be a finite positive number"):
        convop.check_conv(convop.conv, configs=[convop.LayerConfig(
            "bad", (2, 2, 3, 3), (5, 5), scale=scale)])
