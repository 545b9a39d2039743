"""Circular padding: every singular value through the FFT, and a Lanczos warm start.

With circular padding totalling ``d*(k-1)`` per axis and an input divisible by
the stride, the layer is block circulant: on the frequency grid of
``input_size / stride`` it is diagonalized into one ``C_out x (C_in * prod(s))``
matrix per frequency (Sedghi, Gupta and Long, ICLR 2019; the polyphase
decomposition of the input for strides).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _memory
from .._blas import Pool, cores, single_threaded
from .._dtypes import as_weight, check_finite
from .._typing import IntOrTuple, PaddingLike
from .._validation import as_int, as_int_tuple, as_padding, check_max_bytes
from ..geometry import ConvGeometry, make_geometry
from ..operator import LayerOperator
from .tolerance import rank_tolerance, zero_below


def circular_singular_values(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding: PaddingLike | None = None,
    chunk_bytes: int = 2**27,
    max_bytes: int | None = None,
) -> np.ndarray:
    r"""All singular values of a circular-padded layer, exactly, through the FFT.

    With circular padding of total ``d*(k-1)`` per axis the layer is a block
    circulant operator: on the frequency grid of ``input_size / stride`` it is
    diagonalized into one ``C_out x (C_in * prod(stride))`` matrix per frequency
    (Sedghi, Gupta and Long, ICLR 2019; the polyphase decomposition of the
    input for strides), whose singular values together are the operator's.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        Filters with 1, 2 or 3 spatial axes; computed in float64 (complex128).
    input_size : int or tuple of int
        Spatial size, divisible by the stride on every axis.
    stride, dilation, groups
        As in :func:`convop.conv_matrix`.
    padding : optional
        Circular padding; its total must be ``d*(k-1)`` per axis (the split
        does not change the singular values). Default: PyTorch's ``"same"`` split.
    chunk_bytes : int
        Memory for the per-frequency matrices processed at once.
    max_bytes : int, optional
        Memory budget (default: 75% of the available memory).

    Returns
    -------
    numpy.ndarray
        All ``prod(input_size / stride) * min(C_out, C_in * prod(stride))``
        singular values, descending; the same as those of
        ``conv_matrix(..., padding_mode="circular", domain="input")`` (its
        other ``min(rows, cols)`` minus that many are 0). Values at or below
        ``max(rows, cols) * eps * sigma_max`` are exactly 0.

    Notes
    -----
    With ``K_{full}[m, c, z] = \sum_u K[m, c, u] [z \equiv u d - p (\bmod n)]`` and
    polyphase kernels ``K_p[m, c, t] = K_{full}[m, c, t s + p]`` on the grid
    ``n / s``, the layer is ``y[m, o] = \sum_{c, p, j} K_p[m, c, j - o] x[c, j s + p]``,
    a circular correlation per phase; the DFT turns it into
    ``\hat y(f) = \overline{\hat K(f)} \hat x(f)`` with ``\hat K(f)`` of size
    ``C_out x C_in s^d``.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import circular_singular_values
    >>> circular_singular_values(np.ones((1, 1, 3)), 4)   # |1 + 2cos(2 pi f / 4)|
    array([3., 1., 1., 1.])
    """
    w = as_weight(weight)
    check_finite(w, "weight")
    geom = circular_geometry(w.shape, input_size, stride, dilation, groups, padding)
    chunk = as_int(chunk_bytes, "chunk_bytes", minimum=1)
    budget = check_max_bytes(max_bytes)
    problem = circulant_problem(geom)
    if problem is not None:
        raise ValueError(problem)
    width = geom.in_channels * math.prod(geom.stride)
    freqs = math.prod(geom.input_size) // math.prod(geom.stride)
    count = freqs * min(geom.out_channels, width)
    _memory.check_budget(spectrum_bytes(geom, np.iscomplexobj(w)) + chunk + 4 * 8 * count, budget,
                         f"the FFT spectrum of the circular layer ({count} singular values)")
    # Single-threaded BLAS throughout, the cores taking chunks of blocks: threads left
    # spinning by a threaded product would slow the SVDs that follow.
    with single_threaded(), Pool(cores()) as pool:
        spectrum, multiplicity = block_spectrum(geom, w)
        mats = spectrum.reshape(-1, geom.out_channels, width)  # one block per frequency
        per_matrix = 16 * geom.out_channels * width * 3
        step = max(1, chunk // per_matrix)
        # Chunks of at most `step` blocks, as many for each core.
        parts = -(-max(1, -(-len(mats) // step)) // pool.workers) * pool.workers
        edges = np.linspace(0, len(mats), parts + 1).astype(int)
        chunks = [mats[a:b] for a, b in zip(edges[:-1], edges[1:]) if b > a]
        values = np.concatenate(pool.map([_svdvals] * len(chunks), chunks))
    values = np.repeat(values, multiplicity.reshape(-1), axis=0).ravel()
    m, n = geom.matrix_shape("input")
    return zero_below(values, rank_tolerance(m, n, float(values.max(initial=0.0)),
                                             float(np.finfo(np.float64).eps)))


def _svdvals(blocks: np.ndarray) -> np.ndarray:
    return np.linalg.svd(blocks, compute_uv=False)


def circular_geometry(weight_shape: tuple[int, ...], input_size: Any, stride: Any, dilation: Any,
                      groups: Any, padding: Any) -> ConvGeometry:
    """Return the geometry of the circular layer, with PyTorch's "same" split by default."""
    if padding is None:
        ndim = len(weight_shape) - 2
        padding = circular_padding(weight_shape[2:], as_int_tuple(dilation, "dilation", ndim,
                                                                  minimum=1))
    return make_geometry(weight_shape, input_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, padding_mode="circular")


def spectrum_bytes(geom: ConvGeometry, complex_data: bool = False) -> int:
    """Bytes of the per-frequency blocks (half the grid for real weights) and their work."""
    grid = [n // s for n, s in zip(geom.input_size, geom.stride)]
    if not complex_data:
        grid[-1] = grid[-1] // 2 + 1
    freqs = math.prod(grid)
    blocks = freqs * geom.out_channels * geom.in_channels * math.prod(geom.stride)
    return 16 * (2 * blocks + freqs * math.prod(geom.kernel_size))


def is_circulant(geom: Any) -> bool:
    """Tell whether the layer is block circulant: circular padding and :func:`circulant_problem`."""
    return geom.padding_mode == "circular" and circulant_problem(geom) is None


def circulant_problem(geom: Any) -> str | None:
    """Why the layer with circular padding would not be block circulant; None when it is.

    Circulant means padding totalling ``d*(k-1)`` on every axis (the output grid is the
    input grid divided by the stride) and an input size divisible by the stride.
    """
    for axis, (n, s, (lo, hi), k, d) in enumerate(zip(
        geom.input_size, geom.stride, geom.padding, geom.kernel_size, geom.dilation
    )):
        if lo + hi != d * (k - 1):
            return (f"`padding` must total dilation*(kernel-1) = {d * (k - 1)} on spatial axis "
                    f"{axis} for the layer to be circulant; got {(lo, hi)}.")
        if n % s:
            return (f"`input_size` {n} on spatial axis {axis} must be divisible by the stride "
                    f"{s} for the polyphase FFT.")
    return None


def circular_padding(kernel: tuple[int, ...], dilation: tuple[int, ...]
                     ) -> tuple[tuple[int, int], ...]:
    """PyTorch's "same" split of the total ``d*(k-1)``, which makes a circular layer circulant."""
    ndim = len(kernel)
    return as_padding("same", ndim, kernel_size=tuple(kernel), dilation=tuple(dilation),
                      stride=(1,) * ndim)


def block_spectrum(geom: Any, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frequency ``C_out x C_in*prod(s)`` blocks of the circular layer, and multiplicities.

    Returns the blocks with shape ``(*freqs, C_out, C_in, *phases)`` and, per
    frequency, how many frequencies of the full grid share its singular values
    (2 for the conjugate pairs folded by the real FFT).

    The DFT of the wrapped kernel is taken tap by tap: tap ``u`` sits at
    ``z = (u*d - lo) mod n`` of the input grid, i.e. at phase ``z mod s`` and
    position ``z // s`` of the polyphase grid, so each block is a sum of
    ``prod(kernel)`` tap matrices times a phase factor: one matrix product per
    phase instead of an FFT of an array the size of the input.
    """
    grid = tuple(n // s for n, s in zip(geom.input_size, geom.stride))
    real = not np.iscomplexobj(w)
    sizes = frequency_sizes(geom, real)
    freqs = np.stack(np.meshgrid(*[np.arange(q) for q in sizes], indexing="ij"), axis=-1)
    blocks = frequency_blocks(geom, w, freqs.reshape(-1, geom.ndim))
    c_out, c_in = geom.out_channels, geom.in_channels
    spectrum = blocks.reshape(*sizes, c_out, c_in, *geom.stride)
    count = np.ones(sizes, dtype=np.int64)
    if real:  # frequencies f and -f have conjugate blocks, hence equal singular values
        last = np.arange(sizes[-1])
        count[..., (last > 0) & (2 * last != grid[-1])] = 2
    return spectrum, count


def frequency_sizes(geom: Any, real: bool) -> list[int]:
    """Return the frequency grid: the polyphase grid, last axis halved for real weights."""
    sizes = [n // s for n, s in zip(geom.input_size, geom.stride)]
    if real:
        sizes[-1] = sizes[-1] // 2 + 1
    return sizes


def frequency_blocks(geom: Any, w: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Return the blocks ``(F, C_out, C_in, *phases)`` at the frequencies ``(F, ndim)``."""
    ndim = geom.ndim
    c_out, c_in = geom.out_channels, geom.in_channels
    grid = tuple(n // s for n, s in zip(geom.input_size, geom.stride))
    taps = list(np.ndindex(*geom.kernel_size))
    where = np.array([[(u * d - lo) % n for u, d, (lo, _), n in zip(
        tap, geom.dilation, geom.padding, geom.input_size)] for tap in taps]).reshape(-1, ndim)
    stride = np.array(geom.stride)
    phase_of, position = where % stride, where // stride
    # exp(-2 pi i <f, t> / q) for every frequency and tap.
    factors = np.exp(-2j * np.pi * (freqs / np.array(grid)) @ position.T)  # (freqs, taps)
    dtype = np.result_type(w, np.complex128)
    flat_w = w.reshape(c_out, geom.in_per_group, len(taps))
    phases = {tuple(p) for p in phase_of}
    if geom.groups == 1 and len(phases) == 1 and math.prod(geom.stride) == 1:
        # The common case in one product, written once (touching memory costs here).
        kernel = flat_w.reshape(-1, len(taps)).T  # (taps, Co * Ci), a view
        if np.iscomplexobj(kernel):
            return (factors @ kernel).reshape(-1, c_out, c_in, *geom.stride)
        # Real weights: real GEMMs, since complex @ real first casts the whole kernel to
        # complex, which cost 90% of this function on a 512-channel layer.
        both = np.concatenate([factors.real, factors.imag]) @ kernel
        blocks = np.empty((freqs.shape[0], kernel.shape[1]), dtype=dtype)
        blocks.real = both[: freqs.shape[0]]
        blocks.imag = both[freqs.shape[0]:]
        return blocks.reshape(-1, c_out, c_in, *geom.stride)
    blocks = np.zeros((freqs.shape[0], c_out, c_in, *geom.stride), dtype=dtype)
    for phase in phases:
        mine = np.flatnonzero(np.all(phase_of == phase, axis=1))
        for group in range(geom.groups):
            rows = slice(group * geom.out_per_group, (group + 1) * geom.out_per_group)
            cols = slice(group * geom.in_per_group, (group + 1) * geom.in_per_group)
            kernel = flat_w[rows][:, :, mine].reshape(-1, mine.size)  # (Co/G * Ci/G, taps)
            part = factors[:, mine] @ kernel.T  # (freqs, Co/G * Ci/G)
            blocks[(slice(None), rows, cols) + tuple(phase)] += part.reshape(
                -1, geom.out_per_group, geom.in_per_group)
    return blocks


def circular_start(op: LayerOperator, rng: np.random.Generator, budget: int,
                   noise: float = 0.0, estimates: list[float] | None = None
                   ) -> np.ndarray | None:
    """Top right singular vectors of the layer's circular counterpart, as a Lanczos start block.

    Rows of row-major vectors (PyTorch's layout, whatever the operator's order):
    the cosine and the sine wave for real weights, one complex wave for complex
    ones. Exists when the stride divides the input and the padding totals d*(k-1) (the
    "same" layers of most networks); None otherwise, and None when its FFT would
    take more than ``budget`` bytes (the warm start never costs more than the
    solve it warms). For a circular layer the block holds its exact top singular
    vectors; for another layer (its circular counterpart's vectors) some
    ``noise`` keeps the start from being orthogonal to its true top vector.
    ``estimates``, when given, receives the counterpart's top singular value as
    found: the exact value of the blocks the power iterations put in front (it
    is the counterpart's norm unless they misjudged the order).
    """
    g = op.geometry
    ndim = g.ndim
    if g.groups != 1 or circulant_problem(g) is not None:
        return None
    circular = make_geometry(op.weight.shape, g.input_size, stride=g.stride, padding=g.padding,
                             dilation=g.dilation, padding_mode="circular")
    real = not np.iscomplexobj(op.weight)
    sizes = frequency_sizes(circular, real)
    freqs = np.stack(np.meshgrid(*[np.arange(q) for q in sizes], indexing="ij"),
                     axis=-1).reshape(-1, g.ndim)
    # Frequencies in chunks, so the start costs a bounded few MiB whatever the layer: the
    # per-frequency top right singular vectors by a batched power iteration (a start needs
    # no more; exact SVDs of every block cost more than the solve on deep layers).
    width = g.in_channels * math.prod(g.stride)
    # Per frequency: its block and the block's adjoint, a few vectors, the tap factors.
    per_frequency = 16 * (3 * g.out_channels * width + 4 * width + math.prod(g.kernel_size))
    start_bytes = 4 * 16 * g.in_channels * math.prod(g.input_size)  # the block, built last
    chunk = min(freqs.shape[0], START_CHUNK_BYTES // per_frequency,
                (budget - start_bytes) // per_frequency)
    if chunk < 1:
        return None
    top = np.empty(freqs.shape[0])
    leader = (-1.0, 0, np.zeros(0))  # (estimate, frequency index, power vector)
    for first in range(0, freqs.shape[0], chunk):
        part = slice(first, first + chunk)
        mats = frequency_blocks(circular, op.weight, freqs[part]).reshape(
            -1, g.out_channels, width)
        vectors = _top_vectors(mats, rng, POWER_STEPS)
        top[part] = np.linalg.norm(np.matmul(mats, vectors[..., np.newaxis])[..., 0], axis=1)
        i = int(np.argmax(top[part]))
        if top[first + i] > leader[0]:
            leader = (float(top[first + i]), first + i, vectors[i])
    if not noise or estimates is not None:
        # Exact SVDs of the few frequencies that lead: the power estimates may not order
        # near-ties right (nor reach the norm: estimates), and the winner's vector must be
        # exact for a circular layer.
        candidates = np.argsort(top)[-min(_CANDIDATES, chunk):]
        mats = frequency_blocks(circular, op.weight, freqs[candidates]).reshape(
            -1, g.out_channels, width)
    if noise:
        # Another layer's start: the power iteration's vector is close enough (noise is
        # added anyway), and exact SVDs of the leading blocks cost more than the start
        # saves (0.23 s of 0.54 s on a 512-channel layer at 7x7).
        freq = tuple(int(f) for f in freqs[leader[1]])
        v = leader[2] / np.linalg.norm(leader[2])
        if estimates is not None:
            found = float(np.linalg.svd(mats, compute_uv=False)[:, 0].max())
    else:
        _, values, vh = np.linalg.svd(mats)
        best = int(np.argmax(values[:, 0]))
        freq = tuple(int(f) for f in freqs[candidates[best]])
        v = np.conj(vh[best, 0])
        found = float(values[best, 0])
    if estimates is not None:
        estimates.append(found)
    grid = tuple(n // s for n, s in zip(g.input_size, g.stride))
    # x[c, j*s + p] = v[c, p] exp(-2 pi i <f, j> / q) gives y[:, j] = exp(-2 pi i <f, j> / q)
    # B(f) v, since B(f) sums each tap times exp(-2 pi i <f, t> / q): the right singular
    # vector of the block, spread over the grid.
    phase = np.ones((), dtype=complex)
    for axis in range(ndim):
        wave = np.exp(-2j * np.pi * freq[axis] * np.arange(grid[axis]) / grid[axis])
        phase = np.multiply.outer(phase, wave)
    v = v.reshape(g.in_channels, *g.stride)
    x = np.multiply.outer(v, phase)  # (C_in, *phases, *grid)
    # Real weights: frequencies f and -f have equal singular values, and the real
    # eigenvectors of the pair are the cosine and the sine wave: a block of both, the
    # (nearly) degenerate top pair of the padded layer.
    waves = [x] if np.iscomplexobj(op.weight) else [np.real(x), np.imag(x)]
    # -> (C_in, q_1, s_1, q_2, s_2, ...) -> (C_in, *input_size)
    order = [0] + [a for i in range(ndim) for a in (1 + ndim + i, 1 + i)]
    rows = []
    flat = [wave.transpose(order).reshape(-1) for wave in waves]
    norms = [float(np.linalg.norm(row)) for row in flat]
    for row, norm in zip(flat, norms):
        # A self-conjugate frequency gives a real wave: the other part is rounding.
        if norm > 1e-3 * max(norms):
            row = row / norm
            if noise:
                extra = rng.standard_normal(row.size)
                row += noise * extra / np.linalg.norm(extra)
            rows.append(row)
    return np.array(rows) if rows else None


#: Power iterations of the warm start on every frequency's block.
POWER_STEPS = 20
#: Frequencies whose blocks get an exact SVD for the winner.
_CANDIDATES = 8
#: Memory of one chunk of frequencies of the warm start.
START_CHUNK_BYTES = 2**25


def _top_vectors(mats: np.ndarray, rng: np.random.Generator, steps: int,
                 start: np.ndarray | None = None) -> np.ndarray:
    """Power iteration on ``M^H M`` for a stack of blocks ``M``: approximate top right vectors.

    In complex64, and ``M^H y`` as ``conj(conj(y)^T M)`` with no copy of the adjoint:
    the iteration reads the blocks twice a step, so bytes are its time, and a
    start needs no more than single precision (benchmarks/TUNING.md#start-precision).
    """
    low = mats.astype(np.complex64)
    x = start if start is not None else (
        rng.standard_normal(mats.shape[::2]) + 1j * rng.standard_normal(mats.shape[::2]))
    x = x.astype(np.complex64)
    for _ in range(steps):
        y = np.matmul(low, x[..., np.newaxis])  # (F, C_out, 1)
        x = np.conj(np.matmul(np.conj(np.swapaxes(y, -1, -2)), low))[..., 0, :]
        x /= np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-30)
    return x.astype(np.complex128)
