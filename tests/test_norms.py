"""operator_norm: the exact l1 and l-infinity norms of the layer map, and ord=2."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracles import loop_matrix
from strategies import integer_array, moded_layers, seeds

import convop
from convop import norms


@given(layer_mode=moded_layers(), seed=seeds(), ord=st.sampled_from([1, np.inf]))
def test_l1_and_linf_equal_the_loop_oracles_sums(layer_mode, seed, ord):
    # Integer weights: the sums are exact, so equality, not a tolerance. The oracle's
    # matrix folds taps by a direct loop written from the definition of each mode.
    layer, mode = layer_mode
    weight = integer_array(np.random.default_rng(seed), layer.weight_shape)
    dense, _ = loop_matrix(weight, layer, "input", "C", mode)
    axis = 0 if ord == 1 else 1
    expected = float(np.abs(dense).sum(axis=axis).max(initial=0.0))
    got = convop.operator_norm(weight, layer.input_size, ord=ord, padding_mode=mode,
                               **layer.kwargs())
    assert got == expected


def test_folding_takes_the_absolute_value_of_the_folded_entry():
    # Circular 1-D, kernel 3 on 2 pixels: taps 0 and 2 read the same pixel, +1 and -1
    # cancel. Summing |w| tap by tap would give 3; the matrix entry is 0 there.
    w = np.array([[[1.0, 1.0, -1.0]]])
    A = convop.conv_matrix(w, 2, padding=1, padding_mode="circular", domain="input")
    assert A.toarray().tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert convop.operator_norm(w, 2, ord=np.inf, padding=1, padding_mode="circular") == 1.0
    assert convop.operator_norm(w, 2, ord=1, padding=1, padding_mode="circular") == 1.0


def test_complex_weights_use_the_modulus(rng):
    w = rng.standard_normal((3, 2, 3, 3)) + 1j * rng.standard_normal((3, 2, 3, 3))
    A = convop.conv_matrix(w, (5, 4), padding=1, padding_mode="reflect", domain="input")
    for ord, axis in ((1, 0), (np.inf, 1)):
        got = convop.operator_norm(w, (5, 4), ord=ord, padding=1, padding_mode="reflect")
        assert got == pytest.approx(np.abs(A.toarray()).sum(axis=axis).max(), rel=1e-14)


def test_blocks_of_channels_give_the_same_sums(rng, monkeypatch):
    w = rng.standard_normal((6, 2, 3, 3))
    kw = dict(padding=2, padding_mode="replicate", stride=2, groups=2)
    whole = [convop.operator_norm(w, (7, 9), ord=o, **kw) for o in (1, np.inf)]
    monkeypatch.setattr(norms, "CHUNK_BYTES", 1)  # one output channel per block
    assert [convop.operator_norm(w, (7, 9), ord=o, **kw) for o in (1, np.inf)] == whole


def test_ord_2_is_the_spectral_norm(rng):
    w = rng.standard_normal((3, 2, 3, 3))
    assert convop.operator_norm(w, (6, 6), padding=1, rng=0) == convop.spectral_norm(
        w, (6, 6), padding=1, rng=0)
    # ||A||_2 <= sqrt(||A||_1 ||A||_inf) for every matrix: a cross-check of all three.
    one, inf = (convop.operator_norm(w, (6, 6), ord=o, padding=1) for o in (1, np.inf))
    assert convop.operator_norm(w, (6, 6), ord=2, padding=1) <= np.sqrt(one * inf) * (1 + 1e-12)


def test_a_large_layer_never_builds_its_matrix():
    # 64->64 3x3 @56: the input-domain matrix is 1.4 GB; the sums fit in 300 MiB.
    w = np.random.default_rng(0).standard_normal((64, 64, 3, 3))
    assert convop.conv_geometry(w.shape, (56, 56), padding=1).matrix_nbytes("input") > 2**30
    inf = convop.operator_norm(w, (56, 56), ord=np.inf, padding=1, max_bytes=300 * 2**20)
    # Interior rows read every tap: the largest row sum is the largest channel's sum of |w|.
    assert inf == pytest.approx(np.abs(w).sum(axis=(1, 2, 3)).max(), rel=1e-14)


@pytest.mark.parametrize(("ord", "error", "match"), [
    (3, ValueError, r"`ord` must be 1, 2 or numpy.inf"),
    (-np.inf, ValueError, r"`ord` must be 1, 2 or numpy.inf"),
    ("fro", TypeError, r"`ord` must be 1, 2 or numpy.inf; got 'fro'"),
    (True, TypeError, r"`ord`"),
])
def test_bad_ord_is_refused(ord, error, match):
    with pytest.raises(error, match=match):
        convop.operator_norm(np.ones((1, 1, 3)), 5, ord=ord)


def test_budget_and_options_are_checked_for_every_ord():
    with pytest.raises(convop.BudgetError, match="absolute row and column sums"):
        convop.operator_norm(np.ones((1, 1, 3, 3)), (100, 100), ord=1, max_bytes=1000)
    with pytest.raises(ValueError, match="`rtol`"):
        convop.operator_norm(np.ones((1, 1, 3)), 5, ord=1, rtol=2.0)
    with pytest.raises(TypeError, match="`callback`"):
        convop.operator_norm(np.ones((1, 1, 3)), 5, ord=np.inf, callback=3)
    with pytest.raises(ValueError, match="`weight`"):
        convop.operator_norm(np.full((1, 1, 3), np.nan), 5, ord=1)
