"""Vectorization of channel-first arrays in the seed's column-major order or row-major order.

With ``order="F"`` (the seed's convention) the channel is slowest, then the
*last* spatial axis, and the first spatial axis is fastest; in 2-D
``X[C, r, c] -> C*H*W + c*H + r``. With ``order="C"`` the channel is slowest
and the last spatial axis fastest, i.e. PyTorch's ``x.reshape(N, -1)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _memory
from ._dtypes import as_numeric_array
from ._typing import Order
from ._validation import as_shape, check_max_bytes, check_order

__all__ = ["flat_strides", "unvec", "vec"]


def flat_strides(sizes: tuple[int, ...], order: str) -> tuple[int, ...]:
    """Element strides of a flattened spatial block of ``sizes`` in ``order``.

    Examples
    --------
    >>> flat_strides((4, 5, 6), "F"), flat_strides((4, 5, 6), "C")
    ((1, 4, 20), (30, 6, 1))
    """
    strides = [0] * len(sizes)
    step = 1
    axes = range(len(sizes)) if order == "F" else reversed(range(len(sizes)))
    for axis in axes:
        strides[axis] = step
        step *= sizes[axis]
    return tuple(strides)


def vec(x: Any, order: Order = "F", *, batch: bool | None = None,
        max_bytes: int | None = None) -> np.ndarray:
    """Vectorize one sample ``(C, *spatial)`` or a batch ``(N, C, *spatial)``.

    Parameters
    ----------
    x : array_like
        One sample ``(C, *spatial)`` or a batch ``(N, C, *spatial)``.
    order : {"F", "C"}
        ``"F"``: the seed's column-major order (channel slowest, first spatial
        axis fastest). ``"C"``: row-major, PyTorch's ``reshape``.
    batch : bool, optional
        Whether axis 0 of ``x`` indexes samples. By default arrays of 2 or 3
        dimensions are one sample (``(C, L)``, ``(C, H, W)``) and arrays of 4
        or 5 dimensions are batches (``(N, C, H, W)``, ``(N, C, D, H, W)``);
        pass ``batch=True`` for a 1-D batch ``(N, C, L)`` and ``batch=False``
        for a 3-D sample ``(C, D, H, W)``.
    max_bytes : int, optional
        Memory budget for the copy the reordering may make (default: 75% of
        the available memory).

    Returns
    -------
    numpy.ndarray
        A vector of length ``n = C * prod(spatial)`` for one sample, or an
        ``(n, N)`` matrix whose columns are the samples.

    See Also
    --------
    unvec : the inverse.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import vec
    >>> x = np.arange(8).reshape(2, 2, 2)        # (C, H, W)
    >>> vec(x)                                   # C*H*W + c*H + r
    array([0, 2, 1, 3, 4, 6, 5, 7])
    >>> vec(x, order="C")
    array([0, 1, 2, 3, 4, 5, 6, 7])
    """
    check_order(order)
    arr = as_numeric_array(x, "x")
    is_batch = _is_batch(arr, batch)
    _memory.check_budget(arr.nbytes, check_max_bytes(max_bytes), f"vec of shape {arr.shape}")
    lead = 2 if is_batch else 1
    if not lead + 1 <= arr.ndim <= lead + 3:
        what = "(N, C, *spatial)" if is_batch else "(C, *spatial)"
        raise ValueError(f"`x` must have shape {what} with 1 to 3 spatial axes; got {arr.shape}.")
    if order == "F":
        arr = arr.transpose(*range(lead), *reversed(range(lead, arr.ndim)))
    if is_batch:
        return arr.reshape(arr.shape[0], int(np.prod(arr.shape[1:]))).T
    return arr.reshape(-1)


def unvec(v: Any, shape: Any, order: Order = "F", *, max_bytes: int | None = None
          ) -> np.ndarray:
    """Undo :func:`vec`: a vector gives one sample, an ``(n, N)`` matrix a batch.

    Parameters
    ----------
    v : array_like
        A vector of length ``n`` or a matrix ``(n, N)`` whose columns are samples.
    shape : tuple of int
        Shape of one sample, ``(C, *spatial)``.
    order : {"F", "C"}
        The order ``v`` was vectorized in.
    max_bytes : int, optional
        Memory budget for the copy the reordering may make.

    Returns
    -------
    numpy.ndarray
        ``(C, *spatial)`` or ``(N, C, *spatial)``.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import unvec, vec
    >>> x = np.arange(24.0).reshape(2, 3, 4)
    >>> bool(np.array_equal(unvec(vec(x), x.shape), x))
    True
    """
    check_order(order)
    arr = as_numeric_array(v, "v")
    shape_t = as_shape(shape, "shape")
    _memory.check_budget(arr.nbytes, check_max_bytes(max_bytes), f"unvec of shape {arr.shape}")
    if not 2 <= len(shape_t) <= 4:
        raise ValueError(f"`shape` must be (C, *spatial) with 1 to 3 spatial axes; got {shape_t}.")
    n = int(np.prod(shape_t))
    if arr.ndim not in (1, 2) or arr.shape[0] != n:
        raise ValueError(
            f"`v` must be a vector of length {n} or an ({n}, N) matrix for shape {shape_t}; "
            f"got shape {arr.shape}."
        )
    stored = shape_t if order == "C" else (shape_t[0], *reversed(shape_t[1:]))
    if arr.ndim == 1:
        out = arr.reshape(stored)
        lead = 1
    else:
        out = arr.T.reshape(arr.shape[1], *stored)
        lead = 2
    if order == "F":
        out = out.transpose(*range(lead), *reversed(range(lead, out.ndim)))
    return out


def _is_batch(arr: np.ndarray, batch: bool | None) -> bool:
    if batch is None:
        return arr.ndim >= 4
    if not isinstance(batch, (bool, np.bool_)):
        raise TypeError(f"`batch` must be True, False or None; got {batch!r}.")
    return bool(batch)
