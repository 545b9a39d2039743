"""conv_matrix: entries, pattern, structure, nnz, index dtype, domains, groups."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import example, given
from hypothesis import strategies as st
from oracles import assert_canonical_csr, loop_matrix
from strategies import Layer, integer_array, layers, output_size, seeds, tiny_layers

import convop
from convop import _sparse

orders = st.sampled_from(["F", "C"])
domains = st.sampled_from(["padded", "input"])


def build(layer: Layer, weight: np.ndarray, **kwargs) -> sp.csr_array:
    return convop.conv_matrix(weight, layer.input_size, **layer.kwargs(), **kwargs)


def padding_selection(layer: Layer, order: str) -> sp.csr_array:
    """P with vec(X_pad) = P vec(X), built by embedding an index image."""
    n = layer.in_channels * math.prod(layer.input_size)
    ids = convop.unvec(np.arange(n), (layer.in_channels, *layer.input_size), order)
    marked = np.pad(ids + 1, ((0, 0), *layer.pads))  # 0 marks padding
    v = convop.vec(marked, order, batch=False)
    rows = np.flatnonzero(v)
    cols = v[rows] - 1
    return sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(v.size, n))


@given(layer=tiny_layers(), order=orders, domain=domains, seed=seeds())
@example(  # the seed's worked example
    layer=Layer((1, 1, 2, 2), (4, 4), 1, 1, 1, 1, ((1, 1), (1, 1))), order="F",
    domain="padded", seed=0)
def test_matrix_equals_loop_oracle(layer, order, domain, seed):
    weight = integer_array(np.random.default_rng(seed), layer.weight_shape)
    expected, _ = loop_matrix(weight, layer, domain, order)
    W = build(layer, weight, domain=domain, order=order)
    np.testing.assert_array_equal(W.toarray(), expected)


@given(layer=tiny_layers(), order=orders, domain=domains)
def test_pattern_is_one_entry_per_output_pixel_and_tap(layer, order, domain):
    # All-zero weights still store every tap: the pattern depends on geometry only.
    weight = np.zeros(layer.weight_shape)
    _, pattern = loop_matrix(np.ones(layer.weight_shape), layer, domain, order)
    W = build(layer, weight, domain=domain, order=order)
    stored = sp.csr_array((np.ones(W.nnz), W.indices, W.indptr), shape=W.shape).toarray() > 0
    np.testing.assert_array_equal(stored, pattern)
    assert W.nnz == pattern.sum()


@given(layer=layers(), order=orders, domain=domains)
def test_csr_is_canonical_with_int32_indices(layer, order, domain):
    W = build(layer, np.ones(layer.weight_shape), domain=domain, order=order)
    assert_canonical_csr(W, expected_index_dtype=np.int32)
    assert W.has_canonical_format


@given(layer=layers())
def test_nnz_formula_padded(layer):
    W = build(layer, np.ones(layer.weight_shape))
    c_out, c_in_g, *kernel = layer.weight_shape
    assert W.nnz == c_out * math.prod(output_size(layer)) * c_in_g * math.prod(kernel)
    assert np.all(np.diff(W.indptr) == c_in_g * math.prod(kernel))


@given(layer=layers(), order=orders)
def test_shapes(layer, order):
    out = output_size(layer)
    padded = [n + lo + hi for n, (lo, hi) in zip(layer.input_size, layer.pads)]
    W = build(layer, np.ones(layer.weight_shape), order=order)
    Wi = build(layer, np.ones(layer.weight_shape), order=order, domain="input")
    assert W.shape == (layer.out_channels * math.prod(out), layer.in_channels * math.prod(padded))
    assert Wi.shape == (W.shape[0], layer.in_channels * math.prod(layer.input_size))


@given(layer=layers(), order=orders, seed=seeds())
def test_input_domain_is_padded_matrix_times_padding(layer, order, seed):
    weight = integer_array(np.random.default_rng(seed), layer.weight_shape)
    W = build(layer, weight, order=order)
    Wi = build(layer, weight, order=order, domain="input")
    P = padding_selection(layer, order)
    np.testing.assert_array_equal(Wi.toarray(), (W @ P).toarray())


@given(layer=layers(), order=orders)
def test_group_block_structure(layer, order):
    # Output channels of group g read only input channels of group g.
    W = build(layer, np.ones(layer.weight_shape), order=order)
    rows = np.repeat(np.arange(W.shape[0]), np.diff(W.indptr))
    out_group = rows // (W.shape[0] // layer.out_channels) // (layer.out_channels // layer.groups)
    in_channel = W.indices // (W.shape[1] // layer.in_channels)
    np.testing.assert_array_equal(out_group, in_channel // (layer.in_channels // layer.groups))


@given(layer=layers(), seed=seeds())
def test_orders_differ_by_permutations_only(layer, seed):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(layer.weight_shape)
    WF = build(layer, weight, order="F", domain="input")
    WC = build(layer, weight, order="C", domain="input")
    out_shape = (layer.out_channels, *output_size(layer))
    in_shape = (layer.in_channels, *layer.input_size)
    perm_out = convop.vec(np.arange(WF.shape[0]).reshape(out_shape), "F", batch=False)
    perm_in = convop.vec(np.arange(WF.shape[1]).reshape(in_shape), "F", batch=False)
    # Row i of WF is row perm_out[i] of WC, column j of WF is column perm_in[j] of WC.
    np.testing.assert_array_equal(WF.toarray(), WC.toarray()[np.ix_(perm_out, perm_in)])


@given(layer=layers(), seed=seeds())
def test_dtype_argument(layer, seed):
    weight = np.random.default_rng(seed).standard_normal(layer.weight_shape)
    W32 = build(layer, weight, dtype=np.float32)
    assert W32.dtype == np.float32
    np.testing.assert_array_equal(W32.data, build(layer, weight).data.astype(np.float32))
    assert build(layer, weight.astype(np.float32)).dtype == np.float32


def test_index_dtype_int64_when_threshold_lowered(monkeypatch, rng):
    layer = Layer((4, 2, 3, 3), (6, 7), 1, 1, 1, 2, ((1, 1), (1, 1)))
    weight = integer_array(rng, layer.weight_shape)
    reference = build(layer, weight)
    monkeypatch.setattr(_sparse, "INT32_LIMIT", 100)
    for domain in ("padded", "input"):
        W = build(layer, weight, domain=domain)
        assert_canonical_csr(W, expected_index_dtype=np.int64)
        expected, _ = loop_matrix(weight, layer, domain, "F")
        np.testing.assert_array_equal(W.toarray(), expected)
    x = rng.standard_normal(reference.shape[1])
    np.testing.assert_array_equal(build(layer, weight) @ x, reference @ x)


def test_index_dtype_int64_for_columns_beyond_int32():
    # A real int64 case that needs no memory: 2**31 + 3 input pixels, huge stride.
    n = 2**31 + 3
    W = convop.conv_matrix(np.array([[[2.0]]]), n, stride=2**24)
    assert W.indices.dtype == np.int64 and W.shape == (129, n)
    assert W.indices[-1] == 128 * 2**24 and np.all(W.data == 2.0)
    assert_canonical_csr(W)


class EdgeCase(NamedTuple):
    weight_shape: tuple[int, ...]
    input_size: tuple[int, ...]
    kwargs: dict
    out: tuple[int, ...]


EDGE_CASES = {
    "1x1-kernel": EdgeCase((4, 3, 1, 1), (5, 6), {}, (5, 6)),
    "kernel-equals-padded-input": EdgeCase((2, 1, 5, 4), (3, 2), {"padding": 1}, (1, 1)),
    "stride-larger-than-input": EdgeCase((1, 1, 2, 2), (3, 3), {"stride": 5}, (1, 1)),
    "dilation-with-padding": EdgeCase((1, 2, 3, 3), (4, 4), {"dilation": 2, "padding": 2}, (4, 4)),
    "depthwise": EdgeCase((6, 1, 3, 3), (5, 5), {"groups": 6, "padding": "same"}, (5, 5)),
    "single-pixel": EdgeCase((3, 2, 1, 1), (1, 1), {}, (1, 1)),
    "single-pixel-padded": EdgeCase((1, 1, 3, 3), (1, 1), {"padding": 1}, (1, 1)),
    "non-square-kernel": EdgeCase((2, 2, 1, 4), (3, 6), {"stride": (1, 2)}, (3, 2)),
    "asymmetric-even-same": EdgeCase((1, 1, 2, 4), (3, 5), {"padding": "same"}, (3, 5)),
    "1d": EdgeCase((2, 1, 3), (7,), {"padding": ((2, 0),)}, (7,)),
    "3d": EdgeCase((1, 1, 2, 2, 2), (2, 3, 2), {"stride": (1, 2, 1)}, (1, 1, 1)),
}


@pytest.mark.parametrize("case", EDGE_CASES.values(), ids=EDGE_CASES.keys())
@pytest.mark.parametrize("domain", ["padded", "input"])
def test_edge_case_shapes_and_entries(case, domain, rng):
    assert convop.output_size(case.input_size, case.weight_shape[2:], **{
        k: v for k, v in case.kwargs.items() if k != "groups"}) == case.out
    weight = integer_array(rng, case.weight_shape)
    W = convop.conv_matrix(weight, case.input_size, domain=domain, **case.kwargs)
    geom = convop.conv_geometry(weight.shape, case.input_size, **case.kwargs)
    assert W.shape == geom.matrix_shape(domain) and W.nnz == geom.nnz(domain)
    assert_canonical_csr(W)
    layer = Layer(case.weight_shape, case.input_size, case.kwargs.get("stride", 1),
                  case.kwargs.get("padding", 0), case.kwargs.get("dilation", 1),
                  case.kwargs.get("groups", 1), geom.padding)
    expected, _ = loop_matrix(weight, layer, domain, "F")
    np.testing.assert_array_equal(W.toarray(), expected)


def test_input_domain_drops_taps_on_padding():
    # 1x1 input, 3x3 kernel, padding 1: only the centre tap touches the input.
    weight = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    W = convop.conv_matrix(weight, (1, 1), padding=1, domain="input")
    assert W.nnz == 1 and W.toarray().tolist() == [[5.0]]


def test_complex_and_integer_weights():
    w = np.array([[[1 + 2j, 3j]]])
    W = convop.conv_matrix(w, 3)
    assert W.dtype == np.complex128 and W.toarray()[0].tolist() == [1 + 2j, 3j, 0]
    Wi = convop.conv_matrix(np.array([[[2, -1]]], dtype=np.int16), 3)
    assert Wi.dtype == np.int64 and Wi.toarray().tolist() == [[2, -1, 0], [0, 2, -1]]


def test_bias_vector():
    b = convop.bias_vector(np.array([1.0, 2.0, 3.0]), (2, 2))
    np.testing.assert_array_equal(b, np.repeat([1.0, 2.0, 3.0], 4))
    np.testing.assert_array_equal(convop.bias_vector([1.0, 2.0], 3, order="C"),
                                  [1.0, 1.0, 1.0, 2.0, 2.0, 2.0])


def test_conventions_worked_example():
    # docs/conventions.md: seed 000's layer, output pixel (1, 2) is row 11 with four taps.
    K = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # K[0, 0, u, v]
    W = convop.conv_matrix(K, (4, 4), padding=1)
    assert W.shape == (25, 36) and W.nnz == 100
    row = W[[11]].toarray()[0]
    assert np.flatnonzero(row).tolist() == [13, 14, 19, 20]
    assert row[[13, 14, 19, 20]].tolist() == [K[0, 0, 0, 0], K[0, 0, 1, 0], K[0, 0, 0, 1],
                                              K[0, 0, 1, 1]]
