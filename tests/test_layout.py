"""vec/unvec: the seed's column-major index formula and PyTorch's row-major order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convop

shapes = st.lists(st.integers(1, 4), min_size=2, max_size=4).map(tuple)


def test_seed_formula_2d():
    C, H, W = 2, 3, 4
    x = np.random.default_rng(0).standard_normal((C, H, W))
    v = convop.vec(x)
    for c in range(C):
        for r in range(H):
            for col in range(W):
                assert v[c * H * W + col * H + r] == x[c, r, col]


def test_c_order_is_torch_reshape():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(convop.vec(x, "C"), x.reshape(2, -1).T)


@given(shape=shapes, order=st.sampled_from(["F", "C"]), n=st.integers(0, 3))
def test_unvec_inverts_vec(shape, order, n):
    x = np.arange(np.prod(shape)).reshape(shape)
    np.testing.assert_array_equal(convop.unvec(convop.vec(x, order, batch=False), shape, order), x)
    xb = np.arange(n * np.prod(shape)).reshape(n, *shape)
    v = convop.vec(xb, order, batch=True)
    assert v.shape == (np.prod(shape), n)
    np.testing.assert_array_equal(convop.unvec(v, shape, order), xb)


@given(shape=shapes)
def test_f_order_is_numpy_fortran_ravel_of_channels_last(shape):
    x = np.arange(np.prod(shape)).reshape(shape)
    np.testing.assert_array_equal(convop.vec(x, batch=False),
                                  np.moveaxis(x, 0, -1).ravel(order="F"))


def test_batch_default_by_ndim():
    assert convop.vec(np.zeros((2, 3, 4))).shape == (24,)
    assert convop.vec(np.zeros((5, 2, 3, 4))).shape == (24, 5)
    assert convop.vec(np.zeros((5, 2, 3)), batch=True).shape == (6, 5)


def test_errors():
    with pytest.raises(ValueError, match="`order` must be one of 'F', 'C'; got 'X'"):
        convop.vec(np.zeros((2, 2)), "X")
    with pytest.raises(ValueError, match=r"`v` must be a vector of length 12"):
        convop.unvec(np.zeros(11), (3, 4))
    with pytest.raises(TypeError, match="`batch` must be True, False or None"):
        convop.vec(np.zeros((2, 2)), batch=1)
