"""The largest singular values of a layer: Lanczos on its Gram operator.

Products reuse their buffers (:mod:`convop.spectral.products`); the start
vector comes from the FFT (for circular padding the exact top vector; for
stride-1 zero padding the circular counterpart's under a sine envelope). On
large layers the largest value runs in mixed precision: Lanczos with float32
products first, then rounds of float32 corrections whose float64 residuals
certify the answer (:mod:`convop.spectral.mixed_precision`); float64 Lanczos
only where a top pair split between the tolerance and the float32 noise needs
it. A top inside a cluster (zero-padded orthogonal layers) is certified against
the circulant embedding's norm: by Lanczos away from the border
(:mod:`convop.spectral.interior`), else by shift-invert above the spectrum
(:mod:`convop.spectral.top_shift`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _memory
from ..errors import NoConvergence
from ._target import Target
from .bounds import embedding_ceiling
from .cholesky import CostlyFactor, NotPositiveDefinite
from .circular import POWER_STEPS as START_POWER_STEPS
from .circular import circular_start, frequency_sizes
from .interior import interior_mask, interior_top
from .lanczos import Eigenpairs, basis_size, default_limit, top_eigenpair, top_eigenpairs
from .mixed_precision import TWINS, refine_top_eigenpair
from .results import Callback, Singular
from .tolerance import rank_tolerance, zero_below
from .top_shift import gram_pairs, top_by_shift_invert

#: Noise added to a zero-padded layer's warm start, so it is never orthogonal to the top.
ZEROS_NOISE = 1e-3
#: From this many unknowns on, the largest value starts with a float32 phase.
FLOAT32_PHASE_SIZE = 8192
#: Most Lanczos vectors kept for the largest value (a restart follows).
MAX_BASIS = 400
#: Relative residual the float32-product phase aims for at least.
LOW_PRECISION_TOL = 5e-7
#: The float32 phase hands over at this many times the products' measured relative
#: error: the mixed-precision rounds go on from there with the same cheap products, so
#: running nearer the noise only loses its Krylov space (benchmarks/TUNING.md#noise-margin).
NOISE_MARGIN = 30.0
#: Lanczos aims at rtol / RTOL_MARGIN: a start with little of the top eigenvector can
#: stop next to a near-degenerate second value (benchmarks/TUNING.md#rtol-margin).
RTOL_MARGIN = 4.0
#: Float64 Lanczos products on a layer before its top value is taken as clustered and
#: found by shift-invert above the spectrum (:mod:`convop.spectral.top_shift`), unless
#: ``CLUSTER_GAP`` sends it there at once; Krylov-Schur gets this many a value (k > 1).
CLUSTER_PRODUCTS = 600
#: ... when the factor's multiply-adds are at most this many times those of the
#: products already spent: dense BLAS 3 runs about twice as many a second as the
#: sparse products, so this is about 8 times the time spent
#: (benchmarks/TUNING.md#cluster-shift-invert).
CLUSTER_FLOP_RATIO = 16.0
#: A top Ritz value this close (relative) to the circulant embedding's squared norm, after
#: the float32 phase or the mixed-precision rounds, marks a flat symbol (orthogonal
#: layers; Kaiming layers sit 5e-4 to 5e-3 below): shift-invert at once, against the
#: products Lanczos may still make (benchmarks/TUNING.md#cluster-shift-invert).
CLUSTER_GAP = 1e-5
#: A zero-padded layer gets the FFT warm start when the start's flops are at most this
#: many times the layer's nnz (about one Gram product; benchmarks/TUNING.md#warm-start).
START_GATE = 4
#: The bound's FFT runs right after the mixed-precision rounds only where its SVDs
#: (``_ceiling_flops``) cost at most this many Gram products: 2 on the AOC 64->64 layer
#: at 32x32 (0.27 s), 26 at 512 channels @7 (3.9 s), which wait for the float64 phase.
CEILING_GATE = 4
#: Relative rounding allowed a Rayleigh quotient of float64 products before it is taken
#: as a lower bound of the top eigenvalue.
RAYLEIGH_ROUNDING = 1e-12


def largest(target: Target, k: int, rtol: float, rng: np.random.Generator, *,
            maxiter: int | None = None, callback: Callback | None = None,
            vectors: bool = False) -> Singular:
    """Return the ``k`` largest singular values: Lanczos on the Gram operator."""
    m, n = target.shape
    side = "input" if m >= n else "output"
    size = min(m, n)
    gram = target.gram(target.dtype, side)
    item = target.dtype.itemsize
    fixed = target.gram_bytes(target.dtype) + target.vector_bytes(6)
    budget = _memory.default_budget() if target.max_bytes is None else target.max_bytes
    room = max(0, (budget if budget is not None else 2**62) - fixed)
    least = (basis_size(size, k) if k > 1 else 20) * size * item
    _memory.check_budget(fixed + least, target.max_bytes,
                         f"Lanczos with {least // (size * item)} vectors of length {size}")
    done = [0]  # products of earlier phases: steps count from the start of the call
    report = None if callback is None else (
        lambda step, theta: callback(done[0] + step, math.sqrt(max(theta, 0.0))))
    # A residual below tol * lambda puts *some* eigenvalue within tol * lambda, and
    # sigma within tol/2 * sigma of it; the margin resolves near-degenerate top pairs.
    tol = rtol / RTOL_MARGIN
    if k == 1:
        counterpart: list[float] = []  # the circular counterpart's norm, from the start
        start, exact = _warm_start(target, rng, side, budget=fixed + least,
                                   estimates=counterpart)
        # A layer's top value inside a cluster (zero-padded orthogonal layers) stalls
        # Lanczos; shift-invert just above the spectrum finds it. The circulant
        # embedding's norm bounds the top from above, so a Rayleigh quotient within rtol
        # of it is certified whatever its residual.
        cluster = (maxiter is None and target.layer is not None and not exact
                   and target.eps < 1e-10)  # shifts 1e-10 above the top need float64
        # A float32 Ritz value at the counterpart's norm signals a flat symbol (Kaiming
        # layers stay 5e-4 to 5e-3 below it): the phase stops there, and the exact bound
        # decides (where its SVDs are cheap).
        signal = None
        if cluster and counterpart and _ceiling_cheap(target):
            signal = counterpart[0] ** 2 * (1 - CLUSTER_GAP)
        # An exact start (circular layers) needs a float64 step or two, no float32 phase.
        noise = None  # the float32 products' measured error, when they run
        top = -math.inf  # the float32 phase's top Ritz value
        if size >= FLOAT32_PHASE_SIZE and not exact:
            start, done[0], noise, top = _low_precision_phase(target, side, start, rng, room,
                                                              report, maxiter, signal)
        basis_cap = min(MAX_BASIS, max(20, room // (size * item)))
        pairs = None
        ceiling = None
        if signal is not None and start is not None and top >= signal:
            ceiling = _ceiling(target)
            if _flat(ceiling, top):  # no mixed rounds
                # The float32 value may stand above the vector's true Rayleigh quotient, which
                # alone may meet the floor: one float64 product.
                vector = start[:, :1].astype(target.dtype)
                vector /= np.linalg.norm(vector)
                pairs = gram_pairs(gram, Eigenpairs(np.array([top]), vector,
                                                    np.array([math.inf]), 0))
                done[0] += pairs.steps
        if pairs is None and noise is not None and start is not None and (
                maxiter is None or maxiter - done[0] > start.shape[1]):
            # Mixed precision: float32 corrections, float64 residuals that certify.
            low = target.gram(_low_dtype(target.dtype), side, target.dtype)
            pairs, certified = refine_top_eigenpair(
                gram, low, size, start, dtype=target.dtype, tol=tol, noise=noise,
                maxiter=None if maxiter is None else maxiter - done[0], callback=report,
                max_basis=basis_cap)
            done[0] += pairs.steps
            if certified:
                pairs = Eigenpairs(pairs.values, pairs.vectors, pairs.residuals, done[0])
                return _singular_from_gram(target, pairs, side, vectors)
            start = pairs.vectors[:, 0]  # a top pair that only exact products resolve
        left = None if maxiter is None else maxiter - done[0]
        if left is not None and left < 1:
            estimate, residual = ((math.nan, math.inf) if pairs is None else
                                  (float(pairs.values[0]), float(pairs.residuals[0])))
            raise NoConvergence(
                f"Lanczos used its {maxiter} operator applications (`maxiter`) before "
                f"reaching the relative accuracy {tol:.1e}; pass a larger `maxiter` or "
                f"`rtol`.", estimate, residual, done[0])
        # In a float32 solve the margin's aim can lie at the products' own rounding
        # (benchmarks/TUNING.md#float32-accept): a true residual of 2 rtol lambda, which
        # still puts sigma within rtol, is accepted at a restart.
        accept = 2 * rtol if target.eps > 1e-10 else tol
        def lanczos(start: np.ndarray | None, floor: float | None,
                    limit: int | None) -> Eigenpairs:
            return top_eigenpair(gram, size, dtype=target.dtype, tol=tol, rng=rng, start=start,
                                 maxiter=limit, callback=report, max_basis=basis_cap,
                                 accept=accept, floor=floor, partial=cluster)

        if not cluster:
            pairs = lanczos(start, None, left)
            pairs = Eigenpairs(pairs.values, pairs.vectors, pairs.residuals,
                               pairs.steps + done[0])
            return _singular_from_gram(target, pairs, side, vectors)
        # Mixed precision left the top unresolved: likely a cluster, worth the bound's FFT
        # where its SVDs cost a few products.
        if ceiling is None and pairs is not None and _ceiling_cheap(target):
            ceiling = _ceiling(target)
        flat = pairs is not None and ceiling is not None and _flat(ceiling,
                                                                   float(pairs.values[0]))
        if not flat:
            # Float64 Lanczos, then the factor against the products it spent.
            pairs = lanczos(start, _floor(ceiling, rtol), CLUSTER_PRODUCTS)
            done[0] += pairs.steps
            budget_products = done[0]
        else:
            # The top sits at the circulant's bound (a flat symbol: an orthogonal layer's
            # cluster); the factor against the products Lanczos may still make.
            assert pairs is not None
            budget_products = default_limit(size)
        pairs = Eigenpairs(pairs.values, pairs.vectors, pairs.residuals, 0)  # counted in done
        if ceiling is None and not _settled(pairs, accept, None):
            ceiling = _ceiling(target)  # only now: dear on wide layers (3.9 s at 512 @7)
        floor = _floor(ceiling, rtol)
        assert target.layer is not None
        mask = interior_mask(target.layer.geometry, side) if flat else None
        if mask is not None and floor is not None and not _settled(pairs, accept, floor):
            # A flat symbol's top, away from the border: reaches the floor without a
            # factor unless rtol is finer than its distance to U (1.8e-9 on AOC 64->64 @32).
            pairs = interior_top(gram, mask, dtype=target.dtype, floor=floor, tol=tol, rng=rng,
                                 start=pairs.vectors[:, 0], callback=report,
                                 max_basis=basis_cap)
            done[0] += pairs.steps
            pairs = Eigenpairs(pairs.values, pairs.vectors, pairs.residuals, 0)
        if not _settled(pairs, accept, floor):
            start = pairs.vectors[:, 0]
            try:
                pairs = top_by_shift_invert(target, side, 1, rng, start=start, tol=tol,
                                            floor=floor,
                                            max_flops=_factor_allowance(target, budget_products),
                                            bound=None if ceiling is None else math.sqrt(ceiling))
            except (MemoryError, NotPositiveDefinite, CostlyFactor):  # Lanczos goes on
                pairs = lanczos(start, floor, None)
                if not _settled(pairs, accept, floor):
                    raise NoConvergence(
                        f"Lanczos did not reach the relative accuracy {tol:.1e} within "
                        f"{done[0] + pairs.steps} operator applications; the estimate "
                        f"{pairs.values[0]:.12g} has residual {pairs.residuals[0]:.3g}. "
                        f"Pass a larger `maxiter` or `rtol`.", float(pairs.values[0]),
                        float(pairs.residuals[0]), done[0] + pairs.steps) from None
            else:
                if not _settled(pairs, tol, floor):  # certified, or the bracket
                    raise _short_of(pairs, tol, done[0] + pairs.steps)
        pairs = Eigenpairs(pairs.values, pairs.vectors, pairs.residuals, pairs.steps + done[0])
        return _singular_from_gram(target, pairs, side, vectors, ceiling)
    return _several(target, gram, side, size, k, tol, rng, maxiter, report, vectors)


def _several(target: Target, gram: Any, side: str, size: int, k: int, tol: float,
             rng: np.random.Generator, maxiter: int | None, report: Callback | None,
             vectors: bool) -> Singular:
    """Return the ``k > 1`` largest values: Krylov-Schur, or shift-invert on a cluster.

    A layer's Lanczos that has not converged after ``CLUSTER_PRODUCTS`` products a
    value (a zero-padded orthogonal layer's top values sit in a cluster) turns to
    the factor of ``mu I - A^H A`` when it costs at most ``CLUSTER_FLOP_RATIO``
    times the products spent; otherwise Lanczos goes on from the start.
    """
    cluster = maxiter is None and target.layer is not None and target.eps < 1e-10
    try:
        pairs = top_eigenpairs(gram, size, k, dtype=target.dtype, tol=tol, rng=rng,
                               maxiter=CLUSTER_PRODUCTS * k if cluster else maxiter,
                               callback=report)
    except NoConvergence as err:
        if not cluster:
            raise
        spent = err.steps
        try:
            pairs = top_by_shift_invert(target, side, k, rng, tol=tol,
                                        max_flops=_factor_allowance(target, spent))
        except (MemoryError, NotPositiveDefinite, CostlyFactor):
            pairs = top_eigenpairs(gram, size, k, dtype=target.dtype, tol=tol, rng=rng,
                                   callback=report)
        else:
            if np.any(pairs.residuals > tol * pairs.values):
                raise _short_of(pairs, tol, spent + pairs.steps) from None
        pairs = Eigenpairs(pairs.values, pairs.vectors, pairs.residuals, spent + pairs.steps)
    return _singular_from_gram(target, pairs, side, vectors)


def _factor_allowance(target: Target, products: int) -> float:
    """Return the most multiply-adds shift-invert's factor may take against ``products``."""
    assert target.layer is not None
    return CLUSTER_FLOP_RATIO * products * 2 * target.layer.geometry.nnz("input")


def _short_of(pairs: Eigenpairs, tol: float, steps: int) -> NoConvergence:
    """Return the error of a shift-invert whose worst relative residual stayed above ``tol``."""
    relative = pairs.residuals / np.maximum(pairs.values, 1e-300)
    return NoConvergence(
        f"shift-invert above the spectrum stopped at the relative residual "
        f"{relative.max():.1e}, above {tol:.1e}; pass a larger `rtol`.",
        float(pairs.values[0]), float(pairs.residuals[0]), steps)


def _warm_start(target: Target, rng: np.random.Generator, side: str, budget: int,
                estimates: list[float] | None = None) -> tuple[np.ndarray | None, bool]:
    """Return a start block from the circular counterpart's top singular vectors (FFT).

    Also whether it is exact: the layer's own top vectors (circular padding).

    For circular padding they are the layer's own top vectors. For a zero-padded
    layer, under a sine envelope and with a little noise, they start the float32
    phase closer, when the start costs at most about one Gram product
    (``START_GATE``): its per-frequency power iterations cost more than the
    products they save on strided layers with many channels and on 1x1
    downsampling layers (benchmarks/TUNING.md#warm-start).
    """
    layer = target.layer
    if layer is None:
        return None, False
    geom = layer.geometry
    circular = geom.padding_mode == "circular"
    if not circular and (geom.padding_mode != "zeros" or _start_flops(geom) > START_GATE * (
            geom.nnz("input"))):
        return None, False
    start = circular_start(layer, rng, budget=budget, noise=0.0 if circular else ZEROS_NOISE,
                           estimates=estimates)
    if start is not None and not circular:
        # Zero padding: the counterpart's wave under the lowest Dirichlet mode of each axis,
        # the envelope of a Toeplitz operator's top eigenvector.
        envelope = np.ones(())
        for n in geom.input_size:
            envelope = np.multiply.outer(envelope, np.sin(np.pi * np.arange(1, n + 1) / (n + 1)))
        start = np.atleast_2d(start).reshape(-1, geom.in_channels, envelope.size) * (
            envelope.reshape(-1))
        start = start.reshape(start.shape[0], -1)
        start /= np.linalg.norm(start, axis=1, keepdims=True)
    exact = circular and start is not None
    if start is None or side == "input":
        return start, exact
    product = target.gram(target.dtype, "input")
    # A v for each row: the left vectors.
    return np.stack([np.array(product.forward(row.astype(target.dtype)))
                     for row in np.atleast_2d(start)]), exact


def _start_flops(geom: Any) -> int:
    """Multiply-adds of the warm start's power iterations over every frequency block."""
    frequencies = math.prod(frequency_sizes(geom, True))
    width = geom.in_channels * math.prod(geom.stride)
    return frequencies * geom.out_channels * width * 2 * START_POWER_STEPS


def _low_precision_phase(target: Target, side: str, start: np.ndarray | None,
                         rng: np.random.Generator, room: int, report: Callback | None,
                         maxiter: int | None, floor: float | None = None
                         ) -> tuple[np.ndarray | None, int, float | None, float]:
    """Lanczos with float32 (complex64) products, float64 vectors: a start block.

    Products cost a third to a half of float64 ones; the recurrence stays in the
    target's precision, so the phase could get as far as the products' rounding
    allows (a relative residual near 1e-7) rather than float32 vectors' (1e-4).
    It hands over earlier, at ``NOISE_MARGIN`` times that noise, to the
    mixed-precision rounds (:func:`~convop.spectral.lanczos.refine_top_eigenpair`).
    Returns its top Ritz vector and the near twins of its value (columns), the
    products used, the products' measured relative error (None, with the
    start unchanged, when the phase does not run) and the top Ritz value (-inf).
    A Ritz value at ``floor`` ends the phase.
    """
    low = _low_dtype(target.dtype)
    if target.layer is None or target.dtype.itemsize <= low.itemsize:
        return start, 0, None, -math.inf
    if maxiter is not None and maxiter <= _PROBE_PRODUCTS + 1:
        return start, 0, None, -math.inf
    size = min(target.shape)
    if room < target.gram_bytes(low) + 40 * size * target.dtype.itemsize:
        return start, 0, None, -math.inf
    work = target.dtype
    mixed = target.gram(low, side, work)  # float32 products, float64 vectors in and out

    # How far float32 products can take the residual: their relative error on a vector
    # near the start (one product of each kind), times a margin.
    probe = _start_probe(start, size, work, rng)
    for _ in range(3):  # towards the top: a random vector's product loses more digits
        probe = np.array(mixed(probe))
        probe /= max(float(np.linalg.norm(probe)), 1e-300)
    exact = np.array(target.gram(work, side)(probe))
    noise = float(np.linalg.norm(mixed(probe) - exact) / max(np.linalg.norm(exact), 1e-300))
    tol = max(LOW_PRECISION_TOL, NOISE_MARGIN * noise)
    pairs = top_eigenpair(mixed, size, dtype=work, tol=tol, rng=rng, start=start,
                          callback=report, stagnate=True, twins=TWINS,
                          maxiter=None if maxiter is None else maxiter - _PROBE_PRODUCTS,
                          max_basis=min(MAX_BASIS, max(20, room // (size * work.itemsize))),
                          floor=floor)
    return pairs.vectors, pairs.steps + _PROBE_PRODUCTS, noise, float(pairs.values[0])


def _low_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.complex64 if dtype.kind == "c" else np.float32)


#: Products the float32 phase spends measuring its noise.
_PROBE_PRODUCTS = 5


def _start_probe(start: np.ndarray | None, size: int, dtype: np.dtype,
                 rng: np.random.Generator) -> np.ndarray:
    """Return a unit vector to measure the low-precision products' error on."""
    v = (np.atleast_2d(start)[0] if start is not None else rng.standard_normal(size))
    v = np.asarray(v, dtype=dtype)
    return v / max(float(np.linalg.norm(v)), 1e-300)


def _ceiling(target: Target) -> float:
    """Return a certified upper bound of the Gram operator's top eigenvalue (``sigma_max^2``)."""
    layer = target.layer
    assert layer is not None
    return embedding_ceiling(np.asarray(layer.weight), layer.geometry, target.max_bytes) ** 2


def _ceiling_cheap(target: Target) -> bool:
    """Return whether the bound's SVDs cost at most ``CEILING_GATE`` Gram products."""
    assert target.layer is not None
    geom = target.layer.geometry
    return _ceiling_flops(geom) <= CEILING_GATE * 2 * geom.nnz("input")


def _ceiling_flops(geom: Any) -> int:
    """Return about the arithmetic of :func:`_ceiling`: an SVD per frequency of real weights."""
    c_out, c_in = geom.out_channels // geom.groups, geom.in_channels // geom.groups
    return (math.prod(geom.padded_size) // 2 + 1) * geom.groups * c_out * c_in * min(c_out, c_in)


def _flat(ceiling: float, theta: float) -> bool:
    """Return whether a Ritz value lies within ``CLUSTER_GAP`` of the squared bound."""
    return ceiling - theta <= CLUSTER_GAP * ceiling


def _floor(ceiling: float | None, rtol: float) -> float | None:
    """Return the Rayleigh quotient from which ``sigma_max`` is certified to ``rtol``."""
    if ceiling is None:
        return None
    return ceiling / (1 + rtol) ** 2 * (1 + RAYLEIGH_ROUNDING)


def _settled(pairs: Eigenpairs, tol: float, floor: float | None) -> bool:
    """Return whether the top pair's residual, or its value against ``floor``, certifies it."""
    theta = float(pairs.values[0])
    return (float(pairs.residuals[0]) <= tol * theta or theta == 0.0
            or (floor is not None and theta >= floor))


def _singular_from_gram(target: Target, pairs: Eigenpairs, side: str,
                        vectors: bool, ceiling: float | None = None) -> Singular:
    """Singular values, bounds and (optionally) vectors from eigenpairs of a Gram operator.

    ``ceiling`` (an upper bound of the top eigenvalue) bounds the top value's error
    as well as its residual does.
    """
    m, n = target.shape
    theta = np.clip(pairs.values, 0.0, None)
    sigma = np.sqrt(theta)
    # |sqrt(lambda) - sqrt(theta)| = |lambda - theta| / (sqrt(lambda) + sqrt(theta)).
    low = np.sqrt(np.clip(theta - pairs.residuals, 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        bounds = np.where(sigma + low > 0, pairs.residuals / (sigma + low),
                          np.sqrt(pairs.residuals))
    if ceiling is not None:
        top = int(np.argmax(sigma))
        bounds[top] = min(bounds[top], max(math.sqrt(ceiling) - sigma[top], 0.0))
    tolerance = rank_tolerance(m, n, float(sigma.max(initial=0.0)), target.eps)
    order = np.argsort(sigma)[::-1]
    sigma, bounds = sigma[order], bounds[order]
    values = zero_below(sigma, tolerance)
    if not vectors:
        return Singular(values, bounds, steps=pairs.steps)
    Y = pairs.vectors[:, order]
    if side == "input":
        v = Y
        u = _apply(target, v, "forward") / np.where(sigma > 0, sigma, 1.0)
    else:
        u = Y
        v = _apply(target, u, "adjoint") / np.where(sigma > 0, sigma, 1.0)
    return Singular(values, bounds, u, v.conj().T, pairs.steps)


def _apply(target: Target, X: np.ndarray, which: str) -> np.ndarray:
    """Apply ``A`` or ``A^H`` to ``X`` column by column, in the row-major layout."""
    return np.stack([np.array(target.apply(X[:, i], which)) for i in range(X.shape[1])], axis=1)
