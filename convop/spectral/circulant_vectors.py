"""Singular vectors of a block-circulant layer through its FFT blocks, exactly.

Block ``B(f) = U S V^H`` at frequency ``f`` of the polyphase grid ``q`` gives the
layer's singular triplets ``(U[:, i] (x) w_f, S_i, conj(V^H[i]) (x) w_f)`` with
the plane wave ``w_f(j) = exp(-2 pi i <f, j> / q) / sqrt(prod(q))`` (the input's
phases interleaved on its grid). Real weights need real vectors: a frequency
paired with ``-f`` gives two, ``sqrt(2)`` times the real and the imaginary part
of the complex one, and a self-conjugate frequency (``f = -f``) has a real block
whose SVD is taken in real arithmetic.
"""

from __future__ import annotations

import math

import numpy as np

from .. import _memory
from ..operator import LayerOperator
from .circular import frequency_blocks, spectrum_bytes
from .results import Singular
from .tolerance import rank_tolerance


def circulant_triplets(layer: LayerOperator, count: int, which: str,
                       max_bytes: int | None = None) -> Singular:
    """Return the ``count`` largest or smallest singular triplets, values descending.

    Vectors are row-major (PyTorch's layout): ``u`` is ``(m, count)``, ``vt``
    is ``(count, n)``.
    """
    g = layer.geometry
    w = np.asarray(layer.weight)
    real = not np.iscomplexobj(w)
    c_out, width = g.out_channels, g.in_channels * math.prod(g.stride)
    m, n = g.matrix_shape("input")
    _memory.check_budget(4 * spectrum_bytes(g, not real) + 2 * 16 * (m + n) * count, max_bytes,
                         f"{count} singular vectors of the circular layer through its FFT")
    # The whole frequency grid; for real weights one of each pair f, -f (its blocks are
    # conjugate) stands for both, and self-conjugate frequencies (2f = 0) for themselves.
    grid = tuple(n // s for n, s in zip(g.input_size, g.stride))
    coords = np.indices(grid).reshape(g.ndim, -1)
    flat = np.arange(coords.shape[1])
    partner = np.ravel_multi_index(tuple(-coords % np.array(grid)[:, None]), grid)
    keep = flat <= partner if real else np.ones(flat.size, dtype=bool)
    copies = np.where(partner[keep] == flat[keep], 1, 2) if real else np.ones(
        int(keep.sum()), dtype=np.int64)
    frequencies = coords[:, keep].T
    mats = frequency_blocks(g, w, frequencies).reshape(-1, c_out, width)
    rank = min(c_out, width)
    u = np.empty((mats.shape[0], c_out, rank), dtype=mats.dtype)
    s = np.empty((mats.shape[0], rank))
    vh = np.empty((mats.shape[0], rank, width), dtype=mats.dtype)
    # Real weights: the block of a self-conjugate frequency is real (its imaginary part is
    # rounding), and a real SVD fixes the vectors' phase.
    alone = copies == 1 if real else np.zeros(copies.size, dtype=bool)
    for part, as_real in ((alone, True), (~alone, False)):
        if np.any(part):
            block = mats[part].real if as_real else mats[part]
            u[part], s[part], vh[part] = np.linalg.svd(block, full_matrices=False)
    # Every value with its frequency, index in the block and part (0: the complex vector or
    # its real part, 1: its imaginary part), in descending order.
    freq, index = np.divmod(np.arange(s.size), rank)
    reps = copies[freq] if real else np.ones(freq.size, dtype=np.int64)
    freq, index = np.repeat(freq, reps), np.repeat(index, reps)
    part = np.arange(freq.size) - np.repeat(np.cumsum(reps) - reps, reps)
    values = s[freq, index]
    order = np.argsort(-values, kind="stable")
    chosen = order[:count] if which == "largest" else order[order.size - count:]
    freq, index, part, values = freq[chosen], index[chosen], part[chosen], values[chosen]
    tolerance = rank_tolerance(m, n, float(s.max(initial=0.0)), float(np.finfo(np.float64).eps))
    values = np.where(values <= tolerance, 0.0, values)
    waves = _waves(frequencies[freq], grid)
    left = _spread(u[freq, :, index], waves, (1,) * g.ndim)
    right = _spread(vh[freq, index].conj(), waves, g.stride)
    if real:
        # sqrt(2) (Re, Im) of a paired frequency's vectors; a self-conjugate one's are real.
        shape = (-1,) + (1,) * (left.ndim - 1)
        imag = (part == 1).reshape(shape)
        scale = np.where(copies[freq] == 2, math.sqrt(2), 1.0).reshape(shape)
        left = np.where(imag, left.imag, left.real) * scale
        shape = (-1,) + (1,) * (right.ndim - 1)
        right = np.where(imag.reshape(shape), right.imag, right.real) * scale.reshape(shape)
    return Singular(values, np.zeros(values.size), left.reshape(count, m).T,
                    right.conj().reshape(count, n))


def _waves(frequencies: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """``(count, *grid)`` unit plane waves ``exp(-2 pi i <f, j> / q) / sqrt(prod(q))``."""
    count, ndim = frequencies.shape
    phase = np.zeros((count,) + grid)
    for axis, q in enumerate(grid):
        shape = [count] + [1] * ndim
        shape[axis + 1] = q
        phase = phase + (frequencies[:, axis, None] * np.arange(q) / q).reshape(shape)
    return np.exp(-2j * np.pi * phase) / math.sqrt(math.prod(grid))


def _spread(vectors: np.ndarray, waves: np.ndarray, stride: tuple[int, ...]) -> np.ndarray:
    """``x[k, c, j*s + p] = vectors[k, c, p] * waves[k, j]``, as ``(count, C, *size)``."""
    count, ndim = waves.shape[0], waves.ndim - 1
    v = vectors.reshape(count, -1, *stride)
    x = v.reshape(v.shape + (1,) * ndim) * waves.reshape(
        (count, 1) + (1,) * ndim + waves.shape[1:])
    # (k, C, s_1.., q_1..) -> (k, C, q_1, s_1, q_2, s_2, ...) -> (k, C, *size)
    order = [0, 1] + [a for i in range(ndim) for a in (2 + ndim + i, 2 + i)]
    size = tuple(q * s for q, s in zip(waves.shape[1:], stride))
    return x.transpose(order).reshape(count, v.shape[1], *size)
