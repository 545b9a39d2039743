"""conv and conv_input_grad against PyTorch (skipped when torch is not installed)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import abs_scale, assert_scaled_close
from strategies import layers, output_size, seeds

import convop

torch = pytest.importorskip("torch")
F = torch.nn.functional
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
RTOL = {np.float64: 1e-12, np.float32: 1e-5}
dtypes = st.sampled_from([np.float64, np.float32])
# PyTorch warns that 'same' with an even kernel copies the input; that is expected.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def torch_padded(layer, x):
    """PyTorch takes symmetric padding only: pad asymmetric layers explicitly."""
    if isinstance(layer.padding, str):
        return x, layer.padding
    flat = [p for pair in reversed(layer.pads) for p in pair]  # F.pad: last axis first
    return F.pad(x, flat), 0


@given(layer=layers(), seed=seeds(), dtype=dtypes)
def test_conv_matches_torch(layer, seed, dtype):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer.input_shape(2)).astype(dtype)
    weight = rng.standard_normal(layer.weight_shape).astype(dtype)
    bias = rng.standard_normal(layer.out_channels).astype(dtype)
    xt, padding = torch_padded(layer, torch.from_numpy(x))
    expected = CONV[layer.ndim](xt, torch.from_numpy(weight), torch.from_numpy(bias),
                                stride=layer.stride, padding=padding, dilation=layer.dilation,
                                groups=layer.groups).numpy()
    actual = convop.conv(x, weight, bias, **layer.kwargs())
    assert actual.dtype == dtype
    scale = abs_scale(x, weight, layer) + np.abs(bias).reshape(-1, *[1] * layer.ndim)
    assert_scaled_close(actual, expected, scale, RTOL[dtype])


@given(layer=layers(), seed=seeds(), dtype=dtypes)
def test_input_grad_matches_torch_autograd(layer, seed, dtype):
    rng = np.random.default_rng(seed)
    x = torch.zeros(layer.input_shape(2), dtype=getattr(torch, np.dtype(dtype).name),
                    requires_grad=True)
    weight = rng.standard_normal(layer.weight_shape).astype(dtype)
    dy = rng.standard_normal((2, layer.out_channels, *output_size(layer))).astype(dtype)
    xt, padding = torch_padded(layer, x)
    y = CONV[layer.ndim](xt, torch.from_numpy(weight), stride=layer.stride, padding=padding,
                         dilation=layer.dilation, groups=layer.groups)
    (expected,) = torch.autograd.grad(y, x, torch.from_numpy(dy))
    actual = convop.conv_input_grad(dy, weight, layer.input_size, **layer.kwargs())
    assert actual.dtype == dtype
    scale = convop.conv_input_grad(np.abs(dy).astype(np.float64),
                                   np.abs(weight).astype(np.float64), layer.input_size,
                                   **layer.kwargs())
    assert_scaled_close(actual, expected.numpy(), scale, RTOL[dtype])


def test_matrix_matches_torch_jacobian(rng):
    # The whole matrix, column by column: W e_j is the response to a unit impulse.
    weight = rng.standard_normal((4, 1, 3, 2))
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    W = convop.conv_matrix(weight, (5, 4), **kw, domain="input", order="C")
    eye = torch.eye(2 * 5 * 4, dtype=torch.float64).reshape(-1, 2, 5, 4)
    columns = F.conv2d(eye, torch.from_numpy(weight), **kw).reshape(eye.shape[0], -1)
    np.testing.assert_allclose(W.toarray(), columns.numpy().T, rtol=0, atol=0)
