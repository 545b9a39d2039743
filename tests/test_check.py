"""The validation kit: dot_test and check_conv catch and localize wrong implementations."""

from __future__ import annotations

import numpy as np
import pytest

import convop
from convop.geometry import conv_geometry

FLOAT_TYPES = [np.float64, np.float32]


def flip(w):
    return np.flip(w, axis=tuple(range(2, w.ndim)))


# dot_test ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", FLOAT_TYPES)
def test_dot_test_passes_for_the_matrix_and_its_transpose(dtype, rng):
    W = convop.conv_matrix(rng.standard_normal((4, 3, 3, 3)).astype(dtype), (9, 8), padding=1,
                           stride=2, domain="input")
    report = convop.dot_test(lambda x: W @ x, lambda y: W.T @ y, (W.shape[1],), (W.shape[0],),
                             dtype=dtype, rng=0)
    assert report.passed and report.worst <= report.tolerance
    assert "PASSED" in str(report) and len(report.errors) == 3


@pytest.mark.parametrize("dtype", FLOAT_TYPES)
def test_dot_test_fails_for_a_perturbed_adjoint(dtype, rng):
    W = convop.conv_matrix(rng.standard_normal((4, 3, 3, 3)).astype(dtype), (9, 8), padding=1,
                           domain="input")
    E = W.copy()
    # A relative error of 1e-3 in the adjoint's entries: detectable in both dtypes.
    E.data = E.data * (1 + 1e-3 * rng.standard_normal(E.nnz)).astype(dtype)
    report = convop.dot_test(lambda x: W @ x, lambda y: E.T @ y, (W.shape[1],), (W.shape[0],),
                             dtype=dtype, rng=0)
    assert not report.passed
    assert "FAILED" in str(report) and "<- fails" in str(report)


def test_dot_test_of_the_layer_functions_and_an_unflipped_adjoint(rng):
    w = rng.standard_normal((4, 3, 3, 3))
    fwd = lambda x: convop.conv(x, w, padding=1)  # noqa: E731
    good = lambda y: convop.conv_input_grad(y, w, (8, 8), padding=1)  # noqa: E731
    # A classic bug: the "adjoint" as a correlation with the unflipped kernel.
    bad = lambda y: convop.conv(y, np.swapaxes(w, 0, 1), padding=1)  # noqa: E731
    shapes = ((2, 3, 8, 8), (2, 4, 8, 8))
    assert convop.dot_test(fwd, good, *shapes, rng=1).passed
    assert not convop.dot_test(fwd, bad, *shapes, rng=1).passed


def test_dot_test_rejects_wrong_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"`forward` must return `output_shape` \(3,\)"):
        convop.dot_test(lambda x: x, lambda y: y, (2,), (3,))
    with pytest.raises(TypeError, match="`dtype` must be float32, float64, complex64 or complex128"):
        convop.dot_test(lambda x: x, lambda y: y, (2,), (2,), dtype=np.int64)
    with pytest.raises(TypeError, match="`forward` must be callable; got 3"):
        convop.dot_test(3, lambda y: y, (2,), (2,))
    with pytest.raises(TypeError, match="`adjoint` must be callable"):
        convop.dot_test(lambda x: x, None, (2,), (2,))
    with pytest.raises(TypeError, match="`input_shape` must be a shape"):
        convop.dot_test(lambda x: x, lambda y: y, "ab", (2,))
    with pytest.raises(ValueError, match=r"`trials` must be at most 10000; got 2147483648"):
        convop.dot_test(lambda x: x, lambda y: y, (2,), (2,), trials=2**31)
    with pytest.raises(MemoryError, match=r"a dot test on arrays of shapes \(1048576,\)"):
        convop.dot_test(lambda x: x, lambda y: y, (2**20,), (2**20,), max_bytes=2**20)


def test_dot_test_complex_catches_a_missing_conjugate(rng):
    A = rng.standard_normal((5, 4)) + 1j * rng.standard_normal((5, 4))
    good = convop.dot_test(lambda x: A @ x, lambda y: A.conj().T @ y, (4,), (5,),
                           dtype=np.complex128, rng=0)
    assert good.passed and isinstance(good.lhs[0], complex)
    transpose_only = convop.dot_test(lambda x: A @ x, lambda y: A.T @ y, (4,), (5,),
                                     dtype=np.complex128, rng=0)
    assert not transpose_only.passed


def test_dot_test_tolerance_follows_the_result_dtype(rng):
    A = rng.standard_normal((30, 20))
    A32 = A.astype(np.float32)
    report = convop.dot_test(lambda x: A32 @ x.astype(np.float32), lambda y: A.T @ y,
                             (20,), (30,), rng=0)
    assert report.dtype == "float32" and report.passed, report
    assert report.tolerance > 1e-7


# check_conv: convop itself and wrong implementations ---------------------------------------

KIND_FUNCTIONS = {"forward": convop.conv, "input_grad": convop.conv_input_grad,
                  "weight_grad": convop.conv_weight_grad, "transpose": convop.conv_transpose}


@pytest.mark.parametrize("kind", KIND_FUNCTIONS)
@pytest.mark.parametrize("dtype", FLOAT_TYPES)
def test_convop_passes_its_own_battery(kind, dtype):
    report = convop.check_conv(KIND_FUNCTIONS[kind], kind=kind, dtype=dtype, rng=0)
    assert report.passed, str(report)
    assert len(report.results) == len(convop.standard_configs(kind))


def test_standard_battery_covers_the_edge_cases():
    names = " ".join(c.name for c in convop.standard_configs("forward"))
    configs = convop.standard_configs("forward")
    assert len(configs) >= 40
    for needle in ("1x1", "kernel = padded input", "stride > kernel", "stride > input",
                   "dilation 2 + padding", "asymmetric", "same, even", "depthwise", "groups",
                   "non-square", "single pixel", "zero batch", "reflect", "replicate",
                   "circular", "1-D", "3-D", "float32"):
        assert needle in names, needle
    assert any(c.output_padding for c in convop.standard_configs("transpose"))


def kernel_flipped_forward(x, weight, bias=None, **kw):
    return convop.conv(x, flip(weight), bias, **kw)


def unflipped_adjoint(grad_output, weight, input_size, **kw):
    return convop.conv_input_grad(grad_output, flip(weight), input_size, **kw)


def test_flipped_forward_kernel_is_caught_and_named():
    report = convop.check_conv(kernel_flipped_forward, rng=0)
    assert not report.passed
    # Where a flip cannot be observed the layer passes: 1x1 kernels, one output pixel that
    # only the centre tap reaches, an empty batch. Everywhere else the cause is named.
    unobservable = {"1x1 kernel", "single pixel", "single pixel, padding 1", "zero batch",
                    "grouped 1x1"}
    assert {r.config.name for r in report.results if r.passed} == unobservable
    for r in report.failures:
        assert r.cause == "kernel flipped (convolution instead of cross-correlation)", r


def test_unflipped_adjoint_is_caught_and_named():
    report = convop.check_conv(unflipped_adjoint, kind="input_grad", rng=0)
    failing = report.failures
    assert failing and all("adjoint kernel not flipped" in r.cause for r in failing)


def test_off_by_one_padding_is_caught_and_named():
    def wrong_same(x, weight, bias=None, *, padding=0, **kw):
        # "same" split the wrong way round: the larger half before instead of after.
        geom = conv_geometry(weight.shape, x.shape[2:], padding=padding, **{
            k: v for k, v in kw.items() if k in ("stride", "dilation", "groups", "padding_mode")})
        if padding == "same":
            padding = tuple((hi, lo) for lo, hi in geom.padding)
        return convop.conv(x, weight, bias, padding=padding, **kw)

    report = convop.check_conv(wrong_same, rng=0)
    failing = report.failures
    assert [r.config.name for r in failing] == ["same, even kernel"]
    # That split is ONNX's SAME_LOWER, named before the generic one-pixel shift.
    assert failing[0].cause == ("padding is ONNX's SAME_LOWER (the odd pixel before) for "
                                "stride (1, 1): [(2, 1), (2, 1)] instead of [(1, 2), (1, 2)]")


def test_one_pixel_too_much_padding_changes_the_shape_and_is_named():
    def extra_padding(x, weight, bias=None, *, padding=0, **kw):
        geom = conv_geometry(weight.shape, x.shape[2:], padding=padding, **{
            k: v for k, v in kw.items() if k in ("stride", "dilation", "groups", "padding_mode")})
        pads = list(geom.padding)
        pads[0] = (pads[0][0] + 1, pads[0][1] + 1)
        return convop.conv(x, weight, bias, padding=tuple(pads), **kw)

    result = convop.check_conv(extra_padding, configs="quick", rng=0).results[0]
    assert result.status == "fail" and "shape" in result.where
    assert "off-by-one padding on spatial axis 0: one more ((1, 1) -> (2, 2))" == result.cause


def test_swapped_channel_order_is_caught_and_localized():
    def reversed_channels(x, weight, bias=None, **kw):
        return convop.conv(x, weight, bias, **kw)[:, ::-1]

    report = convop.check_conv(reversed_channels, configs="quick", rng=0)
    r = report.results[0]  # 3x3 pad 1, 4 output channels
    assert r.status == "fail"
    assert r.cause == "output channels permuted: position i holds exact channel [3, 2, 1, 0]"
    assert "all 4 channels" in r.where


def test_wrong_output_padding_is_caught_and_named():
    def ignores_output_padding(x, weight, bias=None, *, output_padding=0, **kw):
        return convop.conv_transpose(x, weight, bias, **kw)

    report = convop.check_conv(ignores_output_padding, kind="transpose", rng=0)
    by_name = {r.config.name: r for r in report.results}
    assert by_name["3x3 pad 1"].passed  # output_padding 0 there
    bad = by_name["stride 2 output_padding 1"]
    assert bad.status == "fail" and "shape" in bad.where
    assert bad.cause == "wrong output_padding: the output matches output_padding=(0, 0)"


def test_dropped_bias_is_caught_and_named():
    def no_bias(x, weight, bias=None, **kw):
        return convop.conv(x, weight, None, **kw)

    report = convop.check_conv(no_bias, rng=0)
    for r in report.results:
        if r.config.bias and r.config.batch > 0:
            assert r.cause == "bias missing", r
        else:
            assert r.passed


def test_border_errors_are_localized_to_the_border():
    def replicate_instead_of_zeros(x, weight, bias=None, *, padding_mode="zeros", **kw):
        return convop.conv(x, weight, bias, padding_mode="replicate", **kw)

    report = convop.check_conv(replicate_instead_of_zeros, rng=0)
    r = {r.config.name: r for r in report.results}["3x3 pad 1"]  # input 7 x 8
    assert r.status == "fail"
    assert r.where.endswith("border only, within 1 pixel of the edges (axis 0: first 1 and "
                            "last 1 of 7; axis 1: first 1 and last 1 of 8), interior exact")


def test_a_raising_implementation_is_reported():
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported layer")

    report = convop.check_conv(broken, configs="quick", rng=0)
    assert not report.passed
    assert all(r.status == "error" and "RuntimeError: unsupported layer" in r.where
               for r in report.results)
    assert "error" in str(report)


def test_custom_configs_and_report_table():
    configs = [convop.LayerConfig("mine", (2, 2, 3), (10,), stride=2, padding=1)]
    report = convop.check_conv(convop.conv, configs=configs, rng=0)
    assert report.passed and len(report.results) == 1
    text = str(report)
    assert "PASSED (1/1 configurations)" in text and "mine" in text
    assert report.worst.config.name == "mine" and report.worst.ratio <= 1


def test_check_conv_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`kind` must be one of"):
        convop.check_conv(convop.conv, kind="backward")
    with pytest.raises(ValueError, match="`configs` must be one of 'standard', 'quick'"):
        convop.check_conv(convop.conv, configs="all")


# PyTorch -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KIND_FUNCTIONS)
def test_pytorch_passes_the_battery(kind):
    pytest.importorskip("torch")
    import convop.torch as ct

    impl = {"forward": ct.conv, "input_grad": ct.conv_input_grad,
            "weight_grad": ct.conv_weight_grad, "transpose": ct.conv_transpose}[kind]
    report = convop.check_conv(impl, kind=kind, rng=0)
    assert report.passed, str(report)


def test_conv_matrix_from_module_and_check_module(rng):
    torch = pytest.importorskip("torch")
    import convop.torch as ct

    cases = [
        (torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, padding_mode="reflect"), (7, 8)),
        (torch.nn.Conv1d(3, 5, 4, padding="same", dilation=2), (9,)),
        (torch.nn.Conv3d(2, 4, (1, 3, 2), padding=(0, 1, 1), padding_mode="circular"), (3, 4, 5)),
        (torch.nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1, groups=2),
         (4, 5)),
        (torch.nn.ConvTranspose1d(2, 3, 3, dilation=2, output_padding=1), (6,)),
    ]
    for module, size in cases:
        module = module.double()
        x = torch.from_numpy(rng.standard_normal((1, module.weight.shape[0] if isinstance(
            module, torch.nn.modules.conv._ConvTransposeNd) else module.in_channels, *size)))
        W = ct.conv_matrix_from_module(module, size)
        with torch.no_grad():
            y = (module(x) - module.bias.reshape(-1, *[1] * len(size))).numpy()
        np.testing.assert_allclose(W @ x.numpy().reshape(-1), y.reshape(-1), rtol=1e-12,
                                   atol=1e-12)
        report = ct.check_module(module, size, rng=0)
        assert report.passed, str(report)
        assert [r.config.name for r in report.results] == ["forward", "input gradient",
                                                           "weight gradient"]


def test_check_module_catches_a_wrong_module():
    torch = pytest.importorskip("torch")
    import convop.torch as ct

    class FlippedConv(torch.nn.Conv2d):
        def forward(self, x):
            return torch.nn.functional.conv2d(x, torch.flip(self.weight, (2, 3)), self.bias,
                                              padding=self.padding)

    report = ct.check_module(FlippedConv(2, 3, 3, padding=1).double(), (6, 6), rng=0)
    assert not report.passed
    assert {r.config.name for r in report.failures} == {"forward", "input gradient",
                                                        "weight gradient"}
    with pytest.raises(TypeError, match="`module` must be a torch.nn.Conv"):
        ct.check_module(torch.nn.Linear(2, 2), 3)


def test_transposed_channels_are_caught_and_named():
    def swapped(x, weight, bias=None, **kw):
        # weight[c, m] read as weight[m, c]: only possible when C_out == C_in.
        if weight.shape[0] == weight.shape[1] and kw.get("groups", 1) == 1:
            weight = np.swapaxes(weight, 0, 1)
        return convop.conv(x, weight, bias, **kw)

    report = convop.check_conv(swapped, rng=0)
    by_name = {r.config.name: r for r in report.results}
    assert by_name["16 -> 16"].cause == "transposed channels (weight[c, m] for weight[m, c])"
    assert by_name["no bias"].cause == "transposed channels (weight[c, m] for weight[m, c])"
    assert by_name["3x3 pad 1"].passed  # 3 -> 4 channels: unchanged


def test_localization_counts_a_corner_once_and_names_only_informative_axes():
    from convop.validation.diagnose import localize

    bad = np.zeros((2, 3, 8, 8), dtype=bool)
    bad[:, 1, -1, :] = bad[:, 1, :, -1] = True  # last row and last column only
    assert localize(bad, "forward") == (
        "channels 1 of 3; border only, within 1 pixel of the edges (axis 0: last 1 of 8; "
        "axis 1: last 1 of 8), interior exact")
    column = np.zeros((1, 4, 9, 9), dtype=bool)
    column[:, 2, :, 4] = True  # one column, every row: axis 0 says nothing
    assert localize(column, "forward") == "channels 2 of 4; axis 1: positions 4 of 9"
    whole = np.zeros((1, 4, 9, 9), dtype=bool)
    whole[:, 2] = True
    assert localize(whole, "forward") == "channels 2 of 4; every position"


def test_an_output_in_another_dtype_is_reported():
    def promoting(x, weight, bias=None, **layer):  # computes float32 layers in float64
        return convop.conv(x.astype(np.float64), weight.astype(np.float64), bias, **layer)

    report = convop.check_conv(promoting, dtype=np.float32, configs="quick", rng=0)
    assert not report.passed
    failed = [r for r in report.results if not r.passed]
    assert failed and all(r.where.startswith("returned float64 for float32 inputs")
                          for r in failed)
    assert "silent promotion" in failed[0].cause
    assert convop.check_conv(convop.conv, dtype=np.float32, configs="quick", rng=0).passed
    # In float64 only the battery's own float32 configurations catch it.
    report = convop.check_conv(promoting, dtype=np.float64, configs="quick", rng=0)
    failed = [r for r in report.results if not r.passed]
    assert failed and all(np.dtype(r.config.dtype) == np.float32 for r in failed)


def test_configurations_an_implementation_cannot_express_are_skipped():
    def no_dilation(x, weight, bias=None, *, dilation=1, **layer):
        if np.any(np.asarray(dilation) != 1):
            raise NotImplementedError("this implementation has no dilation")
        return convop.conv(x, weight, bias, dilation=dilation, **layer)

    report = convop.check_conv(no_dilation, rng=0)
    assert report.passed and report.skips and not report.failures
    assert all(r.where == "this implementation has no dilation" for r in report.skips)
    assert all(np.any(np.asarray(r.config.dilation) != 1)
               for r in report.skips)
    text = str(report)
    assert f"{len(report.skips)} skipped" in text and "skip" in text

    def nothing(*args, **kwargs):
        raise NotImplementedError("not yet")

    empty = convop.check_conv(nothing, configs="quick", rng=0)
    assert not empty.passed and "nothing ran" in str(empty) and not empty.failures


def test_axis_zero_dilation_applied_to_every_axis_is_caught():
    def one_dilation(x, weight, bias=None, *, dilation=1, **layer):
        d = np.broadcast_to(np.asarray(dilation), (weight.ndim - 2,))
        return convop.conv(x, weight, bias, dilation=int(d[0]), **layer)

    report = convop.check_conv(one_dilation, rng=0)
    names = {r.config.name for r in report.failures}
    assert {"anisotropic stride, dilation, padding", "anisotropic dilation (1, 3)",
            "3-D anisotropic"} <= names


def test_the_anisotropic_configurations_are_valid_layers():
    for kind in ("forward", "transpose"):
        names = [c.name for c in convop.standard_configs(kind)]
        assert any("anisotropic" in name for name in names)
    assert convop.check_conv(convop.conv, rng=0).passed
    assert convop.check_conv(convop.conv_transpose, kind="transpose", rng=0).passed


# Named causes ------------------------------------------------------------------------------

ONE_CONFIG = convop.LayerConfig("stride 2 on 7x7", (2, 2, 3, 3), (7, 7), stride=2, padding=1)


def only_failure(report):
    assert not report.passed and len(report.failures) == 1
    return report.failures[0]


def test_one_sided_padding_off_by_one_is_named():
    def extra_before(x, weight, bias=None, *, padding=0, **kw):
        return convop.conv(x, weight, bias, padding=((2, 1), (1, 1)), **kw)

    result = only_failure(convop.check_conv(extra_before, configs=[ONE_CONFIG], rng=0))
    assert result.cause == ("off-by-one padding on spatial axis 0: one more before only "
                            "((1, 1) -> (2, 1))")


def test_output_padding_off_by_more_than_one_is_named():
    config = convop.LayerConfig("stride 3 op 2", (2, 3, 2, 2), (3, 4), stride=3,
                                output_padding=2)

    def none(x, weight, bias=None, *, output_padding=0, **kw):
        return convop.conv_transpose(x, weight, bias, output_padding=0, **kw)

    result = only_failure(convop.check_conv(none, kind="transpose", configs=[config], rng=0))
    assert result.cause == "wrong output_padding: the output matches output_padding=(0, 0)"


def test_ceil_mode_output_size_is_named():
    config = convop.LayerConfig("stride 3 not dividing", (3, 2, 3, 3), (11, 12), stride=3,
                                padding=1)

    def ceil_mode(x, weight, bias=None, *, padding=0, **kw):
        return convop.conv(x, weight, bias, padding=((1, 3), (1, 2)), **kw)  # ceil outputs

    result = only_failure(convop.check_conv(ceil_mode, configs=[config], rng=0))
    assert result.where.startswith("shape") and result.cause.startswith("ceil-mode output size")


def test_wrong_group_assignment_is_named():
    config = convop.LayerConfig("groups 2", (4, 2, 3, 3), (6, 6), padding=1, groups=2)

    def round_robin(x, weight, bias=None, *, groups=1, **kw):
        full = np.zeros((weight.shape[0], weight.shape[1] * groups, *weight.shape[2:]))
        for m in range(weight.shape[0]):
            g = m % groups
            full[m, g * weight.shape[1]:(g + 1) * weight.shape[1]] = weight[m]
        return convop.conv(x, full, bias, **kw)

    result = only_failure(convop.check_conv(round_robin, configs=[config], rng=0))
    assert result.cause.startswith("wrong group assignment")


def test_input_gradient_missing_output_padding_is_named():
    config = convop.LayerConfig("stride 2", (4, 3, 3, 3), (9, 8), stride=2, padding=1)

    def transpose_only(grad_output, weight, input_size, *, padding_mode="zeros", **kw):
        return convop.conv_transpose(grad_output, weight, **kw)

    result = only_failure(convop.check_conv(transpose_only, kind="input_grad",
                                            configs=[config], rng=0))
    assert result.where == "shape (2, 3, 9, 7), expected (2, 3, 9, 8)"
    assert result.cause.startswith("input gradient missing output_padding")


@pytest.mark.parametrize(("low", "name"), [(np.float32, "float32"), (np.float16, "float16")])
def test_precision_loss_is_named(low, name):
    def lossy(x, weight, bias=None, **kw):
        out = convop.conv(x.astype(low), weight.astype(low),
                          None if bias is None else bias.astype(low), **kw)
        return out.astype(x.dtype)

    result = only_failure(convop.check_conv(lossy, configs=[ONE_CONFIG], rng=0))
    assert result.cause.startswith(f"precision lost: every error is at {name}'s rounding level")


def fft_input_grad(grad_output, weight, input_size, *, stride=1, padding=0, dilation=1,
                   groups=1, padding_mode="zeros"):
    """The input gradient through scipy's FFT convolution: rounding spread everywhere."""
    import scipy.signal

    if weight.ndim != 4 or groups != 1 or padding_mode != "zeros" or np.any(
            np.asarray(dilation) != 1):
        raise NotImplementedError("2-D, groups 1, zero padding, dilation 1")
    s = np.broadcast_to(np.asarray(stride), (2,))
    (p0, _), (p1, _) = convop.padding_pairs(padding, weight.shape[2:], stride=stride)
    n, m, o1, o2 = grad_output.shape
    up = np.zeros((n, m, s[0] * (o1 - 1) + 1, s[1] * (o2 - 1) + 1))
    up[:, :, ::s[0], ::s[1]] = grad_output
    h, w = input_size
    out = np.zeros((n, weight.shape[1], h, w))
    for b in range(n):
        for c in range(weight.shape[1]):
            full = sum(scipy.signal.fftconvolve(up[b, k], weight[k, c]) for k in range(m))
            part = full[p0:p0 + h, p1:p1 + w]
            out[b, c, :part.shape[0], :part.shape[1]] = part
    return out.astype(grad_output.dtype)


def test_fft_based_code_passes_and_every_wrong_implementation_is_still_caught():
    report = convop.check_conv(fft_input_grad, kind="input_grad", rng=0)
    assert report.passed and report.skips, str(report)
    # Its rounding reaches the pixels a stride never reads, whose exact gradient is 0:
    # the elementwise term alone would reject it there.
    from convop.validation.battery import RTOL
    from convop.validation.case import Case, case_inputs, exact_result

    config = convop.LayerConfig("stride 3", (3, 2, 2, 2), (10, 9), stride=3)
    case = Case(config, "input_grad", np.dtype(np.float64),
                 case_inputs(config, "input_grad", np.dtype(np.float64), np.random.default_rng(0)))
    a = case.arrays
    actual = fft_input_grad(a["grad_output"], a["weight"], config.input_size, stride=3)
    error = np.abs(actual - exact_result(case))
    scale = exact_result(case, absolute=True)
    assert np.any(error > RTOL[np.dtype(np.float64)] * scale)  # structurally zero, not 0
    assert convop.check_conv(fft_input_grad, kind="input_grad", configs=[config],
                             rng=0).passed


def test_check_conv_reports_its_configurations_on_stderr(capsys):
    report = convop.check_conv(convop.conv, configs="quick", progress=True)
    err = capsys.readouterr().err
    assert report.passed and "check_conv(kind='forward') of convop." in err and "done" in err
    with pytest.raises(TypeError, match="`progress`"):
        convop.check_conv(convop.conv, configs="quick", progress="yes")
