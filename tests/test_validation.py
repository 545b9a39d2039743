"""Every invalid argument gets a clear error that names the parameter and the rule."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import pytest

import convop

W2 = np.ones((4, 2, 3, 3))


class Bad(NamedTuple):
    kwargs: dict[str, Any]
    error: type[Exception]
    match: str


def matrix(**overrides: Any):
    args: dict[str, Any] = {"weight": W2, "input_size": (8, 8)}
    args.update(overrides)
    weight, size = args.pop("weight"), args.pop("input_size")
    return convop.conv_matrix(weight, size, **args)


MATRIX_CASES = {
    "groups-not-dividing": Bad({"groups": 3}, ValueError, r"`groups` must divide .*C_out=4"),
    "groups-zero": Bad({"groups": 0}, ValueError, r"`groups` must be a positive int; got 0"),
    "groups-float": Bad({"groups": 2.0}, TypeError, r"`groups` must be an int; got 2.0"),
    "weight-2d": Bad({"weight": np.ones((3, 3))}, ValueError, r"`weight` must have shape .*got shape \(3, 3\)"),
    "weight-6d": Bad({"weight": np.ones((1,) * 6)}, ValueError, r"3 to 5 dims"),
    "weight-empty-kernel": Bad({"weight": np.ones((1, 1, 0, 3))}, ValueError, r"kernel must not be empty"),
    "weight-no-channels": Bad({"weight": np.ones((0, 1, 3, 3))}, ValueError, r"at least one output channel"),
    "weight-object": Bad({"weight": np.array([[[None]]])}, TypeError, r"`weight` must be a numeric array .*got dtype object"),
    "weight-string": Bad({"weight": "ones"}, TypeError, r"`weight` must be a numeric array; got 'ones'"),
    "weight-ragged": Bad({"weight": [[[1.0]], [[1.0, 2.0]]]}, TypeError, r"`weight` must be a numeric array; got list"),
    "stride-zero": Bad({"stride": (1, 0)}, ValueError, r"`stride` must be a positive int or a tuple of 2 positive ints; got \(1, 0\)"),
    "stride-bool": Bad({"stride": True}, TypeError, r"`stride` must be a positive int"),
    "stride-float": Bad({"stride": 1.0}, TypeError, r"`stride` .* got 1.0 of type float"),
    "stride-length": Bad({"stride": (1, 1, 1)}, ValueError, r"`stride` has 3 entries, but `weight` \(4, 2, 3, 3\) has 2 spatial axes"),
    "dilation-zero": Bad({"dilation": 0}, ValueError, r"`dilation` must be a positive int"),
    "dilation-float-in-tuple": Bad({"dilation": (1, 1.5)}, TypeError, r"`dilation` .*non-int"),
    "padding-negative": Bad({"padding": -1}, ValueError, r"`padding` must be a non-negative int.*negative"),
    "padding-negative-pair": Bad({"padding": ((0, 1), (2, -1))}, ValueError, r"negative"),
    "padding-length": Bad({"padding": (1, 1, 1)}, ValueError, r"`padding` has 3 entries, but `weight` .* has 2 spatial axes"),
    "padding-string": Bad({"padding": "full"}, ValueError, r"`padding` string must be 'valid' or 'same'; got 'full'"),
    "padding-bool": Bad({"padding": False}, TypeError, r"`padding` must be"),
    "padding-float": Bad({"padding": 1.0}, TypeError, r"`padding` must be"),
    "padding-triple": Bad({"padding": ((1, 1, 1), 0)}, TypeError, r"entry \(1, 1, 1\) is neither"),
    "same-with-stride": Bad({"padding": "same", "stride": 2}, ValueError, r"`padding` 'same' needs `stride` 1.*\(2, 2\)"),
    "kernel-too-large": Bad({"input_size": (2, 8)}, ValueError, r"dilated kernel of `weight` \(3x3.*is larger than the padded input \(2x8 = `input_size` 2x8.*3 > 2"),
    "dilated-kernel-too-large": Bad({"dilation": 5, "padding": 1}, ValueError, r"dilated kernel of `weight` \(11x11, with `dilation` 5x5\).*\(10x10.*`padding`.*11 > 10"),
    "input-size-zero": Bad({"input_size": (0, 8)}, ValueError, r"`input_size` must be a positive int"),
    "input-size-length": Bad({"input_size": (8, 8, 8)}, ValueError, r"`input_size` .* 3 entries"),
    "order": Bad({"order": "K"}, ValueError, r"`order` must be one of 'F', 'C'; got 'K'"),
    "domain": Bad({"domain": "output"}, ValueError, r"`domain` must be one of 'padded', 'input'; got 'output'"),
    "padding-mode-unknown": Bad({"padding_mode": "mirror"}, ValueError, r"`padding_mode` must be one of"),
    "dtype": Bad({"dtype": np.float16}, TypeError, r"`dtype` must be a bool, integer.* got float16"),
    "dtype-nonsense": Bad({"dtype": "floaty"}, TypeError, r"`dtype` must be a numpy dtype; got 'floaty'"),
    "dtype-too-narrow": Bad({"weight": np.full((1, 1, 2, 2), 300.0), "dtype": np.int8}, ValueError, r"`dtype` int8 cannot hold entries from 300"),
    "dtype-not-integer": Bad({"weight": np.full((1, 1, 2, 2), 0.5), "dtype": np.int64}, ValueError, r"`dtype` int64 cannot hold the non-integer"),
    "stride-0d-float-array": Bad({"stride": np.array(1.0)}, TypeError, r"`stride` must be a positive int"),
    "stride-huge": Bad({"stride": 2**63}, ValueError, r"`stride` .*each at most"),
    "max-bytes-zero": Bad({"max_bytes": 0}, ValueError, r"`max_bytes` must be a positive int"),
    "max-bytes-float": Bad({"max_bytes": 1e9}, TypeError, r"`max_bytes` must be an int"),
}


@pytest.mark.parametrize("case", MATRIX_CASES.values(), ids=MATRIX_CASES.keys())
def test_conv_matrix_rejects(case):
    with pytest.raises(case.error, match=case.match):
        matrix(**case.kwargs)


def test_1d_asymmetric_padding_hint():
    with pytest.raises(ValueError, match=r"write \(\(1, 2\),\)"):
        convop.conv_matrix(np.ones((1, 1, 3)), 8, padding=(1, 2))


def test_errors_come_before_any_large_allocation():
    # A 2**40-pixel input with an invalid argument fails at once, without allocating.
    with pytest.raises(ValueError, match="`groups` must divide"):
        convop.conv_matrix(W2, (2**20, 2**20), groups=3)


def test_conv_rejects_wrong_channels_and_bias():
    x = np.ones((1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"`x` must have 2 channels on axis 1, as `weight` and `groups` say; got shape \(1, 3, 8, 8\)"):
        convop.conv(x, W2)
    with pytest.raises(ValueError, match=r"`x` must have 4 channels on axis 1"):
        convop.conv(x, W2[:, :1].repeat(2, axis=0), groups=4)
    with pytest.raises(ValueError, match=r"`bias` must have shape \(4,\).*got shape \(3,\)"):
        convop.conv(np.ones((2, 8, 8)), W2, bias=np.ones(3))
    with pytest.raises(ValueError, match=r"`x` must have shape \(N, C, \*spatial\) or \(C, \*spatial\) with 2 spatial axes"):
        convop.conv(np.ones((8, 8)), W2)


def test_conv_input_grad_rejects_wrong_output_size():
    with pytest.raises(ValueError, match=r"`grad_output` must have spatial size \(6, 6\).*got shape \(1, 4, 8, 8\)"):
        convop.conv_input_grad(np.ones((1, 4, 8, 8)), W2, (8, 8))
    with pytest.raises(ValueError, match=r"`grad_output` must have 4 channels"):
        convop.conv_input_grad(np.ones((1, 3, 6, 6)), W2, (8, 8))


def test_padding_mode_limits_follow_pytorch():
    with pytest.raises(ValueError, match=r"`padding` \(3, 3\) on spatial axis 0 must be smaller than the input size 3 there for `padding_mode='reflect'`"):
        convop.conv_matrix(np.ones((1, 1, 3, 3)), (3, 5), padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"at most the input size 2 there for `padding_mode='circular'`"):
        convop.conv_matrix(np.ones((1, 1, 3, 3)), (4, 2), padding=((0, 0), (0, 3)), padding_mode="circular")
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        convop.conv(np.ones((2, 2, 2)), W2, padding=2, padding_mode="reflect")
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        convop.pad_matrix(1, 3, 3, padding_mode="reflect")
    # Edge of the limits: allowed.
    convop.conv_matrix(np.ones((1, 1, 3, 3)), (3, 3), padding=2, padding_mode="reflect")
    convop.conv_matrix(np.ones((1, 1, 3, 3)), (3, 3), padding=3, padding_mode="circular")
    convop.conv_matrix(np.ones((1, 1, 3, 3)), (1, 1), padding=5, padding_mode="replicate")


def test_bias_vector_rejects():
    with pytest.raises(ValueError, match=r"`bias` must be one value per output channel"):
        convop.bias_vector(np.ones((2, 2)), 3)
    with pytest.raises(ValueError, match=r"`output_size` must be a positive int"):
        convop.bias_vector(np.ones(2), (3, 0))


def test_output_size_rejects():
    with pytest.raises(ValueError, match=r"`kernel_size` must be a positive int"):
        convop.output_size(5, 0)
    with pytest.raises(ValueError, match="larger than the padded input"):
        convop.output_size((3, 3), 4)
