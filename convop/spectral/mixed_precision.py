"""Mixed precision for the largest eigenvalue: low-precision products, exact residuals.

:func:`refine_top_eigenpair` polishes a top eigenpair with corrections computed
from cheap low-precision (float32) products; the true residual from exact
(float64) products certifies the answer. The plain Lanczos methods it builds
on are in :mod:`convop.spectral.lanczos`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .lanczos import (
    BLOCK,
    STAGNATION,
    STALL_NEAR_TOL,
    Apply,
    Callback,
    Eigenpairs,
    VectorOps,
    combine,
    hermitian,
    top_ritz,
    writable,
)

#: A Ritz value of the exact block this close (relative) to the top one is its twin.
TWINS = 1e-4
#: A correction aims at this fraction of the tolerance (the exact residual decides).
ROUND_TARGET = 0.5
#: A correction whose estimate rises this far above its best (near the tolerance, after
#: RISE_AFTER steps) has started to resolve a twin through the noise: it stops there.
RISE = 4.0
RISE_AFTER = 30
#: A round that does not bring the exact residual below this fraction of the last one
#: has stalled: first the twin is corrected too, then the exact products take over.
PROGRESS = 0.9
#: Low-precision products after which the rounds hand over anyway.
ROUNDS_BUDGET = 300
#: Directions of the exact block closer to dependent than this (the sine of their
#: angle) are dropped: their products would carry rounding over it.
_DEPENDENT = 1e-4


def refine_top_eigenpair(exact: Apply, low: Apply, size: int, start: np.ndarray, *,
                         dtype: np.dtype, tol: float, noise: float,
                         maxiter: int | None = None, callback: Callback | None = None,
                         max_basis: int | None = None) -> tuple[Eigenpairs, bool]:
    """Polish a top eigenpair with low-precision products, certified by exact residuals.

    ``start`` is a vector or columns of vectors (the low-precision phase's top
    Ritz vector and its near twins). Each round:

    1. Exact products of the new vectors; with those of the previous rounds, a
       Rayleigh-Ritz step on their span (all exact) gives the top value, the
       span's vector of least residual ``y`` and its true residual ``r``, which
       certifies the pair once ``||r|| <= tol * theta``.
    2. Lanczos with the low-precision products on the complement of the exact
       block, started from ``r``, corrects ``y``. Its coupling to that space is
       exact (``y^H G W = r^H W``), so the low products' error, ``noise * ||G||``,
       enters only through the correction: the residual falls far below what
       the low products reach alone (noise 2e-7, residual 1e-9).

    A conv layer's top values come in pairs (frequencies ``f`` and ``-f`` of
    real weights), split by anything from 1e-10 to 1e-6. A split below the
    noise cannot be resolved by the low products, and a turn inside the pair
    would carry their error; the twin sits in the exact block instead, where
    Rayleigh-Ritz turns exactly. When a round stalls, the twin is corrected as
    well (a split between the tolerance and the noise needs both sides clean).

    Returns the pair and whether it is certified; uncertified when rounds
    stall even so, with the best vector for a Lanczos run with exact products.
    """
    dtype = np.dtype(dtype)
    limit = maxiter if maxiter is not None else max(1000, 20 * int(math.sqrt(size)))
    cap = max(3, min(size, max_basis or limit, limit + 1))
    work = VectorOps(size, dtype)
    starts = np.asarray(start, dtype=dtype).reshape(size, -1)
    new = start_columns = [starts[:, i] / work.norm(starts[:, i])
                           for i in range(starts.shape[1])]
    block: list[np.ndarray] = []
    images: list[np.ndarray] = []
    steps = 0
    previous = math.inf
    twins = False
    while True:
        new_images = [np.array(exact(v)) for v in new]
        steps += len(new)
        span = _exact_ritz([*new, *block], [*new_images, *images], BLOCK)
        block, images = span.vectors, span.images
        y, theta, r = block[0], span.value, span.residual
        residual = work.norm(r)
        if callback is not None:
            callback(steps, theta)
        if residual <= tol * theta or theta <= 0.0 or steps >= limit:
            return Eigenpairs(np.array([theta]), y[:, np.newaxis], np.array([residual]),
                              steps), residual <= tol * theta
        if steps > ROUNDS_BUDGET + len(start_columns):
            # The rounds cost like a float64 Lanczos run by now: a twin the low products
            # resolve too slowly (a split 2x their noise), let exact products do it.
            return Eigenpairs(np.array([theta]), y[:, np.newaxis], np.array([residual]),
                              steps), False
        if residual > PROGRESS * previous:
            if twins or not span.twin:
                return Eigenpairs(np.array([theta]), y[:, np.newaxis], np.array([residual]),
                                  steps), False
            twins = True
        previous = residual
        new = []
        for i in range(2 if twins and span.twin else 1):
            v, gv = block[i], images[i]
            rv = gv.copy()  # off the span: the coupling W sees
            for b in block:
                work.subtract(rv, work.dot(b, rv), b)
            if not work.norm(rv) > 0:  # no direction off the block to correct along
                continue
            corrected, used = _correct(v, work.dot(v, gv).real, rv, block, low, work, tol,
                                       noise, min(cap, limit - steps), callback, steps)
            steps += used
            new.append(corrected)
            if steps >= limit:
                break


def _correct(y: np.ndarray, theta: float, r: np.ndarray, block: list[np.ndarray], low: Apply,
             work: VectorOps, tol: float, noise: float, cap: int,
             callback: Callback | None, steps: int) -> tuple[np.ndarray, int]:
    """Lanczos with low-precision products off the exact block, from the residual of ``y``.

    Returns the corrected unit vector and the products used.
    """
    residual = work.norm(r)
    basis = [y, r / residual]
    alphas = [theta]
    betas = [residual]
    estimates: list[float] = []
    best = (math.inf, 0)
    used = 0
    while True:
        j = len(basis) - 1
        q = basis[j]
        w = writable(low(q), q)
        used += 1
        # Off the last two vectors and every step off the block: its coupling to the new
        # vectors is exact (zero for y; the others' are left to the next exact
        # Rayleigh-Ritz step), and the low products would leak noise into it. One
        # modified Gram-Schmidt pass with the measured coefficients (not classical:
        # benchmarks/TUNING.md#gram-schmidt): float64 rounding is far below the
        # products' noise, so a second pass changes nothing.
        c = work.dot(q, w)
        alpha = c.real
        work.subtract(w, c, q)  # all of it: noisy complex products leave an imaginary part
        for v in {id(v): v for v in (basis[j - 1], *block) if v is not q}.values():
            work.subtract(w, work.dot(v, w), v)
        beta = work.norm(w)
        alphas.append(alpha)
        ritz, s = top_ritz(alphas, betas)
        estimate = beta * abs(s[-1])
        estimates.append(estimate)
        if estimate < best[0]:
            best = (estimate, j)
        if callback is not None:
            callback(steps + used, ritz)
        turn = math.sqrt(max(1.0 - s[0] ** 2, 0.0))  # the sine of the turn from y
        # The low products' error reaches the answer as noise * turn: no lower.
        floor = max(ROUND_TARGET * tol, noise * turn) * ritz
        stalled = (len(estimates) > STAGNATION and estimate <= STALL_NEAR_TOL * floor
                   and estimate >= 0.5 * min(estimates[-STAGNATION:-1]))
        risen = (j >= RISE_AFTER and estimate > RISE * best[0]
                 and best[0] <= RISE * tol * ritz)
        if estimate <= floor or stalled or risen or j + 1 >= cap or used >= cap:
            break
        betas.append(beta)
        basis.append(w / beta)
    if best[1] < j:  # the best step's Ritz vector
        _, s = top_ritz(alphas[: best[1] + 1], betas[: best[1]])
    return combine(basis, s, work), used


@dataclass(frozen=True)
class _Span:
    """What the exact products of a few vectors say about their span."""

    value: float  # the Rayleigh quotient of vectors[0]
    residual: np.ndarray  # G v - value v for v = vectors[0]
    vectors: list[np.ndarray]  # orthonormal; the least-residual vector first, then the twin
    images: list[np.ndarray]  # G v, exact
    twin: bool  # whether vectors[1] is the top value's twin (its Ritz vector, made orthogonal)


def _exact_ritz(vectors: list[np.ndarray], images: list[np.ndarray], keep: int) -> _Span:
    """Return the best vector in the span of ``vectors``, from their exact images ``G v``.

    Rayleigh-Ritz gives the top value ``theta`` of the span; the vector returned
    first is the *refined* Ritz vector, the unit vector of the span with the
    least residual ``||G x - theta x||``. (The Ritz vector maximizes the Rayleigh
    quotient instead: inside a top pair split by 1e-9 it trades a much larger
    residual for a tiny gain; benchmarks/TUNING.md#refined-ritz.) Then the second
    Ritz vector if it is the top value's twin, then other directions of the span,
    ``keep`` in all.
    The first input vector (the newest) is kept whole; a later one only for its
    part orthogonal to those before it, if that part is not too small.
    """
    V, GV = _orthonormal(vectors, images)
    theta, Z = np.linalg.eigh(hermitian(V.conj().T @ GV))
    theta, Z = theta[::-1], Z[:, ::-1]
    # Not from the normal equations: they square a residual of 1e-9 below rounding.
    _, _, vh = np.linalg.svd(GV - theta[0] * V, full_matrices=False)
    a = vh[-1].conj()
    first = [V @ a]
    first_images = [GV @ a]
    twin = bool(theta.size > 1 and theta[1] >= theta[0] * (1 - TWINS))
    if twin:
        first.append(V @ Z[:, 1])
        first_images.append(GV @ Z[:, 1])
    V, GV = _orthonormal([*first, *V.T], [*first_images, *GV.T])
    rho = float(np.vdot(V[:, 0], GV[:, 0]).real)
    # The whole residual: it certifies. (Its part along the span's other vectors is
    # no Rayleigh-Ritz residual's, orthogonal to the span: the refined vector is not
    # the Ritz vector.)
    residual = GV[:, 0] - rho * V[:, 0]
    return _Span(rho, residual, list(V.T[:keep].copy()), list(GV.T[:keep].copy()), twin)


def _orthonormal(vectors: list[np.ndarray], images: list[np.ndarray]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Gram-Schmidt on ``vectors`` in order (dropping nearly dependent ones), images alike."""
    basis: list[np.ndarray] = []
    products: list[np.ndarray] = []
    for v, gv in zip(vectors, images):
        v, gv = v.copy(), gv.copy()
        norm = float(np.linalg.norm(v))
        for _ in range(2):  # twice is enough
            for q, gq in zip(basis, products):
                c = np.vdot(q, v)
                v -= c * q
                gv -= c * gq
        remaining = float(np.linalg.norm(v))
        if not basis or remaining > _DEPENDENT * norm:
            basis.append(v / remaining)
            products.append(gv / remaining)
    return np.stack(basis, axis=1), np.stack(products, axis=1)
