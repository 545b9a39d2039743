"""LayerOperator: the matrix-free layer map equals the explicit matrix, and its adjoint."""

from __future__ import annotations

import numpy as np
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
    # Force one sample per chunk: results do not depend on the chunking.
    monkeypatch.setattr(convop.LayerOperator, "_chunks", lambda self, n: [slice(i, i + 1) for i in range(n)])
    np.testing.assert_allclose(op.forward(x), expected, rtol=1e-14, atol=1e-14)
