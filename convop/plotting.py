"""Pictures of a convolution operator: the structure of W and its spectrum.

matplotlib is optional (``pip install "convop[plot]"``) and imported when a
function here is called, so ``import convop`` never needs it. Every function
takes ``ax=None`` (a new figure) and returns the ``Axes`` it drew on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from . import _memory
from ._validation import (
    as_int,
    as_int_tuple,
    as_numeric_array,
    as_weight,
    check_bool,
    check_finite,
    check_max_bytes,
)
from .geometry import ConvGeometry
from .operator import LayerOperator
from .spectral.circular import (
    block_spectrum,
    circulant_problem,
    circular_geometry,
    spectrum_bytes,
)

__all__ = ["plot_frequency_response", "plot_spectrum", "plot_structure"]

INSTALL_HINT = 'plotting needs matplotlib: python -m pip install "convop[plot]"'


def _pyplot() -> Any:
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
            import os

            if not os.environ.get("DISPLAY") and os.name != "nt":
                matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return plt


def _check_title(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string or None; got {value!r}.")


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=(6, 6))
    return ax


def plot_structure(
    W_or_layer: Any,
    ax: Any = None,
    *,
    channels: tuple[int, int] | None = None,
    max_pixels: int = 600,
    title: str | None = None,
    max_bytes: int | None = None,
) -> Any:
    """Draw the sparsity pattern of ``W`` with its channel blocks outlined.

    Small matrices show every entry (one pixel per entry); larger ones are
    downsampled to at most ``max_pixels`` per side, each pixel showing how many
    stored entries fall in it (logarithmic color).

    Parameters
    ----------
    W_or_layer : scipy sparse matrix or LayerOperator
        The matrix, or a layer whose explicit matrix is built.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    channels : (C_out, C_in), optional
        Channel counts of a plain matrix, to outline its blocks; read from a
        LayerOperator.
    max_pixels : int
        Largest image side before downsampling.
    title : str, optional
        Defaults to the matrix shape and nnz.
    max_bytes : int, optional
        Memory budget for the matrix of a LayerOperator and the image.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pytest
    >>> plt = pytest.importorskip("matplotlib.pyplot")
    >>> from convop import LayerOperator, plot_structure
    >>> ax = plot_structure(LayerOperator(np.ones((2, 2, 3, 3)), (5, 5), padding=1))
    >>> ax.get_title()
    'W: 50 x 50, nnz 676 (one pixel per entry)'
    >>> plt.close("all")
    """
    pixels = as_int(max_pixels, "max_pixels", minimum=1, maximum=10_000)
    budget = check_max_bytes(max_bytes)
    _check_title(title, "title")
    if channels is not None:
        channels = as_int_tuple(channels, "channels", 2, minimum=1)  # type: ignore[assignment]
    if isinstance(W_or_layer, LayerOperator):
        geom: ConvGeometry = W_or_layer.geometry
        channels = channels or (geom.out_channels, geom.in_channels)
        _memory.check_budget(pixels * pixels * 16, budget, "the structure image")
        W = W_or_layer.to_matrix(max_bytes=budget)
    elif sp.issparse(W_or_layer):
        W = sp.csr_array(W_or_layer)
    else:
        raise TypeError(
            f"`W_or_layer` must be a scipy sparse matrix or a LayerOperator; got "
            f"{type(W_or_layer).__name__}."
        )
    _memory.check_budget(pixels * pixels * 16 + W.nnz * 16, budget, "the structure image")
    plt_ax = _axes(ax)
    rows, cols = W.shape
    step_r = max(1, -(-rows // pixels))
    step_c = max(1, -(-cols // pixels))
    row_idx = np.repeat(np.arange(rows), np.diff(W.indptr))
    image = np.zeros((-(-rows // step_r), -(-cols // step_c)))
    np.add.at(image, (row_idx // step_r, W.indices // step_c), 1.0)
    shown = np.where(image > 0, image, np.nan)
    if step_r == step_c == 1:
        plt_ax.imshow(shown, cmap="Greys", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    else:
        from matplotlib.colors import LogNorm

        plt_ax.imshow(shown, cmap="viridis", norm=LogNorm(), interpolation="nearest",
                      aspect="auto")
    if channels is not None:
        c_out, c_in = channels
        for k in range(1, c_out):
            plt_ax.axhline(k * rows / c_out / step_r - 0.5, color="tab:red", lw=0.6)
        for k in range(1, c_in):
            plt_ax.axvline(k * cols / c_in / step_c - 0.5, color="tab:red", lw=0.6)
    plt_ax.set_xlabel(f"column (input pixel){'' if step_c == 1 else f', {step_c} per pixel'}")
    plt_ax.set_ylabel(f"row (output pixel){'' if step_r == 1 else f', {step_r} per pixel'}")
    scale = "one pixel per entry" if step_r == step_c == 1 else f"{step_r} x {step_c} per pixel"
    plt_ax.set_title(title or f"W: {rows} x {cols}, nnz {W.nnz} ({scale})")
    return plt_ax


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
    _check_title(title, "title")
    _check_title(label, "label")
    if log is not None:
        check_bool(log, "log")
    plt_ax = _axes(ax)
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
    _check_title(title, "title")
    ndim = w.ndim - 2
    geom = circular_geometry(w.shape, input_size, stride, dilation, groups, None)
    problem = circulant_problem(geom)
    if problem is not None:
        raise ValueError(problem)
    _memory.check_budget(spectrum_bytes(geom, np.iscomplexobj(w)), check_max_bytes(max_bytes),
                         "the FFT spectrum of the circular layer")
    plt_ax = _axes(ax)
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
