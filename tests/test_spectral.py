"""Singular values, spectral norm, conditioning and the circular FFT spectrum."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as sla
from hypothesis import example, given
from hypothesis import strategies as st
from strategies import Layer, layers, moded_layers, seeds

import convop

RTOL = 1e-10


def dense_values(weight, input_size, **kw):
    A = convop.conv_matrix(weight, input_size, **kw, domain="input").toarray()
    return scipy.linalg.svdvals(A)


def assert_values_close(actual, expected):
    scale = expected[0] if expected.size else 1.0
    assert actual.shape == expected.shape
    assert np.all(np.abs(actual - expected) <= RTOL * scale), np.abs(actual - expected).max()


@given(layer_mode=moded_layers(max_extra=3), seed=seeds())
def test_all_singular_values_match_dense_svd(layer_mode, seed):
    layer, mode = layer_mode
    weight = np.random.default_rng(seed).standard_normal(layer.weight_shape)
    kw = dict(layer.kwargs(), padding_mode=mode)
    assert_values_close(convop.singular_values(weight, layer.input_size, **kw),
                        dense_values(weight, layer.input_size, **kw))


# Layers big enough (min dimension > 64) for the Lanczos and shift-invert paths.
MEDIUM = {
    "zeros-same": ((6, 4, 3, 3), (7, 8), dict(padding=1)),
    "stride-2": ((8, 4, 3, 3), (9, 10), dict(stride=2, padding=1)),
    "stride-3-unseen-pixels": ((40, 3, 2, 2), (12, 12), dict(stride=3)),  # 240 zero columns
    "dilation-groups": ((6, 2, 3, 2), (8, 9), dict(dilation=(2, 1), groups=3, padding=2)),
    "circular": ((4, 4, 3, 3), (6, 6), dict(padding=1, padding_mode="circular")),
    "reflect-nonsquare": ((5, 3, 2, 4), (7, 9), dict(padding=1, padding_mode="reflect")),
    "1d": ((4, 4, 5), (40,), dict(padding=2)),
    "3d": ((2, 2, 3, 3, 3), (4, 5, 4), dict(padding=1, padding_mode="replicate")),
}


@pytest.mark.parametrize(("shape", "size", "kw"), MEDIUM.values(), ids=MEDIUM.keys())
@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_k_values_match_dense_svd(shape, size, kw, which, rng):
    weight = rng.standard_normal(shape)
    expected = dense_values(weight, size, **kw)
    assert min(convop.conv_geometry(shape, size, **kw).matrix_shape("input")) > 64
    k = 4
    actual = convop.singular_values(weight, size, k=k, which=which, rng=1, **kw)
    assert_values_close(actual, expected[:k] if which == "largest" else expected[-k:])


@pytest.mark.parametrize(("shape", "size", "kw"), MEDIUM.values(), ids=MEDIUM.keys())
def test_spectral_norm_and_condition_number(shape, size, kw, rng):
    weight = rng.standard_normal(shape)
    expected = dense_values(weight, size, **kw)
    assert abs(convop.spectral_norm(weight, size, rng=2, **kw) - expected[0]) <= RTOL * expected[0]
    cond = convop.condition_number(weight, size, rng=2, **kw)
    smallest = expected[-1] if expected[-1] > 1e-13 * expected[0] else 0.0
    if smallest == 0.0:
        assert cond == np.inf
    else:
        assert abs(cond - expected[0] / smallest) <= 1e-8 * cond


@given(layer=layers(max_extra=3), seed=seeds())
@example(  # every tap lands on zero padding: the zero operator, despite a nonzero weight
    layer=Layer((6, 2, 1, 2, 1), (3, 1, 4), (1, 1, 1), "same", (1, 2, 1), 3,
                ((0, 0), (1, 1), (0, 0))), seed=0)
def test_spectral_norm_between_column_norm_and_frobenius(layer, seed):
    weight = np.random.default_rng(seed).standard_normal(layer.weight_shape)
    A = convop.conv_matrix(weight, layer.input_size, **layer.kwargs(), domain="input")
    sigma = convop.spectral_norm(weight, layer.input_size, **layer.kwargs(), rng=seed)
    column = np.sqrt((A.multiply(A)).sum(axis=0).max())
    frobenius = np.sqrt((A.data**2).sum())
    assert column * (1 - 1e-12) <= sigma <= frobenius * (1 + 1e-12)


@st.composite
def circular_layers(draw):
    ndim = draw(st.integers(1, 3))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    size = []
    for s, d, k in zip(stride, dilation, kernel):
        q_min = max(1, -(-((d * (k - 1) + 1) // 2) // s))  # circular padding <= input size
        size.append(s * draw(st.integers(q_min, max(q_min, 4 if ndim < 3 else 2))))
    size = tuple(size)
    groups = draw(st.integers(1, 2))
    shape = (groups * draw(st.integers(1, 2)), draw(st.integers(1, 2)), *kernel)
    return shape, size, dict(stride=stride, dilation=dilation, groups=groups)


@given(layer=circular_layers(), seed=seeds())
def test_circular_fft_matches_dense_svd(layer, seed):
    shape, size, kw = layer
    weight = np.random.default_rng(seed).standard_normal(shape)
    pads = tuple(((d * (k - 1)) // 2, d * (k - 1) - (d * (k - 1)) // 2)
                 for k, d in zip(shape[2:], kw["dilation"]))
    expected = dense_values(weight, size, **kw, padding=pads, padding_mode="circular")
    actual = convop.circular_singular_values(weight, size, **kw)
    assert actual.shape == expected.shape
    assert np.all(np.abs(actual - expected) <= 1e-12 * max(expected[0], 1e-300))


def test_circular_fft_rejects_non_circulant():
    with pytest.raises(ValueError, match=r"`padding` must total dilation\*\(kernel-1\) = 2 on spatial axis 0"):
        convop.circular_singular_values(np.ones((1, 1, 3, 3)), (6, 6), padding=0)
    with pytest.raises(ValueError, match=r"`input_size` 7 on spatial axis 0 must be divisible by the stride 2"):
        convop.circular_singular_values(np.ones((1, 1, 3, 3)), (7, 8), stride=2)


def test_unseen_pixels_give_exact_zeros():
    weight = np.ones((1, 1, 1, 1))
    values = convop.singular_values(weight, (6, 6), stride=2)
    assert values.tolist() == [1.0] * 9
    # Two 1x1 filters (1 and 2) read the same 16 of 144 pixels: the 32 x 144 matrix has
    # rank 16, singular values sqrt(5) (16 times) and 0 (16 times).
    two = np.array([1.0, 2.0]).reshape(2, 1, 1, 1)
    assert convop.singular_values(two, (12, 12), stride=3, k=3, which="smallest").tolist() == [0.0] * 3
    np.testing.assert_allclose(convop.singular_values(two, (12, 12), stride=3, k=16),
                               np.sqrt(5.0), rtol=1e-12)
    tall = convop.singular_values(np.ones((40, 1, 1, 1)), (4, 4), stride=2, k=2, which="smallest")
    assert tall.tolist() == [0.0, 0.0]
    assert convop.condition_number(np.ones((40, 1, 1, 1)), (4, 4), stride=2) == np.inf


def test_degenerate_operators():
    zero = np.zeros((3, 2, 3, 3))
    assert convop.spectral_norm(zero, (9, 9), padding=1) == 0.0
    assert convop.condition_number(zero, (9, 9), padding=1) == np.inf
    assert np.all(convop.singular_values(zero, (9, 9), padding=1, k=3, which="smallest") == 0)
    # A 1 x n operator: one output pixel.
    w = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    assert convop.singular_values(w, (3, 3)).tolist() == pytest.approx([np.linalg.norm(w)])
    assert convop.singular_values(sp.csr_array((0, 5))).size == 0
    # Taps all on zero padding: the zero operator through the Lanczos path too.
    layer = dict(padding=((0, 0), (1, 1)), dilation=(1, 2))
    assert convop.conv_geometry((70, 1, 1, 2), (80, 1), **layer).nnz("input") == 0
    assert convop.spectral_norm(np.ones((70, 1, 1, 2)), (80, 1), **layer) == 0.0


def test_matrix_and_operator_inputs(rng):
    weight = rng.standard_normal((6, 4, 3, 3))
    A = convop.conv_matrix(weight, (7, 8), padding=1, domain="input")
    expected = scipy.linalg.svdvals(A.toarray())
    assert abs(convop.spectral_norm(A, rng=0) - expected[0]) <= RTOL * expected[0]
    assert abs(convop.singular_values(A, k=1, which="smallest", rng=0)[0] - expected[-1]) <= RTOL * expected[0]
    generic = sla.aslinearoperator(A)
    assert abs(convop.spectral_norm(generic, rng=0) - expected[0]) <= RTOL * expected[0]
    with pytest.raises(TypeError, match="the smallest singular values need the explicit matrix"):
        convop.singular_values(generic, k=1, which="smallest")
    op = convop.LayerOperator(weight, (7, 8), padding=1)
    assert abs(convop.singular_values(op, k=1, which="smallest")[0] - expected[-1]) <= RTOL * expected[0]
    with pytest.raises(ValueError, match="`input_size` describes a layer given by its weight"):
        convop.spectral_norm(A, (7, 8))
    with pytest.raises(TypeError, match="`input_size` is required"):
        convop.spectral_norm(weight)


def test_argument_errors(rng):
    weight = rng.standard_normal((2, 2, 3, 3))
    with pytest.raises(ValueError, match=r"`k` must be at most min\(rows, cols\) = 32"):
        convop.singular_values(weight, (4, 4), padding=1, k=33)
    with pytest.raises(ValueError, match="`k` must be a positive int; got 0"):
        convop.singular_values(weight, (4, 4), k=0)
    with pytest.raises(ValueError, match="`which` must be one of 'largest', 'smallest'"):
        convop.singular_values(weight, (4, 4), k=1, which="middle")
    with pytest.raises(ValueError, match=r"`rtol` must be a float in \(0, 1\)"):
        convop.spectral_norm(weight, (4, 4), rtol=0)
    with pytest.raises(ValueError, match=r"all singular values need a dense SVD of the .*pass `k=`"):
        convop.singular_values(np.ones((8, 8, 3, 3)), (64, 64), padding=1)


def test_report_names_the_operator(rng):
    weight = rng.standard_normal((4, 4, 3, 3))
    report = convop.spectrum_report(weight, (9, 9), stride=2, padding=1, padding_mode="reflect",
                                    rng=0)
    text = str(report)
    assert "input 9x9" in report.operator and "stride 2x2" in report.operator
    assert "(reflect)" in report.operator and "sigma_max" in text and "condition" in text
    assert report.shape == (4 * 25, 4 * 81)
    assert report.condition_number == pytest.approx(report.sigma_max / report.sigma_min)


def test_rng_makes_results_reproducible(rng):
    weight = rng.standard_normal((6, 4, 3, 3))
    a = convop.singular_values(weight, (7, 8), padding=1, k=3, rng=5)
    b = convop.singular_values(weight, (7, 8), padding=1, k=3, rng=5)
    assert a.tolist() == b.tolist()


def test_no_convergence_carries_a_certified_bracket(rng):
    # Stopped early on purpose: the root of the Ritz value below, a certified bound above
    # (the Gram-iteration bound of a layer, sqrt(||A||_1 ||A||_inf) of a matrix).
    import scipy.sparse.linalg as sla

    w = rng.standard_normal((4, 4, 3, 3))
    exact = convop.spectral_norm(w, (24, 24), padding=1, rng=0)
    A = convop.conv_matrix(w, (24, 24), padding=1, domain="input")
    for obj, kw in ((w, dict(input_size=(24, 24), padding=1)), (A, {}),
                    (sla.aslinearoperator(A), {})):
        with pytest.raises(convop.NoConvergence, match="certified in") as caught:
            convop.spectral_norm(obj, maxiter=3, rng=0, **kw)
        low, high = caught.value.bracket
        assert 0 < low <= exact <= high
    assert high == np.inf  # an operator without entries has no cheap upper bound


def test_the_report_carries_the_bracket_too(rng):
    # The bracket is attached where the largest values are computed, not by one caller.
    w = rng.standard_normal((4, 4, 3, 3))
    exact = convop.spectral_norm(w, (24, 24), padding=1, rng=0)
    with pytest.raises(convop.NoConvergence, match="certified in") as caught:
        convop.spectrum_report(w, (24, 24), padding=1, maxiter=3, rng=0)
    low, high = caught.value.bracket
    assert 0 < low <= exact <= high
