"""Operator norms of the layer map beyond 2: the exact l1 and l-infinity norms.

``||A||_1`` (largest absolute column sum) and ``||A||_inf`` (largest absolute
row sum) of the layer's own map ``vec(X) -> vec(Y)`` are what l-infinity and
l1 robustness certificates need. They are exact in O(nnz): the entries of the
input-domain matrix (padding folded in, so an entry may be a sum of taps) are
written block by block of output channels, never the whole matrix at once, and
their absolute values summed per row and per column. ``ord=2`` is
:func:`convop.spectral_norm`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _memory
from ._dtypes import as_weight, check_finite, compute_dtype
from ._typing import IntOrTuple, PaddingLike, PaddingMode
from ._validation import as_rng, check_max_bytes
from .geometry import ConvGeometry, layer_arguments, make_geometry
from .matrix import assemble
from .spectral._target import spectral_dtype
from .spectral.values import check_options, check_rtol, check_rtol_for, spectral_norm

__all__ = ["absolute_sums", "check_ord", "operator_norm"]

#: Bytes of one block of the matrix's entries: the matrix is never built whole.
CHUNK_BYTES = 2**26


def operator_norm(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    ord: float = 2,  # noqa: A002 - numpy.linalg.norm's name
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
    callback: Callable[[int, float], None] | None = None,
    progress: bool | None = None,
) -> float:
    r"""Return the operator norm ``||A||_ord`` of the layer map ``vec(X) -> vec(Y)``.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        The layer's filters (finite).
    input_size : int or tuple of int
        Spatial size of the unpadded input.
    ord : {1, 2, numpy.inf}
        Which norm, as in :func:`numpy.linalg.norm` for matrices: 1 the
        largest absolute column sum, 2 the largest singular value
        (:func:`convop.spectral_norm`), ``inf`` the largest absolute row sum.
    stride, padding, dilation, groups, padding_mode
        As in :func:`convop.conv_matrix`.
    rtol, rng, dtype, maxiter, callback, progress
        As in :func:`convop.spectral_norm`; used by ``ord=2`` only (1 and inf
        are exact sums), and validated for every ``ord``.
    max_bytes : int, optional
        Memory budget (default: 75% of the available memory): for 1 and inf one
        block of the matrix's entries and the column sums.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        ``ord`` is not 1, 2 or inf, or a layer argument is invalid.
    convop.BudgetError
        The column sums (one float per input entry) do not fit in ``max_bytes``.

    See Also
    --------
    convop.spectral_norm : ``ord=2``.

    Notes
    -----
    With ``A`` the input-domain matrix (:func:`convop.conv_matrix` with
    ``domain="input"``), each entry the sum of the taps that read one input
    pixel for one output pixel,

    .. math::

        \|A\|_1 = \max_j \sum_i |A_{ij}|, \qquad
        \|A\|_\infty = \max_i \sum_j |A_{ij}| = \|A^T\|_1 .

    For zero padding no two taps of a row read the same pixel, so a row sum is
    the sum of ``|w|`` over the taps that land inside the input; reflect,
    replicate and circular padding fold taps together, and the absolute value
    is taken of the folded entry, as the norm requires.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import conv_matrix, operator_norm
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> A = conv_matrix(w, (6, 6), padding=1, padding_mode="reflect", domain="input")
    >>> one = operator_norm(w, (6, 6), ord=1, padding=1, padding_mode="reflect")
    >>> bool(np.isclose(one, abs(A).sum(axis=0).max()))
    True
    >>> inf = operator_norm(w, (6, 6), ord=np.inf, padding=1, padding_mode="reflect")
    >>> bool(np.isclose(inf, abs(A).sum(axis=1).max()))
    True
    """
    which = check_ord(ord)
    layer = layer_arguments(stride, padding, dilation, groups, padding_mode)
    if which == 2:
        return spectral_norm(weight, input_size, rtol=rtol, rng=rng, max_bytes=max_bytes,
                             dtype=dtype, maxiter=maxiter, callback=callback,
                             progress=progress, **layer)
    # The options of ord=2, checked as spectral_norm checks them (unused by exact sums).
    tol = check_rtol(rtol)
    as_rng(rng)
    check_options(maxiter, callback, progress)
    budget = check_max_bytes(max_bytes)
    w = as_weight(weight)
    check_finite(w, "weight")
    work = spectral_dtype(dtype, np.iscomplexobj(w))
    geom = make_geometry(w.shape, input_size, **layer)
    check_rtol_for(tol, work)
    rows, cols = absolute_sums(geom, w, budget, columns=which == 1)
    sums = cols if which == 1 else rows
    return float(sums.max(initial=0.0))


def check_ord(value: Any) -> float:
    """Validate ``ord``: 1, 2 or inf (numbers of any numeric type)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"`ord` must be 1, 2 or numpy.inf; got {value!r}.")
    number = float(value)
    if number not in (1.0, 2.0, math.inf):
        raise ValueError(f"`ord` must be 1, 2 or numpy.inf (the operator norms convop "
                         f"computes exactly); got {value!r}.")
    return number


def absolute_sums(geom: ConvGeometry, w: np.ndarray, budget: int | None, *,
                  columns: bool = True, rows_kept: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Return the absolute row and (with ``columns``) column sums of the input-domain matrix.

    Rows in PyTorch's row-major order of ``(C_out, *output)``, columns of
    ``(C_in, *input)``; float64 (longdouble for longdouble weights). With
    ``rows_kept`` (a mask over the rows) the column sums count those rows only.
    """
    # Entries in float64 (complex128) at least: a folded entry sums taps of mixed signs.
    dt = np.result_type(compute_dtype(w.dtype), np.float64)
    total = np.dtype(dt if dt.kind != "c" else np.finfo(dt).dtype)
    m, n = geom.matrix_shape("input")
    _memory.check_budget(total.itemsize * (m + (n if columns else 0)), budget,
                         f"the absolute row and column sums of the {m} x {n} layer map")
    per_channel_rows = math.prod(geom.output_size)
    per_channel = max(1, geom.nnz("input") // max(1, geom.out_channels))
    entry = np.dtype(dt).itemsize + 8
    step = max(1, min(geom.out_channels, CHUNK_BYTES // max(1, per_channel * entry)))
    row_sums = np.zeros(m, dtype=total)
    col_sums = np.zeros(n if columns else 0, dtype=total)
    for first in range(0, geom.out_channels, step):
        last = min(geom.out_channels, first + step)
        block = assemble(geom, w, domain="input", order="C", dtype=np.dtype(dt),
                         max_bytes=budget,
                         rows=(first * per_channel_rows, last * per_channel_rows))
        magnitude = np.abs(block.data).astype(total, copy=False)
        counts = np.diff(block.indptr)
        row_ids = np.repeat(np.arange(counts.size), counts)
        row_sums[first * per_channel_rows:last * per_channel_rows] = np.bincount(
            row_ids, weights=magnitude, minlength=counts.size) if total == np.float64 else (
            _sum_by(row_ids, magnitude, counts.size))
        if columns:
            if rows_kept is not None:
                magnitude = magnitude * rows_kept[first * per_channel_rows:
                                                  last * per_channel_rows][row_ids]
            if total == np.float64:
                col_sums += np.bincount(block.indices, weights=magnitude, minlength=n)
            else:
                np.add.at(col_sums, block.indices, magnitude)
    return row_sums, col_sums


def _sum_by(ids: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """``bincount`` for dtypes it does not keep (longdouble)."""
    out = np.zeros(size, dtype=values.dtype)
    np.add.at(out, ids, values)
    return out
