"""The largest singular value inside a cluster: shift-invert just above the spectrum.

Lanczos on ``G = A^H A`` separates the top eigenvalue from the rest at a rate set
by its gap relative to the whole spectrum's width; a zero-padded orthogonal
layer has thousands of values within 1e-6 of its largest and its smallest far
below, so that rate is about 1e-8 and Lanczos stalls. The circulant embedding's
exact norm ``U`` (:func:`~convop.spectral.bounds.embedding_norm`) lies above every
eigenvalue's root, so ``mu I - G`` with ``mu`` at or just above ``U**2`` is positive
definite: its Cholesky factor (the multifrontal one of the smallest values, on
the negated Gram blocks) turns the top of ``G`` into the top of
``(mu I - G)^{-1}``, where it stands apart by the ratio of its distances to
``mu``, and Lanczos converges in tens of steps. The eigenpair is then taken
with the true Gram product (Rayleigh quotient and residual), so the factor's
rounding moves only the vector, and the value is a certified lower bound. A
caller with an upper bound gives a ``floor``: the first Ritz vector whose
Rayleigh quotient reaches it ends the search (three solves on the AOC 64->64
layer at 32x32, where a residual of 1e-10 took sixteen).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._target import Target
from .bounds import embedding_norm
from .cholesky import BlockCholesky, NotPositiveDefinite
from .gram import scaled_block_gram
from .lanczos import Eigenpairs, top_eigenpair, top_eigenpairs

#: ``mu`` is the embedding's squared norm times ``1 + SHIFT_MARGIN`` (and ten times
#: more where the factor is not positive definite).
SHIFT_MARGIN = 1e-10
#: Relative accuracy of the inverse's top eigenvalue: it is ``1 / (mu - lambda)``, so
#: this is relative to the distance from ``mu``, far finer than to ``lambda``.
INVERSE_TOL = 1e-10


def top_by_shift_invert(target: Target, side: str, k: int, rng: np.random.Generator,
                        start: np.ndarray | None = None, tol: float = INVERSE_TOL,
                        max_flops: float | None = None, floor: float | None = None,
                        bound: float | None = None) -> Eigenpairs:
    """Return the ``k`` largest eigenpairs of the layer's Gram matrix on ``side``.

    ``tol`` is the inverse's relative residual (at most ``INVERSE_TOL``); the
    Gram matrix's own residual comes out near ``tol * mu``. With ``k = 1`` a
    ``floor`` (a Gram eigenvalue the caller accepts whatever the residual, as it
    knows an upper bound) ends the inverse's Lanczos as soon as a Ritz vector's
    Rayleigh quotient for ``G`` reaches it. ``bound``, a certified upper bound of
    ``sigma_max`` the caller has (the embedding's norm), saves computing it again.

    Raises
    ------
    MemoryError
        When the factor does not fit ``target.max_bytes`` (before factoring).
    CostlyFactor
        When the factor takes more than ``max_flops`` multiply-adds (before factoring).
    NotPositiveDefinite
        When no shift up to ``1e-4`` above the embedding's norm factors.
    """
    layer = target.layer
    assert layer is not None
    g = layer.geometry
    weight = np.asarray(layer.weight)
    gram, scale = scaled_block_gram(g, weight, side, target.dtype, target.max_bytes)
    upper = (embedding_norm(weight, g, target.max_bytes) if bound is None else bound) / scale
    negated = gram.negated()
    c, groups, pixels = gram.channels, gram.groups, gram.pattern.shape[0]
    margin = SHIFT_MARGIN
    while True:
        mu = upper**2 * (1 + margin)
        try:
            factor = BlockCholesky(negated, np.full((groups, pixels, c), mu),
                                   target.max_bytes, max_flops=max_flops)
            break
        except NotPositiveDefinite:
            if margin >= 1e-4:
                raise
            margin *= 10
    del negated, gram
    # Row-major vectors (channel, pixel), channel = group * c + local, in the factor's
    # (group, pixel, local) order.
    channel, pixel = np.divmod(np.arange(groups * c * pixels), pixels)
    group, local = np.divmod(channel, c)
    index = (group * pixels + pixel) * c + local
    size = index.size

    def solve(v: np.ndarray) -> np.ndarray:
        full = np.empty(size, dtype=np.result_type(v, target.dtype))
        full[index] = v
        return factor.solve(full)[index]

    inverse_tol = min(tol, INVERSE_TOL)
    product = target.gram(target.dtype, side)
    if k > 1:
        pairs = top_eigenpairs(solve, size, k, dtype=target.dtype, tol=inverse_tol, rng=rng,
                               start=start, deflate=False)
        return gram_pairs(product, pairs)
    # rho = 1 / (mu - lambda) on the scaled Gram matrix. A Ritz vector's own Rayleigh
    # quotient for G lies below mu - 1/rho (Jensen), so reaching the floor there is only
    # necessary; one product of G, a fraction of a solve, decides.
    reach = None if floor is None or floor / scale**2 >= mu else 1 / (mu - floor / scale**2)

    def certified(y: np.ndarray) -> bool:
        assert floor is not None
        return float(np.vdot(y, product(y)).real) >= floor * float(np.vdot(y, y).real)

    return gram_pairs(product, top_eigenpair(solve, size, dtype=target.dtype, tol=inverse_tol,
                                              rng=rng, start=start, floor=reach,
                                              stop=None if reach is None else certified))


def gram_pairs(product: Any, pairs: Eigenpairs) -> Eigenpairs:
    """Return the pairs of ``G`` itself for the inverse's vectors, from true products.

    The value is the Rayleigh quotient (so the factor's rounding moves only the
    vector), in decreasing order; one product per vector joins the steps.
    """
    vectors = pairs.vectors
    values = np.empty(vectors.shape[1])
    residuals = np.empty(vectors.shape[1])
    for i in range(vectors.shape[1]):
        y = vectors[:, i]
        gy = np.asarray(product(y))
        values[i] = float(np.vdot(y, gy).real)
        residuals[i] = float(np.linalg.norm(gy - values[i] * y))
    order = np.argsort(values)[::-1]
    return Eigenpairs(values[order], vectors[:, order], residuals[order],
                      pairs.steps + vectors.shape[1])
