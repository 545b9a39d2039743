"""Argument checks shared by every entry point.

Each helper validates one kind of argument, normalizes it and raises a
``TypeError`` (wrong type) or ``ValueError`` (wrong value) whose message names
the parameter, states the rule and echoes what was given. Entry points run
these checks before allocating anything large.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, cast

import numpy as np

from ._typing import DOMAINS, ORDERS, PADDING_MODES, Order

# Data types scipy.sparse can multiply (float16 and bool are not among them).
_SPARSE_DTYPE_CHARS = np.typecodes["AllInteger"] + "fdgFDG"


def is_int(value: Any) -> bool:
    """Return True for Python or numpy integers, but not for booleans."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def as_int(value: Any, name: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as a Python int, checking type and lower bound."""
    if not is_int(value):
        raise TypeError(f"`{name}` must be an int; got {value!r} of type {type(value).__name__}.")
    value = operator.index(value)
    if minimum is not None and value < minimum:
        rule = {1: "a positive int", 0: "a non-negative int"}.get(minimum, f"an int >= {minimum}")
        raise ValueError(f"`{name}` must be {rule}; got {value}.")
    return value


def as_int_tuple(value: Any, name: str, ndim: int, *, minimum: int) -> tuple[int, ...]:
    """Normalize an int or a sequence of ``ndim`` ints to a tuple of Python ints."""
    word = {1: "positive int", 0: "non-negative int"}.get(minimum, f"int >= {minimum}")
    rule = f"`{name}` must be a {word} or a tuple of {ndim} {word}s"
    if is_int(value):
        items: Sequence[Any] = (value,) * ndim
    elif isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
        items = list(value) if isinstance(value, np.ndarray) else value
        if len(items) != ndim:
            raise ValueError(f"{rule}; got {_show(value)} with {len(items)} entries.")
    else:
        raise TypeError(f"{rule}; got {_show(value)} of type {type(value).__name__}.")
    if not all(is_int(v) for v in items):
        raise TypeError(f"{rule}; got {_show(value)}, which holds a non-int.")
    out = tuple(operator.index(v) for v in items)
    if any(v < minimum for v in out):
        raise ValueError(f"{rule}; got {_show(value)}.")
    return out


def spatial_ndim_from(*values: Any, default: int = 1) -> int:
    """Infer the spatial rank from the first non-scalar argument."""
    for value in values:
        if isinstance(value, (Sequence, np.ndarray)) and not isinstance(value, str):
            return len(value)
    return default


def as_padding(
    padding: Any,
    ndim: int,
    *,
    kernel_size: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...],
) -> tuple[tuple[int, int], ...]:
    """Normalize every accepted padding form to one ``(before, after)`` pair per axis.

    Accepted: an int; one int per axis; one ``(before, after)`` pair per axis
    (ints and pairs may be mixed); ``"valid"``; ``"same"`` (PyTorch's split:
    total ``d*(k-1)``, ``before = total // 2``, the rest after; stride 1 only).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * ndim
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"`padding='same'` needs stride 1 on every axis; got stride {stride}."
                )
            totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        raise ValueError(f"`padding` string must be 'valid' or 'same'; got {padding!r}.")
    rule = (
        f"`padding` must be a non-negative int, a tuple of {ndim} such ints, "
        f"a tuple of {ndim} (before, after) pairs, 'valid' or 'same'"
    )
    if is_int(padding):
        items: Sequence[Any] = (padding,) * ndim
    elif isinstance(padding, (Sequence, np.ndarray)):
        items = list(padding) if isinstance(padding, np.ndarray) else padding
        if len(items) != ndim:
            hint = ""
            if ndim == 1 and len(items) == 2 and all(is_int(v) for v in items):
                hint = f" For asymmetric padding of 1 axis write ({tuple(items)!r},)."
            raise ValueError(f"{rule}; got {_show(padding)} with {len(items)} entries.{hint}")
    else:
        raise TypeError(f"{rule}; got {_show(padding)} of type {type(padding).__name__}.")
    pairs = []
    for item in items:
        if is_int(item):
            pair = (item, item)
        elif (
            isinstance(item, (Sequence, np.ndarray))
            and not isinstance(item, str)
            and len(item) == 2
            and all(is_int(v) for v in item)
        ):
            pair = (item[0], item[1])
        else:
            raise TypeError(f"{rule}; got {_show(padding)}, whose entry {_show(item)} is neither.")
        lo, hi = operator.index(pair[0]), operator.index(pair[1])
        if lo < 0 or hi < 0:
            raise ValueError(f"{rule}; got {_show(padding)}, which is negative.")
        pairs.append((lo, hi))
    return tuple(pairs)


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


def as_numeric_array(value: Any, name: str) -> np.ndarray:
    """Return ``value`` as an ndarray of a dtype scipy.sparse can multiply."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`{name}` must be array-like; got {type(value).__name__}.") from err
    check_dtype(arr.dtype, name)
    return arr


def check_dtype(dtype: Any, name: str = "dtype") -> np.dtype:
    """Check that ``dtype`` is an integer, float32/64/long, or complex dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError as err:
        raise TypeError(f"`{name}` must be a numpy dtype; got {dtype!r}.") from err
    if dt.char not in _SPARSE_DTYPE_CHARS:
        raise TypeError(
            f"`{name}` must have an integer, float32, float64, longdouble or complex "
            f"dtype (what scipy.sparse supports); got dtype {dt}."
        )
    return dt


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {options}; got {value!r}.")
    return value


def check_order(order: Any) -> Order:
    """Validate a vectorization order, ``"F"`` or ``"C"``."""
    return cast(Order, check_choice(order, "order", ORDERS))


def check_domain(domain: Any) -> str:
    """Validate a matrix domain, ``"padded"`` or ``"input"``."""
    return check_choice(domain, "domain", DOMAINS)


def check_padding_mode(padding_mode: Any) -> str:
    """Validate ``padding_mode``: one of PyTorch's four modes."""
    return check_choice(padding_mode, "padding_mode", PADDING_MODES)


def check_groups(groups: Any, out_channels: int, in_per_group: int) -> int:
    """Check that ``groups`` is a positive int dividing the output channels."""
    groups = as_int(groups, "groups", minimum=1)
    if out_channels % groups:
        raise ValueError(
            f"`groups` must divide the output channels: weight has C_out={out_channels}, "
            f"which {groups} groups do not divide."
        )
    return groups


def check_max_bytes(max_bytes: Any) -> int | None:
    """Validate a memory budget: None (automatic) or a positive int of bytes."""
    if max_bytes is None:
        return None
    return as_int(max_bytes, "max_bytes", minimum=1)


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
            f"spatial axes; got shape {arr.shape}."
        )
    if arr.shape[1] != channels:
        raise ValueError(
            f"`{name}` must have {channels} channels on axis {0 if single else 1}; "
            f"got shape {arr.shape[1:] if single else arr.shape}."
        )
    return arr, single


def spatial_ndim_for_kernel(kernel_size: Any, array_ndim: int, name: str) -> int:
    """Spatial rank of an array given with a kernel size.

    With an int ``kernel_size`` the array must be a batch ``(N, C, *spatial)``;
    with a tuple it may also be one sample ``(C, *spatial)``.
    """
    if is_int(kernel_size):
        ndim = array_ndim - 2
        if not 1 <= ndim <= 3:
            raise ValueError(
                f"`{name}` must be a batch (N, C, *spatial) with 1 to 3 spatial axes when "
                f"`kernel_size` is an int; got {array_ndim} dimensions."
            )
        return ndim
    ndim = len(tuple(kernel_size))
    if not 1 <= ndim <= 3 or array_ndim not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"`{name}` must be (N, C, *spatial) or (C, *spatial) with {ndim} spatial axes "
            f"for kernel_size {tuple(kernel_size)}; got {array_ndim} dimensions."
        )
    return ndim


def _show(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return repr(tuple(value.tolist()))
    return repr(value)
