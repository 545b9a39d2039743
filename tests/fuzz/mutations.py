"""The fuzzer's mutations: each argument rewritten the same, wrong or unaffordable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Peak memory (tracemalloc) any fuzz call may reach: the layers are tiny.
PEAK_LIMIT = 64 * 2**20
HUGE = 2**40
MODES = ("zeros", "reflect", "replicate", "circular")


# Mutations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Same:
    """The argument as written, and the value the function must see."""

    written: Any
    value: Any
    note: str


@dataclass(frozen=True)
class Bad:
    written: Any
    note: str


@dataclass(frozen=True)
class Unaffordable:
    written: Any
    note: str


Mutation = Same | Bad | Unaffordable


def int_spellings(v: int) -> list[Any]:
    out: list[Any] = [v, np.int64(v), np.array(v), np.int32(v)]
    if 0 <= v < 2**15:
        out += [np.uint16(v), np.array(v, dtype=np.int16)]
    return out


BAD_SCALARS: list[tuple[Any, str]] = [
    (1.0, "a float"), (2.5, "a fraction"), (np.float64(3), "a numpy float"), (True, "a bool"),
    ("1", "a string"), (None, "None"), ([1], "a list"), (np.nan, "NaN"), (np.array([1, 2]), "an array"),
    (np.array(1.0), "a 0-d float array"), (1 + 0j, "a complex"), (object(), "an object"),
]


def int_mutations(v: int, minimum: int, allocates: bool) -> list[Mutation]:
    out: list[Mutation] = [Same(s, v, f"{type(s).__name__} {v}") for s in int_spellings(v)]
    out += [Bad(value, note) for value, note in BAD_SCALARS]
    out += [Bad(minimum - 1, "below the minimum"), Bad(-(2**63), "very negative"),
            Bad(2**64, "beyond int64"), Bad(2**100, "huge")]
    if allocates:
        out.append(Unaffordable(HUGE, "2**40"))
    return out


def tuple_spellings(t: tuple[int, ...]) -> list[Any]:
    out: list[Any] = [t, list(t), np.array(t), tuple(np.int64(v) for v in t),
                      np.array(t, dtype=np.int32)]
    if len(set(t)) == 1:
        out += [t[0], np.int64(t[0]), np.array(t[0])]
    return out


def tuple_mutations(t: tuple[int, ...], minimum: int, allocates: bool) -> list[Mutation]:
    out: list[Mutation] = [Same(s, t, f"{type(s).__name__} spelling") for s in tuple_spellings(t)]
    n = len(t)
    out += [
        Bad(t + (t[0],), "one entry too many"), Bad(t[:-1] if n > 1 else (), "one entry short"),
        Bad((minimum - 1,) * n, "below the minimum"), Bad(tuple(float(v) for v in t), "floats"),
        Bad(np.array(t, dtype=float), "a float array"), Bad("3", "a string"), Bad(None, "None"),
        Bad((True,) * n, "bools"), Bad(((1, 2),) * n, "nested"), Bad((2**100,) * n, "huge"),
        Bad(np.array([t]), "a 2-D array"), Bad({1: 2}, "a dict"),
    ]
    if allocates:
        out.append(Unaffordable((HUGE,) * n, "2**40 per axis"))
    return out


def padding_mutations(pads: tuple[tuple[int, int], ...], allow_strings: bool,
                      stride: tuple[int, ...], kernel: tuple[int, ...],
                      dilation: tuple[int, ...]) -> list[Mutation]:
    n = len(pads)
    out: list[Mutation] = [Same(pads, pads, "pairs"), Same([list(p) for p in pads], pads, "lists"),
                           Same(np.array(pads), pads, "an (ndim, 2) array")]
    if all(lo == hi for lo, hi in pads):
        sym = tuple(lo for lo, _ in pads)
        out += [Same(s, pads, "symmetric") for s in tuple_spellings(sym)]
    if allow_strings:
        if all(p == (0, 0) for p in pads):
            out.append(Same("valid", pads, "'valid'"))
        same = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                     for k, d in zip(kernel, dilation))
        if all(s == 1 for s in stride) and same == pads:
            out.append(Same("same", pads, "'same'"))
        if any(s != 1 for s in stride):
            out.append(Bad("same", "'same' with a stride"))
    else:
        out.append(Bad("same", "a string here"))
    out += [Bad(-1, "negative"), Bad(((0, -1),) * n, "a negative pair"), Bad(1.0, "a float"),
            Bad("full", "an unknown string"), Bad(None, "None"), Bad(((1, 1, 1),) * n, "triples"),
            Bad((0,) * (n + 1), "one entry too many"), Bad(True, "a bool"),
            Bad(((2**100, 0),) * n, "huge")]
    return out


def choice_mutations(value: str, choices: tuple[str, ...]) -> list[Mutation]:
    out: list[Mutation] = [Same(c, c, repr(c)) for c in choices if c == value]
    out += [Bad("nonsense", "unknown"), Bad(None, "None"), Bad(1, "an int"),
            Bad(value.upper() if value.upper() != value else value.lower() + "x", "case"),
            Bad([value], "a list")]
    return out


def budget_mutations() -> list[Mutation]:
    return [Same(None, None, "automatic"), Same(np.int64(2**40), 2**40, "numpy int"),
            Same(np.array(2**40), 2**40, "0-d array"), Bad(0, "zero"), Bad(-5, "negative"),
            Bad(1.5e9, "a float"), Bad(np.nan, "NaN"), Bad("1GB", "a string"), Bad(True, "a bool"),
            Unaffordable(1, "one byte")]


def rtol_mutations() -> list[Mutation]:
    return [Same(1e-8, 1e-8, "float"), Same(np.float32(1e-6), float(np.float32(1e-6)), "float32"),
            Same(np.array(1e-7), 1e-7, "0-d array"), Bad(0.0, "zero"), Bad(1.0, "one"),
            Bad(-1e-3, "negative"), Bad(np.nan, "NaN"), Bad(np.inf, "inf"), Bad("1e-6", "a string"),
            Bad(None, "None"), Bad(True, "a bool"), Bad(1e-30, "finer than float64")]


def rng_mutations() -> list[Mutation]:
    return [Same(None, None, "None"), Same(0, 0, "int"), Same(np.int64(3), 3, "numpy int"),
            Same(np.random.default_rng(1), None, "Generator"), Bad(-1, "negative"),
            Bad("seed", "a string"), Bad(1.5, "a float"), Bad([1.5], "a list of floats")]


ARRAY_DTYPES = ("bool", "int8", "uint8", "int16", "int32", "int64", "uint32", "float16",
                "float32", "float64", "complex64", "complex128", ">f8", ">i4")


def optional(mutations: list[Mutation]) -> list[Mutation]:
    """The mutations of an optional array: None is a valid value there."""
    return [m for m in mutations if m.note != "None"] + [Same(None, None, "None")]


def array_mutations(arr: np.ndarray, *, finite: bool, complex_ok: bool = True,
                    extra_bad: list[Mutation] | None = None) -> list[Mutation]:
    out: list[Mutation] = [Same(arr, arr, "as drawn"), Same(arr.tolist(), arr, "nested lists")]
    for name in ARRAY_DTYPES:
        cast = arr.astype(name)
        if cast.dtype.kind == "c" and not complex_ok:
            out.append(Bad(cast, f"dtype {name}"))
        else:
            out.append(Same(cast, cast, f"dtype {name}"))
    fortran = np.asfortranarray(arr)
    read_only = arr.copy()
    read_only.flags.writeable = False
    strided = np.repeat(arr, 2, axis=-1)[..., ::2] if arr.ndim else arr
    out += [Same(fortran, arr, "Fortran order"), Same(read_only, arr, "read-only"),
            Same(strided, arr, "non-contiguous")]
    if arr.ndim and arr.shape[0] >= 1:
        first = arr[:1]
        out.append(Same(np.broadcast_to(first, arr.shape), np.broadcast_to(first, arr.shape).copy(),
                        "broadcast"))
    if arr.size and arr.dtype.kind == "f":
        for bad in (np.nan, np.inf):
            poisoned = arr.copy()
            poisoned.flat[0] = bad
            out.append(Same(poisoned, poisoned, f"holding {bad}") if not finite
                       else Bad(poisoned, f"holding {bad}"))
    out += [Bad(None, "None"), Bad("abc", "a string"), Bad(np.array([object()]), "object dtype"),
            Bad(arr[np.newaxis, np.newaxis], "two extra axes")]
    if arr.ndim > 1:
        out.append(Bad(arr.reshape(-1)[:1] * 0, "1-D"))
    out += list(extra_bad or [])
    return out
