"""Singular values (and vectors) and the spectral norm of the exact layer map.

The operator is the layer's own map ``vec(X) -> vec(Y)`` (``domain="input"``)
for any stride, padding, padding mode, dilation and groups. Every function
takes the layer arguments of :func:`convop.conv_matrix`, or instead of a
weight an explicit sparse matrix or a ``LinearOperator`` (such as
:class:`convop.LayerOperator`). Products run in float64 (complex128) whatever
the weight's dtype, unless ``dtype`` asks for less.

This module holds the public functions, their argument checks and
:func:`compute`, the one dispatcher where a new method is added: a dense SVD
for small operators, :mod:`~convop.spectral.largest` for the largest values,
:mod:`~convop.spectral.smallest` for the smallest.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg

from .. import _memory
from .._blas import single_threaded
from .._progress import Progress, check_progress
from .._typing import IntOrTuple, PaddingLike, PaddingMode
from .._validation import as_int, as_real, as_rng, check_bool, check_callable, check_choice
from ..errors import NoConvergence
from ..geometry import layer_arguments
from ._target import Target
from .bounds import embedding_ceiling
from .circulant_vectors import circulant_triplets
from .circular import circular_singular_values, is_circulant
from .largest import largest
from .results import Callback, Singular, select
from .smallest import DENSE_SMALL, smallest_singular_values
from .tolerance import rank_tolerance, zero_below

#: Largest matrix (entries) whose full SVD is computed densely.
DENSE_SVD_MAX_ENTRIES = 2**24


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
        Report on stderr: ``None`` once the call runs longer than a second
        and only when stderr is a terminal (or ``CONVOP_PROGRESS=1``), ``True``
        from the start, ``False`` never.
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
    check_rtol_for(tol, target.dtype)
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


def check_rtol(rtol: Any) -> float:
    """Validate ``rtol``: a real number in (0, 1)."""
    return as_real(rtol, "rtol", low=0.0, high=1.0, rule="a float in (0, 1)")


def check_rtol_for(rtol: float, dtype: np.dtype) -> None:
    """Refuse an ``rtol`` finer than the work dtype resolves."""
    eps = float(np.finfo(dtype).eps)
    if rtol < 10 * eps:
        raise ValueError(f"`rtol` {rtol:g} is finer than {dtype} products resolve "
                         f"(10 eps = {10 * eps:.1e}); pass a larger `rtol` or "
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
    """Singular values of a validated target (all when ``k`` is None), descending.

    A :class:`~convop.errors.NoConvergence` of the largest values carries its
    certified bracket, whoever called (``singular_values``, ``spectrum_report``).
    """
    try:
        return _dispatch(target, k, which, rtol, rng, sigma_max, maxiter=maxiter,
                         callback=callback, vectors=vectors)
    except NoConvergence as err:
        if which == "largest" and err.bracket is None:
            err.bracket = largest_bracket(target, err.estimate)
            err.args = (f"{err.args[0]} The largest singular value is certified in "
                        f"[{err.bracket[0]:.12g}, {err.bracket[1]:.12g}].",)
        raise


def _dispatch(target: Target, k: int | None, which: str, rtol: float,
              rng: np.random.Generator, sigma_max: float | None, *,
              maxiter: int | None, callback: Callback | None, vectors: bool) -> Singular:
    m, n = target.shape
    full = min(m, n)
    count = full if k is None else k
    if full == 0:
        return Singular(np.zeros(0), np.zeros(0))
    if target.is_zero:
        u = np.eye(m, count, dtype=target.dtype) if vectors else None
        vt = np.eye(count, n, dtype=target.dtype) if vectors else None
        return Singular(np.zeros(count), np.zeros(count), u, vt)
    circulant = circulant_layer(target)
    if circulant is not None:
        # Block circulant: every value from the FFT blocks, exact. Lanczos from the FFT's
        # start would take a product or two for the largest, but inside a cluster (an
        # orthogonal layer's values all near 1) a Ritz value with a small residual can lie
        # below the largest value: the FFT's cannot. Vectors: the blocks' own, as waves.
        if vectors:
            return circulant_triplets(circulant, count, which, target.max_bytes)
        result = circulant_values(target)
        if which == "largest":
            return select(result, slice(0, count))
        return select(result, slice(full - count, full))
    if k is None or min(m, n) <= DENSE_SMALL or (which == "largest" and k >= full - 1):
        result = dense_values(target, vectors)
        if which == "largest":
            return select(result, slice(0, count))
        return select(result, slice(full - count, full))
    if which == "largest":
        return largest(target, k, rtol, rng, maxiter=maxiter, callback=callback,
                       vectors=vectors)
    if sigma_max is None:
        sigma_max = float(largest(target, 1, max(rtol, 1e-6), rng).values[0])
    return smallest_singular_values(target, k, rng, sigma_max, maxiter=maxiter,
                                    callback=callback, vectors=vectors)


def largest_bracket(target: Target, ritz: float) -> tuple[float, float]:
    """Return a certified interval holding sigma_max, from a Gram Ritz value that stopped.

    The Ritz value's root is a lower bound; the upper bound is the exact norm of
    the circulant embedding (:func:`~convop.spectral.bounds.embedding_norm`), or
    ``sqrt(||A||_1 ||A||_inf)`` of an explicit matrix (inf for an operator
    without entries).
    """
    low = math.sqrt(max(ritz, 0.0)) if math.isfinite(ritz) else 0.0
    layer = target.layer
    if layer is not None:
        g = layer.geometry
        # The exact norm of the circulant embedding, up to its SVDs' rounding: Gram
        # iteration's limit, tight where the spectrum clusters (orthogonal layers).
        high = embedding_ceiling(np.asarray(layer.weight), g, target.max_bytes)
    elif target.explicit_matrix is not None:
        a = abs(target.explicit_matrix)
        high = math.sqrt(float(a.sum(axis=0).max(initial=0.0)) *
                         float(a.sum(axis=1).max(initial=0.0)))
    else:
        high = math.inf
    return low, max(low, high)


def circulant_layer(target: Target) -> Any:
    """Return the target's layer if it is block circulant (whole, circular, circulant)."""
    layer = target.layer
    if layer is None:
        return None
    whole = len(layer.channels) == layer.geometry.out_channels
    return layer if whole and is_circulant(layer.geometry) else None


def circulant_values(target: Target) -> Singular:
    """Every singular value of a block-circulant layer through its FFT blocks, descending."""
    layer = circulant_layer(target)
    if layer is None:
        raise ValueError("the target is not a block-circulant layer")
    g = layer.geometry
    values = circular_singular_values(layer.weight, g.input_size, stride=g.stride,
                                      dilation=g.dilation, groups=g.groups, padding=g.padding,
                                      max_bytes=target.max_bytes)
    values = np.sort(values)[::-1]
    return Singular(values, np.zeros(values.size))


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
