"""LayerOperator: the matrix-free layer map equals the explicit matrix, and its adjoint."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla
from hypothesis import given
from hypothesis import strategies as st
from strategies import integer_array, moded_layers, seeds

import convop

orders = st.sampled_from(["F", "C"])


@given(layer_mode=moded_layers(), order=orders, seed=seeds())
def test_products_equal_the_explicit_matrix(layer_mode, order, seed):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    weight = integer_array(rng, layer.weight_shape)
    kw = dict(layer.kwargs(), padding_mode=mode, order=order)
    op = convop.LayerOperator(weight, layer.input_size, **kw)
    A = convop.conv_matrix(weight, layer.input_size, **kw, domain="input")
    assert op.shape == A.shape
    X = integer_array(rng, (A.shape[1], 3))
    Y = integer_array(rng, (A.shape[0], 2))
    np.testing.assert_array_equal(op @ X, A @ X)
    np.testing.assert_array_equal(op.H @ Y, A.T @ Y)
    np.testing.assert_array_equal(op.matvec(X[:, 0]), A @ X[:, 0])
    np.testing.assert_array_equal(op.rmatvec(Y[:, 0]), A.T @ Y[:, 0])
    assert (op.to_matrix() != A).nnz == 0


@given(layer_mode=moded_layers(), seed=seeds())
def test_dot_test(layer_mode, seed):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    op = convop.LayerOperator(rng.standard_normal(layer.weight_shape), layer.input_size,
                              **layer.kwargs(), padding_mode=mode)
    x, y = rng.standard_normal(op.shape[1]), rng.standard_normal(op.shape[0])
    lhs, rhs = np.dot(op @ x, y), np.dot(x, op.H @ y)
    assert abs(lhs - rhs) <= 1e-12 * np.dot(np.abs(op.to_matrix()) @ np.abs(x), np.abs(y))


def test_forward_matches_conv_and_repr(rng):
    weight = rng.standard_normal((4, 2, 3, 3))
    x = rng.standard_normal((5, 2, 7, 6))
    op = convop.LayerOperator(weight, (7, 6), stride=2, padding=1)
    np.testing.assert_allclose(op.forward(x), convop.conv(x, weight, stride=2, padding=1),
                               rtol=1e-13, atol=1e-13)
    assert "2->4" in repr(op) and "stride 2x2" in op.describe()
    assert (op.H.H @ np.ones(op.shape[1])).shape == (op.shape[0],)


def test_batch_chunks_bound_memory(monkeypatch, rng):
    weight = rng.standard_normal((3, 2, 3))
    op = convop.LayerOperator(weight, 9, padding=1)
    x = rng.standard_normal((7, 2, 9))
    expected = op.forward(x)
    # One sample per chunk (a budget of one sample's bytes): results do not depend on it.
    small = convop.LayerOperator(weight, 9, padding=1, max_bytes=op.sample_bytes())
    assert len(small._chunks(7, np.dtype(np.float64))) == 7
    np.testing.assert_allclose(small.forward(x), expected, rtol=1e-14, atol=1e-14)
    with pytest.raises(MemoryError, match=r"one product of the layer operator \(27, 18\)"):
        convop.LayerOperator(weight, 9, padding=1, max_bytes=op.sample_bytes() - 1)


def test_huge_input_size_is_refused_at_construction():
    with pytest.raises(MemoryError, match="one product of the layer operator"):
        convop.LayerOperator(np.ones((2, 2, 3, 3)), (10**6, 10**6))


def test_complex_operator_applies_the_conjugate_transpose(rng):
    w = rng.standard_normal((4, 3, 3, 3)) + 1j * rng.standard_normal((4, 3, 3, 3))
    op = convop.LayerOperator(w, (6, 5), padding=1, stride=(2, 1))
    A = convop.conv_matrix(w, (6, 5), padding=1, stride=(2, 1), domain="input")
    y = rng.standard_normal(op.shape[0]) + 1j * rng.standard_normal(op.shape[0])
    for applied in (op.rmatvec(y), op.H @ y, op.H.matmat(y[:, None])[:, 0]):
        np.testing.assert_allclose(applied, A.conj().T @ y, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(op.T @ y, A.T @ y, rtol=1e-13, atol=1e-13)
    x = rng.standard_normal(op.shape[1]) + 0j
    np.testing.assert_allclose(op.H.H @ x, A @ x, rtol=1e-13, atol=1e-13)


def test_real_operator_promotes_like_scipy(rng):
    w = rng.standard_normal((4, 3, 3, 3))
    op = convop.LayerOperator(w.astype(np.float32), (6, 6), padding=1)
    A = convop.conv_matrix(w.astype(np.float32), (6, 6), padding=1, domain="input")
    v = rng.standard_normal(op.shape[1]) + 1j * rng.standard_normal(op.shape[1])
    reference = sla.aslinearoperator(A) @ v
    result = op @ v
    assert result.dtype == reference.dtype == np.complex128
    np.testing.assert_allclose(result, reference, rtol=1e-12, atol=1e-12)
    assert (op @ v.real).dtype == np.float64  # float64 data: the float32 weights, exactly
    assert (op @ v.real.astype(np.float32)).dtype == np.float32


def test_operator_dtype_argument():
    w = np.ones((1, 1, 3))
    assert convop.LayerOperator(w, 5, dtype=np.complex64).dtype == np.complex64
    assert convop.LayerOperator(np.ones((1, 1, 3), np.int8), 5).dtype == np.float64
    with pytest.raises(TypeError, match="`dtype` must be float32, float64"):
        convop.LayerOperator(w, 5, dtype=np.int64)
    with pytest.raises(TypeError, match="cannot hold the complex `weight`"):
        convop.LayerOperator(w * 1j, 5, dtype=np.float64)


def test_longdouble_weights_compute_in_longdouble_as_conv_does(rng):
    # conv and conv_matrix computed longdouble weights in longdouble while LayerOperator
    # blamed a `dtype` the caller never passed.
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.longdouble)
    op = convop.LayerOperator(w, (6, 5), padding=1, padding_mode="reflect")
    assert op.dtype == np.longdouble
    x = rng.standard_normal((2, 6, 5)).astype(np.longdouble)
    y = op @ convop.vec(x)
    assert y.dtype == np.longdouble
    expected = convop.conv(x, w, padding=1, padding_mode="reflect")
    assert expected.dtype == np.longdouble
    np.testing.assert_allclose(convop.unvec(y, expected.shape), expected, rtol=1e-15, atol=0)
    assert convop.dot_test(op.matvec, op.rmatvec, (op.shape[1],), (op.shape[0],), rng=0).passed
    with pytest.raises(TypeError, match="`dtype` must be float32, float64, longdouble, complex64"):
        convop.LayerOperator(w, (6, 5), padding=1, dtype=np.int64)
