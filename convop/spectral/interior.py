"""The largest singular value of a flat-symbol layer: Lanczos away from the border.

A zero-padded orthogonal layer's Gram matrix ``G`` has its largest eigenvalue
inside a cluster of thousands (the interior's Fourier modes, all within the
symbol's spread of 2e-6) and its smallest far below (the border's), so Lanczos
on ``G`` stalls. Vectors that vanish near the border see no padding: for them
``A x`` is the circulant embedding's ``C x``, so the compression of ``G`` to
those pixels is a compression of ``C^H C``, whose spectrum lies within the
symbol's spread, and Lanczos resolves its top in tens of products. That top is
a Rayleigh quotient of ``G`` (a certified lower bound of ``sigma_max^2``), close
to ``G``'s own: on the AOC 64->64 layer at 32x32 its root lies 1.8e-9 (relative)
below the embedding's norm ``U``, and ``sigma_max`` 1.6e-9 below it. A caller
who knows ``U`` (an upper bound) asks for a ``floor`` within its ``rtol`` and is
answered without a factor, or gets the best vector for one when the floor lies
above the compression's reach (an ``rtol`` finer than about 2e-9 there).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..geometry import ConvGeometry
from .lanczos import Eigenpairs, top_eigenpair
from .results import Callback
from .top_shift import gram_pairs

#: Lanczos products on the compression before the caller's factor takes over: the AOC
#: 64->64 layer at 32x32 reaches rtol 1e-8 in 21 and converges below 1e-9's floor in
#: 106 (benchmarks/TUNING.md#interior-lanczos).
INTERIOR_PRODUCTS = 60


def interior_mask(geom: ConvGeometry, side: str) -> np.ndarray | None:
    """Return the row-major vector entries a border-free vector may use, or None.

    ``side="input"``: the input pixels every tap of which lands on an output;
    ``"output"``: the outputs none of whose taps reads padding. Such vectors see
    no padding, for a zero-padded stride-1 layer only (None otherwise, and where
    no pixel qualifies).
    """
    if geom.padding_mode != "zeros" or any(s != 1 for s in geom.stride):
        return None
    axes = []
    for n, m, (lo, _), k, d in zip(geom.input_size, geom.output_size, geom.padding,
                                     geom.kernel_size, geom.dilation):
        reach = (k - 1) * d
        # Input i feeds outputs i + lo - t d (t < k); output o reads inputs o + t d - lo.
        first, last, length = ((max(0, reach - lo), min(n, m - lo), n) if side == "input"
                               else (max(0, lo), min(m, n + lo - reach), m))
        if first >= last:
            return None
        axis = np.zeros(length, dtype=bool)
        axis[first:last] = True
        axes.append(axis)
    spatial = axes[0]
    for axis in axes[1:]:
        spatial = np.logical_and.outer(spatial, axis)
    channels = geom.in_channels if side == "input" else geom.out_channels
    return np.broadcast_to(spatial.reshape(1, -1), (channels, spatial.size)).ravel()


def interior_top(gram: Any, mask: np.ndarray, *, dtype: np.dtype, floor: float, tol: float,
                 rng: np.random.Generator, start: np.ndarray | None = None,
                 maxiter: int = INTERIOR_PRODUCTS, callback: Callback | None = None,
                 max_basis: int | None = None) -> Eigenpairs:
    """Return the top eigenpair of ``gram`` compressed to ``mask``, as a pair of ``gram``.

    Lanczos stops at ``floor``, at relative accuracy ``tol`` on the compression,
    or after ``maxiter`` products; the vector comes back full length, with its
    Rayleigh quotient and residual for ``gram`` itself (one more product,
    counted in the steps).
    """
    index = np.flatnonzero(mask)
    full = np.zeros(mask.size, dtype=dtype)

    def compressed(v: np.ndarray) -> np.ndarray:
        full[index] = v
        return np.asarray(gram(full))[index]

    inner = None if start is None else np.asarray(start)[..., index]
    pairs = top_eigenpair(compressed, index.size, dtype=dtype, tol=tol, rng=rng, start=inner,
                          maxiter=maxiter, callback=callback, max_basis=max_basis,
                          floor=floor, partial=True)
    vector = np.zeros((mask.size, 1), dtype=pairs.vectors.dtype)
    vector[index, 0] = pairs.vectors[:, 0]
    vector /= math.sqrt(float(np.vdot(vector, vector).real))
    return gram_pairs(gram, Eigenpairs(pairs.values[:1], vector, pairs.residuals[:1],
                                       pairs.steps))
