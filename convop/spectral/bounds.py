"""A fast certified upper bound of a layer's spectral norm: Gram iteration on the FFT blocks.

Delattre, Barthelemy, Araujo and Allauzen (ICML 2023; and their 2024 paper on
zero padding): for a matrix ``M``, ``sigma_1(M)^(2^t) <= ||G_t||_F`` with
``G_0 = M`` and ``G_{t+1} = G_t^H G_t``, a bound that tightens very fast with
``t``. A circular convolution is block diagonal in the Fourier basis, so its
norm is the largest ``sigma_1`` of its frequency blocks, each bounded that way.

Any layer is reduced to one: its padded-domain matrix is a row selection (the
valid outputs, then the stride) of the circular stride-1 correlation on the
padded grid (no window wraps there), so its norm is at most that circulant's;
the input-domain layer adds the padding matrix ``P``, whose norm is
``sqrt(max copies of one input pixel)`` (1 for zero padding). A circular layer
with "same" padding is itself (a row selection of) the circulant on its input
grid, with no such factor.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _memory
from .._dtypes import as_weight, check_finite
from .._typing import IntOrTuple, PaddingLike, PaddingMode
from .._validation import as_int, check_max_bytes
from ..geometry import ConvGeometry, make_geometry
from ..modes import MODES
from ..padding import source_index
from .circular import circular_geometry, frequency_blocks, frequency_sizes

__all__ = ["embedding_norm", "gram_iteration_bound"]

#: Memory of one chunk of frequency blocks.
CHUNK_BYTES = 2**26
#: Relative rounding of the circulant embedding's norm (SVDs of its FFT blocks).
EMBEDDING_ACCURACY = 1e-12


def gram_iteration_bound(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    iterations: int = 6,
    max_bytes: int | None = None,
) -> float:
    """Return a certified upper bound of the layer's spectral norm by Gram iteration.

    Never below the exact value (:func:`convop.spectral_norm`); for a
    circular-padded stride-1 layer it tends to it as ``iterations`` grows
    (the Frobenius norm's excess shrinks like ``r^(1/2^t)``).

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        Filters (finite).
    input_size : int or tuple of int
        Spatial input size.
    stride, padding, dilation, groups, padding_mode
        The layer, as in :func:`convop.conv_matrix`.
    iterations : int
        Gram iterations (1 to 30).
    max_bytes : int, optional
        Memory budget of the frequency blocks (processed in chunks).

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from convop import gram_iteration_bound, spectral_norm
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> bound = gram_iteration_bound(w, (8, 8), padding=1)
    >>> exact = spectral_norm(w, (8, 8), padding=1, rng=0)
    >>> bool(exact <= bound <= 1.2 * exact)
    True
    """
    w = as_weight(weight)
    check_finite(w, "weight")
    steps = as_int(iterations, "iterations", minimum=1, maximum=30)
    budget = check_max_bytes(max_bytes)
    geom = make_geometry(w.shape, input_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, padding_mode=padding_mode)
    return _embedding_bound(w, geom, budget, lambda blocks: _log_gram_bound(blocks, steps))


def embedding_norm(weight: np.ndarray, geom: ConvGeometry, max_bytes: int | None = None
                   ) -> float:
    """Return the exact norm of the circulant the layer is a part of, times ``||P||``.

    An upper bound of the layer's spectral norm (the Gram-iteration bound's
    limit), computed by an SVD of every frequency block: tight on clustered
    spectra, where Gram iteration's Frobenius excess stays (64 equal values per
    block: ``64**(1/2**7)``, 3% after 6 iterations). Exact to the SVD's rounding.
    """
    def log_norms(blocks: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):  # a zero block: log 0 = -inf, as in Gram iteration
            return np.log(np.linalg.svd(blocks, compute_uv=False)[:, 0])

    return _embedding_bound(weight, geom, max_bytes, log_norms)


def embedding_ceiling(weight: np.ndarray, geom: ConvGeometry, max_bytes: int | None = None
                      ) -> float:
    """Return a certified upper bound of the layer's norm: :func:`embedding_norm`, rounded up."""
    return embedding_norm(weight, geom, max_bytes) * (1 + EMBEDDING_ACCURACY)


def _embedding_bound(w: np.ndarray, geom: ConvGeometry, budget: int | None,
                     log_norms: Any) -> float:
    """Return the largest ``exp(log_norms(blocks))`` over the embedding's frequencies, times P."""
    same_circular = geom.padding_mode == "circular" and all(
        lo + hi == d * (k - 1) for (lo, hi), d, k in zip(geom.padding, geom.dilation,
                                                        geom.kernel_size))
    if same_circular:  # the layer is (a row selection of) the circulant on the input grid
        circulant = circular_geometry(w.shape, geom.input_size, 1, geom.dilation,
                                      geom.groups, geom.padding)
    else:
        circulant = circular_geometry(w.shape, geom.padded_size, 1, geom.dilation,
                                      geom.groups, None)
    real = not np.iscomplexobj(w)
    sizes = frequency_sizes(circulant, real)
    count = math.prod(sizes)
    # Chunks bound the memory (a small `max_bytes` is fine), not the time: a grid with more
    # frequencies than one input of the layer could have in this machine's memory would run
    # for days, and is refused like any use of that layer.
    _memory.check_budget(8 * count, None, f"the circulant embedding's {count} frequencies "
                         f"(8 bytes each, as one input of the layer would take)")
    # A frequency's blocks, its work and its index row (the grid is never laid out whole:
    # a huge input has more frequencies than memory holds indices).
    per_frequency = 16 * (4 * geom.out_channels * geom.in_channels
                          + 2 * geom.in_channels * geom.in_channels
                          + math.prod(geom.kernel_size)) + 16 * geom.ndim
    _memory.check_budget(per_frequency, budget, "one frequency block of the circulant embedding")
    chunk = max(1, min(CHUNK_BYTES, budget or CHUNK_BYTES) // per_frequency)
    exact = w.astype(np.result_type(w.dtype, np.float64), copy=False)
    log_bound = -math.inf
    for first in range(0, count, chunk):
        flat = np.arange(first, min(first + chunk, count), dtype=np.int64)
        freqs = np.stack(np.unravel_index(flat, sizes), axis=-1)
        blocks = frequency_blocks(circulant, exact, freqs)
        blocks = blocks.reshape(len(blocks), geom.out_channels, -1)
        log_bound = max(log_bound, float(np.max(log_norms(blocks))))
    return math.exp(log_bound) * (1.0 if same_circular else _padding_norm(geom))


def _log_gram_bound(blocks: np.ndarray, steps: int) -> np.ndarray:
    """Return ``log`` of the Gram-iteration bound of ``sigma_1`` of every block."""
    # Gram iteration on the smaller side: the same largest singular value.
    G = blocks if blocks.shape[-1] <= blocks.shape[-2] else np.conj(np.swapaxes(blocks, -1, -2))
    log_scale = np.zeros(len(G))
    for _ in range(steps):
        G = np.conj(np.swapaxes(G, -1, -2)) @ G
        norm = np.linalg.norm(G, axis=(-2, -1))
        zero = norm == 0
        norm[zero] = 1.0
        G = G / norm[:, None, None]
        log_scale = 2 * log_scale + np.log(norm)
        log_scale[zero] = -np.inf  # a zero block stays zero
    # sigma_1^(2^t) <= ||H_t||_F = exp(log_scale) * ||G_t||_F, with ||G_t||_F = 1 (or 0).
    return log_scale / 2**steps


def _padding_norm(geom: ConvGeometry) -> float:
    """Return ``||P||_2`` of the padding matrix: sqrt of the most copies of one pixel."""
    if not MODES[geom.padding_mode].folds:
        return 1.0
    copies = 1
    for n, (lo, hi) in zip(geom.input_size, geom.padding):
        source = source_index(n, lo, hi, geom.padding_mode)
        copies *= int(np.bincount(source[source >= 0], minlength=n).max())
    return math.sqrt(copies)
