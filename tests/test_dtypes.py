"""The dtype rules: exact integers, float16, booleans, byte order and complex adjoints.

The table in docs/conventions.md: integer and boolean data compute exactly in
int64 (refused when the exact result could leave int64), float16 computes in
float32, complex backward passes are adjoints (what torch.autograd returns)
and ``conv_transpose`` is PyTorch's transposed convolution ``W^T`` (no conjugate).
"""

from __future__ import annotations

import numpy as np
import pytest
from oracles import loop_matrix
from strategies import Layer

import convop

LAYER = Layer(weight_shape=(3, 2, 3, 3), input_size=(5, 6), stride=(2, 1), padding=1,
              dilation=1, groups=1, pads=((1, 1), (1, 1)))
KW = LAYER.kwargs()


def exact_forward(x, w, b=None):
    """The loop oracle's matrix applied in float64: exact for these small integers (< 2**53)."""
    dense, _ = loop_matrix(w.astype(np.float64), LAYER, "input", "C")
    out = (x.reshape(x.shape[0], -1).astype(np.float64) @ dense.T).reshape(x.shape[0], 3, -1)
    if b is not None:
        out = out + b.astype(np.float64)[None, :, None]
    return out.astype(np.int64)


def test_uint8_conv_does_not_overflow():
    y = convop.conv(np.full((1, 1, 3, 3), 200, np.uint8), np.full((1, 1, 3, 3), 2, np.uint8))
    assert y.dtype == np.int64 and y.item() == 3600


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint32, np.int64, bool])
def test_integer_forward_is_exact(dtype, rng):
    info = np.iinfo(dtype) if dtype is not bool else None
    low, high = (0, 2) if info is None else (max(int(info.min), -200), min(int(info.max), 250))
    x = rng.integers(low, high, size=(2, 2, 5, 6), endpoint=True).astype(dtype)
    w = rng.integers(low, high, size=LAYER.weight_shape, endpoint=True).astype(dtype)
    b = rng.integers(low, high, size=3, endpoint=True).astype(dtype)
    y = convop.conv(x, w, b, **KW)
    assert y.dtype == np.int64
    expected = exact_forward(x, w, b)
    assert y.reshape(2, 3, -1).tolist() == expected.tolist()


@pytest.mark.parametrize("mode", ["zeros", "replicate", "reflect", "circular"])
def test_integer_backward_is_exact(mode, rng):
    w = rng.integers(0, 256, size=LAYER.weight_shape).astype(np.uint8)
    dy_shape = (2, 3, *convop.output_size(LAYER.input_size, 3, stride=(2, 1), padding=1))
    dy = rng.integers(0, 256, size=dy_shape).astype(np.uint8)
    x = rng.integers(0, 256, size=(2, 2, 5, 6)).astype(np.uint8)
    dense, _ = loop_matrix(w.astype(np.float64), LAYER, "input", "C", mode)
    dx = convop.conv_input_grad(dy, w, (5, 6), padding_mode=mode, **KW)
    assert dx.dtype == np.int64
    expected = dy.reshape(2, -1).astype(np.float64) @ dense  # < 2**53: exact in float64
    assert dx.reshape(2, -1).tolist() == expected.astype(np.int64).tolist()
    dw = convop.conv_weight_grad(x, dy, (3, 3), padding_mode=mode, **KW)
    assert dw.dtype == np.int64
    reference = convop.conv_weight_grad(x.astype(np.float64), dy.astype(np.float64), (3, 3),
                                        padding_mode=mode, **KW)
    assert dw.tolist() == reference.astype(np.int64).tolist()


def test_integer_transpose_col2im_and_bias_grad_are_exact(rng):
    w = rng.integers(0, 256, size=(2, 3, 3, 3)).astype(np.uint8)
    x = rng.integers(0, 256, size=(1, 2, 4, 4)).astype(np.uint8)
    y = convop.conv_transpose(x, w, stride=2, padding=1, output_padding=1)
    ref = convop.conv_transpose(x.astype(np.float64), w.astype(np.float64), stride=2,
                                padding=1, output_padding=1)
    assert y.dtype == np.int64 and y.tolist() == ref.astype(np.int64).tolist()
    cols = rng.integers(0, 256, size=(9, 16)).astype(np.uint8)
    back = convop.col2im(cols, (1, 1, 4, 4), 3, padding=1)
    ref = convop.col2im(cols.astype(np.float64), (1, 1, 4, 4), 3, padding=1)
    assert back.dtype == np.int64 and back.tolist() == ref.astype(np.int64).tolist()
    db = convop.conv_bias_grad(np.full((4, 2, 8, 8), 255, np.uint8))
    assert db.dtype == np.int64 and db.tolist() == [255 * 256, 255 * 256]


def test_integer_results_beyond_int64_are_refused():
    big = np.full((1, 1, 3, 3), 2**40, np.int64)
    with pytest.raises(ValueError, match=r"`x` and `weight` hold integers .* beyond int64"):
        convop.conv(big, big)
    with pytest.raises(ValueError, match=r"`grad_output` and `weight`"):
        convop.conv_input_grad(big[..., :1, :1], big, (3, 3))
    with pytest.raises(ValueError, match=r"`x` and `grad_output`"):
        convop.conv_weight_grad(big, big[..., :1, :1], 3)
    with pytest.raises(ValueError, match=r"`x` and `weight` and `bias`"):
        convop.conv(np.ones((1, 1, 3, 3), np.int64), np.ones((1, 1, 3, 3), np.int64),
                    np.array([2**63 - 5]))
    uint = np.full((1, 1, 1, 1), 2**64 - 1, np.uint64)
    with pytest.raises(ValueError, match="beyond int64"):
        convop.conv(uint, np.ones((1, 1, 1, 1), np.uint64))


def test_float16_computes_in_float32(rng):
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float16)
    w = rng.standard_normal(LAYER.weight_shape).astype(np.float16)
    y = convop.conv(x, w, **KW)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, convop.conv(x.astype(np.float64), w.astype(np.float64), **KW),
                               rtol=1e-5, atol=1e-5)
    W = convop.conv_matrix(w, (5, 6), **KW)
    assert W.dtype == np.float32


def test_big_endian_and_odd_layouts_give_the_same_result(rng):
    x = rng.standard_normal((2, 2, 5, 6))
    w = rng.standard_normal(LAYER.weight_shape)
    expected = convop.conv(x, w, **KW)
    read_only = x.copy()
    read_only.flags.writeable = False
    for v in (x.astype(">f8"), np.asfortranarray(x), read_only):
        got = convop.conv(v, w.astype(">f8"), **KW)
        assert got.dtype == np.float64 and got.dtype.isnative
        np.testing.assert_array_equal(got, expected)
    strided = np.repeat(x, 2, axis=3)[..., ::2]
    np.testing.assert_array_equal(convop.conv(strided, w, **KW), expected)
    broadcast = np.broadcast_to(x[:1], x.shape)
    np.testing.assert_array_equal(convop.conv(broadcast, w, **KW),
                                  np.repeat(expected[:1], 2, axis=0))


def test_integer_and_bool_matrices_compute_exactly_in_int64():
    # The table's rule for the matrix too: its product must equal conv's exact integers
    # (a bool matrix multiplied to True where conv gives 3; uint8 data wrapped).
    w = np.full((1, 1, 3), 200, np.uint8)
    assert convop.conv_matrix(w, 4, padding=1).dtype == np.int64
    assert convop.conv_matrix(w, 4, padding=1, domain="input").dtype == np.int64
    x = np.full((1, 4), 200, np.uint8)
    W = convop.conv_matrix(w, 4, padding=1, domain="input")
    np.testing.assert_array_equal(W @ x[0], convop.conv(x, w, padding=1)[0])  # 80 000, no wrap
    A = convop.conv_matrix(w, 4, padding=2, padding_mode="replicate", domain="input")
    assert A.dtype == np.int64 and A.toarray()[0].tolist() == [600, 0, 0, 0]
    with pytest.raises(ValueError, match=r"`dtype` uint8 cannot hold entries from 400 to 600"):
        convop.conv_matrix(w, 4, padding=2, padding_mode="replicate", domain="input",
                           dtype=np.uint8)
    assert convop.conv_matrix(w, 4, padding=1, dtype=np.uint8).dtype == np.uint8  # as asked
    wb, xb = np.ones((1, 1, 3, 3), bool), np.ones((1, 3, 3), bool)
    B = convop.conv_matrix(wb, (3, 3))
    assert B.dtype == np.int64
    np.testing.assert_array_equal(B @ convop.vec(xb), convop.vec(convop.conv(xb, wb)))  # 9
    T = convop.conv_transpose_matrix(np.ones((1, 1, 2), bool), 3)
    assert T.dtype == np.int64
    assert convop.weight_matrix(np.ones((1, 1, 4), bool), 2, 1).dtype == np.int64


# Complex data ------------------------------------------------------------------------------


def complex_normal(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_complex_backward_passes_are_adjoints(mode, rng):
    w = complex_normal(rng, LAYER.weight_shape)
    A = convop.conv_matrix(w, (5, 6), padding_mode=mode, domain="input", order="C", **KW)
    x = complex_normal(rng, (2, 2, 5, 6))
    y = convop.conv(x, w, padding_mode=mode, **KW)
    np.testing.assert_allclose(y.reshape(2, -1), (A @ x.reshape(2, -1).T).T, rtol=1e-13,
                               atol=1e-13)
    dy = complex_normal(rng, y.shape)
    dx = convop.conv_input_grad(dy, w, (5, 6), padding_mode=mode, **KW)
    np.testing.assert_allclose(dx.reshape(2, -1), (A.conj().T @ dy.reshape(2, -1).T).T,
                               rtol=1e-13, atol=1e-13)
    M = convop.weight_matrix(x, (3, 3), 3, padding_mode=mode, order="C", **KW)
    dw = convop.conv_weight_grad(x, dy, (3, 3), padding_mode=mode, **KW)
    np.testing.assert_allclose(dw.reshape(-1), M.conj().T @ dy.reshape(-1), rtol=1e-13,
                               atol=1e-13)
    report = convop.dot_test(lambda v: convop.conv(v, w, padding_mode=mode, **KW),
                             lambda v: convop.conv_input_grad(v, w, (5, 6), padding_mode=mode,
                                                              **KW),
                             (2, 2, 5, 6), y.shape, dtype=np.complex128, rng=0)
    assert report.passed, report


def test_complex_transposed_convolution_is_the_transpose(rng):
    w = complex_normal(rng, (2, 3, 3, 3))
    T = convop.conv_transpose_matrix(w, (4, 4), stride=2, padding=1, order="C")
    A = convop.conv_matrix(w, (7, 7), stride=2, padding=1, domain="input", order="C")
    assert (T != A.T).nnz == 0
    x = complex_normal(rng, (1, 2, 4, 4))
    y = convop.conv_transpose(x, w, stride=2, padding=1)
    np.testing.assert_allclose(y.reshape(-1), T @ x.reshape(-1), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "circular"])
def test_complex_matches_torch_autograd(mode, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    w = complex_normal(rng, LAYER.weight_shape)
    x = complex_normal(rng, (2, 2, 5, 6))
    xt = torch.from_numpy(x).requires_grad_(True)
    wt = torch.from_numpy(w).requires_grad_(True)
    padded = xt if mode == "zeros" else F.pad(xt, (1, 1, 1, 1), mode=mode)
    yt = F.conv2d(padded, wt, stride=(2, 1), padding=1 if mode == "zeros" else 0)
    dy = complex_normal(rng, tuple(yt.shape))
    gx, gw = torch.autograd.grad(yt, (xt, wt), torch.from_numpy(dy))
    y = convop.conv(x, w, padding_mode=mode, **KW)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(convop.conv_input_grad(dy, w, (5, 6), padding_mode=mode, **KW),
                               gx.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(convop.conv_weight_grad(x, dy, (3, 3), padding_mode=mode, **KW),
                               gw.numpy(), rtol=1e-12, atol=1e-12)
    z = complex_normal(rng, (1, 3, 4, 5))
    wt2 = complex_normal(rng, (3, 2, 3, 3))
    expected = F.conv_transpose2d(torch.from_numpy(z), torch.from_numpy(wt2), stride=2,
                                  padding=1).numpy()
    np.testing.assert_allclose(convop.conv_transpose(z, wt2, stride=2, padding=1), expected,
                               rtol=1e-12, atol=1e-12)
