"""Transposed convolution: PyTorch, the transpose of conv_matrix, output_padding rules."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import assert_canonical_csr
from strategies import integer_array, seeds

import convop


@st.composite
def transposed_layers(draw):
    ndim = draw(st.integers(1, 3))
    axes = range(ndim)
    kernel = tuple(draw(st.integers(1, 3)) for _ in axes)
    stride = tuple(draw(st.integers(1, 3)) for _ in axes)
    dilation = tuple(draw(st.integers(1, 2)) for _ in axes)
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    size = tuple(draw(st.integers(1, 4)) for _ in axes)
    # Padding must leave a positive output: (n-1)s + d(k-1) + op + 1 - 2p >= 1.
    padding = tuple(
        draw(st.integers(0, ((n - 1) * s + d * (k - 1) + op) // 2))
        for n, s, d, k, op in zip(size, stride, dilation, kernel, output_padding)
    )
    groups = draw(st.integers(1, 2))
    c_in = groups * draw(st.integers(1, 2))
    c_out_g = draw(st.integers(1, 2))
    return {
        "weight_shape": (c_in, c_out_g, *kernel),
        "input_size": size,
        "kwargs": dict(stride=stride, padding=padding, output_padding=output_padding,
                       dilation=dilation, groups=groups),
    }


def expected_size(t) -> tuple[int, ...]:
    kw = t["kwargs"]
    return tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, p, d, k, op in zip(
        t["input_size"], kw["stride"], kw["padding"], kw["dilation"], t["weight_shape"][2:],
        kw["output_padding"]))


@given(t=transposed_layers(), seed=seeds(), dtype=st.sampled_from([np.float64, np.float32]))
def test_conv_transpose_matches_torch(t, seed, dtype):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, t["weight_shape"][0], *t["input_size"])).astype(dtype)
    weight = rng.standard_normal(t["weight_shape"]).astype(dtype)
    bias = rng.standard_normal(t["weight_shape"][1] * t["kwargs"]["groups"]).astype(dtype)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(t["input_size"])]
    expected = fn(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias),
                  **t["kwargs"]).numpy()
    actual = convop.conv_transpose(x, weight, bias, **t["kwargs"])
    assert actual.shape == expected.shape == (2, bias.size, *expected_size(t))
    assert actual.dtype == dtype
    scale = convop.conv_transpose(np.abs(x).astype(float), np.abs(weight).astype(float),
                                  np.abs(bias).astype(float), **t["kwargs"])
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    assert np.all(np.abs(actual - expected) <= rtol * scale + 1e-300)


@given(t=transposed_layers(), seed=seeds(), order=st.sampled_from(["F", "C"]))
def test_matrix_is_transpose_of_conv_matrix(t, seed, order):
    weight = integer_array(np.random.default_rng(seed), t["weight_shape"])
    kw = dict(t["kwargs"])
    op = kw.pop("output_padding")
    T = convop.conv_transpose_matrix(weight, t["input_size"], **kw, output_padding=op,
                                     order=order)
    assert_canonical_csr(T)
    out = expected_size(t)
    A = convop.conv_matrix(weight, out, **kw, domain="input", order=order)
    if all(o == n for o, n in zip(convop.output_size(out, t["weight_shape"][2:],
                                                     stride=kw["stride"], padding=kw["padding"],
                                                     dilation=kw["dilation"]), t["input_size"])):
        np.testing.assert_array_equal(T.toarray(), A.T.toarray())
    # The dot test between the pair, on integer data: exact.
    rng = np.random.default_rng(seed + 1)
    x = integer_array(rng, T.shape[1:])
    y = integer_array(rng, T.shape[:1])
    assert np.vdot(T @ x, y) == np.vdot(x, T.T @ y)


@given(t=transposed_layers(), seed=seeds())
def test_conv_transpose_equals_its_matrix(t, seed):
    rng = np.random.default_rng(seed)
    x = integer_array(rng, (t["weight_shape"][0], *t["input_size"]))
    weight = integer_array(rng, t["weight_shape"])
    T = convop.conv_transpose_matrix(weight, t["input_size"], **t["kwargs"], order="C")
    np.testing.assert_array_equal(convop.conv_transpose(x, weight, **t["kwargs"]).reshape(-1),
                                  T @ x.reshape(-1))


def test_output_padding_beyond_stride_uses_dilation(rng):
    # stride 1, dilation 2: output_padding 1 is allowed and adds a row fed by nothing.
    weight = rng.standard_normal((1, 1, 3))
    y = convop.conv_transpose(np.ones((1, 1, 4)), weight, dilation=2, output_padding=1)
    assert y.shape == (1, 1, 9)
    T = convop.conv_transpose_matrix(weight, 4, dilation=2, output_padding=1)
    assert T.shape == (9, 4)
    # Output 8 = conv input pixel 8, read only by conv output 4 (o + 2u = 8), which the
    # transposed input (size 4) does not have: the row is empty.
    assert T[[8]].nnz == 0 and np.all(y[0, 0, 8] == 0)


def test_output_padding_rules():
    w = np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"`output_padding` must be smaller than either `stride` or `dilation`.*output_padding 2 with stride 2 and dilation 1"):
        convop.conv_transpose(np.ones((1, 1, 4, 4)), w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"`padding` of a transposed convolution must be ints"):
        convop.conv_transpose_matrix(w, (4, 4), padding="same")
    with pytest.raises(ValueError, match=r"output size \(-1, -1\) must be positive"):
        convop.conv_transpose(np.ones((1, 1, 1, 1)), w, padding=2)
    with pytest.raises(ValueError, match=r"`output_padding` must be a non-negative int or a tuple of 2 non-negative ints; got -1"):
        convop.conv_transpose_matrix(w, (4, 4), output_padding=-1)
    with pytest.raises(ValueError, match=r"`x` must have 1 channels"):
        convop.conv_transpose(np.ones((1, 2, 4, 4)), w)


def test_output_padding_for():
    assert convop.output_padding_for((4, 4), (8, 7), 3, stride=2, padding=1) == (1, 0)
    assert convop.output_padding_for(5, 11, 3, stride=1, dilation=3) == (0,)
    assert convop.output_padding_for(5, 12, 3, stride=1, dilation=3) == (1,)
    with pytest.raises(ValueError, match=r"`output_size` 9 on spatial axis 0 is not reachable.*gives sizes 7 to 8"):
        convop.output_padding_for(4, 9, 3, stride=2, padding=1)
    # The helper's answer really produces that size.
    op = convop.output_padding_for((3, 5), (7, 10), (2, 2), stride=(2, 2))
    y = convop.conv_transpose(np.ones((1, 1, 3, 5)), np.ones((1, 1, 2, 2)), stride=2,
                              output_padding=op)
    assert op == (1, 0) and y.shape[2:] == (7, 10)


def test_rows_beyond_the_input_take_no_part(rng):
    # output_padding >= stride (allowed by dilation): the extra output row gets only the bias,
    # even from a NaN weight (found by the fuzzer; PyTorch agrees).
    y = convop.conv_transpose(np.ones((1, 1, 1)), np.full((1, 1, 1), np.nan), np.zeros(1),
                              dilation=2, output_padding=1)
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 0.0
    torch = pytest.importorskip("torch")
    expected = torch.nn.functional.conv_transpose1d(
        torch.ones((1, 1, 1), dtype=torch.float64), torch.full((1, 1, 1), float("nan"),
                                                               dtype=torch.float64),
        torch.zeros(1, dtype=torch.float64), dilation=2, output_padding=1).numpy()
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("layer", [dict(stride=10**6), dict(dilation=10**6),
                                   dict(stride=10**6, max_bytes=2**30),
                                   dict(stride=10**4, padding=1, output_padding=1,
                                        max_bytes=10**6)],
                         ids=["stride", "dilation", "stride-budget", "trimmed-budget"])
def test_huge_transposed_matrix_is_refused_before_allocating(layer):
    # The transposed copy has a row pointer over every output pixel of the transposed
    # convolution: 8e12 of them here (the estimate once left it out: numpy's "Unable to
    # allocate 58.2 TiB", or a silent 3.2 GB past max_bytes=1e6).
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(convop.BudgetError, match="transposed copy") as caught:
            convop.conv_transpose_matrix(np.ones((4, 2, 3, 3)), (3, 3), **layer)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert caught.value.needed > caught.value.budget
    assert peak < 2**20
