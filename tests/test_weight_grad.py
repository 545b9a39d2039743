"""The weight as the variable: M with vec(Y) = M vec(weight), weight and bias gradients."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import assert_canonical_csr, im2col_weight_grad, torch_pad_conv
from strategies import integer_array, moded_layers, output_size, seeds

import convop

orders = st.sampled_from(["F", "C"])


def vec_weight(weight: np.ndarray, order: str) -> np.ndarray:
    """Filters stacked, each flattened as one (C_in/groups, *kernel) sample."""
    return np.concatenate([convop.vec(w, order, batch=False) for w in weight])


@given(layer_mode=moded_layers(), order=orders, seed=seeds(), batch=st.integers(1, 3))
def test_weight_matrix_reproduces_conv(layer_mode, order, seed, batch):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    x = integer_array(rng, layer.input_shape(batch))
    weight = integer_array(rng, layer.weight_shape)
    M = convop.weight_matrix(x, layer.kernel_size, layer.out_channels, **layer.kwargs(),
                             padding_mode=mode, order=order)
    y = convop.conv(x, weight, **layer.kwargs(), padding_mode=mode)
    expected = np.concatenate([convop.vec(sample, order, batch=False) for sample in y])
    np.testing.assert_array_equal(M @ vec_weight(weight, order), expected)
    assert_canonical_csr(M)
    taps = int(np.prod(layer.weight_shape[1:]))
    assert M.nnz == batch * layer.out_channels * int(np.prod(output_size(layer))) * taps


@given(layer_mode=moded_layers(), seed=seeds(), batch=st.integers(1, 3))
def test_weight_grad_matches_seed_im2col_formula(layer_mode, seed, batch):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    x = integer_array(rng, layer.input_shape(batch))
    dy = integer_array(rng, (batch, layer.out_channels, *output_size(layer)))
    dw = convop.conv_weight_grad(x, dy, layer.kernel_size, **layer.kwargs(), padding_mode=mode)
    np.testing.assert_array_equal(dw, im2col_weight_grad(x, dy, layer, mode))


@given(layer_mode=moded_layers(), seed=seeds(), dtype=st.sampled_from([np.float64, np.float32]))
def test_weight_grad_matches_torch(layer_mode, seed, dtype):
    torch = pytest.importorskip("torch")
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer.input_shape(2)).astype(dtype)
    weight = torch.tensor(rng.standard_normal(layer.weight_shape).astype(dtype), requires_grad=True)
    dy = rng.standard_normal((2, layer.out_channels, *output_size(layer))).astype(dtype)
    y = torch_pad_conv(torch, layer, torch.from_numpy(x), weight, mode)
    (expected,) = torch.autograd.grad(y, weight, torch.from_numpy(dy))
    actual = convop.conv_weight_grad(x, dy, layer.kernel_size, **layer.kwargs(), padding_mode=mode)
    assert actual.dtype == dtype
    scale = convop.conv_weight_grad(np.abs(x).astype(float), np.abs(dy).astype(float),
                                    layer.kernel_size, **layer.kwargs(), padding_mode=mode)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.all(np.abs(actual - expected.numpy()) <= rtol * scale + 1e-300)


def test_weight_grad_matches_torch_nn_grad(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 7, 6))
    dy = rng.standard_normal((3, 6, 4, 3))
    expected = torch.nn.grad.conv2d_weight(torch.from_numpy(x), (6, 2, 3, 2), torch.from_numpy(dy),
                                           stride=2, padding=1, dilation=(1, 2), groups=2)
    actual = convop.conv_weight_grad(x, dy, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2)
    np.testing.assert_allclose(actual, expected.numpy(), rtol=1e-12, atol=1e-12)


def test_single_sample_weight_matrix_and_grad(rng):
    x = integer_array(rng, (2, 5, 5))
    dy = integer_array(rng, (3, 5, 5))
    M = convop.weight_matrix(x, (3, 3), 3, padding=1)
    assert M.shape == (75, 54)
    dw = convop.conv_weight_grad(x, dy, (3, 3), padding=1)
    np.testing.assert_array_equal(dw, convop.conv_weight_grad(x[None], dy[None], 3, padding=1))


def test_bias_grad():
    dy = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    np.testing.assert_array_equal(convop.conv_bias_grad(dy), dy.sum(axis=(0, 2, 3)))
    np.testing.assert_array_equal(convop.conv_bias_grad(dy[0]), dy[0].sum(axis=(1, 2)))
    np.testing.assert_array_equal(convop.conv_bias_grad(dy[:, :, 0], batch=True),
                                  dy[:, :, 0].sum(axis=(0, 2)))
    with pytest.raises(TypeError, match="`batch` must be True, False or None"):
        convop.conv_bias_grad(dy, batch="yes")


@given(layer_mode=moded_layers(), seed=seeds(), order=orders)
def test_affine_matrix(layer_mode, seed, order):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    x = integer_array(rng, (layer.in_channels, *layer.input_size))
    weight = integer_array(rng, layer.weight_shape)
    bias = integer_array(rng, (layer.out_channels,))
    Wb = convop.affine_matrix(weight, layer.input_size, bias, **layer.kwargs(),
                              padding_mode=mode, order=order)
    assert_canonical_csr(Wb)
    y = convop.conv(x, weight, bias, **layer.kwargs(), padding_mode=mode)
    np.testing.assert_array_equal(Wb @ np.append(convop.vec(x, order, batch=False), 1.0),
                                  convop.vec(y, order, batch=False))


def test_weight_matrix_rejects():
    with pytest.raises(ValueError, match=r"`groups` must divide the input channels: `x` has C_in=3"):
        convop.weight_matrix(np.ones((1, 3, 4, 4)), 3, 4, groups=2)
    with pytest.raises(ValueError, match=r"`out_channels` must be a positive int"):
        convop.weight_matrix(np.ones((1, 3, 4, 4)), 3, 0)
    with pytest.raises(ValueError, match=r"`grad_output` must have shape \(1, 2, 2, 2\)"):
        convop.conv_weight_grad(np.ones((1, 3, 4, 4)), np.ones((1, 2, 3, 3)), 3)
    with pytest.raises(MemoryError, match="weight matrix of shape"):
        convop.weight_matrix(np.ones((1, 3, 4, 4)), 3, 4, max_bytes=100)


def test_zero_batch(rng):
    x = np.zeros((0, 4, 5, 5))
    dy = np.zeros((0, 6, 5, 5))
    M = convop.weight_matrix(x, (3, 3), 6, padding=1, groups=2)
    assert M.shape == (0, 6 * 2 * 9) and M.nnz == 0
    dw = convop.conv_weight_grad(x, dy, (3, 3), padding=1, groups=2)
    assert dw.shape == (6, 2, 3, 3) and not dw.any()
