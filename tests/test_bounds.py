"""gram_iteration_bound: never below the exact spectral norm, tight for circular layers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import moded_layers, seeds

import convop


@given(layer_mode=moded_layers(), seed=seeds(), iterations=st.integers(1, 8),
       complex_data=st.booleans())
def test_the_bound_is_never_below_the_exact_norm(layer_mode, seed, iterations, complex_data):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(layer.weight_shape)
    if complex_data:
        w = w + 1j * rng.standard_normal(layer.weight_shape)
    kw = dict(layer.kwargs(), padding_mode=mode)
    A = convop.conv_matrix(w, layer.input_size, domain="input", **kw).toarray()
    exact = np.linalg.svd(A, compute_uv=False)[0] if A.size else 0.0
    bound = convop.gram_iteration_bound(w, layer.input_size, iterations=iterations, **kw)
    assert bound >= exact * (1 - 1e-12)


@pytest.mark.parametrize("size", [(8, 8), (12, 10)])
def test_the_bound_converges_to_a_circular_layers_norm(size):
    w = np.random.default_rng(1).standard_normal((6, 4, 3, 3))
    exact = convop.circular_singular_values(w, size)[0]
    bounds = [convop.gram_iteration_bound(w, size, padding=1, padding_mode="circular",
                                          iterations=t) for t in (2, 5, 10)]
    assert bounds[0] >= bounds[1] >= bounds[2] >= exact * (1 - 1e-12)
    assert bounds[2] <= exact * (1 + 1e-3)


def test_the_bound_beats_the_reshaped_kernel_estimate_at_being_an_upper_bound():
    w = np.random.default_rng(2).standard_normal((8, 8, 3, 3))
    exact = convop.spectral_norm(w, (16, 16), padding=1, rng=0)
    reshaped = np.linalg.norm(w.reshape(8, -1), 2)
    bound = convop.gram_iteration_bound(w, (16, 16), padding=1)
    assert reshaped < exact <= bound <= 1.1 * exact


def test_padding_modes_that_copy_pixels_scale_the_bound():
    w = np.random.default_rng(3).standard_normal((2, 2, 3, 3))
    zeros = convop.gram_iteration_bound(w, (6, 6), padding=1)
    replicate = convop.gram_iteration_bound(w, (6, 6), padding=1, padding_mode="replicate")
    assert replicate == pytest.approx(zeros * 2.0)  # corner pixels copied 2 x 2 times


def test_arguments_are_validated():
    w = np.ones((2, 2, 3, 3))
    with pytest.raises(ValueError, match="`iterations`"):
        convop.gram_iteration_bound(w, (6, 6), iterations=0)
    with pytest.raises(ValueError, match="`weight`"):
        convop.gram_iteration_bound(np.full((2, 2, 3, 3), np.nan), (6, 6))
    with pytest.raises(MemoryError, match="one frequency block"):
        convop.gram_iteration_bound(w, (6, 6), max_bytes=10)
    # More frequencies than one input could have in memory: days of SVDs, refused at once
    # (a 1-D 2**40 input ran on; a 2-D one's grid overflowed numpy's index).
    for size in (2**40, (2**40, 2**40)):
        kernel = np.ones((1, 1) + (3,) * (1 if isinstance(size, int) else 2))
        with pytest.raises(convop.BudgetError, match="frequencies.*needs an estimated"):
            convop.gram_iteration_bound(kernel, size)


def test_the_frequency_grid_is_never_laid_out_whole():
    # Chunks of frequency indices: a 2048 x 2048 input's grid alone would be 34 MB
    # (a huge input's, more than memory: numpy's bare MemoryError before).
    import tracemalloc

    w = np.ones((1, 1, 3, 3))
    tracemalloc.start()
    try:
        bound = convop.gram_iteration_bound(w, (2048, 2048), padding=1, max_bytes=2**21)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20
    assert 9.0 <= bound <= 9.0 * 1.01  # all-ones 3x3: sigma_max -> 9 from below
