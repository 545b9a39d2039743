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
    assert int(np.nansum(image)) == W.nnz  # every entry counted once


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
