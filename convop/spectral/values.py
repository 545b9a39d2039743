"""Singular values and spectral norm of the exact layer map.

The operator is the layer's own map ``vec(X) -> vec(Y)`` (``domain="input"``)
for any stride, padding, padding mode, dilation and groups. Every function
takes the layer arguments of :func:`convop.conv_matrix`, or instead of a
weight an explicit sparse matrix or a ``LinearOperator`` (such as
:class:`convop.LayerOperator`). Products run in float64 (complex128) whatever
the weight's dtype, unless ``dtype`` asks for less.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse.linalg as sla

from .. import _memory
from .._typing import IntOrTuple, PaddingLike, PaddingMode
from .._validation import as_int, as_real, as_rng, check_choice
from ._target import Target
from .circular import circular_start
from .lanczos import basis_size, top_eigenpairs
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
) -> np.ndarray:
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
        (shift-invert Lanczos with a sparse LU, certified below the
        normal-equations floor through the augmented matrix).
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

    Returns
    -------
    numpy.ndarray
        ``k`` (or ``min(rows, cols)``) singular values, descending. Values at or
        below ``max(rows, cols) * eps * sigma_max`` are exactly 0.

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
    """
    check_choice(which, "which", ("largest", "smallest"))
    tol = check_rtol(rtol)
    target = Target(weight, input_size, layer_arguments(stride, padding, dilation, groups,
                                                        padding_mode),
                    max_bytes=max_bytes, dtype=dtype)
    check_rtol_for(tol, target)
    full = min(target.shape)
    if k is not None:
        k = as_int(k, "k", minimum=1)
        if k > full:
            raise ValueError(
                f"`k` must be at most min(rows, cols) = {full} for this {target.shape[0]}x"
                f"{target.shape[1]} operator; got {k}."
            )
    return compute(target, k, which, tol, as_rng(rng))


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
        dtype=dtype,
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


def compute(target: Target, k: int | None, which: str, rtol: float,
            rng: np.random.Generator, sigma_max: float | None = None) -> np.ndarray:
    """Singular values of a validated target (all when ``k`` is None), descending."""
    m, n = target.shape
    full = min(m, n)
    if full == 0:
        return np.zeros(0)
    if target.is_zero:
        return np.zeros(full if k is None else k)
    if k is None:
        return dense_values(target)
    if which == "largest":
        return largest(target, k, rtol, rng)
    if sigma_max is None:
        sigma_max = float(largest(target, 1, max(rtol, 1e-6), rng)[0])
    return smallest_singular_values(target, k, rng, sigma_max)


def dense_values(target: Target) -> np.ndarray:
    """All singular values through a dense SVD, zeros below the rank tolerance."""
    m, n = target.shape
    if m * n > DENSE_SVD_MAX_ENTRIES:
        raise ValueError(
            f"all singular values need a dense SVD of the {m}x{n} matrix "
            f"({_memory.format_bytes(target.dtype.itemsize * m * n)}), more than convop does "
            f"densely ({DENSE_SVD_MAX_ENTRIES} entries); pass `k=` for the k largest or "
            f"smallest, or use `circular_singular_values` for circular padding."
        )
    values = scipy.linalg.svdvals(target.dense())
    return zero_below(values, rank_tolerance(m, n, float(values.max(initial=0.0)), target.eps))


def largest(target: Target, k: int, rtol: float, rng: np.random.Generator) -> np.ndarray:
    """Return the ``k`` largest singular values: Lanczos on the Gram operator."""
    m, n = target.shape
    if min(m, n) <= DENSE_SMALL or k >= min(m, n) - 1:
        return dense_values(target)[:k]
    op = target.operator
    size = min(m, n)
    basis = basis_size(size, k) * size * target.dtype.itemsize
    _memory.check_budget(basis + target.product_bytes() + target.vector_bytes(4),
                         target.max_bytes,
                         f"Lanczos with {basis_size(size, k)} vectors of length {size}")
    if m >= n:
        gram = sla.LinearOperator((n, n), matvec=lambda v: op.rmatvec(op.matvec(v)),
                                  dtype=target.dtype)
    else:
        gram = sla.LinearOperator((m, m), matvec=lambda v: op.matvec(op.rmatvec(v)),
                                  dtype=target.dtype)
    start = None
    if k == 1 and m >= n and target.layer is not None:
        start = circular_start(target.layer, rng, budget=basis + target.product_bytes())
    # |lambda - lambda*| <= tol * |lambda| gives |sigma - sigma*| <= tol/2 * sigma.
    lam, _ = top_eigenpairs(gram, k, 2 * rtol, rng, start)
    sigma = np.sqrt(np.clip(lam, 0.0, None))
    return zero_below(sigma, rank_tolerance(m, n, float(sigma.max()), target.eps))
