"""Helpers for adapters to other frameworks: padding pairs and axis layouts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convop


@pytest.mark.parametrize(("padding", "kernel", "kw", "expected"), [
    (2, (3, 3), {}, ((2, 2), (2, 2))),
    ((1, 0), (3, 5), {}, ((1, 1), (0, 0))),
    (((0, 1), 2), (3, 3), {}, ((0, 1), (2, 2))),
    (np.array([[1, 2], [3, 4]]), (3, 3), {}, ((1, 2), (3, 4))),
    ("valid", 5, {}, ((0, 0),)),
    ("same", (4, 3, 2), {}, ((1, 2), (1, 1), (0, 1))),
    ("same", 3, dict(dilation=3), ((3, 3),)),
    (np.int64(1), (3,), {}, ((1, 1),)),
])
def test_every_padding_form_becomes_pairs(padding, kernel, kw, expected):
    assert convop.padding_pairs(padding, kernel, **kw) == expected


def test_padding_pairs_match_what_the_layer_uses():
    for padding in (1, (0, 2), ((1, 0), (2, 1)), "same"):
        pairs = convop.padding_pairs(padding, (3, 3))
        geometry = convop.conv_geometry((2, 2, 3, 3), (8, 8), padding=padding)
        assert pairs == geometry.padding


def test_padding_pairs_are_validated():
    with pytest.raises(ValueError, match="'same' needs `stride` 1"):
        convop.padding_pairs("same", (3, 3), stride=2)
    with pytest.raises(ValueError, match="`padding`"):
        convop.padding_pairs(-1, 3)
    with pytest.raises(TypeError, match="`kernel_size`"):
        convop.padding_pairs(1, "3x3")
    with pytest.raises(ValueError, match="`kernel_size` must have 1 to 3"):
        convop.padding_pairs(1, (3, 3, 3, 3))


@given(order=st.permutations("NCDHW"), shape=st.lists(st.integers(1, 4), min_size=5,
                                                        max_size=5))
def test_relayout_moves_every_axis_by_name(order, shape):
    target = "".join(order)
    x = np.arange(np.prod(shape)).reshape(shape)
    y = convop.relayout(x, "NCDHW", target)
    for index in np.ndindex(*shape):
        moved = tuple(index["NCDHW".index(letter)] for letter in target)
        assert y[moved] == x[index]
    np.testing.assert_array_equal(convop.relayout(y, target, "NCDHW"), x)


def test_relayout_of_weights_for_other_frameworks():
    w = np.random.default_rng(0).standard_normal((8, 4, 3, 2))  # OIHW
    hwio = convop.relayout(w, "OIHW", "HWIO")
    assert hwio.shape == (3, 2, 4, 8) and hwio[1, 0, 2, 5] == w[5, 2, 1, 0]
    iohw = convop.relayout(w, "OIHW", "IOHW")  # PyTorch's ConvTranspose weight layout
    assert iohw[2, 5, 1, 0] == w[5, 2, 1, 0]


def test_relayout_names_the_bad_argument():
    x = np.zeros((2, 3, 4, 5))
    with pytest.raises(ValueError, match="`source` 'NCH' names 3 axes but `array` has 4"):
        convop.relayout(x, "NCH", "NHC")
    with pytest.raises(ValueError, match="`target` 'NHWX' must use the letters"):
        convop.relayout(x, "NCHW", "NHWX")
    with pytest.raises(ValueError, match="`source` must name each axis once"):
        convop.relayout(x, "NCCW", "NCWC")
    with pytest.raises(TypeError, match="`target` must be a string"):
        convop.relayout(x, "NCHW", None)
