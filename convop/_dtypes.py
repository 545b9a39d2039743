"""Arrays and data types: the checks of array arguments and the dtype a result computes in.

The dtype table (``docs/conventions.md``): integer and boolean data compute
exactly in int64 (refused when the exact result could leave int64), float16
computes in float32 (scipy.sparse has no float16), everything else follows
numpy's promotion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validation import INT64_MAX, SPARSE_DTYPE_CHARS, as_shape, show


def as_numeric_array(value: Any, name: str) -> np.ndarray:
    """Return ``value`` as an ndarray of a numeric (bool, int, float, complex) dtype.

    Non-native byte orders are converted to native; layouts (Fortran,
    strided, read-only, broadcast) are kept: nothing writes into inputs.
    """
    if value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be a numeric array; got {show(value)}.")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise TypeError(f"`{name}` must be a numeric array; got {type(value).__name__} that "
                        f"numpy cannot convert ({err}).") from err
    if arr.dtype.kind not in "biufc":
        raise TypeError(f"`{name}` must be a numeric array (bool, int, float or complex); got "
                        f"dtype {arr.dtype}.")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def compute_dtype(*dtypes: Any) -> np.dtype:
    """Return the dtype arithmetic runs in: int64 for integer/bool data, float32 for float16.

    Otherwise numpy's promotion of the arguments (arrays or dtypes).
    """
    dt = np.result_type(*dtypes)
    if dt.kind in "biu":
        return np.dtype(np.int64)
    if dt == np.float16:
        return np.dtype(np.float32)
    return dt


def float_dtype(*dtypes: Any) -> np.dtype:
    """Return the floating dtype of products with these dtypes: float64/complex128 for integers."""
    dt = compute_dtype(*dtypes)
    return np.dtype(np.float64) if dt.kind in "biu" else dt


def integer_magnitude(arr: np.ndarray) -> int:
    """Return the largest absolute value of an integer or boolean array, as a Python int."""
    if arr.size == 0:
        return 0
    if arr.dtype.kind == "b":
        return int(bool(arr.any()))
    return max(abs(int(arr.min())), abs(int(arr.max())))


def check_exact_integers(terms: int, factors: Sequence[tuple[str, np.ndarray]],
                         extra: tuple[str, np.ndarray] | None = None) -> None:
    """Refuse integer data whose exact result might not fit in int64.

    The result is a sum of at most ``terms`` products of one entry of each
    factor (plus one entry of ``extra``); the bound uses the largest magnitudes.
    """
    bound = terms * math.prod(integer_magnitude(a) for _, a in factors)
    if extra is not None:
        bound += integer_magnitude(extra[1])
    if bound > INT64_MAX:
        names = " and ".join(f"`{n}`" for n, _ in (*factors, *([extra] if extra else [])))
        raise ValueError(
            f"{names} hold integers whose exact result can reach {bound}, beyond int64 "
            f"({INT64_MAX}); convert them to a floating dtype first."
        )


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Check a dtype argument for matrix entries: bool, integer, float32/64/long or complex."""
    if dtype is None:  # np.dtype(None) would silently mean float64
        raise TypeError(f"`{name}` must be a numpy dtype; got {dtype!r}.")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be a numpy dtype; got {dtype!r}.") from err
    if dt.char not in SPARSE_DTYPE_CHARS:
        raise TypeError(
            f"`{name}` must be a bool, integer, float32, float64, longdouble or complex "
            f"dtype (what scipy.sparse stores); got {dt}."
        )
    return dt.newbyteorder("=")


def matrix_dtype(values_dtype: np.dtype, dtype: Any) -> np.dtype:
    """Entries' dtype of a matrix whose entries are ``values`` (or sums of them).

    ``dtype`` when given; else the dtype arithmetic on the values runs in
    (:func:`compute_dtype`): the values' own for floats and complex (float16
    becomes float32, which scipy.sparse stores), **int64** for integers and
    booleans. A matrix is made to be multiplied: scipy's product of a bool matrix
    is a logical OR, of a uint8 one with uint8 data a uint8 that wraps, where
    ``conv`` gives the exact integer.
    """
    if dtype is not None:
        return check_dtype(dtype)
    return compute_dtype(np.dtype(values_dtype))


def check_representable(values: np.ndarray, dtype: np.dtype, name: str = "dtype") -> None:
    """Refuse a ``dtype`` that would drop imaginary parts or cannot hold integers exactly."""
    if values.dtype.kind == "c" and dtype.kind != "c" and np.any(values.imag != 0):
        raise ValueError(f"`{name}` {dtype} cannot hold the complex entries; use a complex dtype.")
    if dtype.kind not in "biu" or values.size == 0:
        return
    real = values.real if values.dtype.kind == "c" else values
    if real.dtype.kind == "f" and not np.all(np.isfinite(real) & (real == np.round(real))):
        raise ValueError(f"`{name}` {dtype} cannot hold the non-integer entries exactly.")
    if dtype.kind == "b":
        low, high = 0, 1
    else:
        info = np.iinfo(dtype)
        low, high = int(info.min), int(info.max)
    if real.dtype.kind == "f":
        lo_v, hi_v = float(real.min()), float(real.max())
    else:
        lo_v, hi_v = int(real.min()), int(real.max())
    if lo_v < low or hi_v > high:
        raise ValueError(f"`{name}` {dtype} cannot hold entries from {lo_v} to {hi_v}.")


def check_finite(arr: np.ndarray, name: str) -> None:
    """Refuse NaN and infinite entries."""
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` must be finite; it holds NaN or infinite entries.")


def as_weight(weight: Any, name: str = "weight") -> np.ndarray:
    """Return ``weight`` as an array ``(C_out, C_in // groups, *kernel)`` of 1 to 3 spatial axes."""
    arr = as_numeric_array(weight, name)
    if not 3 <= arr.ndim <= 5:
        raise ValueError(
            f"`{name}` must have shape (C_out, C_in // groups, *kernel) with 1, 2 or 3 "
            f"spatial axes (3 to 5 dims); got shape {arr.shape}."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"`{name}` must have at least one output channel and one input channel per "
            f"group; got shape {arr.shape}."
        )
    if 0 in arr.shape[2:]:
        raise ValueError(f"`{name}` kernel must not be empty; got kernel {arr.shape[2:]}.")
    return arr


def as_weight_shape(value: Any, name: str = "weight_shape") -> tuple[int, ...]:
    """Return a weight shape ``(C_out, C_in // groups, *kernel)`` of 3 to 5 positive ints."""
    shape = as_shape(value, name)
    if not 3 <= len(shape) <= 5 or min(shape) < 1:
        raise ValueError(
            f"`{name}` must be (C_out, C_in // groups, *kernel) with 1 to 3 spatial axes, "
            f"every entry positive; got {shape}."
        )
    return shape


def as_batch(x: Any, name: str, *, channels: int, ndim: int) -> tuple[np.ndarray, bool]:
    """Return ``x`` as a batch ``(N, C, *spatial)`` and whether it was one sample.

    A single sample ``(C, *spatial)`` gets a batch axis of length 1.
    """
    arr = as_numeric_array(x, name)
    if arr.ndim == ndim + 1:
        single = True
        arr = arr[np.newaxis]
    elif arr.ndim == ndim + 2:
        single = False
    else:
        raise ValueError(
            f"`{name}` must have shape (N, C, *spatial) or (C, *spatial) with {ndim} "
            f"spatial axes, as `weight` has; got shape {arr.shape}."
        )
    if arr.shape[1] != channels:
        raise ValueError(
            f"`{name}` must have {channels} channels on axis {0 if single else 1}, as `weight` "
            f"and `groups` say; got shape {arr.shape[1:] if single else arr.shape}."
        )
    if 0 in arr.shape[2:]:
        raise ValueError(f"`{name}` must have a positive spatial size; got shape {arr.shape}.")
    return arr, single
