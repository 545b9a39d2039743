"""Singular values in pictures: sorted, as a density beside the exact extremes, per frequency."""

from __future__ import annotations

import math
import textwrap
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _memory
from .._dtypes import as_numeric_array, as_weight, check_finite
from .._validation import as_int, check_bool, check_max_bytes
from ..geometry import layer_arguments, make_geometry
from ..spectral.circular import (
    block_spectrum,
    circulant_problem,
    circular_geometry,
    spectrum_bytes,
)
from ..spectral.estimators import counterpart_singular_values, reshaped_kernel_norm
from ..spectral.values import singular_values, spectral_norm
from ._backend import axes, check_text

__all__ = ["plot_frequency_response", "plot_spectrum", "plot_spectrum_density"]

#: The exact smallest singular value is computed for the density picture up to
#: this many unknowns (a sparse Cholesky of the Gram matrix; larger layers take
#: minutes): pass ``sigma_min`` to mark it on larger ones.
SMALLEST_LIMIT = 20_000


def plot_spectrum(
    values: npt.ArrayLike,
    ax: Any = None,
    *,
    title: str | None = None,
    label: str | None = None,
    log: bool | None = None,
) -> Any:
    """Plot singular values as a sorted curve (largest first).

    Parameters
    ----------
    values : array_like
        Singular values, in any order.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    title, label : str, optional
        Axes title and line label.
    log : bool, optional
        Logarithmic y axis; by default when the values span more than two decades.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pytest
    >>> plt = pytest.importorskip("matplotlib.pyplot")
    >>> from convop import plot_spectrum
    >>> ax = plot_spectrum([3.0, 1.0, 2.0])
    >>> ax.get_lines()[0].get_ydata().tolist()
    [3.0, 2.0, 1.0]
    >>> plt.close("all")
    """
    arr = as_numeric_array(values, "values")
    if arr.ndim != 1:
        raise ValueError(f"`values` must be a 1-D array of singular values; got shape {arr.shape}.")
    if arr.dtype.kind == "c":
        raise TypeError("`values` must be real singular values; got a complex array.")
    check_finite(arr, "values")
    check_text(title, "title")
    check_text(label, "label")
    if log is not None:
        check_bool(log, "log")
    plt_ax = axes(ax)
    s = np.sort(arr.astype(np.float64).ravel())[::-1]
    positive = s[s > 0]
    if log is None:
        log = positive.size > 1 and positive[0] / positive[-1] > 100
    plt_ax.plot(np.arange(1, s.size + 1), s, lw=1.2, label=label)
    if log:
        plt_ax.set_yscale("log")
    plt_ax.set_xlabel("index (descending)")
    plt_ax.set_ylabel("singular value")
    plt_ax.grid(True, alpha=0.3)
    if s.size:
        plt_ax.set_title(title or f"{s.size} singular values: max {s[0]:.6g}, min {s[-1]:.3g}")
    if label:
        plt_ax.legend()
    return plt_ax


def plot_frequency_response(
    weight: npt.ArrayLike,
    input_size: Any,
    ax: Any = None,
    *,
    stride: Any = 1,
    dilation: Any = 1,
    groups: int = 1,
    title: str | None = None,
    max_bytes: int | None = None,
) -> Any:
    """Show the circular layer's largest singular value at each frequency.

    The per-frequency view of :func:`convop.circular_singular_values`: in 2-D
    an image over the (centered) frequency grid, in 1-D every singular value per
    frequency as curves; in 3-D the central slice of the last frequency axis.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        Filters (finite).
    input_size : int or tuple of int
        Spatial size, divisible by the stride.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    stride, dilation, groups
        As in :func:`convop.circular_singular_values`.
    title : str, optional
        Axes title.
    max_bytes : int, optional
        Memory budget for the FFT spectrum.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pytest
    >>> plt = pytest.importorskip("matplotlib.pyplot")
    >>> from convop import plot_frequency_response
    >>> ax = plot_frequency_response(np.ones((2, 2, 3, 3)), (8, 8))
    >>> ax.get_title()
    'largest singular value per frequency, max 18'
    >>> plt.close("all")
    """
    w = as_weight(weight)
    check_finite(w, "weight")
    check_text(title, "title")
    ndim = w.ndim - 2
    geom = circular_geometry(w.shape, input_size, stride, dilation, groups, None)
    problem = circulant_problem(geom)
    if problem is not None:
        raise ValueError(problem)
    _memory.check_budget(spectrum_bytes(geom, np.iscomplexobj(w)), check_max_bytes(max_bytes),
                         "the FFT spectrum of the circular layer")
    plt_ax = axes(ax)
    spectrum, _ = block_spectrum(geom, w)
    blocks = spectrum.reshape(*spectrum.shape[:ndim], geom.out_channels, -1)
    values = np.linalg.svd(blocks, compute_uv=False)  # (*freqs, min(C_out, C_in s^d))
    top = values[..., 0]
    if ndim == 1:
        for j in range(values.shape[-1]):
            plt_ax.plot(np.arange(values.shape[0]), values[:, j], lw=1)
        plt_ax.set_xlabel("frequency index (non-negative half)")
        plt_ax.set_ylabel("singular values")
    else:
        image = top if ndim == 2 else top[..., 0]
        shown = np.fft.fftshift(image, axes=0)
        first = image.shape[0]
        low = -(first // 2)  # fftshift puts frequency -first//2 first
        im = plt_ax.imshow(shown, origin="lower", cmap="magma", aspect="auto",
                           extent=(-0.5, image.shape[1] - 0.5, low - 0.5, low + first - 0.5))
        plt_ax.figure.colorbar(im, ax=plt_ax, label="largest singular value")
        plt_ax.set_xlabel("frequency (last axis, non-negative half)")
        plt_ax.set_ylabel("frequency (first axis, centered)")
    plt_ax.set_title(title or f"largest singular value per frequency, max {top.max():.6g}")
    return plt_ax


def plot_spectrum_density(
    weight: npt.ArrayLike,
    input_size: Any,
    ax: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    sigma_max: float | None = None,
    sigma_min: float | None = None,
    bins: int = 80,
    log: bool | None = None,
    title: str | None = None,
    rng: Any = None,
    max_bytes: int | None = None,
) -> Any:
    """Histogram of a layer's singular values with its exact extremes marked.

    The density comes from the FFT (:func:`convop.circular_singular_values`):
    for a circular-padded layer it is the layer's own full spectrum; for any
    other layer it is the spectrum of its *circular counterpart* (the same
    weights with circular "same" padding, at the input size rounded up to a
    multiple of the stride), labelled as such: near-identical in the bulk, it
    differs from the layer at the edges. Marked on top:

    - the layer's exact ``sigma_max`` (:func:`convop.spectral_norm`),
    - its exact ``sigma_min`` (computed up to 20 000 unknowns, otherwise
      only when given),
    - the spectral norm of the reshaped kernel ``weight.reshape(C_out, -1)``,
      what ``torch.nn.utils.parametrizations.spectral_norm`` computes for a
      convolution: a common mistake for the layer's norm.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        Filters (finite).
    input_size : int or tuple of int
        Spatial input size of the layer.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    stride, padding, dilation, groups, padding_mode
        The layer, as in :func:`convop.conv_matrix`.
    sigma_max, sigma_min : float, optional
        Exact values already known (not recomputed).
    bins : int
        Number of histogram bins.
    log : bool, optional
        Logarithmic value axis; by default when the values span more than two
        decades.
    title : str, optional
        Defaults to the layer.
    rng : int or numpy.random.Generator, optional
        Start vectors of the exact computations.
    max_bytes : int, optional
        Memory budget of each computation.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pytest
    >>> plt = pytest.importorskip("matplotlib.pyplot")
    >>> from convop import plot_spectrum_density
    >>> w = np.random.default_rng(0).standard_normal((4, 4, 3, 3))
    >>> ax = plot_spectrum_density(w, (8, 8), padding=1)
    >>> [text.get_text()[:20] for text in ax.get_legend().get_texts()]
    ['circular counterpart', 'sigma_max (exact) = ', 'sigma_min (exact) = ', 'reshaped kernel (tor']
    >>> plt.close("all")
    """
    w = as_weight(weight)
    check_finite(w, "weight")
    check_text(title, "title")
    count = as_int(bins, "bins", minimum=1, maximum=100_000)
    if log is not None:
        check_bool(log, "log")
    for value, name in ((sigma_max, "sigma_max"), (sigma_min, "sigma_min")):
        if value is not None and not (isinstance(value, (int, float, np.floating, np.integer))
                                      and math.isfinite(value) and value >= 0):
            raise ValueError(f"`{name}` must be a finite non-negative number or None; "
                             f"got {value!r}.")
    budget = check_max_bytes(max_bytes)
    layer = layer_arguments(stride, padding, dilation, groups, padding_mode)
    geom = make_geometry(w.shape, input_size, **layer)
    values, label = counterpart_singular_values(w, geom, budget)
    m, n = geom.matrix_shape("input")
    if sigma_max is None:
        sigma_max = spectral_norm(w, geom.input_size, rng=rng, max_bytes=budget, **layer)
    if sigma_min is None and min(m, n) <= SMALLEST_LIMIT:
        sigma_min = float(singular_values(w, geom.input_size, k=1, which="smallest", rng=rng,
                                          max_bytes=budget, **layer)[0])
    reshaped = reshaped_kernel_norm(w)
    plt_ax = axes(ax, (7, 4.5))
    positive = values[values > 0]
    marks = [v for v in (sigma_max, sigma_min, reshaped) if v]
    low = min([positive.min()] + marks) if positive.size else min(marks or [1.0])
    high = max([values.max()] + marks)
    if log is None:
        log = high / low > 100
    if log:
        edges = np.geomspace(low, high, count + 1)
        plt_ax.set_xscale("log")
    else:
        edges = np.linspace(min(0.0, values.min()), high, count + 1)
    zeros = values.size - positive.size
    shown = positive if log else values
    note = f"; {zeros} zeros not shown on the log axis" if log and zeros else ""
    plt_ax.hist(shown, bins=edges, color="0.6", label=f"{label} ({values.size} values{note})")
    plt_ax.axvline(sigma_max, color="tab:red", lw=1.5, label=f"sigma_max (exact) = {sigma_max:.6g}")
    if sigma_min is not None:
        if sigma_min > 0 or not log:
            plt_ax.axvline(sigma_min, color="tab:blue", lw=1.5,
                           label=f"sigma_min (exact) = {sigma_min:.4g}")
        else:
            plt_ax.plot([], [], color="tab:blue", lw=1.5,
                        label="sigma_min (exact) = 0: rank deficient")
    else:
        plt_ax.plot([], [], " ", label=f"sigma_min not computed ({min(m, n)} unknowns > "
                    f"{SMALLEST_LIMIT}; pass sigma_min=)")
    plt_ax.axvline(reshaped, color="k", ls="--", lw=1.2,
                   label=f"reshaped kernel (torch spectral_norm) = {reshaped:.4g}")
    plt_ax.set_xlabel("singular value")
    plt_ax.set_ylabel("number of singular values")
    plt_ax.set_ylim(0, plt_ax.get_ylim()[1] * 1.55)  # headroom: the legend covers no bar
    plt_ax.legend(fontsize="small", loc="upper left")
    plt_ax.set_title(title or textwrap.fill(geom.describe(), 80), fontsize="small")
    return plt_ax
