"""Singular values in pictures: sorted, as the layer's density with its extremes, per frequency."""

from __future__ import annotations

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
from ..spectral.density import SMALLEST_LIMIT, SpectralDensity, check_extreme, spectral_density
from ..spectral.estimators import counterpart_singular_values, reshaped_kernel_norm
from ._backend import axes, check_text

__all__ = ["plot_density", "plot_frequency_response", "plot_spectrum", "plot_spectrum_density"]

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
    density: SpectralDensity | None = None,
    tol: float = 0.02,
) -> Any:
    """Draw the density of the layer's own singular values, its band and exact extremes.

    The layer's density comes from :func:`convop.spectral_density`: exact for a
    circular layer (FFT) or a small one (dense SVD), otherwise stochastic
    Lanczos quadrature drawn with its band (shaded: where the count per bin
    lies). Drawn over it:

    - the *circular counterpart* (the same weights with circular "same" padding,
      at the input size rounded up to a multiple of the stride) as a thin line,
      the FFT spectrum people often plot instead; for a circular layer it is the
      layer itself and is not drawn twice,
    - the layer's exact ``sigma_max`` and ``sigma_min`` (computed up to 20 000
      unknowns, otherwise only when given),
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
        Number of bins.
    log : bool, optional
        Logarithmic value axis; by default when the values span more than two
        decades.
    title : str, optional
        Defaults to the layer.
    rng : int or numpy.random.Generator, optional
        Probes and start vectors of the computations.
    max_bytes : int, optional
        Memory budget of each computation.
    density : SpectralDensity, optional
        The layer's density already computed (by :func:`convop.spectral_density`).
    tol : float
        The band's half-width aimed at when the density is computed here.

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
    >>> [text.get_text()[:12] for text in ax.get_legend().get_texts()]
    ['this layer, ', 'circular cou', 'sigma_max (e', 'sigma_min (e', 'reshaped ker']
    >>> plt.close("all")
    """
    w = as_weight(weight)
    check_finite(w, "weight")
    check_text(title, "title")
    count = as_int(bins, "bins", minimum=1, maximum=100_000)
    if log is not None:
        check_bool(log, "log")
    if density is not None and not isinstance(density, SpectralDensity):
        raise TypeError(f"`density` must be a SpectralDensity or None; got "
                        f"{type(density).__name__}.")
    given_max, given_min = check_extreme(sigma_max, "sigma_max"), check_extreme(sigma_min,
                                                                                 "sigma_min")
    budget = check_max_bytes(max_bytes)
    layer = layer_arguments(stride, padding, dilation, groups, padding_mode)
    geom = make_geometry(w.shape, input_size, **layer)
    if density is None:
        density = spectral_density(w, geom.input_size, sigma_max=given_max, sigma_min=given_min,
                                   tol=tol, rng=rng, max_bytes=budget, **layer)
    elif density.count != min(geom.matrix_shape("input")):
        raise ValueError(f"`density` holds {density.count} singular values; this layer has "
                         f"{min(geom.matrix_shape('input'))}.")
    top = density.sigma_max if given_max is None else given_max
    bottom = density.sigma_min if given_min is None else given_min
    counterpart, label = (None, "") if density.method == "fft" else counterpart_singular_values(
        w, geom, budget)
    reshaped = reshaped_kernel_norm(w)
    plt_ax = axes(ax, (7, 4.5))
    edges, log = _density_edges(density, counterpart, [top, bottom, reshaped], count, log)
    if log:
        plt_ax.set_xscale("log")
    _draw_density(plt_ax, density, edges, log)
    if counterpart is not None:
        heights, _ = np.histogram(counterpart, edges)
        plt_ax.stairs(heights * density.count / counterpart.size, edges, color="0.2", lw=0.8,
                      label=f"{label}, {counterpart.size} values")
    plt_ax.axvline(top, color="tab:red", lw=1.5, label=f"sigma_max (exact) = {top:.6g}")
    m, n = geom.matrix_shape("input")
    if bottom is not None:
        if bottom > 0 or not log:
            plt_ax.axvline(bottom, color="tab:blue", lw=1.5,
                           label=f"sigma_min (exact) = {bottom:.4g}")
        else:
            plt_ax.plot([], [], color="tab:blue", lw=1.5,
                        label="sigma_min (exact) = 0: rank deficient")
    else:
        plt_ax.plot([], [], " ", label=f"sigma_min not computed ({min(m, n)} unknowns > "
                    f"{SMALLEST_LIMIT}; pass sigma_min=)")
    plt_ax.axvline(reshaped, color="k", ls="--", lw=1.2,
                   label=f"reshaped kernel (torch spectral_norm) = {reshaped:.4g}")
    plt_ax.set_xlabel("singular value")
    plt_ax.set_ylabel("singular values per bin")
    plt_ax.set_ylim(0, plt_ax.get_ylim()[1] * 1.6)  # headroom: the legend covers no bar
    plt_ax.legend(fontsize="small", loc="upper left")
    plt_ax.set_title(title or textwrap.fill(geom.describe(), 80), fontsize="small")
    return plt_ax


def plot_density(density: SpectralDensity, ax: Any = None, *, bins: int = 50,
                 log: bool | None = None, title: str | None = None) -> Any:
    """Draw a computed :class:`convop.SpectralDensity`: its counts per bin, band and extremes.

    The layer-free part of :func:`plot_spectrum_density` (no counterpart, no
    reshaped kernel), for densities already computed, such as an audit's.

    Parameters
    ----------
    density : SpectralDensity
        From :func:`convop.spectral_density`.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    bins : int
        Number of bins.
    log : bool, optional
        Logarithmic value axis; by default when the values span more than two decades.
    title : str, optional
        Defaults to the method and the number of values.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pytest
    >>> plt = pytest.importorskip("matplotlib.pyplot")
    >>> from convop import plot_density, spectral_density
    >>> d = spectral_density(np.ones((2, 2, 3, 3)), (8, 8), padding=1, padding_mode="circular")
    >>> plot_density(d).get_title()
    'fft: 128 singular values'
    >>> plt.close("all")
    """
    if not isinstance(density, SpectralDensity):
        raise TypeError(f"`density` must be a SpectralDensity; got {type(density).__name__}.")
    count = as_int(bins, "bins", minimum=1, maximum=100_000)
    if log is not None:
        check_bool(log, "log")
    check_text(title, "title")
    plt_ax = axes(ax, (6, 4))
    edges, log = _density_edges(density, None, [density.sigma_min], count, log)
    if log:
        plt_ax.set_xscale("log")
    _draw_density(plt_ax, density, edges, log)
    plt_ax.axvline(density.sigma_max, color="tab:red", lw=1.2,
                   label=f"sigma_max = {density.sigma_max:.6g}")
    if density.sigma_min is not None and (density.sigma_min > 0 or not log):
        plt_ax.axvline(density.sigma_min, color="tab:blue", lw=1.2,
                       label=f"sigma_min = {density.sigma_min:.4g}")
    plt_ax.set_xlabel("singular value")
    plt_ax.set_ylabel("singular values per bin")
    plt_ax.set_ylim(0, plt_ax.get_ylim()[1] * 1.6)
    plt_ax.legend(fontsize="x-small", loc="upper left")
    plt_ax.set_title(title or f"{density.method}: {density.count} singular values",
                     fontsize="small")
    return plt_ax


def _density_edges(density: SpectralDensity, counterpart: np.ndarray | None,
                   marks: list[float | None], bins: int, log: bool | None
                   ) -> tuple[np.ndarray, bool]:
    """Bin edges over the layer's support, the counterpart and the marks; and the axis scale."""
    values = [density.sigma_max] + [v for v in marks if v is not None]
    if counterpart is not None:
        values += [float(counterpart.max()), float(counterpart.min())]
    if density.values is not None:
        values += [float(density.values[0])]
    high = max(values)
    positive = [v for v in values if v > 0]
    if density.values is None and density.sigma_min is None:
        # The support starts at 0: show down to where 0.1% of the values lie.
        positive.append(_quantile(density, 1e-3, high))
    low = min(positive) if positive else 1.0
    if log is None:
        log = high / low > 100
    if log:
        return np.geomspace(low, high, bins + 1), True
    return np.linspace(min(0.0, min(values)), high if high > 0 else 1.0, bins + 1), False


def _quantile(density: SpectralDensity, fraction: float, high: float) -> float:
    """Return the smallest grid value where the estimate reaches ``fraction``."""
    grid = np.geomspace(high * 1e-12, high, 2000)
    reached = grid[density.cdf(grid) >= fraction]
    return float(reached[0]) if reached.size else high


def _draw_density(ax: Any, density: SpectralDensity, edges: np.ndarray, log: bool) -> None:
    """Draw the layer's count per bin; a quadrature's distribution band on a right axis.

    A bin's count is bounded only to about two nodes' weights at each of its
    edges, so per-bin bounds of a fine histogram say little; the band is drawn
    where it is tight, on the fraction of values at or below each value.
    """
    closed = edges.copy()
    closed[0] = np.nextafter(closed[0], -np.inf)  # the first bin holds its left edge
    mass, _, _ = density.mass(closed)
    below = float(density.cdf(closed[0]))
    note = f"; {below:.1%} below the axis" if log and below >= 0.0005 else ""
    if density.values is not None:
        how = {"fft": "FFT", "dense": "dense SVD", "gram": "dense Gram matrix"}[density.method]
        counts, _ = np.histogram(density.values, edges)
        ax.stairs(counts, edges, fill=True, color="0.75",
                  label=f"this layer, exact ({how}), {density.count} values{note}")
        return
    color = "tab:orange"
    per_probe = density.steps // max(density.probes, 1)
    ax.stairs(mass * density.count, edges, color=color, lw=1.6,
              label=f"this layer (Lanczos quadrature: {density.probes} probe"
                    f"{'s' * (density.probes != 1)} x {per_probe} steps), {density.count} "
                    f"values{note}")
    x = (np.geomspace(edges[0], edges[-1], 600) if log
         else np.linspace(edges[0], edges[-1], 600))
    lower, upper = density.cdf_bounds(x)
    right = ax.twinx()
    right.fill_between(x, lower, upper, color=color, alpha=0.18, lw=0)
    right.plot(x, density.cdf(x), color=color, lw=0.9, ls="--")
    right.set_ylim(0, 1.6)  # the same headroom as the counts: the legend covers neither
    right.set_yticks([0, 0.25, 0.5, 0.75, 1])
    right.set_ylabel("fraction of values at or below")
    # Entries for the right axis's artists in the one legend.
    ax.fill_between([], [], color=color, alpha=0.18, lw=0,
                    label=f"fraction at or below (right), band +-{density.band:.2g}")
