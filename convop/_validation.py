"""Argument checks shared by every entry point.

Each helper validates one kind of argument, normalizes it and raises a
``TypeError`` (wrong type) or ``ValueError`` (wrong value) whose message names
the parameter as the caller wrote it, states the rule and echoes what was
given. Entry points run these checks before allocating anything large.

Arrays and data types have their checks in :mod:`convop._dtypes`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import numpy as np

from ._typing import DOMAINS, ORDERS, PADDING_MODES, Order

#: Largest int accepted for a size, stride, padding or count: index arithmetic
#: on such values stays inside int64.
INT_LIMIT = 2**60
INT64_MAX = int(np.iinfo(np.int64).max)
#: Data types scipy.sparse stores (float16 is not among them).
SPARSE_DTYPE_CHARS = "?" + np.typecodes["AllInteger"] + "fdgFDG"


F = TypeVar("F", bound=Callable[..., Any])


def ieee(function: F) -> F:
    """Run ``function`` with numpy's floating-point warnings off.

    NaN and inf in the data give the exact IEEE results (inf - inf is NaN), as
    in PyTorch and BLAS; they are answers, not events to warn about.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with np.errstate(all="ignore"):
            return function(*args, **kwargs)

    return cast(F, wrapper)


# Scalars -----------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    """Tell whether ``value`` is a Python or numpy integer or a 0-d integer array (not a bool)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    return isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu"


def as_int(value: Any, name: str, *, minimum: int | None = None,
           maximum: int = INT_LIMIT) -> int:
    """Return ``value`` as a Python int, checking its type and range."""
    if not is_int(value):
        raise TypeError(f"`{name}` must be an int; got {show(value)} of type "
                        f"{type(value).__name__}.")
    result = int(value)
    if minimum is not None and result < minimum:
        raise ValueError(f"`{name}` must be {_int_rule(minimum)}; got {result}.")
    if result > maximum:
        raise ValueError(f"`{name}` must be at most {maximum}; got {result}.")
    return result


def as_real(value: Any, name: str, *, low: float, high: float, rule: str) -> float:
    """Return a finite real number strictly between ``low`` and ``high`` as a float.

    Python and numpy floats and ints, and 0-d real arrays, are accepted.
    """
    if isinstance(value, (bool, np.bool_)) or not (
        isinstance(value, (int, float, np.integer, np.floating))
        or (isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf")
    ):
        raise TypeError(f"`{name}` must be {rule}; got {show(value)} of type "
                        f"{type(value).__name__}.")
    result = float(value)
    if not (math.isfinite(result) and low < result < high):
        raise ValueError(f"`{name}` must be {rule}; got {show(value)}.")
    return result


def check_callable(value: Any, name: str) -> Callable[..., Any]:
    """Check that ``value`` can be called."""
    if not callable(value):
        raise TypeError(f"`{name}` must be callable; got {show(value)} of type "
                        f"{type(value).__name__}.")
    return cast(Callable[..., Any], value)


def as_rng(rng: Any, name: str = "rng") -> np.random.Generator:
    """Return a numpy Generator from None, a non-negative int, a Generator or a BitGenerator."""
    if rng is None or isinstance(rng, (np.random.Generator, np.random.BitGenerator,
                                       np.random.SeedSequence)):
        return np.random.default_rng(rng)
    if is_int(rng):
        if int(rng) < 0:
            raise ValueError(f"`{name}` must be a non-negative int seed; got {int(rng)}.")
        return np.random.default_rng(int(rng))
    raise TypeError(f"`{name}` must be None, a non-negative int or a numpy Generator; got "
                    f"{show(rng)} of type {type(rng).__name__}.")


def check_bool(value: Any, name: str) -> bool:
    """Check a flag: True or False (numpy booleans included)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False; got {show(value)}.")
    return bool(value)


# Tuples of ints ----------------------------------------------------------------------------


def _items(value: Any) -> Sequence[Any] | None:
    """Return the entries of a sequence or 1-D array, or None for anything else."""
    if isinstance(value, (str, bytes)):
        return None
    if isinstance(value, np.ndarray):
        return value.tolist() if value.ndim == 1 else None
    if isinstance(value, Sequence):
        return value
    return None


def as_int_tuple(value: Any, name: str, ndim: int, *, minimum: int,
                 maximum: int = INT_LIMIT) -> tuple[int, ...]:
    """Normalize an int or a sequence of ``ndim`` ints to a tuple of Python ints."""
    word = {1: "positive int", 0: "non-negative int"}.get(minimum, f"int >= {minimum}")
    rule = f"`{name}` must be a {word} or a tuple of {ndim} {word}s"
    if is_int(value):
        items: Sequence[Any] = (value,) * ndim
    else:
        found = _items(value)
        if found is None:
            raise TypeError(f"{rule}; got {show(value)} of type {type(value).__name__}.")
        items = found
        if len(items) != ndim:
            raise ValueError(f"{rule}; got {show(value)} with {len(items)} entries.")
    if not all(is_int(v) for v in items):
        raise TypeError(f"{rule}; got {show(value)}, which holds a non-int.")
    out = tuple(int(v) for v in items)
    if any(v < minimum for v in out):
        raise ValueError(f"{rule}; got {show(value)}.")
    if any(v > maximum for v in out):
        raise ValueError(f"{rule}, each at most {maximum}; got {show(value)}.")
    return out


def as_shape(value: Any, name: str, *, min_ndim: int = 0) -> tuple[int, ...]:
    """Return a shape: a tuple of non-negative ints (an int is a 1-D shape)."""
    rule = f"`{name}` must be a shape, a tuple of non-negative ints"
    if is_int(value):
        value = (value,)
    items = _items(value)
    if items is None or not all(is_int(v) for v in items):
        raise TypeError(f"{rule}; got {show(value)} of type {type(value).__name__}.")
    out = tuple(int(v) for v in items)
    if any(v < 0 or v > INT_LIMIT for v in out) or len(out) < min_ndim:
        extra = f" with at least {min_ndim} entries" if min_ndim else ""
        raise ValueError(f"{rule}{extra}; got {show(value)}.")
    return out


def spatial_ndim_from(named: dict[str, Any], default: int = 1) -> int:
    """Infer the spatial rank from the arguments given as sequences, which must agree.

    ``named`` maps parameter names to values; scalars say nothing about the rank.
    """
    lengths = {name: len(items) for name, value in named.items()
               if not isinstance(value, str) and (items := _items(value)) is not None}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"`{name}` has {n}" for name, n in lengths.items())
        raise ValueError(f"the per-axis arguments must have one entry per spatial axis; "
                         f"{shown}.")
    return next(iter(lengths.values()), default)


def as_padding(
    padding: Any,
    ndim: int,
    *,
    kernel_size: tuple[int, ...],
    dilation: tuple[int, ...],
    stride: tuple[int, ...],
    name: str = "padding",
) -> tuple[tuple[int, int], ...]:
    """Normalize every accepted padding form to one ``(before, after)`` pair per axis.

    Accepted: an int; one int per axis; one ``(before, after)`` pair per axis
    (ints and pairs may be mixed, and an ``(ndim, 2)`` int array works too);
    ``"valid"``; ``"same"`` (PyTorch's split: total ``d*(k-1)``,
    ``before = total // 2``, the rest after; stride 1 only).
    """
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * ndim
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"`{name}` 'same' needs `stride` 1 on every axis; got stride {stride}."
                )
            totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
            return tuple((t // 2, t - t // 2) for t in totals)
        raise ValueError(f"`{name}` string must be 'valid' or 'same'; got {padding!r}.")
    rule = (
        f"`{name}` must be a non-negative int, a tuple of {ndim} such ints, "
        f"a tuple of {ndim} (before, after) pairs, 'valid' or 'same'"
    )
    if isinstance(padding, np.ndarray) and padding.ndim == 2:
        padding = [tuple(row) for row in padding.tolist()]
    if is_int(padding):
        items: Sequence[Any] = (padding,) * ndim
    else:
        found = _items(padding)
        if found is None:
            raise TypeError(f"{rule}; got {show(padding)} of type {type(padding).__name__}.")
        items = found
        if len(items) != ndim:
            hint = ""
            if ndim == 1 and len(items) == 2 and all(is_int(v) for v in items):
                hint = f" For asymmetric padding of 1 axis write ({tuple(items)!r},)."
            raise ValueError(f"{rule}; got {show(padding)} with {len(items)} entries.{hint}")
    pairs = []
    for item in items:
        pair_items = None if is_int(item) else _items(item)
        if is_int(item):
            pair = (int(item), int(item))
        elif pair_items is not None and len(pair_items) == 2 and all(
            is_int(v) for v in pair_items
        ):
            pair = (int(pair_items[0]), int(pair_items[1]))
        else:
            raise TypeError(f"{rule}; got {show(padding)}, whose entry {show(item)} is neither.")
        if min(pair) < 0:
            raise ValueError(f"{rule}; got {show(padding)}, which is negative.")
        if max(pair) > INT_LIMIT:
            raise ValueError(f"{rule}, each at most {INT_LIMIT}; got {show(padding)}.")
        pairs.append(pair)
    return tuple(pairs)


# Options -----------------------------------------------------------------------------------


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of the strings in ``choices``."""
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"`{name}` must be one of {options}; got {show(value)}.")
    return value


def check_order(order: Any) -> Order:
    """Validate a vectorization order, ``"F"`` or ``"C"``."""
    return cast(Order, check_choice(order, "order", ORDERS))


def check_domain(domain: Any) -> str:
    """Validate a matrix domain, ``"padded"`` or ``"input"``."""
    return check_choice(domain, "domain", DOMAINS)


def check_padding_mode(padding_mode: Any, name: str = "padding_mode") -> str:
    """Validate ``padding_mode``: one of PyTorch's four modes."""
    return check_choice(padding_mode, name, PADDING_MODES)


def check_groups(groups: Any, out_channels: int, *, out_name: str = "weight") -> int:
    """Check that ``groups`` is a positive int dividing the output channels."""
    groups = as_int(groups, "groups", minimum=1)
    if out_channels % groups:
        raise ValueError(
            f"`groups` must divide the output channels: `{out_name}` has C_out={out_channels}, "
            f"which {groups} groups do not divide."
        )
    return groups


def check_max_bytes(max_bytes: Any) -> int | None:
    """Validate a memory budget: None (automatic) or a positive int of bytes."""
    if max_bytes is None:
        return None
    return as_int(max_bytes, "max_bytes", minimum=1, maximum=2**63 - 1)


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
    items = _items(kernel_size)
    if items is None:
        raise TypeError(f"`kernel_size` must be an int or a tuple of 1 to 3 ints; got "
                        f"{show(kernel_size)} of type {type(kernel_size).__name__}.")
    ndim = len(items)
    if not 1 <= ndim <= 3:
        raise ValueError(f"`kernel_size` must have 1 to 3 entries; got {show(kernel_size)}.")
    if array_ndim not in (ndim + 1, ndim + 2):
        raise ValueError(
            f"`{name}` must be (N, C, *spatial) or (C, *spatial) with {ndim} spatial axes "
            f"for kernel_size {tuple(items)}; got {array_ndim} dimensions."
        )
    return ndim


def _int_rule(minimum: int) -> str:
    return {1: "a positive int", 0: "a non-negative int"}.get(minimum, f"an int >= {minimum}")


def show(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.size > 8:
            return f"array of shape {value.shape} and dtype {value.dtype}"
        return repr(value.tolist()) if value.ndim else repr(value.item())
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_contiguous_range(value: Any, name: str, count: int, what: str) -> range:
    """Resolve a slice (integer bounds, numpy's rules) or a range of ``count`` to a step-1 range.

    ``what`` completes the type error, e.g. "a slice of rows such as slice(r0, r1)".
    An empty result is allowed; callers that need one element check.
    """
    if isinstance(value, slice):
        for part in ("start", "stop", "step"):
            bound = getattr(value, part)
            if bound is not None and (not isinstance(bound, (int, np.integer))
                                      or isinstance(bound, (bool, np.bool_))):
                raise TypeError(f"`{name}` must have integer bounds; got {part}={bound!r}.")
        if value.step not in (None, 1):
            raise ValueError(f"`{name}` must be contiguous (step 1); got step {value.step}.")
        start, stop, _ = value.indices(count)
        return range(start, max(start, stop))
    if not isinstance(value, range):
        raise TypeError(f"`{name}` must be {what}; got {type(value).__name__}.")
    if value.step != 1:
        raise ValueError(f"`{name}` must be contiguous (step 1); got step {value.step}.")
    return value
