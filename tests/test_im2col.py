"""The seed's im2col/col2im reference: literal worked example, adjoint, shapes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from strategies import integer_array, layers, output_size, seeds

import convop

# The 4x25 X_col printed in seed 000 for a 4x4 image 0..15, 2x2 filter, S=1, P=1.
SEED_X_COL = np.array([
    [0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 7, 0, 8, 9, 10, 11, 0, 12, 13, 14, 15],
    [0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 4, 5, 6, 7, 0, 8, 9, 10, 11, 0, 12, 13, 14, 15, 0],
    [0, 0, 1, 2, 3, 0, 4, 5, 6, 7, 0, 8, 9, 10, 11, 0, 12, 13, 14, 15, 0, 0, 0, 0, 0],
    [0, 1, 2, 3, 0, 4, 5, 6, 7, 0, 8, 9, 10, 11, 0, 12, 13, 14, 15, 0, 0, 0, 0, 0, 0],
])


def test_seed_worked_example_literally():
    x = np.arange(16).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(convop.im2col(x, 2, stride=1, padding=1), SEED_X_COL)
    np.testing.assert_array_equal(convop.im2col(x[0], (2, 2), padding=1), SEED_X_COL)


def test_seed_forward_with_three_filters(rng):
    # np.dot(W_row, X_col) reshaped to (1, 3, 5, 5) equals the matrix forward pass.
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    weight = integer_array(rng, (3, 1, 2, 2))
    out = (weight.reshape(3, -1) @ SEED_X_COL).reshape(3, 5, 5, 1).transpose(3, 0, 1, 2)
    np.testing.assert_array_equal(convop.conv(x, weight, padding=1), out)


def test_columns_put_the_image_index_fastest():
    x = np.stack([np.zeros((1, 3, 3)), np.ones((1, 3, 3))])
    cols = convop.im2col(x, 3)
    np.testing.assert_array_equal(cols[:, 0], 0)
    np.testing.assert_array_equal(cols[:, 1], 1)


@given(layer=layers(), seed=seeds())
def test_col2im_is_the_adjoint_of_im2col(layer, seed):
    rng = np.random.default_rng(seed)
    x = integer_array(rng, layer.input_shape(2))
    kw = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    cols = convop.im2col(x, layer.kernel_size, **kw)
    c = integer_array(rng, cols.shape)
    back = convop.col2im(c, x.shape, layer.kernel_size, **kw)
    assert np.vdot(cols, c) == np.vdot(x, back)
    assert cols.shape == (layer.in_channels * np.prod(layer.kernel_size),
                          np.prod(output_size(layer)) * 2)


def test_col2im_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"`cols` must have shape \(4, 4\) for input_shape \(1, 1, 3, 3\)"):
        convop.col2im(np.ones((4, 8)), (1, 1, 3, 3), 2)


def test_im2col_int_kernel_needs_a_batch():
    with pytest.raises(ValueError, match="must be a batch"):
        convop.im2col(np.ones((5,)), 2)
