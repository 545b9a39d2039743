"""conv and conv_input_grad against im2col, scipy.signal.correlate and the adjoint identity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import (
    abs_scale,
    assert_scaled_close,
    correlate_forward,
    im2col_forward,
    im2col_input_grad,
)
from strategies import Layer, integer_array, layers, output_size, seeds

import convop

batches = st.integers(1, 3)
RTOL64 = 1e-12


@given(layer=layers(), batch=batches, seed=seeds())
def test_conv_matches_im2col_exactly_on_integers(layer, batch, seed):
    rng = np.random.default_rng(seed)
    x = integer_array(rng, layer.input_shape(batch))
    weight = integer_array(rng, layer.weight_shape)
    np.testing.assert_array_equal(convop.conv(x, weight, **layer.kwargs()),
                                  im2col_forward(x, weight, layer))


@given(layer=layers(), batch=batches, seed=seeds(), order=st.sampled_from(["F", "C"]))
def test_padded_matrix_forward_matches_im2col(layer, batch, seed, order):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer.input_shape(batch))
    weight = rng.standard_normal(layer.weight_shape)
    W = convop.conv_matrix(weight, layer.input_size, **layer.kwargs(), order=order)
    x_pad = np.pad(x, ((0, 0), (0, 0), *layer.pads))
    y = convop.unvec(W @ convop.vec(x_pad, order, batch=True),
                     (layer.out_channels, *output_size(layer)), order)
    assert_scaled_close(y, im2col_forward(x, weight, layer), abs_scale(x, weight, layer), RTOL64)


@given(layer=layers(), batch=batches, seed=seeds(), order=st.sampled_from(["F", "C"]),
       domain=st.sampled_from(["padded", "input"]))
def test_transpose_matches_col2im(layer, batch, seed, order, domain):
    rng = np.random.default_rng(seed)
    dy = integer_array(rng, (batch, layer.out_channels, *output_size(layer)))
    weight = integer_array(rng, layer.weight_shape)
    W = convop.conv_matrix(weight, layer.input_size, **layer.kwargs(), order=order, domain=domain)
    grad = W.T @ convop.vec(dy, order, batch=True)
    if domain == "padded":
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(layer.input_size, layer.pads))
        full = convop.unvec(grad, (layer.in_channels, *padded), order)
        crop = tuple(slice(lo, lo + n) for n, (lo, _) in zip(layer.input_size, layer.pads))
        dx = full[(slice(None), slice(None), *crop)]
    else:
        dx = convop.unvec(grad, (layer.in_channels, *layer.input_size), order)
    np.testing.assert_array_equal(dx, im2col_input_grad(dy, weight, layer))


@given(layer=layers(max_extra=2), seed=seeds())
def test_conv_matches_scipy_correlate(layer, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer.input_shape(2))
    weight = rng.standard_normal(layer.weight_shape)
    assert_scaled_close(convop.conv(x, weight, **layer.kwargs()),
                        correlate_forward(x, weight, layer), abs_scale(x, weight, layer), RTOL64)


@given(layer=layers(), batch=batches, seed=seeds())
def test_input_grad_matches_col2im(layer, batch, seed):
    rng = np.random.default_rng(seed)
    dy = integer_array(rng, (batch, layer.out_channels, *output_size(layer)))
    weight = integer_array(rng, layer.weight_shape)
    np.testing.assert_array_equal(
        convop.conv_input_grad(dy, weight, layer.input_size, **layer.kwargs()),
        im2col_input_grad(dy, weight, layer))


@given(layer=layers(), seed=seeds())
def test_conv_and_input_grad_are_adjoint(layer, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer.input_shape(2))
    dy = rng.standard_normal((2, layer.out_channels, *output_size(layer)))
    weight = rng.standard_normal(layer.weight_shape)
    lhs = np.vdot(convop.conv(x, weight, **layer.kwargs()), dy)
    rhs = np.vdot(x, convop.conv_input_grad(dy, weight, layer.input_size, **layer.kwargs()))
    scale = np.vdot(abs_scale(x, weight, layer), np.abs(dy))
    assert abs(lhs - rhs) <= RTOL64 * scale


@given(layer=layers(), seed=seeds())
def test_conv_is_linear_in_x_and_affine_in_bias(layer, seed):
    rng = np.random.default_rng(seed)
    x1, x2 = (integer_array(rng, layer.input_shape(1)) for _ in range(2))
    weight = integer_array(rng, layer.weight_shape)
    bias = integer_array(rng, (layer.out_channels,))
    kw = layer.kwargs()
    a, b = 3.0, -2.0
    np.testing.assert_array_equal(convop.conv(a * x1 + b * x2, weight, **kw),
                                  a * convop.conv(x1, weight, **kw) + b * convop.conv(x2, weight, **kw))
    with_bias = convop.conv(x1, weight, bias, **kw)
    np.testing.assert_array_equal(
        with_bias - convop.conv(x1, weight, **kw),
        np.broadcast_to(bias.reshape(-1, *[1] * layer.ndim), with_bias.shape[1:])[None])


def test_single_sample_and_zero_batch(rng):
    weight = rng.standard_normal((4, 2, 3, 3))
    x = rng.standard_normal((2, 5, 6))
    y = convop.conv(x, weight, padding=1)
    assert y.shape == (4, 5, 6)
    np.testing.assert_array_equal(y, convop.conv(x[None], weight, padding=1)[0])
    empty = convop.conv(np.zeros((0, 2, 5, 6)), weight, padding=1)
    assert empty.shape == (0, 4, 5, 6)
    grad = convop.conv_input_grad(np.zeros((0, 4, 5, 6)), weight, (5, 6), padding=1)
    assert grad.shape == (0, 2, 5, 6)
    g1 = convop.conv_input_grad(y, weight, (5, 6), padding=1)
    assert g1.shape == (2, 5, 6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128, np.int64])
def test_result_dtype_follows_inputs(dtype, rng):
    x = integer_array(rng, (1, 2, 4, 4)).astype(dtype)
    weight = integer_array(rng, (3, 2, 2, 2)).astype(dtype)
    y = convop.conv(x, weight)
    assert y.dtype == dtype
    layer = Layer(weight.shape, (4, 4), 1, 0, 1, 1, ((0, 0), (0, 0)))
    np.testing.assert_array_equal(y, im2col_forward(x, weight, layer))
    assert convop.conv_input_grad(y, weight, (4, 4)).dtype == dtype


def test_stride_leaves_unseen_pixels_with_zero_gradient():
    weight = np.ones((1, 1, 1, 1))
    dx = convop.conv_input_grad(np.ones((1, 1, 2, 2)), weight, (4, 4), stride=3)
    expected = np.zeros((4, 4))
    expected[::3, ::3] = 1
    np.testing.assert_array_equal(dx[0, 0], expected)
    assert math.isclose(dx.sum(), 4)
