"""output_size, padding forms, exact nnz and byte estimates of ConvGeometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import layers, output_size

import convop


@given(layer=layers())
def test_output_size_is_the_floor_formula(layer):
    assert convop.output_size(layer.input_size, layer.kernel_size, stride=layer.stride,
                              padding=layer.padding, dilation=layer.dilation) == output_size(layer)


@given(layer=layers(), domain=st.sampled_from(["padded", "input"]))
def test_geometry_predicts_nnz_and_bytes(layer, domain):
    geom = convop.conv_geometry(layer.weight_shape, layer.input_size, **layer.kwargs())
    W = convop.conv_matrix(np.ones(layer.weight_shape), layer.input_size, **layer.kwargs(),
                           domain=domain)
    assert geom.nnz(domain) == W.nnz
    assert geom.matrix_shape(domain) == W.shape
    assert geom.matrix_nbytes(domain) == W.data.nbytes + W.indices.nbytes + W.indptr.nbytes


@pytest.mark.parametrize(("kernel", "dilation", "pads"), [
    (3, 1, (1, 1)), (4, 1, (1, 2)), (2, 1, (0, 1)), (3, 2, (2, 2)), (4, 3, (4, 5)), (1, 5, (0, 0)),
], ids=["k3", "k4-even", "k2-even", "k3-d2", "k4-d3", "k1"])
def test_same_padding_split_matches_pytorch(kernel, dilation, pads):
    geom = convop.conv_geometry((1, 1, kernel), 7, padding="same", dilation=dilation)
    assert geom.padding == (pads,)
    assert geom.output_size == (7,)


def test_padding_forms_are_equivalent():
    forms = [1, (1, 1), ((1, 1), (1, 1)), ((1, 1), 1)]
    geoms = {convop.conv_geometry((1, 1, 3, 3), (5, 5), padding=p) for p in forms}
    assert len(geoms) == 1
    assert convop.conv_geometry((1, 1, 3, 3), (5, 5), padding="valid").padding == ((0, 0), (0, 0))


def test_output_size_rank_from_any_tuple():
    assert convop.output_size(10, 3, stride=(1, 2)) == (8, 4)
    assert convop.output_size(10, 3, padding=((1, 0),)) == (9,)
    assert convop.output_size((9, 9, 9), 3, stride=2, padding=1) == (5, 5, 5)


def test_describe_names_the_operator():
    geom = convop.conv_geometry((8, 3, 3, 3), (16, 16), padding=1, stride=2)
    text = geom.describe()
    assert "3->8" in text and "input 16x16" in text and "stride 2x2" in text and "(zeros)" in text


def test_python_ints_no_overflow():
    geom = convop.conv_geometry((4096, 4096, 7, 7, 7), (1024, 1024, 1024), padding=3)
    expected = 4096 * 1024**3 * 4096 * 343
    assert geom.nnz() == expected and isinstance(geom.nnz(), int)
    assert geom.index_dtype() == np.int64
    assert geom.matrix_nbytes() > 2**63  # beyond int64: Python ints all the way
    assert math.prod(geom.matrix_shape()) > 0
