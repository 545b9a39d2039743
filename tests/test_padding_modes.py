"""Padding modes: P, the folded input-domain matrix W @ P, and the layer against PyTorch."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import assert_canonical_csr, assert_scaled_close, loop_matrix, torch_pad_conv
from strategies import (
    Layer,
    integer_array,
    moded_layers,
    output_size,
    seeds,
    tiny_layers,
    valid_modes,
)

import convop

orders = st.sampled_from(["F", "C"])
NUMPY_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def matrix(layer: Layer, weight, mode: str, **kwargs):
    return convop.conv_matrix(weight, layer.input_size, **layer.kwargs(), padding_mode=mode,
                              **kwargs)


@given(data=st.data(), layer=tiny_layers(), order=orders, seed=seeds())
def test_input_matrix_equals_loop_oracle(data, layer, order, seed):
    mode = data.draw(st.sampled_from(valid_modes(layer)))
    weight = integer_array(np.random.default_rng(seed), layer.weight_shape)
    expected, pattern = loop_matrix(weight, layer, "input", order, mode)
    W = matrix(layer, weight, mode, domain="input", order=order)
    np.testing.assert_array_equal(W.toarray(), expected)
    # One stored entry per distinct (output pixel, input pixel) pair a tap reaches.
    assert W.nnz == pattern.sum()
    assert_canonical_csr(W)


@given(layer_mode=moded_layers(), order=orders, seed=seeds())
def test_input_matrix_is_padded_matrix_times_pad_matrix(layer_mode, order, seed):
    layer, mode = layer_mode
    weight = integer_array(np.random.default_rng(seed), layer.weight_shape)
    W = matrix(layer, weight, mode, order=order)
    P = convop.pad_matrix(layer.in_channels, layer.input_size, layer.pads, padding_mode=mode,
                          order=order)
    A = matrix(layer, weight, mode, domain="input", order=order)
    np.testing.assert_array_equal(A.toarray(), (W @ P).toarray())
    geom = convop.conv_geometry(layer.weight_shape, layer.input_size, **layer.kwargs(),
                                padding_mode=mode)
    assert A.nnz == geom.nnz("input") and A.shape == geom.matrix_shape("input")
    assert_canonical_csr(A)


@given(layer_mode=moded_layers(), order=orders, seed=seeds())
def test_pad_matrix_matches_numpy_pad(layer_mode, order, seed):
    layer, mode = layer_mode
    x = integer_array(np.random.default_rng(seed), (layer.in_channels, *layer.input_size))
    P = convop.pad_matrix(layer.in_channels, layer.input_size, layer.pads, padding_mode=mode,
                          order=order)
    padded = np.pad(x, ((0, 0), *layer.pads), mode=NUMPY_MODE[mode])
    np.testing.assert_array_equal(P @ convop.vec(x, order, batch=False),
                                  convop.vec(padded, order, batch=False))
    assert_canonical_csr(P)


@given(layer_mode=moded_layers(), seed=seeds())
def test_conv_and_input_grad_are_adjoint_in_every_mode(layer_mode, seed):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(layer.input_shape(2))
    dy = rng.standard_normal((2, layer.out_channels, *output_size(layer)))
    weight = rng.standard_normal(layer.weight_shape)
    kw = dict(layer.kwargs(), padding_mode=mode)
    lhs = np.vdot(convop.conv(x, weight, **kw), dy)
    rhs = np.vdot(x, convop.conv_input_grad(dy, weight, layer.input_size, **kw))
    assert abs(lhs - rhs) <= 1e-12 * np.vdot(np.abs(convop.conv(np.abs(x), np.abs(weight), **kw)),
                                             np.abs(dy))


@given(layer_mode=moded_layers(), seed=seeds())
def test_conv_input_grad_is_transpose_of_input_matrix(layer_mode, seed):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    dy = integer_array(rng, (1, layer.out_channels, *output_size(layer)))
    weight = integer_array(rng, layer.weight_shape)
    A = matrix(layer, weight, mode, domain="input", order="C")
    dx = convop.conv_input_grad(dy, weight, layer.input_size, **layer.kwargs(), padding_mode=mode)
    np.testing.assert_array_equal(dx.reshape(-1), A.T @ dy.reshape(-1))


class Fold(NamedTuple):
    kernel: tuple[int, ...]
    input_size: tuple[int, ...]
    padding: object
    mode: str


# The edge cases where several taps fold onto one input pixel.
FOLDS = {
    "circular-kernel-7-on-3x3": Fold((7, 7), (3, 3), 3, "circular"),
    "reflect-padding-size-minus-1": Fold((5, 5), (3, 4), ((2, 2), (3, 3)), "reflect"),
    "replicate-padding-larger-than-input": Fold((3, 3), (2, 2), 4, "replicate"),
    "replicate-single-pixel": Fold((3,), (1,), 1, "replicate"),
    "circular-3d": Fold((3, 3, 3), (2, 2, 2), 2, "circular"),
}


@pytest.mark.parametrize("case", FOLDS.values(), ids=FOLDS.keys())
@pytest.mark.parametrize("order", ["F", "C"])
def test_pinned_folding_cases(case, order, rng):
    geom = convop.conv_geometry((2, 1, *case.kernel), case.input_size, padding=case.padding,
                                padding_mode=case.mode)
    layer = Layer((2, 1, *case.kernel), case.input_size, 1, case.padding, 1, 1, geom.padding)
    weight = integer_array(rng, layer.weight_shape)
    A = matrix(layer, weight, case.mode, domain="input", order=order)
    expected, pattern = loop_matrix(weight, layer, "input", order, case.mode)
    np.testing.assert_array_equal(A.toarray(), expected)
    assert A.nnz == pattern.sum() == geom.nnz("input")
    assert A.nnz < geom.nnz("padded")  # taps really folded
    assert_canonical_csr(A)
    assert A.has_canonical_format


def test_reflect_on_single_pixel_axis_without_padding():
    A = convop.conv_matrix(np.ones((1, 1, 1, 3)), (1, 5), padding=((0, 0), (1, 1)),
                           padding_mode="reflect", domain="input")
    np.testing.assert_array_equal(A.toarray()[0], [1, 2, 0, 0, 0])


def test_padded_matrix_does_not_depend_on_mode(rng):
    weight = rng.standard_normal((3, 2, 3, 3))
    base = convop.conv_matrix(weight, (5, 6), padding=2)
    for mode in ("reflect", "replicate", "circular"):
        W = convop.conv_matrix(weight, (5, 6), padding=2, padding_mode=mode)
        assert (W != base).nnz == 0


def test_large_replicate_padding_counts_without_huge_scratch():
    # n=4, k=3: the two windows inside the input hold 3 entries, the two that overlap
    # an edge hold 2, and every window out in the padding reads the edge pixel once.
    # So nnz = (O - 4) * 1 + 2 * 3 + 2 * 2 = O + 6, counted without O-sized scratch.
    geom = convop.conv_geometry((1, 1, 3), 4, padding=10**7, padding_mode="replicate")
    assert geom.nnz("input") == geom.output_size[0] + 6
    small = convop.conv_geometry((1, 1, 3), 4, padding=6, padding_mode="replicate")
    A = convop.conv_matrix(np.ones((1, 1, 3)), 4, padding=6, padding_mode="replicate",
                           domain="input")
    assert A.nnz == small.nnz("input") == small.output_size[0] + 6


def test_pad_adjoint_in_every_mode(rng):
    from convop.padding import pad, pad_adjoint

    pads = ((2, 1), (0, 3))
    for mode in ("zeros", "reflect", "replicate", "circular"):
        x = rng.standard_normal((2, 3, 4, 5))
        y = rng.standard_normal((2, 3, 7, 8))
        lhs = np.vdot(pad(x, pads, mode), y)
        rhs = np.vdot(x, pad_adjoint(y, (4, 5), pads, mode))
        assert math.isclose(lhs, rhs, rel_tol=1e-12), mode


# PyTorch -------------------------------------------------------------------------------



@given(layer_mode=moded_layers(), seed=seeds(), dtype=st.sampled_from([np.float64, np.float32]))
def test_modes_match_torch_pad_then_conv(layer_mode, seed, dtype):
    torch = pytest.importorskip("torch")
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal(layer.input_shape(2)).astype(dtype), requires_grad=True)
    weight = rng.standard_normal(layer.weight_shape).astype(dtype)
    dy = rng.standard_normal((2, layer.out_channels, *output_size(layer))).astype(dtype)
    y = torch_pad_conv(torch, layer, x, torch.from_numpy(weight), mode)
    (gx,) = torch.autograd.grad(y, x, torch.from_numpy(dy))
    kw = dict(layer.kwargs(), padding_mode=mode)
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    xn = x.detach().numpy()
    scale = convop.conv(np.abs(xn).astype(float), np.abs(weight).astype(float), **kw)
    assert_scaled_close(convop.conv(xn, weight, **kw), y.detach().numpy(), scale, rtol)
    gscale = convop.conv_input_grad(np.abs(dy).astype(float), np.abs(weight).astype(float),
                                    layer.input_size, **kw)
    assert_scaled_close(convop.conv_input_grad(dy, weight, layer.input_size, **kw), gx.numpy(),
                        gscale, rtol)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_modes_match_torch_conv_modules(mode, ndim, rng):
    torch = pytest.importorskip("torch")
    module_type = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[ndim]
    module = module_type(4, 6, 3, stride=2, padding=2, dilation=1, groups=2, bias=True,
                         padding_mode=mode).double()
    x = torch.tensor(rng.standard_normal((2, 4, *[5] * ndim)), requires_grad=True)
    y = module(x)
    dy = rng.standard_normal(tuple(y.shape))
    (gx,) = torch.autograd.grad(y, x, torch.from_numpy(dy))
    weight = module.weight.detach().numpy()
    bias = module.bias.detach().numpy()
    kw = dict(stride=2, padding=2, groups=2, padding_mode=mode)
    np.testing.assert_allclose(convop.conv(x.detach().numpy(), weight, bias, **kw),
                               y.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(convop.conv_input_grad(dy, weight, (5,) * ndim, **kw), gx.numpy(),
                               rtol=1e-12, atol=1e-12)
    A = convop.conv_matrix(weight, (5,) * ndim, **kw, domain="input", order="C")
    np.testing.assert_allclose(A @ x.detach().numpy().reshape(2, -1).T,
                               (y.detach().numpy() - bias.reshape(-1, *[1] * ndim)).reshape(2, -1).T,
                               rtol=1e-12, atol=1e-12)
