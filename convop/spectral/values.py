"""Singular values (and vectors) and the spectral norm of the exact layer map.

The operator is the layer's own map ``vec(X) -> vec(Y)`` (``domain="input"``)
for any stride, padding, padding mode, dilation and groups. Every function
takes the layer arguments of :func:`convop.conv_matrix`, or instead of a
weight an explicit sparse matrix or a ``LinearOperator`` (such as
:class:`convop.LayerOperator`). Products run in float64 (complex128) whatever
the weight's dtype, unless ``dtype`` asks for less.

The largest value of a layer comes from Lanczos on its Gram operator (the
smaller side), with reused product buffers (:mod:`convop.spectral.products`),
a start vector from the FFT (for circular padding the exact top vector; for
stride-1 zero padding the circular counterpart's under a sine envelope), and on
large layers mixed precision: Lanczos with float32 products first, then rounds
of float32 corrections whose float64 residuals certify the answer (a handful
of float64 products per layer; float64 Lanczos only where a top pair split
between the tolerance and the float32 noise needs it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg

from .. import _memory
from .._blas import single_threaded
from .._progress import Progress, check_progress
from .._typing import IntOrTuple, PaddingLike, PaddingMode
from .._validation import as_int, as_real, as_rng, check_bool, check_callable, check_choice
from ._target import Target
from .circular import _POWER_STEPS as START_POWER_STEPS
from .circular import circular_start, frequency_sizes
from .lanczos import (
    TWINS,
    Eigenpairs,
    NoConvergence,
    basis_size,
    refine_top_eigenpair,
    top_eigenpair,
    top_eigenpairs,
)
from .smallest import DENSE_SMALL, smallest_singular_values
from .tolerance import rank_tolerance, zero_below

#: Largest matrix (entries) whose full SVD is computed densely.
DENSE_SVD_MAX_ENTRIES = 2**24
#: Noise added to a zero-padded layer's warm start, so it is never orthogonal to the top.
ZEROS_NOISE = 1e-3
#: From this many unknowns on, the largest value starts with a float32 phase.
FLOAT32_PHASE_SIZE = 8192
#: Most Lanczos vectors kept for the largest value (a restart follows).
MAX_BASIS = 400
#: Relative residual the float32-product phase aims for at least.
LOW_PRECISION_TOL = 5e-7
#: The float32 phase hands over at this many times the products' measured relative
#: error (6e-6 on ResNet layers): the mixed-precision rounds go on from there with the
#: same cheap products, so running nearer the noise only loses its Krylov space at the
#: restart (total products over ResNet-18: 3834-4070 at 10x, 3852-3918 at 30x,
#: 3933-4101 at 100x).
NOISE_MARGIN = 30.0

Callback = Callable[[int, float], None]


@dataclass(frozen=True)
class Singular:
    """Singular values (descending), optionally their vectors, and error bounds.

    ``bounds[i]`` bounds ``|values[i] - s|`` for some exact singular value ``s``
    (from the residual of the Lanczos pair; 0 for a dense SVD).
    """

    values: np.ndarray
    bounds: np.ndarray
    u: np.ndarray | None = None  # (m, k), columns
    vt: np.ndarray | None = None  # (k, n), rows
    steps: int = 0


def singular_values(
    weight: Any,
    input_size: IntOrTuple | None = None,
    *,
    k: int | None = None,
    which: str = "largest",
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    rng: Any = None,
    max_bytes: int | None = None,
    dtype: npt.DTypeLike | None = None,
    maxiter: int | None = None,
    callback: Callback | None = None,
    progress: bool | None = None,
    return_vectors: bool = False,
    tensors: bool = False,
) -> Any:
    """Singular values of the layer map ``vec(X) -> vec(Y)``, in descending order.

    Parameters
    ----------
    weight : array_like, scipy sparse matrix or LinearOperator
        The layer's filters ``(C_out, C_in // groups, *kernel)``; or an explicit
        operator, in which case ``input_size`` must be None and the layer
        arguments are ignored. Weights must be finite.
    input_size : int or tuple of int
        Spatial size of the unpadded input (with a weight).
    k : int, optional
        How many singular values. ``None`` gives all of them through a dense SVD
        (only for matrices of at most ``DENSE_SVD_MAX_ENTRIES`` entries).
    which : {"largest", "smallest"}
        The ``k`` largest (Lanczos on the Gram operator) or smallest
        (shift-invert Lanczos on the Gram matrix, factored by a
        nested-dissection sparse Cholesky built from the layer's taps, or by a
        sparse LU of the augmented matrix below the normal-equations floor).
    stride, padding, dilation, groups, padding_mode
        As in :func:`convop.conv_matrix`.
    rtol : float
        Relative accuracy of the largest singular values.
    rng : None, int or numpy.random.Generator
        Seeds the Lanczos start vector.
    max_bytes : int, optional
        Memory budget for the operator's products, the Lanczos basis, explicit
        matrices and factorizations (default: 75% of the available memory).
    dtype : dtype, optional
        Precision of the computation: float64 (complex128 for complex data) by
        default, whatever the weight's dtype; float32 or complex64 only when
        asked for.
    maxiter : int, optional
        Most operator applications (products, or solves for the smallest
        values); beyond it :class:`convop.spectral.lanczos.NoConvergence` (a
        ``RuntimeError``) is raised with the estimate reached.
    callback : callable, optional
        Called as ``callback(step, estimate)`` after every Lanczos step with the
        current estimate of the extreme singular value sought.
    progress : bool, optional
        Report on stderr: ``None`` once the call runs longer than a second,
        ``True`` from the start, ``False`` never.
    return_vectors : bool
        Also return the singular vectors, like ``scipy.sparse.linalg.svds``.
    tensors : bool
        With ``return_vectors`` and a layer: the vectors shaped as the layer's
        output and input tensors, ``(k, C_out, *out)`` and ``(k, C_in, *in)``.

    Returns
    -------
    numpy.ndarray, or (u, s, vt)
        ``k`` (or ``min(rows, cols)``) singular values, descending. Values at or
        below ``max(rows, cols) * eps * sigma_max`` are exactly 0. With
        ``return_vectors``: ``u`` of shape ``(rows, k)``, ``s``, ``vt`` of shape
        ``(k, cols)`` (``A vt[i] = s[i] u[:, i]``), vectors in the operator's own
        vectorization (a weight: PyTorch's row-major one).

    Examples
    --------
    >>> import numpy as np
    >>> from convop import singular_values
    >>> w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    >>> s = singular_values(w, (6, 6), padding=1)
    >>> s.shape, bool(np.all(np.diff(s) <= 0))
    ((72,), True)
    >>> top = singular_values(w, (6, 6), padding=1, k=2, rng=0)
    >>> bool(np.allclose(top, s[:2], rtol=1e-9))
    True
    >>> u, s1, vt = singular_values(w, (6, 6), padding=1, k=1, return_vectors=True,
    ...                             tensors=True, rng=0)
    >>> u.shape, vt.shape
    ((1, 2, 6, 6), (1, 2, 6, 6))
    """
    check_choice(which, "which", ("largest", "smallest"))
    tol = check_rtol(rtol)
    options = check_options(maxiter, callback, progress, return_vectors, tensors)
    target = Target(weight, input_size, layer_arguments(stride, padding, dilation, groups,
                                                        padding_mode),
                    max_bytes=max_bytes, dtype=dtype)
    check_rtol_for(tol, target)
    if options["tensors"] and target.layer is None:
        raise ValueError("`tensors=True` shapes vectors as the layer's tensors; it needs a "
                         "weight or a LayerOperator, not a matrix.")
    full = min(target.shape)
    if k is not None:
        k = as_int(k, "k", minimum=1)
        if k > full:
            raise ValueError(
                f"`k` must be at most min(rows, cols) = {full} for this {target.shape[0]}x"
                f"{target.shape[1]} operator; got {k}."
            )
    what = f"the {'largest' if which == 'largest' else 'smallest'} singular value" + (
        "s" if k != 1 else "")
    with target, single_threaded(), Progress(what, enabled=options["progress"]) as stage:
        result = compute(target, k, which, tol, as_rng(rng), maxiter=options["maxiter"],
                         callback=reporting(stage, options["callback"]),
                         vectors=options["return_vectors"])
    if not options["return_vectors"]:
        return result.values
    return shaped_vectors(target, result, options["tensors"])


def spectral_norm(
    weight: Any,
    input_size: IntOrTuple | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    rng: Any = None,
    max_bytes: int | None = None,
    dtype: npt.DTypeLike | None = None,
    maxiter: int | None = None,
    callback: Callback | None = None,
    progress: bool | None = None,
) -> float:
    """Compute the exact spectral norm (largest singular value, Lipschitz constant) of the layer.

    Not the norm of the reshaped kernel that frameworks report: the norm of the
    operator itself, for the given input size, stride, padding and mode.

    Parameters
    ----------
    weight, input_size, stride, padding, dilation, groups, padding_mode, rng, max_bytes, dtype
        As in :func:`singular_values`.
    rtol : float
        Relative accuracy of the result.
    maxiter, callback, progress
        As in :func:`singular_values`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from convop import spectral_norm
    >>> spectral_norm(np.ones((1, 1, 3, 3)), (8, 8), padding=1, padding_mode="circular")
    9.0
    """
    values = singular_values(
        weight, input_size, k=1, stride=stride, padding=padding, dilation=dilation,
        groups=groups, padding_mode=padding_mode, rtol=rtol, rng=rng, max_bytes=max_bytes,
        dtype=dtype, maxiter=maxiter, callback=callback, progress=progress,
    )
    return float(values[0])


# Shared with the report -------------------------------------------------------------------


def layer_arguments(stride: Any, padding: Any, dilation: Any, groups: Any, padding_mode: Any
                    ) -> dict[str, Any]:
    """Return the layer keywords of a spectral call, passed to :class:`convop.LayerOperator`."""
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode)


def check_rtol(rtol: Any) -> float:
    """Validate ``rtol``: a real number in (0, 1)."""
    return as_real(rtol, "rtol", low=0.0, high=1.0, rule="a float in (0, 1)")


def check_rtol_for(rtol: float, target: Target) -> None:
    """Refuse an ``rtol`` finer than the work dtype resolves."""
    if rtol < 10 * target.eps:
        raise ValueError(f"`rtol` {rtol:g} is finer than {target.dtype} products resolve "
                         f"(10 eps = {10 * target.eps:.1e}); pass a larger `rtol` or "
                         f"dtype=np.float64.")


def check_options(maxiter: Any, callback: Any, progress: Any, return_vectors: Any = False,
                  tensors: Any = False) -> dict[str, Any]:
    """Validate the iteration options shared by the spectral functions."""
    return {
        "maxiter": None if maxiter is None else as_int(maxiter, "maxiter", minimum=1),
        "callback": None if callback is None else check_callable(callback, "callback"),
        "progress": check_progress(progress),
        "return_vectors": check_bool(return_vectors, "return_vectors"),
        "tensors": check_bool(tensors, "tensors"),
    }


def reporting(stage: Progress, callback: Callback | None) -> Callback:
    """Return a step callback that updates the progress line and calls the user's callback."""

    def report(step: int, estimate: float) -> None:
        stage.update(f"step {step}, estimate {estimate:.12g}")
        if callback is not None:
            callback(step, estimate)

    return report


def compute(target: Target, k: int | None, which: str, rtol: float,
            rng: np.random.Generator, sigma_max: float | None = None, *,
            maxiter: int | None = None, callback: Callback | None = None,
            vectors: bool = False) -> Singular:
    """Singular values of a validated target (all when ``k`` is None), descending."""
    m, n = target.shape
    full = min(m, n)
    count = full if k is None else k
    if full == 0:
        return Singular(np.zeros(0), np.zeros(0))
    if target.is_zero:
        u = np.eye(m, count, dtype=target.dtype) if vectors else None
        vt = np.eye(count, n, dtype=target.dtype) if vectors else None
        return Singular(np.zeros(count), np.zeros(count), u, vt)
    if k is None or min(m, n) <= DENSE_SMALL or (which == "largest" and k >= full - 1):
        result = dense_values(target, vectors)
        if which == "largest":
            return _select(result, slice(0, count))
        return _select(result, slice(full - count, full))
    if which == "largest":
        return largest(target, k, rtol, rng, maxiter=maxiter, callback=callback,
                       vectors=vectors)
    if sigma_max is None:
        sigma_max = float(largest(target, 1, max(rtol, 1e-6), rng).values[0])
    return smallest_singular_values(target, k, rng, sigma_max, maxiter=maxiter,
                                    callback=callback, vectors=vectors)


def _select(result: Singular, part: slice) -> Singular:
    return Singular(result.values[part], result.bounds[part],
                    None if result.u is None else result.u[:, part],
                    None if result.vt is None else result.vt[part], result.steps)


def dense_values(target: Target, vectors: bool = False) -> Singular:
    """All singular values through a dense SVD, zeros below the rank tolerance."""
    m, n = target.shape
    if m * n > DENSE_SVD_MAX_ENTRIES:
        raise ValueError(
            f"all singular values need a dense SVD of the {m}x{n} matrix "
            f"({_memory.format_bytes(target.dtype.itemsize * m * n)}), more than convop does "
            f"densely ({DENSE_SVD_MAX_ENTRIES} entries); pass `k=` for the k largest or "
            f"smallest, or use `circular_singular_values` for circular padding."
        )
    dense = target.dense()
    if vectors:
        u, values, vt = scipy.linalg.svd(dense, full_matrices=False)
    else:
        values, u, vt = scipy.linalg.svdvals(dense), None, None
    tolerance = rank_tolerance(m, n, float(values.max(initial=0.0)), target.eps)
    return Singular(zero_below(values, tolerance), np.zeros(values.size), u, vt)


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
    # sigma within tol/2 * sigma of it; but a start vector with little of the top
    # eigenvector stops next to a near-degenerate second one (gap a few rtol: measured
    # 1.2e-8 below at rtol=1e-8 on a strided ResNet layer, 1 start in 6). tol = rtol/4
    # resolved every such pair measured, for ~10% more products.
    tol = rtol / 4
    if k == 1:
        start, exact = _warm_start(target, rng, side, budget=fixed + least)
        # An exact start (circular layers) needs a float64 step or two, no float32 phase.
        noise = None  # the float32 products' measured error, when they run
        if size >= FLOAT32_PHASE_SIZE and not exact:
            start, done[0], noise = _low_precision_phase(target, side, start, rng, room,
                                                         report, maxiter)
        basis_cap = min(MAX_BASIS, max(20, room // (size * item)))
        pairs = None
        if noise is not None and start is not None and (
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
        pairs = top_eigenpair(gram, size, dtype=target.dtype, tol=tol, rng=rng,
                              start=start, maxiter=left, callback=report, max_basis=basis_cap)
        pairs = Eigenpairs(pairs.values, pairs.vectors, pairs.residuals,
                           pairs.steps + done[0])
    else:
        pairs = top_eigenpairs(gram, size, k, dtype=target.dtype, tol=tol, rng=rng,
                               maxiter=maxiter, callback=report)
    return _singular_from_gram(target, pairs, side, vectors)


def _warm_start(target: Target, rng: np.random.Generator, side: str, budget: int
                ) -> tuple[np.ndarray | None, bool]:
    """Return a start block from the circular counterpart's top singular vectors (FFT).

    Also whether it is exact: the layer's own top vectors (circular padding).

    For circular padding they are the layer's own top vectors. For a zero-padded
    layer, under a sine envelope and with a little noise, they start the float32
    phase closer (ResNet-18's products 4115 -> 3597, 3-8 % less time), when the
    start costs at most one Gram product: its per-frequency power iterations
    cost more than the products they save on strided layers with many channels
    (measured: layer3.0.conv1 0.66 -> 1.01 s) and on 1x1 downsampling layers.
    """
    layer = target.layer
    if layer is None:
        return None, False
    geom = layer.geometry
    circular = geom.padding_mode == "circular"
    if not circular and (geom.padding_mode != "zeros" or _start_flops(geom) > 4 * geom.nnz(
            "input")):
        return None, False
    start = circular_start(layer, rng, budget=budget, noise=0.0 if circular else ZEROS_NOISE)
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
                         maxiter: int | None) -> tuple[np.ndarray | None, int, float | None]:
    """Lanczos with float32 (complex64) products, float64 vectors: a start block.

    Products cost a third to a half of float64 ones; the recurrence stays in the
    target's precision, so the phase could get as far as the products' rounding
    allows (a relative residual near 1e-7) rather than float32 vectors' (1e-4).
    It hands over earlier, at ``NOISE_MARGIN`` times that noise, to the
    mixed-precision rounds (:func:`~convop.spectral.lanczos.refine_top_eigenpair`).
    Returns its top Ritz vector and the near twins of its value (columns), the
    products used, and the products' measured relative error (None, with the
    start unchanged, when the phase does not run).
    """
    low = _low_dtype(target.dtype)
    if target.layer is None or target.dtype.itemsize <= low.itemsize:
        return start, 0, None
    if maxiter is not None and maxiter <= _PROBE_PRODUCTS + 1:
        return start, 0, None
    size = min(target.shape)
    if room < target.gram_bytes(low) + 40 * size * target.dtype.itemsize:
        return start, 0, None
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
                          max_basis=min(MAX_BASIS, max(20, room // (size * work.itemsize))))
    return pairs.vectors, pairs.steps + _PROBE_PRODUCTS, noise


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


def _singular_from_gram(target: Target, pairs: Eigenpairs, side: str,
                        vectors: bool) -> Singular:
    """Singular values, bounds and (optionally) vectors from eigenpairs of a Gram operator."""
    m, n = target.shape
    theta = np.clip(pairs.values, 0.0, None)
    sigma = np.sqrt(theta)
    # |sqrt(lambda) - sqrt(theta)| = |lambda - theta| / (sqrt(lambda) + sqrt(theta)).
    low = np.sqrt(np.clip(theta - pairs.residuals, 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        bounds = np.where(sigma + low > 0, pairs.residuals / (sigma + low),
                          np.sqrt(pairs.residuals))
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


def shaped_vectors(target: Target, result: Singular, tensors: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, s, vt)`` in the operator's vectorization, or as tensors."""
    assert result.u is not None and result.vt is not None
    u, vt = result.u, result.vt
    layer = target.layer
    if layer is not None:
        g = layer.geometry
        out_shape = (g.out_channels, *g.output_size)
        in_shape = (g.in_channels, *g.input_size)
        if tensors:
            return (u.T.reshape(-1, *out_shape), result.values, vt.reshape(-1, *in_shape))
        if layer.order == "F" and target.row_major:  # the products ran row-major
            u = np.stack([_reorder(u[:, i], out_shape) for i in range(u.shape[1])], axis=1)
            vt = np.stack([_reorder(row, in_shape) for row in vt])
    return u, result.values, vt


def _reorder(vector: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Turn a row-major vector of a ``(C, *spatial)`` tensor into the seed's column-major vec."""
    from ..layout import vec

    return vec(vector.reshape(shape), "F", batch=False)
