"""Spectra are exact for the weights given: float32 weights, complex weights, rank deficiency.

The reference is always a dense SVD of the input-domain matrix in float64
(complex128) with convop's documented rank tolerance max(m, n) * eps * sigma_max.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest

import convop
from convop.spectral.smallest import DENSE_SMALL


def dense_values(weight, size, **layer):
    A = convop.conv_matrix(np.asarray(weight).astype(np.result_type(weight, np.float64)), size,
                           domain="input", **layer).toarray()
    s = np.linalg.svd(A, compute_uv=False)
    tol = max(A.shape) * np.finfo(np.float64).eps * s[0]
    return np.where(s <= tol, 0.0, s), tol


# float32 weights -------------------------------------------------------------------------


def ill_conditioned(rng, channels=8):
    """A layer whose smallest singular value is far below its largest (kappa ~ 1e5)."""
    w = rng.standard_normal((channels, channels, 3, 3))
    w[:, :, 1, 1] += 0.5 * np.eye(channels)
    w[0] = 0.999 * w[1] + 1e-4 * w[0]  # nearly a duplicated filter
    return w


def test_float32_weights_give_the_float64_spectrum_of_the_same_numbers(rng):
    w32 = ill_conditioned(rng).astype(np.float32)
    w64 = w32.astype(np.float64)  # the same numbers, exactly
    reference, _ = dense_values(w64, (12, 12), padding=1)
    kw = dict(padding=1, rng=0)
    small32 = convop.singular_values(w32, (12, 12), k=3, which="smallest", **kw)
    # Absolute accuracy ~ eps ||A|| is all any method (the dense SVD too) has for tiny values.
    np.testing.assert_allclose(small32, reference[-3:], rtol=1e-9,
                               atol=200 * np.finfo(float).eps * reference[0])
    np.testing.assert_allclose(convop.spectral_norm(w32, (12, 12), rtol=1e-12, **kw),
                               reference[0], rtol=1e-11)
    report = convop.spectrum_report(w32, (12, 12), **kw)
    np.testing.assert_allclose(1 / report.condition_number, reference[-1] / reference[0],
                               rtol=1e-9, atol=200 * np.finfo(float).eps)
    assert reference[0] / reference[-1] > 1e4  # it is ill-conditioned
    np.testing.assert_array_equal(convop.singular_values(w32, (6, 6), padding=1),
                                  convop.singular_values(w64, (6, 6), padding=1))


def test_float32_circular_spectrum_is_computed_in_float64(rng):
    w32 = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    np.testing.assert_array_equal(convop.circular_singular_values(w32, (8, 8)),
                                  convop.circular_singular_values(w32.astype(np.float64), (8, 8)))


def test_lower_precision_only_when_asked(rng):
    w = rng.standard_normal((4, 4, 3, 3))
    exact = convop.spectral_norm(w, (10, 10), padding=1, rtol=1e-12, rng=0)
    fast = convop.spectral_norm(w, (10, 10), padding=1, rtol=1e-5, rng=0, dtype=np.float32)
    assert abs(fast - exact) <= 1e-4 * exact
    with pytest.raises(ValueError, match=r"`rtol` 1e-10 is finer than float32 products resolve"):
        convop.spectral_norm(w, (10, 10), padding=1, dtype=np.float32)
    with pytest.raises(TypeError, match="`dtype` must be float32, float64, complex64 or complex128"):
        convop.spectral_norm(w, (10, 10), padding=1, dtype=np.int32)


# Rank deficiency ---------------------------------------------------------------------------


class Deficient(NamedTuple):
    name: str
    weight: np.ndarray


def deficient_layers():
    rng = np.random.default_rng(14)
    dup = rng.standard_normal((4, 4, 3, 3))
    dup[1] = dup[0]  # a duplicated output filter
    a, b, k = rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal((3, 3))
    rank1 = a[:, None, None, None] * b[None, :, None, None] * k  # rank-1 channel mixing
    return [Deficient("duplicated filter", dup), Deficient("rank-1 mixing", rank1)]


DEFICIENT = deficient_layers()


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("size", [8, 11, 16])
@pytest.mark.parametrize("layer", DEFICIENT, ids=[d.name for d in DEFICIENT])
def test_rank_deficient_layers_report_exact_zeros(layer, size, mode):
    reference, _ = dense_values(layer.weight, (size, size), padding=1, padding_mode=mode)
    zeros = int(np.count_nonzero(reference == 0))
    assert zeros >= 1 and 4 * size * size > DENSE_SMALL  # the sparse paths run
    kw = dict(padding=1, padding_mode=mode, rng=0)
    for k in (1, 5):
        got = convop.singular_values(layer.weight, (size, size), k=k, which="smallest", **kw)
        np.testing.assert_array_equal(got, np.zeros(k))
    report = convop.spectrum_report(layer.weight, (size, size), **kw)
    assert report.sigma_min == 0.0 and report.rank_deficient
    assert report.condition_number == np.inf


def test_k_reaching_past_the_null_space(rng):
    # The circular difference [1, -1]: exactly one zero (the constant), then 2 sin(pi f / n).
    n = 150
    w = np.array([[[1.0, -1.0]]])
    reference, _ = dense_values(w, n, padding=((0, 1),), padding_mode="circular")
    assert np.count_nonzero(reference == 0) == 1
    got = convop.singular_values(w, n, k=4, which="smallest", padding=((0, 1),),
                                 padding_mode="circular", rng=0)
    np.testing.assert_allclose(got, reference[-4:], rtol=1e-10, atol=0)
    assert got[-1] == 0.0


def test_a_value_between_the_tolerance_and_the_normal_equations_floor():
    # [1, -(1 - d)] circular: sigma_min = d = 1e-9, far below sqrt(eps) * ||A|| ~ 4e-7,
    # far above the rank tolerance ~ 1e-13. The Gram matrix cannot see it; the augmented can.
    n, d = 200, 1e-9
    w = np.array([[[1.0, -(1.0 - d)]]])
    reference, tol = dense_values(w, n, padding=((0, 1),), padding_mode="circular")
    assert tol < reference[-1] < 1e-8
    got = convop.singular_values(w, n, k=2, which="smallest", padding=((0, 1),),
                                 padding_mode="circular", rng=0)
    np.testing.assert_allclose(got, reference[-2:], rtol=1e-6, atol=10 * tol)
    assert got[-1] > 0


def test_the_fft_applies_the_same_tolerance():
    dup = DEFICIENT[0].weight
    fft = convop.circular_singular_values(dup, (8, 8))
    reference, _ = dense_values(dup, (8, 8), padding=1, padding_mode="circular")
    np.testing.assert_allclose(fft, reference, rtol=1e-10, atol=0)
    assert np.count_nonzero(fft == 0) == np.count_nonzero(reference == 0) > 0


# Complex weights ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["zeros", "circular"])
def test_complex_spectra(mode, rng):
    w = rng.standard_normal((4, 3, 3, 3)) + 1j * rng.standard_normal((4, 3, 3, 3))
    reference, _ = dense_values(w, (8, 8), padding=1, padding_mode=mode)
    kw = dict(padding=1, padding_mode=mode, rng=0)
    np.testing.assert_allclose(convop.spectral_norm(w, (8, 8), **kw), reference[0], rtol=1e-10)
    np.testing.assert_allclose(convop.singular_values(w, (8, 8), k=3, which="smallest", **kw),
                               reference[-3:], rtol=1e-9)
    op = convop.LayerOperator(w, (8, 8), padding=1, padding_mode=mode)
    np.testing.assert_allclose(convop.spectral_norm(op, rng=0), reference[0], rtol=1e-10)
    if mode == "circular":
        np.testing.assert_allclose(convop.circular_singular_values(w, (8, 8)),
                                   reference[:64 * 3], rtol=1e-10)


def test_complex_svds_through_the_operator(rng):
    import scipy.sparse.linalg as sla

    w = rng.standard_normal((4, 3, 3, 3)) + 1j * rng.standard_normal((4, 3, 3, 3))
    reference, _ = dense_values(w, (8, 8), padding=1)
    s = sla.svds(convop.LayerOperator(w, (8, 8), padding=1), k=2, return_singular_vectors=False,
                 rng=0)
    np.testing.assert_allclose(np.sort(s)[::-1], reference[:2], rtol=1e-9)


# Bad input and memory --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_weights_are_refused(bad):
    w = np.ones((2, 2, 3, 3))
    w[0, 0, 1, 1] = bad
    for call in (lambda: convop.spectral_norm(w, (6, 6)),
                 lambda: convop.singular_values(w, (6, 6)),
                 lambda: convop.spectrum_report(w, (6, 6)),
                 lambda: convop.circular_singular_values(w, (6, 6)),
                 lambda: convop.spectral_norm(convop.LayerOperator(w, (6, 6))),
                 lambda: convop.spectral_norm(convop.conv_matrix(w, (6, 6), domain="input"))):
        with pytest.raises(ValueError, match="`weight` must be finite"):
            call()


def test_spectral_memory_is_checked_before_allocating():
    w = np.ones((256, 256, 3, 3))
    with pytest.raises(MemoryError, match=r"Lanczos with 20 vectors of length 4194304 needs"):
        convop.spectral_norm(w, (128, 128), padding=1, max_bytes=2**30)
    with pytest.raises(MemoryError, match="FFT spectrum of the circular layer"):
        convop.circular_singular_values(np.ones((512, 512, 3, 3), np.float32), (4096, 4096))
    with pytest.raises(MemoryError, match="Lanczos with"):
        convop.spectral_norm(np.ones((4, 4, 3, 3)), (64, 64), padding=1, max_bytes=3 * 2**20)
    with pytest.raises(MemoryError, match="one product of the layer operator"):
        convop.singular_values(np.ones((2, 2, 3, 3)), (10**5, 10**5), k=1)
    with pytest.raises(MemoryError, match="Gram matrix of .* needs|Cholesky factor of"):
        convop.singular_values(np.ones((4, 4, 3, 3)), (40, 40), padding=1, k=1,
                               which="smallest", max_bytes=8 * 2**20)
    with pytest.raises(MemoryError, match="sparse LU of the"):
        A = convop.conv_matrix(np.ones((4, 4, 3, 3)), (40, 40), padding=1, domain="input")
        convop.singular_values(A, k=1, which="smallest", max_bytes=8 * 2**20)


@pytest.mark.parametrize("budget", [2**23, 2**24])
def test_the_warm_start_never_costs_more_than_the_solve(budget, rng):
    import tracemalloc

    from convop.spectral import circular

    # The whole FFT spectrum would take 32 * 17 * 64 * 64 * 16 B = 35.7 MB.
    op = convop.LayerOperator(rng.standard_normal((64, 64, 3, 3)), (32, 32), padding=1,
                              order="C")
    tracemalloc.start()
    try:
        start = circular.circular_start(op, rng, budget=budget)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert start is not None and peak <= budget
    assert circular.circular_start(op, rng, budget=2**22) is None  # not even one chunk


def test_chunk_bytes_and_rtol_are_validated():
    w = np.ones((2, 2, 3, 3))
    for bad, error in ((0, ValueError), (np.nan, TypeError), (np.inf, TypeError), (1.5, TypeError)):
        with pytest.raises(error, match="`chunk_bytes`"):
            convop.circular_singular_values(w, (6, 6), chunk_bytes=bad)
    assert convop.spectral_norm(w, (6, 6), rtol=np.float32(1e-6)) > 0
    assert convop.spectral_norm(w, (6, 6), rtol=np.array(1e-6)) > 0
    for bad in (0.0, 1.0, np.nan, -1e-3):
        with pytest.raises(ValueError, match=r"`rtol` must be a float in \(0, 1\)"):
            convop.spectral_norm(w, (6, 6), rtol=bad)
    with pytest.raises(TypeError, match="`rtol`"):
        convop.spectral_norm(w, (6, 6), rtol="1e-6")


# Circular layers through the FFT on every path -------------------------------------------------


@pytest.mark.parametrize("layer", [
    dict(weight_shape=(4, 3, 3, 3), size=(6, 6), padding=1),
    dict(weight_shape=(4, 2, 3, 3), size=(8, 6), padding=1, stride=2, groups=2),
    dict(weight_shape=(3, 3, 3), size=(9,), padding=2, dilation=2),
    dict(weight_shape=(2, 2, 3, 3, 3), size=(4, 4, 4), padding=1),
], ids=["2-D", "strided grouped", "1-D dilated", "3-D"])
@pytest.mark.parametrize("complex_weight", [False, True], ids=["real", "complex"])
def test_circular_layers_any_which_and_k_equal_the_dense_svd(layer, complex_weight, rng):
    layer = dict(layer)  # the parametrized dict is shared between cases
    shape = layer.pop("weight_shape")
    size = layer.pop("size")
    w = rng.standard_normal(shape)
    if complex_weight:
        w = w + 1j * rng.standard_normal(shape)
    kw = dict(padding_mode="circular", **layer)
    A = convop.conv_matrix(w, size, domain="input", **kw).toarray()
    dense = np.linalg.svd(A, compute_uv=False)
    scale = dense[0]
    for which, k in (("smallest", 1), ("smallest", 3), ("largest", 3), ("largest", None)):
        got = convop.singular_values(w, size, k=k, which=which, **kw)
        expected = dense if k is None else (dense[:k] if which == "largest" else dense[-k:])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * scale)
    report = convop.spectrum_report(w, size, **kw)
    assert report.sigma_min == pytest.approx(dense[-1], abs=1e-12 * scale)


CIRCULAR = [
    dict(weight_shape=(4, 3, 3, 3), size=(6, 6), padding=1),
    dict(weight_shape=(4, 2, 3, 3), size=(8, 6), padding=1, stride=2, groups=2),
    dict(weight_shape=(3, 3, 3), size=(9,), padding=2, dilation=2),
    dict(weight_shape=(2, 2, 3, 3, 3), size=(4, 4, 4), padding=1),
    dict(weight_shape=(2, 6, 3, 3), size=(6, 6), padding=1),  # wide
]


@pytest.mark.parametrize("layer", CIRCULAR, ids=["2-D", "strided grouped", "1-D dilated", "3-D",
                                                 "wide"])
@pytest.mark.parametrize("complex_weight", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_circular_singular_vectors_come_from_the_fft(layer, complex_weight, order, rng,
                                                      monkeypatch):
    from convop.spectral import values as values_module

    layer = dict(layer)
    shape, size = layer.pop("weight_shape"), layer.pop("size")
    w = rng.standard_normal(shape)
    if complex_weight:
        w = w + 1j * rng.standard_normal(shape)
    kw = dict(padding_mode="circular", **layer)
    op = convop.LayerOperator(w, size, order=order, **kw)
    A = op @ np.eye(op.shape[1], dtype=w.dtype)  # in the operator's own order
    dense = np.linalg.svd(A, compute_uv=False)
    scale = dense[0]

    def no_iteration(*args, **kwargs):
        raise AssertionError("a circular layer's vectors need no iteration")

    monkeypatch.setattr(values_module, "largest", no_iteration)
    monkeypatch.setattr(values_module, "smallest_singular_values", no_iteration)
    monkeypatch.setattr(values_module, "dense_values", no_iteration)
    for which, k in (("largest", 3), ("smallest", 4), ("largest", min(A.shape))):
        u, s, vt = convop.singular_values(op, k=k, which=which, return_vectors=True)
        expected = dense[:k] if which == "largest" else dense[-k:]
        np.testing.assert_allclose(s, expected, rtol=0, atol=1e-12 * scale)
        assert u.dtype == vt.dtype == np.result_type(w, np.float64)
        np.testing.assert_allclose(A @ vt.conj().T, u * s, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(A.conj().T @ u, vt.conj().T * s, rtol=0, atol=1e-12 * scale)
        np.testing.assert_allclose(u.conj().T @ u, np.eye(k), rtol=0, atol=1e-12)
        np.testing.assert_allclose(vt @ vt.conj().T, np.eye(k), rtol=0, atol=1e-12)


def test_a_large_circular_layer_needs_no_factorization(rng):
    # 64->64 @32 (65 536 unknowns): both ends from the FFT, a couple of products for the top.
    w = rng.standard_normal((64, 64, 3, 3))
    report = convop.spectrum_report(w, (32, 32), padding=1, padding_mode="circular", rng=0)
    expected = convop.circular_singular_values(w, (32, 32))
    assert report.sigma_min == pytest.approx(expected.min(), rel=1e-12)
    assert report.sigma_max == pytest.approx(expected.max(), rel=1e-10)
    assert report.products <= 5
