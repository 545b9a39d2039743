"""Where the entries of ``W`` are: the channel blocks, and the bands inside one block."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
import scipy.sparse as sp

from .. import _memory
from .._validation import as_int, as_int_tuple, check_max_bytes
from ..operator import LayerOperator
from ._backend import axes, check_text

__all__ = ["plot_block", "plot_structure"]

#: At most this many block outlines per axis; more turn into a moire.
MAX_OUTLINES = 16
#: Characters per title line, so titles of side-by-side panels do not overlap.
TITLE_WIDTH = 60


def _few_ticks(ax: Any) -> None:
    """Integer ticks few enough that six-digit matrix indices do not collide."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))


def _matrix(W_or_layer: Any, channels: Any, budget: int | None
            ) -> tuple[sp.csr_array, tuple[int, int] | None, str | None]:
    """Return the CSR matrix, its channel counts and the layer description (if a layer)."""
    if channels is not None:
        channels = as_int_tuple(channels, "channels", 2, minimum=1)
    if isinstance(W_or_layer, LayerOperator):
        geom = W_or_layer.geometry
        W = W_or_layer.to_matrix(max_bytes=budget)
        return W, channels or (geom.out_channels, geom.in_channels), geom.describe()
    if sp.issparse(W_or_layer):
        return sp.csr_array(W_or_layer), channels, None
    raise TypeError(
        f"`W_or_layer` must be a scipy sparse matrix or a LayerOperator; got "
        f"{type(W_or_layer).__name__}."
    )


def _check_channels(shape: tuple[int, int], channels: tuple[int, int] | None) -> None:
    if channels is not None and (shape[0] % channels[0] or shape[1] % channels[1]):
        raise ValueError(
            f"`channels` {channels} must divide the matrix shape {shape} (rows by C_out, "
            f"columns by C_in)."
        )


def plot_structure(
    W_or_layer: Any,
    ax: Any = None,
    *,
    channels: tuple[int, int] | None = None,
    max_pixels: int = 600,
    title: str | None = None,
    max_bytes: int | None = None,
) -> Any:
    """Draw where the entries of ``W`` are, with its channel blocks outlined.

    Each image pixel shows the largest ``|entry|`` that falls in it (one pixel
    per entry for small matrices; larger ones are downsampled to at most
    ``max_pixels`` per side); pixels with no stored entry stay white, so stored
    zeros show. The axes are in matrix rows and columns. Block outlines are
    thinned to at most 16 per axis (the title says how many channels apart), so
    wide layers do not turn into a moire; :func:`plot_block` zooms into one block.

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
    check_text(title, "title")
    if isinstance(W_or_layer, LayerOperator):
        _memory.check_budget(pixels * pixels * 16, budget, "the structure image")
    W, channels, _ = _matrix(W_or_layer, channels, budget)
    _check_channels(W.shape, channels)
    rows, cols = W.shape
    step_r = max(1, -(-rows // pixels))
    step_c = max(1, -(-cols // pixels))
    shape = (-(-rows // step_r), -(-cols // step_c))
    _memory.check_budget(shape[0] * shape[1] * 16 + W.nnz * 16, budget, "the structure image")
    plt_ax = axes(ax)
    image = np.full(shape, -1.0)
    row_idx = np.repeat(np.arange(rows) // step_r, np.diff(W.indptr))
    np.maximum.at(image.ravel(), row_idx * shape[1] + W.indices // step_c, np.abs(W.data))
    shown = np.where(image >= 0, image, np.nan)
    extent = (-0.5, shape[1] * step_c - 0.5, shape[0] * step_r - 0.5, -0.5)
    im = plt_ax.imshow(shown, cmap="viridis", interpolation="nearest", aspect="auto",
                       extent=extent, vmin=0)
    where = "entry" if step_r == step_c == 1 else "largest in the pixel"
    plt_ax.figure.colorbar(im, ax=plt_ax, label=f"|entry| ({where})", shrink=0.8)
    note = ""
    if channels is not None:
        every = _outline(plt_ax, channels, W.shape)
        note = "" if every == 1 else f"; block lines every {every} channels"
    plt_ax.set_xlabel("column (input pixel)")
    plt_ax.set_ylabel("row (output pixel)")
    scale = "one pixel per entry" if step_r == step_c == 1 else f"{step_r} x {step_c} per pixel"
    plt_ax.set_title(title or textwrap.fill(f"W: {rows} x {cols}, nnz {W.nnz} ({scale}{note})",
                                            TITLE_WIDTH))
    _few_ticks(plt_ax)
    return plt_ax


def _outline(ax: Any, channels: tuple[int, int], shape: tuple[int, int]) -> int:
    """Draw channel block boundaries (thinned alike on both axes); return the spacing."""
    every = max(1, -(-max(channels) // MAX_OUTLINES))
    for count, size, line in ((channels[0], shape[0] // channels[0], ax.axhline),
                              (channels[1], shape[1] // channels[1], ax.axvline)):
        for k in range(every, count, every):
            line(k * size - 0.5, color="tab:red", lw=0.6, alpha=0.8)
    return every


def plot_block(
    W_or_layer: Any,
    block: tuple[int, int] = (0, 0),
    ax: Any = None,
    *,
    channels: tuple[int, int] | None = None,
    window: int | tuple[int, int] = 200,
    title: str | None = None,
    max_bytes: int | None = None,
) -> Any:
    r"""Zoom into one channel block of ``W``: its Toeplitz bands and entry values.

    Shows the top-left ``window`` rows and columns of the block that maps input
    channel ``block[1]`` to output channel ``block[0]``, one pixel per entry,
    colored by value (symmetric scale, so the sign shows; ``|entry|`` for
    complex data), with the axes in the matrix's own rows and columns. Pixels
    with no stored entry stay white.

    Parameters
    ----------
    W_or_layer : scipy sparse matrix or LayerOperator
        The matrix, or a layer whose explicit matrix is built.
    block : (output channel, input channel)
        Which block.
    ax : matplotlib Axes, optional
        Where to draw; a new figure by default.
    channels : (C_out, C_in), optional
        Channel counts of a plain matrix (required for one); read from a
        LayerOperator.
    window : int or (int, int)
        Rows and columns shown, at most the block's size.
    title : str, optional
        Defaults to the block and the rows and columns shown.
    max_bytes : int, optional
        Memory budget for the matrix of a LayerOperator.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import numpy as np, pytest
    >>> plt = pytest.importorskip("matplotlib.pyplot")
    >>> from convop import LayerOperator, plot_block
    >>> ax = plot_block(LayerOperator(np.ones((2, 2, 3, 3)), (5, 5), padding=1), (1, 0))
    >>> ax.get_title().replace("\n", " ")
    'block (output channel 1, input channel 0): rows 25-49, columns 0-24'
    >>> plt.close("all")
    """
    budget = check_max_bytes(max_bytes)
    check_text(title, "title")
    size = as_int_tuple(window, "window", 2, minimum=1)
    W, channels, _ = _matrix(W_or_layer, channels, budget)
    if channels is None:
        raise ValueError("`channels` (C_out, C_in) is required to find a block of a plain matrix.")
    _check_channels(W.shape, channels)
    out_c, in_c = as_int_tuple(block, "block", 2, minimum=0)
    if out_c >= channels[0] or in_c >= channels[1]:
        raise ValueError(f"`block` {(out_c, in_c)} must index the {channels[0]} x {channels[1]} "
                         f"channel blocks.")
    block_rows, block_cols = W.shape[0] // channels[0], W.shape[1] // channels[1]
    r0, c0 = out_c * block_rows, in_c * block_cols
    nr, nc = min(size[0], block_rows), min(size[1], block_cols)
    _memory.check_budget(nr * nc * 16, budget, "the block image")
    part = W[r0:r0 + nr, c0:c0 + nc].tocoo()
    complex_data = np.iscomplexobj(part.data)
    image = np.full((nr, nc), np.nan)
    image[part.row, part.col] = np.abs(part.data) if complex_data else part.data
    plt_ax = axes(ax)
    extent = (c0 - 0.5, c0 + nc - 0.5, r0 + nr - 0.5, r0 - 0.5)
    if complex_data:
        im = plt_ax.imshow(image, cmap="viridis", interpolation="nearest", aspect="auto",
                           extent=extent, vmin=0)
        label = "|entry|"
    else:
        top = float(np.nanmax(np.abs(image))) if part.nnz else 1.0
        top = top or 1.0
        im = plt_ax.imshow(image, cmap="RdBu_r", interpolation="nearest", aspect="auto",
                           extent=extent, vmin=-top, vmax=top)
        label = "entry value"
    plt_ax.figure.colorbar(im, ax=plt_ax, label=label, shrink=0.8)
    plt_ax.set_xlabel("column (input pixel)")
    plt_ax.set_ylabel("row (output pixel)")
    plt_ax.set_title(title or textwrap.fill(
        f"block (output channel {out_c}, input channel {in_c}): rows {r0}-{r0 + nr - 1}, "
        f"columns {c0}-{c0 + nc - 1}", TITLE_WIDTH))
    _few_ticks(plt_ax)
    return plt_ax
