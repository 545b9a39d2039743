"""Plotting API: lazy matplotlib, returns Axes, draws what it says."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

import convop


@pytest.fixture
def plt():
    plt = pytest.importorskip("matplotlib.pyplot")
    yield plt
    plt.close("all")


def test_importable_and_clear_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    importlib.reload(importlib.import_module("convop.plotting"))
    with pytest.raises(ImportError, match=r'pip install "convop\[plot\]"'):
        convop.plot_spectrum([1.0, 2.0])


def test_structure_of_small_matrix_shows_every_entry(plt):
    W = convop.conv_matrix(np.ones((2, 3, 3, 3)), (5, 5), padding=1)
    ax = plot = convop.plot_structure(W, channels=(2, 3))
    image = ax.get_images()[0].get_array()
    assert image.shape == W.shape
    assert int(np.nansum(image)) == W.nnz
    assert len(ax.lines) == (2 - 1) + (3 - 1)  # block outlines
    assert plot.get_title() == f"W: 50 x 147, nnz {W.nnz} (one pixel per entry)"


def test_structure_of_large_matrix_is_downsampled(plt):
    W = convop.conv_matrix(np.ones((4, 4, 3, 3)), (30, 30), padding=1)
    ax = convop.plot_structure(W, max_pixels=100)
    image = ax.get_images()[0].get_array()
    assert max(image.shape) <= 100
    assert np.nanmax(image) == 1.0  # the largest |entry| in each pixel


def test_plots_draw_on_a_given_axes(plt):
    fig, axes = plt.subplots(1, 2)
    values = convop.singular_values(np.ones((1, 1, 3, 3)), (6, 6), padding=1)
    assert convop.plot_spectrum(values, ax=axes[0], label="3x3") is axes[0]
    assert convop.plot_frequency_response(np.ones((1, 1, 3, 3)), (6, 6), ax=axes[1]) is axes[1]
    ax1d = convop.plot_frequency_response(np.ones((2, 1, 3)), 8)
    assert len(ax1d.get_lines()) == 1  # min(C_out, C_in) = 1 curve


def test_spectrum_uses_log_scale_for_wide_ranges(plt):
    assert convop.plot_spectrum([1e3, 1.0, 1e-3]).get_yscale() == "log"
    assert convop.plot_spectrum([3.0, 2.0]).get_yscale() == "linear"


def test_structure_rejects_other_inputs():
    with pytest.raises(TypeError, match="`W_or_layer` must be a scipy sparse matrix"):
        convop.plot_structure(np.ones((3, 3)))


def test_structure_image_holds_the_largest_entry_per_pixel(plt):
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3))
    W = convop.conv_matrix(w, (6, 6), padding=1, domain="input")
    ax = convop.plot_structure(W, channels=(3, 2), max_pixels=20)  # 108 x 72 -> 6 x 4 per pixel
    image = np.asarray(ax.get_images()[0].get_array().filled(np.nan))
    dense = np.abs(W.toarray())
    stored = W.toarray() != 0
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            block = (slice(6 * i, 6 * i + 6), slice(4 * j, 4 * j + 4))
            expected = dense[block][stored[block]].max() if stored[block].any() else np.nan
            np.testing.assert_equal(image[i, j], expected)
    assert ax.get_images()[0].get_extent() == [-0.5, 71.5, 107.5, -0.5]  # matrix rows/columns


def test_structure_outlines_are_thinned_for_wide_layers(plt):
    W = convop.conv_matrix(np.ones((64, 64, 1, 1)), (2, 2))
    ax = convop.plot_structure(W, channels=(64, 64))
    assert len(ax.lines) == 2 * 15  # every 4th of the 63 boundaries per axis
    assert "block lines every 4 channels" in ax.get_title().replace("\n", " ")


def test_block_zoom_shows_the_entries_of_one_block(plt):
    w = np.random.default_rng(1).standard_normal((2, 3, 3, 3))
    op = convop.LayerOperator(w, (5, 5), padding=1)
    W = op.to_matrix().toarray()
    ax = convop.plot_block(op, (1, 2), window=(10, 7))
    image = ax.get_images()[0].get_array().filled(np.nan)
    expected = W[25:35, 50:57].copy()
    expected[expected == 0] = np.nan  # no stored entry: white
    np.testing.assert_array_equal(image, expected)
    assert ax.get_images()[0].get_extent() == [49.5, 56.5, 34.5, 24.5]
    low, high = ax.get_images()[0].get_clim()
    assert low == -high == -np.nanmax(np.abs(expected))  # symmetric: the sign shows
    assert ax.get_title().replace("\n", " ") == (
        "block (output channel 1, input channel 2): rows 25-34, columns 50-56")


def test_block_zoom_rejects_bad_blocks(plt):
    W = convop.conv_matrix(np.ones((2, 3, 3, 3)), (5, 5), padding=1)
    with pytest.raises(ValueError, match="`channels`.*required"):
        convop.plot_block(W)
    with pytest.raises(ValueError, match=r"`block` \(2, 0\) must index the 2 x 3"):
        convop.plot_block(W, (2, 0), channels=(2, 3))
    with pytest.raises(ValueError, match="`channels` .* must divide"):
        convop.plot_block(W, channels=(4, 3))


def _legend(ax):
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_density_of_a_zero_padded_layer_is_its_own_with_the_counterpart_overlaid(plt):
    w = np.random.default_rng(2).standard_normal((3, 2, 3, 3))
    ax = convop.plot_spectrum_density(w, (6, 6), padding=1, rng=0, log=False)
    dense = np.linalg.svd(convop.conv_matrix(w, (6, 6), padding=1, domain="input").toarray(),
                          compute_uv=False)
    sigma_max, sigma_min, reshaped = (line.get_xdata()[0] for line in ax.lines[:3])
    np.testing.assert_allclose([sigma_max, sigma_min], [dense[0], dense[-1]], rtol=1e-9)
    np.testing.assert_allclose(reshaped, np.linalg.svd(w.reshape(3, -1), compute_uv=False)[0],
                               rtol=1e-12)
    labels = _legend(ax)
    assert labels[0] == "this layer, exact (dense SVD), 72 values"
    assert labels[1] == "circular counterpart at 6x6 (FFT), 72 values"
    assert labels[4].startswith("reshaped kernel (torch spectral_norm)")
    # The layer's bars are its own dense spectrum, the thin line the counterpart's.
    layer, counterpart = ax.patches[0], ax.patches[1]
    heights, edges = layer.get_data().values, layer.get_data().edges
    np.testing.assert_array_equal(heights, np.histogram(dense, edges)[0])
    assert heights.sum() == 72
    theirs = np.histogram(convop.circular_singular_values(w, (6, 6)), edges)[0]
    np.testing.assert_array_equal(counterpart.get_data().values, theirs)
    assert not np.array_equal(heights, theirs)  # the layer is not its counterpart


def test_density_of_a_large_layer_is_quadrature_with_its_band(plt):
    w = np.random.default_rng(5).standard_normal((16, 16, 3, 3)) / 12
    d = convop.spectral_density(w, (20, 20), padding=1, rng=0, tol=0.05)
    assert d.method == "slq"
    ax = convop.plot_spectrum_density(w, (20, 20), padding=1, density=d, bins=30)
    labels = _legend(ax)
    assert labels[0].startswith("this layer (Lanczos quadrature: ")
    assert labels[0].endswith("6400 values")
    assert labels[1] == f"fraction at or below (right), band +-{d.band:.2g}"
    right = [other for other in ax.figure.axes if other is not ax][0]
    curve = right.lines[0]
    np.testing.assert_allclose(curve.get_ydata(), d.cdf(curve.get_xdata()))
    band = right.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() >= 0.0 and band[:, 1].max() <= 1.0
    mass, _, _ = d.mass(np.r_[np.nextafter(ax.patches[0].get_data().edges[0], -np.inf),
                              ax.patches[0].get_data().edges[1:]])
    np.testing.assert_allclose(ax.patches[0].get_data().values, mass * d.count)


def test_density_of_a_circular_layer_is_its_own_spectrum(plt):
    w = np.random.default_rng(3).standard_normal((2, 2, 3, 3))
    ax = convop.plot_spectrum_density(w, (6, 6), padding=1, padding_mode="circular",
                                      sigma_min=0.5, log=False, bins=10)
    assert _legend(ax)[0] == "this layer, exact (FFT), 72 values"
    assert not any(label.startswith("circular counterpart") for label in _legend(ax))
    assert ax.lines[1].get_xdata()[0] == 0.5  # given, not recomputed
    np.testing.assert_allclose(ax.lines[0].get_xdata()[0],
                               convop.circular_singular_values(w, (6, 6)).max(), rtol=1e-9)
    assert ax.get_xscale() == "linear" and len(ax.patches[0].get_data().values) == 10


def test_density_says_when_sigma_min_is_zero_or_not_computed(plt, monkeypatch):
    w = np.ones((2, 2, 3, 3))  # rank-1 channel mixing: rank deficient
    ax = convop.plot_spectrum_density(w, (6, 6), padding=1, rng=0, log=True)
    assert "sigma_min (exact) = 0: rank deficient" in _legend(ax)
    monkeypatch.setattr("convop.spectral.density.SMALLEST_LIMIT", 10)
    monkeypatch.setattr("convop.plotting.spectrum.SMALLEST_LIMIT", 10)
    d = convop.spectral_density(w, (6, 6), padding=1, method="slq", rng=0, tol=0.1)
    ax = convop.plot_spectrum_density(w, (6, 6), padding=1, density=d)
    assert any(label.startswith("sigma_min not computed (72 unknowns > 10")
               for label in _legend(ax))


def test_density_refuses_a_density_of_another_layer(plt):
    d = convop.spectral_density(np.ones((2, 2, 3, 3)), (6, 6), padding=1)
    with pytest.raises(ValueError, match="`density` holds 72 singular values; this layer has 50"):
        convop.plot_spectrum_density(np.ones((2, 2, 3, 3)), (5, 5), padding=1, density=d)
    with pytest.raises(TypeError, match="`density` must be a SpectralDensity"):
        convop.plot_spectrum_density(np.ones((2, 2, 3, 3)), (6, 6), density=[1.0])


def test_plot_density_draws_a_computed_density(plt):
    d = convop.spectral_density(np.random.default_rng(0).standard_normal((4, 4, 3, 3)), (8, 8),
                                padding=1, method="slq", tol=0.1, rng=0)
    ax = convop.plot_density(d, bins=12)
    assert ax.get_title() == "slq: 256 singular values"
    assert len(ax.patches[0].get_data().values) == 12
    with pytest.raises(TypeError, match="`density` must be a SpectralDensity"):
        convop.plot_density(np.ones(3))


def test_density_rejects_bad_marks():
    with pytest.raises(ValueError, match="`sigma_max` must be a finite non-negative number"):
        convop.plot_spectrum_density(np.ones((1, 1, 3, 3)), (6, 6), sigma_max=-1.0)
    with pytest.raises(ValueError, match="`sigma_min` must be a finite non-negative number"):
        convop.plot_spectrum_density(np.ones((1, 1, 3, 3)), (6, 6), sigma_min=float("nan"))
    # Marks beside a density already computed are checked too.
    d = convop.spectral_density(np.ones((1, 1, 3, 3)), (6, 6))
    with pytest.raises(ValueError, match="`sigma_max` must be a finite non-negative number"):
        convop.plot_spectrum_density(np.ones((1, 1, 3, 3)), (6, 6), sigma_max=-1.0, density=d)


def test_density_counterpart_rounds_the_size_up_to_the_stride(plt):
    w = np.random.default_rng(4).standard_normal((2, 2, 3, 3))
    ax = convop.plot_spectrum_density(w, (7, 7), stride=2, padding=1, rng=0)
    assert _legend(ax)[1].startswith("circular counterpart at 8x8 (FFT)")
