"""A fuzzer over convop's whole public API: mutations, specs and exact oracles.

Every public function gets a *spec*: a valid base call drawn from a tiny layer,
the kind of each parameter, and an oracle computed with direct loops (never
with convop's own code). A fuzz case takes the base call and changes one
argument:

- ``Same``: the same value spelled differently (numpy scalars, 0-d arrays,
  lists, arrays; dtypes, byte orders and layouts of arrays). The function must
  return the oracle's result for the value as the function sees it;
- ``Bad``: an invalid value. The function must raise ``TypeError``,
  ``ValueError`` or ``MemoryError`` whose message names the parameter (a
  ``MemoryError`` must be a ``convop.BudgetError`` stating the bytes it needs);
- ``Unaffordable``: a size or budget that cannot be met. The function must raise
  ``MemoryError`` with its estimate, or ``ValueError`` naming the parameter.

:func:`run_case` applies those rules and returns what happened; the pytest
module asserts on it and ``python tests/fuzz_api.py N`` prints counts over N
cases per function.
"""

from __future__ import annotations

import inspect
import itertools
import math
import re
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st
from oracles import loop_matrix, source_pixel
from strategies import Layer

import convop

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


# Specs ---------------------------------------------------------------------------------------


@dataclass
class Spec:
    """One public function: its base call, parameter mutations and oracle."""

    name: str
    function: Callable[..., Any]
    base: Callable[[Any], dict[str, Any]]  # draw -> {param: value}, valid and normalized
    mutations: Callable[[dict[str, Any]], dict[str, list[Mutation]]]
    check: Callable[[dict[str, Any], Any], None]  # (values as seen, result) -> assert
    problem: Callable[[dict[str, Any]], str | None] = lambda values: None
    needs: tuple[str, ...] = field(default_factory=tuple)  # requirements (optional packages)
    signature: Callable[..., Any] | None = None  # whose parameters the call takes

    def accepted(self) -> set[str]:
        """The parameter names the public function takes."""
        target = self.signature or self.function
        return set(inspect.signature(target).parameters)


def drawn_layer(draw: Any, ndims: tuple[int, ...] = (1, 2), modes: bool = True
                ) -> dict[str, Any]:
    ndim = draw(st.sampled_from(ndims))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(ndim))
    size = tuple(max(1, d * (k - 1) + 1 - lo - hi) + draw(st.integers(1, 3))
                 for k, d, (lo, hi) in zip(kernel, dilation, pads))
    groups = draw(st.integers(1, 2))
    c_in_g, c_out_g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    mode = "zeros"
    if modes:
        allowed = [m for m in MODES if m in ("zeros", "replicate")
                   or (m == "reflect" and all(max(p) < n for p, n in zip(pads, size)))
                   or (m == "circular" and all(max(p) <= n for p, n in zip(pads, size)))]
        mode = draw(st.sampled_from(allowed))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    weight_shape = (groups * c_out_g, c_in_g, *kernel)
    return dict(weight=rng.integers(-3, 4, size=weight_shape).astype(np.float64),
                input_size=size, stride=stride, padding=pads, dilation=dilation, groups=groups,
                padding_mode=mode, _rng=rng, _batch=draw(st.integers(1, 2)))


def out_size(v: dict[str, Any]) -> tuple[int, ...]:
    return tuple((n + lo + hi - d * (k - 1) - 1) // s + 1 for n, k, s, d, (lo, hi) in zip(
        v["input_size"], np.shape(v["weight"])[2:], v["stride"], v["dilation"], v["padding"]))


def layer_of(v: dict[str, Any], weight_shape: tuple[int, ...] | None = None) -> Layer:
    shape = tuple(np.shape(v["weight"])) if weight_shape is None else weight_shape
    return Layer(weight_shape=shape, input_size=tuple(v["input_size"]), stride=tuple(v["stride"]),
                 padding=tuple(v["padding"]), dilation=tuple(v["dilation"]),
                 groups=int(v["groups"]), pads=tuple(v["padding"]))


def dense_of(v: dict[str, Any], domain: str = "input", order: str = "C",
             weight: Any = None) -> np.ndarray:
    w = np.asarray(v["weight"] if weight is None else weight)
    exact = w.astype(np.complex128 if w.dtype.kind == "c" else np.float64)
    return loop_matrix(exact, layer_of(v, w.shape), domain, order, v.get("padding_mode", "zeros"))[0]


def padded_operator(v: dict[str, Any], weight: Any = None) -> sp.csr_array:
    """The seed's W (padded domain) with every tap stored, zero weights included.

    Products run over stored entries only, as the layer's do: a NaN weight whose tap
    lands on zero padding gives NaN * 0 = NaN (PyTorch too), and a NaN gradient reaches
    only the pixels its taps read.
    """
    w = np.asarray(v["weight"] if weight is None else weight)
    exact = w.astype(exact_dtype(w))
    layer = layer_of(v, w.shape)
    dense, pattern = loop_matrix(exact, layer, "padded", "C", "zeros")
    rows, cols = np.nonzero(pattern)
    # CSR: scipy's COO times a multi-column array skips explicit zeros (0 * NaN would vanish).
    return sp.coo_array((dense[rows, cols], (rows, cols)), shape=dense.shape).tocsr()


def forward_oracle(v: dict[str, Any], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``W vec(X_pad)`` per sample, and the sum of |terms| (the rounding scale)."""
    n = x.shape[0]
    xp = padded_input(x.astype(exact_dtype(x)), v).reshape(n, -1).T
    W = padded_operator(v)
    absW = padded_operator(v, np.abs(np.asarray(v["weight"])))
    return (W @ xp).T, (absW @ np.abs(xp)).T


def adjoint_oracle(v: dict[str, Any], dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``P^H W^H vec(dY)`` per sample, and the sum of |terms|."""
    n = dy.shape[0]
    flat = dy.reshape(n, -1).T.astype(exact_dtype(dy))
    W = padded_operator(v)
    absW = padded_operator(v, np.abs(np.asarray(v["weight"])))
    grad = (W.conj().T @ flat).T
    scale = (absW.T @ np.abs(flat)).T
    return pad_adjoint_loop(grad, v), pad_adjoint_loop(scale, v)


def pad_adjoint_loop(g: np.ndarray, v: dict[str, Any]) -> np.ndarray:
    """Add each padded position's value onto the input pixel it copies (drop zero padding)."""
    n = g.shape[0]
    size = tuple(v["input_size"])
    c = g.shape[1] // math.prod(s + lo + hi for s, (lo, hi) in zip(size, v["padding"]))
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(size, v["padding"]))
    g = g.reshape(n, c, *padded)
    out = np.zeros((n, c, *size), dtype=g.dtype)
    for p in itertools.product(*(range(s) for s in padded)):
        q = [source_pixel(pp - lo, s, v.get("padding_mode", "zeros"))
             for pp, (lo, _), s in zip(p, v["padding"], size)]
        if all(qq is not None for qq in q):
            out[(slice(None), slice(None), *q)] += g[(slice(None), slice(None), *p)]
    return out.reshape(n, -1)


def unvec_loop(vector: np.ndarray, shape: tuple[int, ...], order: str) -> np.ndarray:
    """Undo the seed's vec (or the row-major one) channel by channel."""
    c, *size = shape
    per = math.prod(size)
    return np.stack([vector[i * per:(i + 1) * per].reshape(size, order=order) for i in range(c)])


def expected_dtype(*dtypes: Any) -> np.dtype:
    """The documented rule: integers and bools exact in int64, float16 in float32."""
    dt = np.result_type(*dtypes)
    if dt.kind in "biu":
        return np.dtype(np.int64)
    return np.dtype(np.float32) if dt == np.float16 else dt


def assert_matches(result: Any, expected: np.ndarray, dtype: np.dtype, scale: Any = None) -> None:
    """Same shape, the documented dtype, and values equal (integers) or within rounding."""
    result = np.asarray(result)
    dtype = np.dtype(dtype).newbyteorder("=")
    assert result.shape == expected.shape, (result.shape, expected.shape)
    assert result.dtype == dtype, (result.dtype, dtype)
    if dtype.kind in "biu":
        assert np.array_equal(result, np.real(expected).astype(dtype)), "integer result differs"
        return
    rtol = 1e-5 if dtype in (np.float32, np.complex64) else 1e-12
    with np.errstate(invalid="ignore"):
        bound = rtol * (np.abs(expected) if scale is None else np.abs(scale)) + 1e-300
        err = np.abs(result.astype(np.complex128) - expected)
        close = (err <= bound) | (result == expected)  # infinities compare equal
        nan_match = np.isnan(result) == np.isnan(expected)
    assert np.all(close | np.isnan(result)) and np.all(nan_match), f"max error {np.nanmax(err)}"


def layer_problem(v: dict[str, Any]) -> str | None:
    """Independent validity of a layer: groups, sizes, PyTorch's padding-mode limits."""
    shape = np.shape(v["weight"])
    if shape[0] % v["groups"]:
        return "groups"
    for n, k, d, (lo, hi) in zip(v["input_size"], shape[2:], v["dilation"], v["padding"]):
        if n + lo + hi < d * (k - 1) + 1:
            return "size"
        mode = v.get("padding_mode", "zeros")
        if (mode == "reflect" and max(lo, hi) >= n) or (mode == "circular" and max(lo, hi) > n):
            return "mode"
    return None


def layer_mutations(v: dict[str, Any], strings: bool = True, modes: bool = True
                    ) -> dict[str, list[Mutation]]:
    kernel = tuple(np.shape(v["weight"])[2:])
    out = {
        "stride": tuple_mutations(v["stride"], 1, False),
        "dilation": tuple_mutations(v["dilation"], 1, False),
        "padding": padding_mutations(v["padding"], strings, v["stride"], kernel, v["dilation"]),
        "groups": int_mutations(v["groups"], 1, False),
    }
    if modes:
        out["padding_mode"] = choice_mutations(v["padding_mode"], MODES)
    return out


def abs_dense(v: dict[str, Any], domain: str = "input", order: str = "C") -> np.ndarray:
    """The matrix of |weight|: each entry sums |w| over its taps, before any cancellation."""
    return dense_of(v, domain, order, weight=np.abs(np.asarray(v["weight"])))


def scale_of(abs_matrix: np.ndarray, *vectors: np.ndarray) -> np.ndarray:
    """Sum of |terms| of each output: the size rounding errors are measured against."""
    return abs_matrix @ np.abs(np.stack([x.reshape(-1) for x in vectors], axis=1)
                               .astype(np.complex128))


def specs() -> list[Spec]:
    return [spec_conv(), spec_conv_input_grad(), spec_conv_weight_grad(), spec_conv_matrix(),
            spec_weight_matrix(), spec_affine_matrix(), spec_layer_operator(), spec_im2col(),
            spec_col2im(), spec_conv_geometry(), spec_output_size(), spec_singular_values(),
            spec_spectral("spectral_norm"), spec_spectral("condition_number"),
            spec_spectral("spectrum_report"), spec_circular(), spec_conv_transpose(),
            spec_conv_transpose_matrix(), spec_output_padding_for(), spec_pad_matrix(),
            spec_source_index(), spec_bias_vector(), spec_vec(), spec_unvec(),
            spec_conv_bias_grad(), spec_dot_test(), spec_check_conv(), spec_standard_configs(),
            spec_plot_structure(), spec_plot_block(), spec_plot_spectrum(),
            spec_plot_spectrum_density(), spec_plot_frequency_response(), spec_padding_pairs(), spec_same_padding_pairs(),
            spec_relayout(), spec_gram_iteration_bound(), spec_audit()]


# Forward, gradients ----------------------------------------------------------------------------


def spec_conv() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        rng = v["_rng"]
        c_in = v["weight"].shape[1] * v["groups"]
        v["x"] = rng.integers(-3, 4, size=(v["_batch"], c_in, *v["input_size"])).astype(float)
        v["bias"] = rng.integers(-3, 4, size=v["weight"].shape[0]).astype(float)
        v["max_bytes"] = None
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        c_in = v["weight"].shape[1] * v["groups"]
        x_bad = [Bad(v["x"][:, :0], "no channels"), Bad(v["x"][..., :0], "empty axis"),
                 Bad(np.ones((1, c_in + 1, *v["input_size"])), "wrong channels")]
        return {"x": array_mutations(v["x"], finite=False, extra_bad=x_bad),
                "weight": array_mutations(v["weight"], finite=False),
                "bias": optional(array_mutations(v["bias"], finite=False)),
                **layer_mutations(v), "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        x = np.asarray(v["x"])
        n = x.shape[0]
        y, scale = forward_oracle(v, x)
        b = v["bias"]
        dtypes = [x.dtype, np.asarray(v["weight"]).dtype]
        if b is not None:
            bias = np.repeat(np.asarray(b).astype(np.complex128), math.prod(out_size(v)))
            y, scale = y + bias, scale + np.abs(bias)
            dtypes.append(np.asarray(b).dtype)
        shape = (n, np.shape(v["weight"])[0], *out_size(v))
        assert_matches(result, y.reshape(shape), expected_dtype(*dtypes), scale.reshape(shape))

    return Spec("conv", convop.conv, base, mutations, check, layer_problem)


def spec_conv_input_grad() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v["grad_output"] = v["_rng"].integers(
            -3, 4, size=(v["_batch"], v["weight"].shape[0], *out_size(v))).astype(float)
        v["max_bytes"] = None
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"grad_output": array_mutations(v["grad_output"], finite=False),
                "weight": array_mutations(v["weight"], finite=False),
                "input_size": tuple_mutations(v["input_size"], 1, True),
                **layer_mutations(v), "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        found = layer_problem(v)
        if found is None and out_size(v) != np.shape(v["grad_output"])[2:]:
            return "output size"
        return found

    def check(v: dict[str, Any], result: Any) -> None:
        dy = np.asarray(v["grad_output"])
        dx, scale = adjoint_oracle(v, dy)
        shape = (dy.shape[0], -1, *v["input_size"])
        dt = expected_dtype(dy.dtype, np.asarray(v["weight"]).dtype)
        assert_matches(result, dx.reshape(shape), dt, scale.reshape(shape))

    return Spec("conv_input_grad", convop.conv_input_grad, base, mutations, check, problem)


def exact_dtype(*arrays: Any) -> type:
    """float64 for real data, complex128 for complex (complex arithmetic turns inf into NaN)."""
    return np.complex128 if any(np.iscomplexobj(a) for a in arrays) else np.float64


def padded_input(x: np.ndarray, v: dict[str, Any]) -> np.ndarray:
    """X_pad by definition (source_pixel), for any mode; zeros outside for zero padding."""
    n, c = x.shape[:2]
    size = tuple(v["input_size"])
    padded_size = tuple(s + lo + hi for s, (lo, hi) in zip(size, v["padding"]))
    out = np.zeros((n, c, *padded_size), dtype=exact_dtype(x))
    for p in itertools.product(*(range(s) for s in padded_size)):
        q = [source_pixel(pp - lo, s, v.get("padding_mode", "zeros"))
             for pp, (lo, _), s in zip(p, v["padding"], size)]
        if all(qq is not None for qq in q):
            out[(slice(None), slice(None), *p)] = x[(slice(None), slice(None), *q)]
    return out


def spec_conv_weight_grad() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        rng = v["_rng"]
        c_in = v["weight"].shape[1] * v["groups"]
        v["x"] = rng.integers(-3, 4, size=(v["_batch"], c_in, *v["input_size"])).astype(float)
        v["grad_output"] = rng.integers(
            -3, 4, size=(v["_batch"], v["weight"].shape[0], *out_size(v))).astype(float)
        v["kernel_size"] = tuple(v["weight"].shape[2:])
        v["max_bytes"] = None
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"x": array_mutations(v["x"], finite=False),
                "grad_output": array_mutations(v["grad_output"], finite=False),
                "kernel_size": tuple_mutations(v["kernel_size"], 1, False),
                **layer_mutations(v), "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        x, dy = np.asarray(v["x"]), np.asarray(v["grad_output"])
        xp = padded_input(x.astype(exact_dtype(x, dy)), v)
        c_out, c_in_g, *kernel = v["weight"].shape
        c_out_g = c_out // v["groups"]
        out = out_size(v)
        expected = np.zeros((c_out, c_in_g, *kernel), dtype=exact_dtype(x, dy))
        scale = np.zeros(expected.shape)
        for m, c, *u in itertools.product(range(c_out), range(c_in_g), *(range(k) for k in kernel)):
            ch = (m // c_out_g) * c_in_g + c
            window = tuple(slice(uu * d, uu * d + s * (o - 1) + 1, s)
                           for uu, d, s, o in zip(u, v["dilation"], v["stride"], out))
            patch = xp[(slice(None), ch, *window)]
            expected[(m, c, *u)] = np.sum(np.conj(patch) * dy[:, m])
            scale[(m, c, *u)] = np.sum(np.abs(patch) * np.abs(dy[:, m]))
        dt = expected_dtype(x.dtype, dy.dtype)
        assert_matches(result, expected, dt, scale)

    def problem(v: dict[str, Any]) -> str | None:
        w = dict(v, weight=np.zeros((np.shape(v["grad_output"])[1], 1, *v["kernel_size"])))
        found = layer_problem(w)
        if found is None and np.shape(v["x"])[1] % v["groups"]:
            return "groups"
        if found is None and out_size(w) != np.shape(v["grad_output"])[2:]:
            return "output size"
        return found

    spec = Spec("conv_weight_grad", convop.conv_weight_grad, base, mutations, check, problem)
    return spec


# Matrices ------------------------------------------------------------------------------------


def dtype_param_mutations(allow_bool: bool = True) -> list[Mutation]:
    return [Same(None, None, "default"), Same(np.float64, np.dtype(np.float64), "float64"),
            Same("float32", np.dtype(np.float32), "'float32'"),
            Same(np.complex128, np.dtype(np.complex128), "complex128"),
            Bad(np.float16, "float16"), Bad(object, "object"), Bad("floaty", "nonsense"),
            Bad(3, "an int"), Bad("U5", "strings")]


def matrix_dtype_rule(weight_dtype: np.dtype, requested: Any, sums: bool) -> np.dtype:
    if requested is not None:
        return np.dtype(requested)
    if weight_dtype == np.float16 or (sums and weight_dtype.kind in "biu"):
        return np.dtype(np.int64) if weight_dtype.kind in "biu" else np.dtype(np.float32)
    return np.dtype(weight_dtype)


def check_sparse(result: Any, dense: np.ndarray, dtype: np.dtype) -> None:
    assert isinstance(result, sp.csr_array), type(result)
    dtype = np.dtype(dtype).newbyteorder("=")
    assert result.dtype == dtype, (result.dtype, dtype)
    got = result.toarray().astype(np.complex128)
    want = (dense.real if dtype.kind != "c" else dense).astype(dtype).astype(np.complex128)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert np.allclose(got, want, rtol=1e-6 if dtype.itemsize <= 4 else 1e-12, atol=0,
                       equal_nan=True), "matrix entries differ"
    assert result.has_canonical_format
    if result.nnz:
        assert result.indices.dtype == result.indptr.dtype


def representable(values: np.ndarray, dtype: np.dtype) -> bool:
    """Whether ``dtype`` holds the values without losing an imaginary part or an integer."""
    if values.dtype.kind == "c" and dtype.kind != "c" and np.any(values.imag):
        return False
    if dtype.kind not in "biu" or values.size == 0:
        return True
    real = values.real
    if real.dtype.kind == "f" and not np.all(np.isfinite(real) & (real == np.round(real))):
        return False
    info = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    return bool(real.min() >= info[0] and real.max() <= info[1])


def spec_conv_matrix() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v.update(domain=draw(st.sampled_from(["padded", "input"])),
                 order=draw(st.sampled_from(["F", "C"])), dtype=None, max_bytes=None,
                 rows=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"weight": array_mutations(v["weight"], finite=False),
                "input_size": tuple_mutations(v["input_size"], 1, True), **layer_mutations(v),
                "domain": choice_mutations(v["domain"], ("padded", "input")),
                "order": choice_mutations(v["order"], ("F", "C")),
                "dtype": dtype_param_mutations(), "max_bytes": budget_mutations(),
                "rows": [Same(slice(None), None, "every row"),
                         Same(slice(0, 10**9), None, "a stop past the end"),
                         Same(slice(np.int64(0), None), None, "numpy bound"),
                         Bad(3, "an int"), Bad(slice(0, 4, 2), "step 2"),
                         Bad(slice(0.0, 4), "a float bound"), Bad("0:4", "a string")]}

    def check(v: dict[str, Any], result: Any) -> None:
        w = np.asarray(v["weight"])
        dense = dense_of(v, v["domain"], v["order"])
        sums = v["domain"] == "input" and v["padding_mode"] != "zeros" and any(
            lo or hi for lo, hi in v["padding"])
        check_sparse(result, dense, matrix_dtype_rule(w.dtype, v["dtype"], sums))

    def problem(v: dict[str, Any]) -> str | None:
        found = layer_problem(v)
        if found is None and v["dtype"] is not None:
            dense = dense_of(v, v["domain"], v["order"])
            if not representable(dense, np.dtype(v["dtype"])):
                return "dtype"
        return found

    return Spec("conv_matrix", convop.conv_matrix, base, mutations, check, problem)


def loop_weight_matrix(v: dict[str, Any], order: str) -> np.ndarray:
    x = np.asarray(v["x"])
    if x.ndim == len(v["kernel_size"]) + 1:
        x = x[np.newaxis]
    xp = padded_input(x.astype(np.complex128), v)
    kernel = tuple(v["kernel_size"])
    c_out = v["out_channels"]
    groups = v["groups"]
    c_in_g = x.shape[1] // groups
    c_out_g = c_out // groups
    out = out_size(dict(v, weight=np.zeros((c_out, c_in_g, *kernel))))
    taps = c_in_g * math.prod(kernel)
    n = x.shape[0]
    M = np.zeros((n * c_out * math.prod(out), c_out * taps), dtype=np.complex128)
    for b, m, c, *rest in itertools.product(range(n), range(c_out), range(c_in_g),
                                            *(range(o) for o in out), *(range(k) for k in kernel)):
        o, u = rest[:len(out)], rest[len(out):]
        row = (b * c_out + m) * math.prod(out) + int(np.ravel_multi_index(o, out, order=order))
        col = m * taps + c * math.prod(kernel) + int(np.ravel_multi_index(u, kernel, order=order))
        pos = tuple(oo * s + uu * d for oo, uu, s, d in zip(o, u, v["stride"], v["dilation"]))
        M[row, col] = xp[(b, (m // c_out_g) * c_in_g + c, *pos)]
    return M


def spec_weight_matrix() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        c_in = v["weight"].shape[1] * v["groups"]
        v["x"] = v["_rng"].integers(-3, 4, size=(v["_batch"], c_in, *v["input_size"])).astype(float)
        v.update(kernel_size=tuple(v["weight"].shape[2:]), out_channels=v["weight"].shape[0],
                 order=draw(st.sampled_from(["F", "C"])), dtype=None, max_bytes=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"x": array_mutations(v["x"], finite=False),
                "kernel_size": tuple_mutations(v["kernel_size"], 1, False),
                "out_channels": int_mutations(v["out_channels"], 1, False),
                **layer_mutations(v), "order": choice_mutations(v["order"], ("F", "C")),
                "dtype": dtype_param_mutations(), "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        c_in = np.shape(v["x"])[1]
        if v["out_channels"] % v["groups"] or c_in % v["groups"]:
            return "groups"
        w = dict(v, weight=np.zeros((v["out_channels"], c_in // v["groups"], *v["kernel_size"])))
        found = layer_problem(w)
        if found is None and v["dtype"] is not None and not representable(
                np.asarray(v["x"]), np.dtype(v["dtype"])):
            return "dtype"
        return found

    def check(v: dict[str, Any], result: Any) -> None:
        x = np.asarray(v["x"])
        M = loop_weight_matrix(v, v["order"])
        check_sparse(result, M, matrix_dtype_rule(x.dtype, v["dtype"], False))

    return Spec("weight_matrix", convop.weight_matrix, base, mutations, check, problem)


def spec_affine_matrix() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v["bias"] = v["_rng"].integers(-3, 4, size=v["weight"].shape[0]).astype(float)
        v.update(domain=draw(st.sampled_from(["padded", "input"])),
                 order=draw(st.sampled_from(["F", "C"])), dtype=None, max_bytes=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"weight": array_mutations(v["weight"], finite=False),
                "bias": optional(array_mutations(v["bias"], finite=False)),
                "input_size": tuple_mutations(v["input_size"], 1, True), **layer_mutations(v),
                "domain": choice_mutations(v["domain"], ("padded", "input")),
                "order": choice_mutations(v["order"], ("F", "C")),
                "dtype": dtype_param_mutations(), "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        dense = dense_of(v, v["domain"], v["order"])
        b = np.zeros(dense.shape[0]) if v["bias"] is None else np.repeat(
            np.asarray(v["bias"]), math.prod(out_size(v)))
        full = np.hstack([dense, b.reshape(-1, 1).astype(np.complex128)])
        dtypes = [np.asarray(v["weight"]).dtype] + ([] if v["bias"] is None
                                                    else [np.asarray(v["bias"]).dtype])
        dt = expected_dtype(*dtypes) if v["dtype"] is None else np.dtype(v["dtype"])
        check_sparse(result, full, dt)

    def problem(v: dict[str, Any]) -> str | None:
        found = layer_problem(v)
        if found is None and v["dtype"] is not None:
            dense = dense_of(v, v["domain"], v["order"])
            b = np.zeros(1) if v["bias"] is None else np.asarray(v["bias"])
            dt = np.dtype(v["dtype"])
            if not (representable(dense, dt) and representable(b, dt)):
                return "dtype"
        return found

    return Spec("affine_matrix", convop.affine_matrix, base, mutations, check, problem)


def spec_layer_operator() -> Spec:
    def call(**kwargs: Any) -> Any:
        op = convop.LayerOperator(**kwargs)
        rng = np.random.default_rng(0)
        x = rng.standard_normal(op.shape[1])
        y = rng.standard_normal(op.shape[0])
        return op, op.matvec(x), op.rmatvec(y), x, y

    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v.update(order=draw(st.sampled_from(["F", "C"])), dtype=None, max_bytes=None,
                 channels=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        c_out = np.shape(v["weight"])[0]
        return {"weight": array_mutations(v["weight"], finite=False),
                "input_size": tuple_mutations(v["input_size"], 1, True), **layer_mutations(v),
                "order": choice_mutations(v["order"], ("F", "C")),
                "dtype": [Same(None, None, "default"), Same(np.complex128, np.complex128, "c128"),
                          Same("float32", "float32", "'float32'"), Bad(np.int64, "int64"),
                          Bad(np.float16, "float16"), Bad("x", "nonsense")],
                "max_bytes": budget_mutations(),
                "channels": [Same(range(c_out), None, "every channel as a range"),
                             Same(slice(None), None, "every channel as a slice"),
                             Bad(range(c_out + 1), "past the last channel"),
                             Bad(range(0), "empty"), Bad([0, 1], "a list")]}

    def problem(v: dict[str, Any]) -> str | None:
        found = layer_problem(v)
        if found is None and v["dtype"] is not None and np.iscomplexobj(v["weight"]) and (
                np.dtype(v["dtype"]).kind != "c"):
            return "dtype"
        return found

    def check(v: dict[str, Any], result: Any) -> None:
        op, ax, aty, x, y = result
        w = np.asarray(v["weight"])
        dt = np.dtype(v["dtype"]) if v["dtype"] is not None else (
            np.dtype(np.float32) if w.dtype in (np.float16, np.float32) else
            np.dtype(np.complex128) if w.dtype == np.complex128 else
            np.dtype(np.complex64) if w.dtype == np.complex64 else np.dtype(np.float64))
        assert op.dtype == dt, (op.dtype, dt)
        work = np.result_type(dt, np.float64)
        order = v["order"]
        c_in, c_out = np.shape(w)[1] * v["groups"], np.shape(w)[0]
        x_arr = unvec_loop(x, (c_in, *v["input_size"]), order)[np.newaxis]
        y_arr = unvec_loop(y, (c_out, *out_size(v)), order)[np.newaxis]
        fwd, fwd_scale = forward_oracle(v, x_arr)
        adj, adj_scale = adjoint_oracle(v, y_arr)
        got_fwd = unvec_loop(ax, (c_out, *out_size(v)), order)[np.newaxis]
        got_adj = unvec_loop(aty, (c_in, *v["input_size"]), order)[np.newaxis]
        shape_out = (1, c_out, *out_size(v))
        shape_in = (1, c_in, *v["input_size"])
        assert_matches(got_fwd, fwd.reshape(shape_out), work, fwd_scale.reshape(shape_out))
        assert_matches(got_adj, adj.reshape(shape_in), work, adj_scale.reshape(shape_in))

    return Spec("LayerOperator", call, base, mutations, check, problem,
                signature=convop.LayerOperator)


# im2col / col2im ---------------------------------------------------------------------------------


def loop_im2col(x: np.ndarray, v: dict[str, Any]) -> np.ndarray:
    kernel = tuple(v["kernel_size"])
    vz = dict(v, padding_mode="zeros")
    xp = padded_input(x.astype(np.complex128), vz)
    out = out_size(dict(vz, weight=np.zeros((1, 1, *kernel))))
    n, c = x.shape[:2]
    cols = np.zeros((c * math.prod(kernel), math.prod(out) * n), dtype=np.complex128)
    for ch, *rest in itertools.product(range(c), *(range(k) for k in kernel),
                                       *(range(o) for o in out)):
        u, o = rest[:len(kernel)], rest[len(kernel):]
        row = ch * math.prod(kernel) + int(np.ravel_multi_index(u, kernel))
        pos = tuple(oo * s + uu * d for oo, uu, s, d in zip(o, u, v["stride"], v["dilation"]))
        for b in range(n):
            cols[row, int(np.ravel_multi_index(o, out)) * n + b] = xp[(b, ch, *pos)]
    return cols


def loop_col2im(cols: np.ndarray, shape: tuple[int, ...], v: dict[str, Any]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Add each column back onto its receptive field, then crop the padding (and |.| scale)."""
    n, c, *size = shape
    kernel = tuple(v["kernel_size"])
    out = out_size(dict(v, input_size=tuple(size), weight=np.zeros((1, 1, *kernel))))
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(size, v["padding"]))
    acc = np.zeros((n, c, *padded), dtype=exact_dtype(cols))
    scale = np.zeros((n, c, *padded))
    for ch, *rest in itertools.product(range(c), *(range(k) for k in kernel),
                                       *(range(o) for o in out)):
        u, o = rest[:len(kernel)], rest[len(kernel):]
        row = ch * math.prod(kernel) + int(np.ravel_multi_index(u, kernel))
        pos = tuple(oo * s + uu * d for oo, uu, s, d in zip(o, u, v["stride"], v["dilation"]))
        for b in range(n):
            value = cols[row, int(np.ravel_multi_index(o, out)) * n + b]
            acc[(b, ch, *pos)] += value
            scale[(b, ch, *pos)] += abs(value)
    crop = (slice(None), slice(None)) + tuple(slice(lo, lo + s) for (lo, _), s in
                                              zip(v["padding"], size))
    return acc[crop], scale[crop]


def spec_im2col() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw, modes=False)
        c = v["weight"].shape[1]
        v["x"] = v["_rng"].integers(-3, 4, size=(v["_batch"], c, *v["input_size"])).astype(float)
        v.update(kernel_size=tuple(v["weight"].shape[2:]), max_bytes=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        muts = layer_mutations(v, modes=False)
        del muts["groups"]
        return {"x": array_mutations(v["x"], finite=False),
                "kernel_size": tuple_mutations(v["kernel_size"], 1, False), **muts,
                "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        return layer_problem(dict(v, groups=1, weight=np.zeros((1, 1, *v["kernel_size"]))))

    def check(v: dict[str, Any], result: Any) -> None:
        x = np.asarray(v["x"])
        expected = loop_im2col(x, v)  # complex128 holding x's values exactly
        dt = x.dtype.newbyteorder("=")
        assert np.asarray(result).dtype == dt, (np.asarray(result).dtype, dt)
        assert np.array_equal(np.asarray(result).astype(np.complex128), expected, equal_nan=True)

    spec = Spec("im2col", convop.im2col, base, mutations, check, problem)
    return spec


def spec_col2im() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw, modes=False)
        c = v["weight"].shape[1]
        v.update(kernel_size=tuple(v["weight"].shape[2:]), max_bytes=None)
        out = out_size(v)
        v["input_shape"] = (v["_batch"], c, *v["input_size"])
        v["cols"] = v["_rng"].integers(-3, 4, size=(c * math.prod(v["kernel_size"]),
                                                    math.prod(out) * v["_batch"])).astype(float)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        muts = layer_mutations(v, modes=False)
        del muts["groups"]
        shape = v["input_shape"]
        return {"cols": array_mutations(v["cols"], finite=False),
                "input_shape": [Same(list(shape), shape, "list"), Same(np.array(shape), shape, "array"),
                                Bad("abc", "a string"), Bad((1.0,) * len(shape), "floats"),
                                Bad(None, "None"), Bad((-1,) + shape[1:], "negative")],
                "kernel_size": tuple_mutations(v["kernel_size"], 1, False), **muts,
                "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        shape = tuple(v["input_shape"])
        w = dict(v, groups=1, input_size=shape[2:], weight=np.zeros((1, 1, *v["kernel_size"])))
        found = layer_problem(w)
        if found is None:
            out = out_size(w)
            if np.shape(v["cols"]) != (shape[1] * math.prod(v["kernel_size"]),
                                       math.prod(out) * shape[0]):
                return "cols shape"
        return found

    def check(v: dict[str, Any], result: Any) -> None:
        cols = np.asarray(v["cols"])
        shape = tuple(v["input_shape"])
        expected, scale = loop_col2im(cols, shape, v)
        assert_matches(result, expected, expected_dtype(cols.dtype), scale)

    spec = Spec("col2im", convop.col2im, base, mutations, check, problem)
    return spec


# Sizes -----------------------------------------------------------------------------------------


def spec_conv_geometry() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v["weight_shape"] = tuple(v["weight"].shape)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        shape = v["weight_shape"]
        return {"weight_shape": [Same(list(shape), shape, "list"),
                                 Same(np.array(shape), shape, "array"),
                                 Bad(shape[:2], "no kernel"), Bad((0,) + shape[1:], "no channels"),
                                 Bad(tuple(float(s) for s in shape), "floats"), Bad("abc", "a string"),
                                 Bad(None, "None")],
                "input_size": tuple_mutations(v["input_size"], 1, False), **layer_mutations(v)}

    def problem(v: dict[str, Any]) -> str | None:
        return layer_problem(dict(v, weight=np.zeros(v["weight_shape"])))

    def check(v: dict[str, Any], result: Any) -> None:
        w = dict(v, weight=np.zeros(v["weight_shape"]))
        out = out_size(w)
        assert result.output_size == out
        c_out, c_in_g, *kernel = v["weight_shape"]
        assert result.nnz("padded") == c_out * c_in_g * math.prod(kernel) * math.prod(out)
        assert result.matrix_shape("input") == (c_out * math.prod(out),
                                                c_in_g * v["groups"] * math.prod(v["input_size"]))

    spec = Spec("conv_geometry", convop.conv_geometry, base, mutations, check, problem)
    return spec


def spec_output_size() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw, modes=False)
        v["kernel_size"] = tuple(v["weight"].shape[2:])
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        muts = layer_mutations(v, modes=False)
        del muts["groups"]
        return {"input_size": tuple_mutations(v["input_size"], 1, False),
                "kernel_size": tuple_mutations(v["kernel_size"], 1, False), **muts}

    def problem(v: dict[str, Any]) -> str | None:
        return layer_problem(dict(v, groups=1, weight=np.zeros((1, 1, *v["kernel_size"]))))

    def check(v: dict[str, Any], result: Any) -> None:
        assert result == out_size(dict(v, weight=np.zeros((1, 1, *v["kernel_size"]))))

    spec = Spec("output_size", convop.output_size, base, mutations, check, problem)
    return spec


def spec_audit() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        import torch

        channels = draw(st.integers(1, 3))
        torch.manual_seed(draw(st.integers(0, 100)))
        model = torch.nn.Sequential(torch.nn.Conv2d(channels, 2, 3, padding=1)).double()
        size = draw(st.integers(3, 6))
        return dict(model=model, input_shape=(channels, size, size), rtol=1e-10,
                    sigma_min=draw(st.booleans()), rng=0)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        shape = v["input_shape"]
        return {"model": [Bad("resnet", "a string"), Bad(None, "None")],
                "input_shape": [Same(list(shape), shape, "list"), Bad((shape[0], 0, 4), "zero"),
                                Bad("3x8x8", "a string")],
                "rtol": rtol_mutations(), "rng": rng_mutations(),
                "sigma_min": [Same(np.bool_(True), True, "numpy bool")]}

    def check(v: dict[str, Any], result: Any) -> None:
        module = v["model"][0]
        w = module.weight.detach().numpy()
        size = tuple(v["input_shape"][1:])
        A = convop.conv_matrix(w, size, padding=1, domain="input").toarray()
        exact = np.linalg.svd(A, compute_uv=False)[0]
        (row,) = result.layers
        assert abs(row.sigma_max - exact) <= 1e-8 * exact, (row.sigma_max, exact)
        assert row.gram_bound >= exact * (1 - 1e-12)

    return Spec("audit", convop.audit, base, mutations, check, needs=("torch",))


def spec_gram_iteration_bound() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v.update(iterations=draw(st.integers(1, 8)), max_bytes=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"weight": array_mutations(v["weight"], finite=True),
                "input_size": tuple_mutations(v["input_size"], 1, True), **layer_mutations(v),
                "iterations": [Same(np.int32(3), 3, "int32"), Bad(0, "zero"), Bad(31, "31"),
                               Bad(2.0, "a float")],
                "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        values = reference_values(v)
        exact = float(values[0]) if values.size else 0.0
        assert isinstance(result, float) and result >= exact * (1 - 1e-12), (result, exact)

    return Spec("gram_iteration_bound", convop.gram_iteration_bound, base, mutations, check)


def spec_padding_pairs() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        ndim = draw(st.integers(1, 3))
        kernel = tuple(draw(st.integers(1, 4)) for _ in range(ndim))
        padding = draw(st.one_of(
            st.integers(0, 3), st.just("valid"), st.just("same"),
            st.tuples(*[st.tuples(st.integers(0, 3), st.integers(0, 3)) for _ in range(ndim)])))
        return dict(padding=padding, kernel_size=kernel, stride=1, dilation=1)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        ndim = len(v["kernel_size"])
        return {"kernel_size": [Same(list(v["kernel_size"]), v["kernel_size"], "list"),
                                Bad(0, "zero"), Bad("3", "a string"), Bad((3,) * 4, "4 axes")],
                "padding": [Same(np.int64(1), 1, "numpy int"), Bad(-1, "negative"),
                            Bad("full", "unknown string"), Bad((1,) * (ndim + 1), "too many")],
                "stride": [Same(np.array(1), 1, "0-d array"), Bad(0, "zero")],
                "dilation": [Same((1,) * ndim, (1,) * ndim, "tuple"), Bad(-1, "negative")]}

    def check(v: dict[str, Any], result: Any) -> None:
        kernel, p = v["kernel_size"], v["padding"]
        ndim = len(kernel)
        d = np.broadcast_to(np.asarray(v["dilation"]), (ndim,))
        if isinstance(p, str):
            totals = [0] * ndim if p == "valid" else [int(dk * (k - 1)) for k, dk in zip(kernel, d)]
            expected = tuple((t // 2, t - t // 2) for t in totals)
        elif np.ndim(p) == 0:
            expected = ((int(p), int(p)),) * ndim
        else:
            expected = tuple((int(a), int(b)) for a, b in p)
        assert result == expected, (result, expected)

    def problem(v: dict[str, Any]) -> str | None:
        stride = np.broadcast_to(np.asarray(v["stride"]), (len(v["kernel_size"]),))
        if v["padding"] == "same" and np.any(stride != 1):
            return "stride"
        return None

    return Spec("padding_pairs", convop.padding_pairs, base, mutations, check, problem)


def spec_same_padding_pairs() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        ndim = draw(st.integers(1, 3))
        axes = st.tuples(*[st.integers(1, 4)] * ndim)
        return dict(input_size=draw(st.tuples(*[st.integers(1, 12)] * ndim)),
                    kernel_size=draw(axes), stride=draw(axes), dilation=draw(axes),
                    odd=draw(st.sampled_from(["after", "before"])))

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"input_size": [Same(list(v["input_size"]), v["input_size"], "list"),
                               Bad(0, "zero"), Bad((1,) * 4, "4 axes")],
                "kernel_size": [Bad(-1, "negative"), Bad("3", "a string")],
                "stride": [Same(np.array(v["stride"]), v["stride"], "array"), Bad(0, "zero")],
                "dilation": [Bad(0, "zero")],
                "odd": [Bad("middle", "unknown side"), Bad(None, "None")]}

    def check(v: dict[str, Any], result: Any) -> None:
        # The smallest total padding that gives ceil(n / s) outputs, found by search.
        for n, k, s, d, (lo, hi) in zip(v["input_size"], v["kernel_size"], v["stride"],
                                        v["dilation"], result):
            total = next(t for t in range(0, d * k + s + 1)
                         if n + t >= d * (k - 1) + 1
                         and (n + t - d * (k - 1) - 1) // s + 1 >= -(-n // s))
            small, large = sorted((lo, hi))
            assert (lo + hi, large - small) == (total, total % 2), (result, total)
            assert (hi >= lo) if v["odd"] == "after" else (lo >= hi)

    return Spec("same_padding_pairs", convop.same_padding_pairs, base, mutations, check)


def spec_relayout() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        letters = "NCDHW"[:draw(st.integers(1, 5))]
        shape = tuple(draw(st.integers(1, 3)) for _ in letters)
        target = "".join(draw(st.permutations(letters)))
        return dict(array=np.arange(math.prod(shape), dtype=float).reshape(shape),
                    source=letters, target=target)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"array": [Same(v["array"].tolist(), v["array"], "nested list")],
                "source": [Bad(v["source"] + "Z", "one letter too many"), Bad(3, "an int")],
                "target": [Bad("Q" * len(v["target"]), "other letters"), Bad(None, "None")]}

    def check(v: dict[str, Any], result: Any) -> None:
        x, source, target = np.asarray(v["array"]), v["source"], v["target"]
        assert result.shape == tuple(x.shape[source.index(t)] for t in target)
        for index in np.ndindex(*x.shape):
            moved = tuple(index[source.index(t)] for t in target)
            assert result[moved] == x[index]

    return Spec("relayout", convop.relayout, base, mutations, check)


# Spectra ---------------------------------------------------------------------------------------


def reference_values(v: dict[str, Any]) -> np.ndarray:
    A = dense_of(v)
    s = np.linalg.svd(A, compute_uv=False) if A.size else np.zeros(0)
    if s.size:
        s = np.where(s <= max(A.shape) * np.finfo(np.float64).eps * s[0], 0.0, s)
    return s


def spectral_problem(v: dict[str, Any]) -> str | None:
    found = layer_problem(v)
    if found is None and not np.all(np.isfinite(np.asarray(v["weight"]))):
        return "weight"
    if found is None and v.get("dtype") is not None:
        if np.iscomplexobj(v["weight"]) and np.dtype(v["dtype"]).kind != "c":
            return "dtype"
        if v.get("rtol", 1e-10) < 10 * np.finfo(np.dtype(v["dtype"])).eps:
            return "rtol"
    if found is None and v.get("rtol", 1e-10) < 10 * np.finfo(np.float64).eps:
        return "rtol"
    return found


def spectral_base(draw: Any) -> dict[str, Any]:
    v = drawn_layer(draw)
    v.update(rtol=1e-10, rng=0, max_bytes=None, dtype=None)
    return v


def spectral_mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
    return {"weight": array_mutations(v["weight"], finite=True),
            "input_size": tuple_mutations(v["input_size"], 1, True), **layer_mutations(v),
            "rtol": rtol_mutations(), "rng": rng_mutations(), "max_bytes": budget_mutations(),
            "dtype": [Same(None, None, "default"), Same(np.float64, np.float64, "float64"),
                      Bad(np.int32, "int32"), Bad("nonsense", "nonsense")]}


def assert_values(result: np.ndarray, expected: np.ndarray, v: dict[str, Any]) -> None:
    top = float(expected[0]) if expected.size else 0.0
    atol = 1e3 * np.finfo(np.float64).eps * max(top, 1e-300) * max(1, expected.size)
    assert np.asarray(result).shape == expected.shape, (np.shape(result), expected.shape)
    assert np.allclose(result, expected, rtol=max(10 * v.get("rtol", 1e-10), 1e-8), atol=atol), (
        result, expected)


def spec_singular_values() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = spectral_base(draw)
        v["which"] = draw(st.sampled_from(["largest", "smallest"]))
        full = min(dense_of(v).shape)
        v["k"] = draw(st.sampled_from([None, 1, max(1, min(full, 2))]))
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        out = spectral_mutations(v)
        out["which"] = choice_mutations(v["which"], ("largest", "smallest"))
        k = v["k"] if v["k"] is not None else 1
        out["k"] = [m for m in int_mutations(k, 1, False) if m.note != "None"] + [
            Bad(10**6, "more than the values"), Same(None, None, "None: all values")]
        return out

    def problem(v: dict[str, Any]) -> str | None:
        found = spectral_problem(v)
        if found is None and v["k"] is not None and v["k"] > min(dense_of(v).shape):
            return "k"
        return found

    def check(v: dict[str, Any], result: Any) -> None:
        s = reference_values(v)
        if v["k"] is None:
            expected = s
        elif v["which"] == "largest":
            expected = s[:v["k"]]
        else:
            expected = s[len(s) - v["k"]:]
        assert_values(result, expected, v)

    return Spec("singular_values", convop.singular_values, base, mutations, check, problem)


def spec_spectral(name: str) -> Spec:
    def check(v: dict[str, Any], result: Any) -> None:
        s = reference_values(v)
        if name == "spectral_norm":
            assert_values(np.array([result]), s[:1], v)
        elif name == "condition_number":
            cond = math.inf if s[-1] == 0 else s[0] / s[-1]
            assert (result == math.inf) == (cond == math.inf), (result, cond)
            if cond != math.inf:
                assert math.isclose(result, cond, rel_tol=1e-6), (result, cond)
        else:
            assert_values(np.array([result.sigma_max, result.sigma_min]), s[[0, -1]], v)
            assert result.rank_deficient == (s[-1] == 0)

    return Spec(name, getattr(convop, name), spectral_base, spectral_mutations, check,
                spectral_problem)


def spec_circular() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw, modes=False)
        kernel = v["weight"].shape[2:]
        v["padding"] = tuple((d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2)
                             for k, d in zip(kernel, v["dilation"]))
        v["input_size"] = tuple(s * max(1, -(-(d * (k - 1) + 1) // s)) + s * draw(st.integers(0, 2))
                                for s, k, d in zip(v["stride"], kernel, v["dilation"]))
        v.update(padding_mode="circular", chunk_bytes=2**27, max_bytes=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        muts = layer_mutations(v, modes=False)
        muts["padding"] = [Same(None, v["padding"], "None: the default split")] + [
            m for m in muts["padding"] if m.written is not None]
        return {"weight": array_mutations(v["weight"], finite=True),
                "input_size": tuple_mutations(v["input_size"], 1, True), **muts,
                "chunk_bytes": int_mutations(v["chunk_bytes"], 1, False),
                "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        found = spectral_problem(v)
        if found is None:
            for n, s, k, d, (lo, hi) in zip(v["input_size"], v["stride"], v["weight"].shape[2:],
                                            v["dilation"], v["padding"]):
                if n % s or lo + hi != d * (k - 1):
                    return "not circulant"
        return found

    def check(v: dict[str, Any], result: Any) -> None:
        s = reference_values(v)
        assert_values(result, s[:np.size(result)], v)
        c_out = v["weight"].shape[0]
        width = v["weight"].shape[1] * v["groups"] * math.prod(v["stride"])
        assert np.size(result) == math.prod(v["input_size"]) // math.prod(v["stride"]) * min(
            c_out, width)

    return Spec("circular_singular_values", convop.circular_singular_values, base, mutations, check, problem,
                signature=convop.circular_singular_values)


# Transposed ----------------------------------------------------------------------------------------


def transposed_sizes(v: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    kernel = np.shape(v["weight"])[2:]
    out = tuple((n - 1) * s - lo - hi + d * (k - 1) + op + 1 for n, s, (lo, hi), d, k, op in zip(
        v["input_size"], v["stride"], v["padding"], v["dilation"], kernel, v["output_padding"]))
    if any(o < 1 for o in out):
        return None
    conv_out = tuple((o + lo + hi - d * (k - 1) - 1) // s + 1 for o, s, (lo, hi), d, k in zip(
        out, v["stride"], v["padding"], v["dilation"], kernel))
    return out, conv_out


def transposed_dense(v: dict[str, Any], absolute: bool = False) -> sp.csr_array:
    """PyTorch's transposed convolution: the transpose (no conjugate) of the matching conv.

    Stored entries only: products with the taps that land inside the conv's input.
    """
    out, conv_out = transposed_sizes(v)  # type: ignore[misc]
    conv = dict(v, input_size=out, padding_mode="zeros")
    w = np.asarray(v["weight"])
    w = np.abs(w) if absolute else w
    dense, pattern = loop_matrix(w.astype(exact_dtype(w)), layer_of(conv, w.shape), "input", "C")
    keep = np.zeros((w.shape[0], *conv_out), dtype=bool)
    keep[(slice(None),) + tuple(slice(0, n) for n in v["input_size"])] = True
    kept = np.flatnonzero(keep.reshape(-1))
    rows, cols = np.nonzero(pattern[kept])
    A = sp.coo_array((dense[kept][rows, cols], (rows, cols)), shape=(kept.size, dense.shape[1]))
    return A.T.tocsr()


def transposed_problem(v: dict[str, Any]) -> str | None:
    shape = np.shape(v["weight"])
    if shape[0] % v["groups"]:
        return "groups"
    for op, s, d in zip(v["output_padding"], v["stride"], v["dilation"]):
        if op >= max(s, d):
            return "output_padding"
    if transposed_sizes(v) is None:
        return "size"
    return None


def transposed_base(draw: Any) -> dict[str, Any]:
    v = drawn_layer(draw, modes=False)
    v["output_padding"] = tuple(draw(st.integers(0, max(s, d) - 1))
                                for s, d in zip(v["stride"], v["dilation"]))
    v["input_size"] = tuple(draw(st.integers(1, 3)) for _ in v["stride"])
    v["max_bytes"] = None
    if transposed_sizes(v) is None:  # padding too large for this input: drop it
        v["padding"] = tuple((0, 0) for _ in v["stride"])
    return v


def transposed_mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
    muts = layer_mutations(v, strings=False, modes=False)
    return {"weight": array_mutations(v["weight"], finite=False), **muts,
            "output_padding": tuple_mutations(v["output_padding"], 0, False),
            "max_bytes": budget_mutations()}


def spec_conv_transpose() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = transposed_base(draw)
        rng = v["_rng"]
        v["x"] = rng.integers(-3, 4, size=(v["_batch"], v["weight"].shape[0],
                                           *v["input_size"])).astype(float)
        v["bias"] = rng.integers(-3, 4, size=v["weight"].shape[1] * v["groups"]).astype(float)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        out = transposed_mutations(v)
        out["x"] = array_mutations(v["x"], finite=False)
        out["bias"] = optional(array_mutations(v["bias"], finite=False))
        return out

    def problem(v: dict[str, Any]) -> str | None:
        return transposed_problem(dict(v, input_size=np.shape(v["x"])[2:]))

    def check(v: dict[str, Any], result: Any) -> None:
        x = np.asarray(v["x"])
        vv = dict(v, input_size=x.shape[2:])
        T = transposed_dense(vv)
        n = x.shape[0]
        y = (T @ x.reshape(n, -1).T.astype(exact_dtype(x, v["weight"]))).T
        out, _ = transposed_sizes(vv)  # type: ignore[misc]
        dtypes = [x.dtype, np.asarray(v["weight"]).dtype]
        if v["bias"] is not None:
            y = y.reshape(n, len(v["bias"]), -1) + np.asarray(v["bias"])[None, :, None]
            dtypes.append(np.asarray(v["bias"]).dtype)
        expected = y.reshape(n, -1, *out)
        dt = expected_dtype(*dtypes)
        scale = (transposed_dense(vv, absolute=True) @ np.abs(x.reshape(n, -1).T)).T.reshape(
            expected.shape) + (0 if v["bias"] is None else np.abs(np.asarray(
                v["bias"], dtype=complex)).reshape((1, -1) + (1,) * len(out)))
        assert_matches(result, expected, dt, scale)

    spec = Spec("conv_transpose", convop.conv_transpose, base, mutations, check, problem)
    return spec


def spec_conv_transpose_matrix() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = transposed_base(draw)
        v.update(order=draw(st.sampled_from(["F", "C"])), dtype=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        out = transposed_mutations(v)
        out["input_size"] = tuple_mutations(v["input_size"], 1, True)
        out["order"] = choice_mutations(v["order"], ("F", "C"))
        out["dtype"] = dtype_param_mutations()
        return out

    def problem(v: dict[str, Any]) -> str | None:
        found = transposed_problem(v)
        if found is None and v["dtype"] is not None:
            dt = np.dtype(v["dtype"])
            w = np.asarray(v["weight"])
            if not representable(w, dt):
                return "dtype"
        return found

    def check(v: dict[str, Any], result: Any) -> None:
        T = transposed_dense(v).toarray()
        if v["order"] == "F":  # reorder rows and columns from C to F vectorization
            out, _ = transposed_sizes(v)  # type: ignore[misc]
            T = T[np.argsort(f_positions(np.shape(v["weight"])[1] * v["groups"], out))]
            T = T[:, np.argsort(f_positions(np.shape(v["weight"])[0], v["input_size"]))]
        w = np.asarray(v["weight"])
        dt = matrix_dtype_rule(w.dtype, v["dtype"], False)
        check_sparse(result, T, dt)

    return Spec("conv_transpose_matrix", convop.conv_transpose_matrix, base, mutations, check,
                problem)


def f_positions(channels: int, size: tuple[int, ...]) -> np.ndarray:
    """For each C-order position, its F-order index (vec orders of the seed)."""
    idx = np.arange(channels * math.prod(size)).reshape(channels, *size)
    # vec_F index of (c, r) = c * prod + ravel(r, order="F")
    f = np.empty_like(idx)
    for c in range(channels):
        for r in itertools.product(*(range(s) for s in size)):
            f[(c, *r)] = c * math.prod(size) + int(np.ravel_multi_index(r, size, order="F"))
    return f.reshape(-1)


def spec_output_padding_for() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = transposed_base(draw)
        v["kernel_size"] = tuple(v["weight"].shape[2:])
        v["output_size"], _ = transposed_sizes(v)  # type: ignore[misc]
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        muts = layer_mutations(v, strings=False, modes=False)
        del muts["groups"]
        return {"input_size": tuple_mutations(v["input_size"], 1, False),
                "output_size": tuple_mutations(v["output_size"], 1, False),
                "kernel_size": tuple_mutations(v["kernel_size"], 1, False), **muts}

    def problem(v: dict[str, Any]) -> str | None:
        kernel = v["kernel_size"]
        for n, o, k, s, d, (lo, hi) in zip(v["input_size"], v["output_size"], kernel,
                                           v["stride"], v["dilation"], v["padding"]):
            b = (n - 1) * s - lo - hi + d * (k - 1) + 1
            if not 0 <= o - b < max(s, d):
                return "output_size"
        return None

    def check(v: dict[str, Any], result: Any) -> None:
        expected = tuple(o - ((n - 1) * s - lo - hi + d * (k - 1) + 1) for n, o, k, s, d, (lo, hi)
                         in zip(v["input_size"], v["output_size"], v["kernel_size"], v["stride"],
                                v["dilation"], v["padding"]))
        assert result == expected

    spec = Spec("output_padding_for", convop.output_padding_for, base, mutations, check, problem)
    return spec


# Padding ---------------------------------------------------------------------------------------


def spec_pad_matrix() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v.update(channels=draw(st.integers(1, 2)), order=draw(st.sampled_from(["F", "C"])),
                 dtype=np.float64, max_bytes=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        muts = layer_mutations(v, strings=False)
        return {"channels": int_mutations(v["channels"], 1, True),
                "input_size": tuple_mutations(v["input_size"], 1, True),
                "padding": muts["padding"], "padding_mode": muts["padding_mode"],
                "order": choice_mutations(v["order"], ("F", "C")),
                "dtype": [Same(np.float64, np.float64, "float64"), Same("int8", "int8", "int8"),
                          Same(bool, bool, "bool"), Bad(np.float16, "float16"),
                          Bad("nonsense", "nonsense"), Bad(None, "None")],
                "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        for n, (lo, hi) in zip(v["input_size"], v["padding"]):
            mode = v["padding_mode"]
            if (mode == "reflect" and max(lo, hi) >= n) or (mode == "circular" and max(lo, hi) > n):
                return "mode"
        return None

    def check(v: dict[str, Any], result: Any) -> None:
        size = tuple(v["input_size"])
        padded = tuple(s + lo + hi for s, (lo, hi) in zip(size, v["padding"]))
        c = v["channels"]
        P = np.zeros((c * math.prod(padded), c * math.prod(size)))
        for ch, *p in itertools.product(range(c), *(range(s) for s in padded)):
            q = [source_pixel(pp - lo, s, v["padding_mode"]) for pp, (lo, _), s in
                 zip(p, v["padding"], size)]
            if any(qq is None for qq in q):
                continue
            row = ch * math.prod(padded) + int(np.ravel_multi_index(p, padded, order=v["order"]))
            col = ch * math.prod(size) + int(np.ravel_multi_index(q, size, order=v["order"]))
            P[row, col] = 1
        check_sparse(result, P, np.dtype(v["dtype"]))

    spec = Spec("pad_matrix", convop.pad_matrix, base, mutations, check, problem)
    return spec


def spec_source_index() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        size = draw(st.integers(1, 5))
        mode = draw(st.sampled_from(MODES))
        limit = {"reflect": size - 1, "circular": size}.get(mode, 4)
        return dict(size=size, before=draw(st.integers(0, limit)), after=draw(st.integers(0, limit)),
                    mode=mode, max_bytes=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"size": int_mutations(v["size"], 1, False),
                "before": int_mutations(v["before"], 0, True),
                "after": int_mutations(v["after"], 0, True),
                "mode": choice_mutations(v["mode"], MODES), "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        n, lo, hi, mode = v["size"], v["before"], v["after"], v["mode"]
        if (mode == "reflect" and max(lo, hi) >= n) or (mode == "circular" and max(lo, hi) > n):
            return "mode"
        return None

    def check(v: dict[str, Any], result: Any) -> None:
        expected = [source_pixel(p - v["before"], v["size"], v["mode"])
                    for p in range(v["size"] + v["before"] + v["after"])]
        assert np.asarray(result).tolist() == [-1 if e is None else e for e in expected]

    return Spec("source_index", convop.source_index, base, mutations, check, problem)


def spec_bias_vector() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        rng = np.random.default_rng(draw(st.integers(0, 2**31)))
        ndim = draw(st.integers(1, 3))
        return dict(bias=rng.integers(-3, 4, size=draw(st.integers(1, 3))).astype(float),
                    output_size=tuple(draw(st.integers(1, 3)) for _ in range(ndim)),
                    order=draw(st.sampled_from(["F", "C"])), max_bytes=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"bias": array_mutations(v["bias"], finite=False),
                # any rank is valid here: no length mutations, and an int is one axis
                "output_size": [m if not (isinstance(m, Same) and np.ndim(m.written) == 0)
                                else Same(m.written, (int(m.written),), "an int: one axis")
                                for m in tuple_mutations(v["output_size"], 1, True)
                                if "entry" not in m.note],
                "order": choice_mutations(v["order"], ("F", "C")), "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        return "bias" if np.ndim(v["bias"]) != 1 else None

    def check(v: dict[str, Any], result: Any) -> None:
        b = np.asarray(v["bias"])
        expected = np.array([value for value in b for _ in range(math.prod(v["output_size"]))],
                            dtype=b.dtype).reshape(-1)
        assert np.asarray(result).dtype == b.dtype.newbyteorder("=")
        assert np.array_equal(result, expected, equal_nan=True)

    return Spec("bias_vector", convop.bias_vector, base, mutations, check, problem)


# Layout ------------------------------------------------------------------------------------------


def loop_vec(x: np.ndarray, order: str, batch: bool) -> np.ndarray:
    samples = x if batch else x[np.newaxis]
    columns = []
    for sample in samples:
        c, *size = sample.shape
        column = np.empty(sample.size, dtype=sample.dtype)
        for ch, *r in itertools.product(range(c), *(range(s) for s in size)):
            column[ch * math.prod(size) + int(np.ravel_multi_index(r, size, order=order))] = (
                sample[(ch, *r)])
        columns.append(column)
    out = np.stack(columns, axis=1) if columns else np.zeros((x[0].size if batch else 0, 0))
    return out if batch else out[:, 0]


def spec_vec() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        rng = np.random.default_rng(draw(st.integers(0, 2**31)))
        batch = draw(st.booleans())
        ndim = draw(st.integers(1, 3))
        shape = ((draw(st.integers(1, 2)),) if batch else ()) + tuple(
            draw(st.integers(1, 3)) for _ in range(ndim + 1))
        return dict(x=rng.integers(-3, 4, size=shape).astype(float),
                    order=draw(st.sampled_from(["F", "C"])), batch=batch, max_bytes=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        lead = 2 if v["batch"] else 1
        x_muts = [Same(m.written, m.written, m.note) if m.note == "two extra axes" and
                  np.ndim(m.written) <= lead + 3 else m
                  for m in array_mutations(v["x"], finite=False)]
        return {"x": x_muts,
                "order": choice_mutations(v["order"], ("F", "C")),
                "batch": [Same(np.bool_(v["batch"]), v["batch"], "numpy bool"), Bad(1, "an int"),
                          Bad("yes", "a string")], "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        nd = np.ndim(v["x"])
        lead = 2 if v["batch"] else 1
        return "x" if not lead + 1 <= nd <= lead + 3 else None

    def check(v: dict[str, Any], result: Any) -> None:
        x = np.asarray(v["x"])
        expected = loop_vec(x, v["order"], v["batch"])
        assert np.asarray(result).dtype in (x.dtype, x.dtype.newbyteorder("="))
        assert np.array_equal(result, expected, equal_nan=True)

    return Spec("vec", convop.vec, base, mutations, check, problem)


def spec_unvec() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        rng = np.random.default_rng(draw(st.integers(0, 2**31)))
        shape = tuple(draw(st.integers(1, 3)) for _ in range(draw(st.integers(2, 4))))
        batch = draw(st.booleans())
        n = math.prod(shape)
        v = rng.integers(-3, 4, size=(n, 2) if batch else n).astype(float)
        return dict(v=v, shape=shape, order=draw(st.sampled_from(["F", "C"])), max_bytes=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        shape = v["shape"]
        v_muts = [Same(m.written, m.written, m.note) if m.note == "1-D" and
                  math.prod(shape) == 1 else m for m in array_mutations(v["v"], finite=False)]
        return {"v": v_muts,
                "shape": [Same(list(shape), shape, "list"), Same(np.array(shape), shape, "array"),
                          Bad("ab", "a string"), Bad((1.5,) * len(shape), "floats"),
                          Bad(None, "None"), Bad((-1,) + shape[1:], "negative")],
                "order": choice_mutations(v["order"], ("F", "C")), "max_bytes": budget_mutations()}

    def problem(v: dict[str, Any]) -> str | None:
        arr = np.asarray(v["v"])
        shape = tuple(v["shape"])
        if len(shape) < 2 or len(shape) > 4 or arr.ndim not in (1, 2) or (
                arr.shape[0] != math.prod(shape)):
            return "v"
        return None

    def check(v: dict[str, Any], result: Any) -> None:
        arr = np.asarray(v["v"])
        shape = tuple(v["shape"])
        batch = arr.ndim == 2
        assert np.array_equal(loop_vec(np.asarray(result), v["order"], batch), arr, equal_nan=True)
        assert np.asarray(result).shape == ((arr.shape[1],) if batch else ()) + shape

    return Spec("unvec", convop.unvec, base, mutations, check, problem)


def spec_conv_bias_grad() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        rng = np.random.default_rng(draw(st.integers(0, 2**31)))
        batch = draw(st.booleans())
        shape = ((2,) if batch else ()) + tuple(draw(st.integers(1, 3)) for _ in range(3))
        return dict(grad_output=rng.integers(-3, 4, size=shape).astype(float), batch=batch)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"grad_output": array_mutations(v["grad_output"], finite=False),
                "batch": [Same(np.bool_(v["batch"]), v["batch"], "numpy bool"),
                          Bad(1, "an int"), Bad("no", "a string")]}

    def problem(v: dict[str, Any]) -> str | None:
        lead = 1 if v["batch"] else 0
        return None if lead + 2 <= np.ndim(v["grad_output"]) <= lead + 4 else "grad_output"

    def check(v: dict[str, Any], result: Any) -> None:
        dy = np.asarray(v["grad_output"])
        channel = 1 if v["batch"] else 0
        expected = np.array([np.sum(np.take(dy, c, axis=channel).astype(np.complex128))
                             for c in range(dy.shape[channel])])
        dt = expected_dtype(dy.dtype)
        assert_matches(result, expected, dt,
                       np.array([np.sum(np.abs(np.take(dy, c, axis=channel)))
                                 for c in range(dy.shape[channel])]))

    return Spec("conv_bias_grad", convop.conv_bias_grad, base, mutations, check, problem)


# Validation --------------------------------------------------------------------------------------


def spec_dot_test() -> Spec:
    w = np.arange(1.0, 1 + 2 * 3 * 3 * 3).reshape(2, 3, 3, 3) % 5 - 2

    def base(draw: Any) -> dict[str, Any]:
        return dict(forward=lambda x: convop.conv(x, w, padding=1),
                    adjoint=lambda y: convop.conv_input_grad(y, w, (4, 4), padding=1),
                    input_shape=(1, 3, 4, 4), output_shape=(1, 2, 4, 4),
                    dtype=draw(st.sampled_from([np.float64, np.complex128])), rng=0,
                    trials=draw(st.integers(1, 3)), max_bytes=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"forward": [Bad(3, "an int"), Bad(None, "None")],
                "adjoint": [Bad("f", "a string")],
                "input_shape": [Same(list(v["input_shape"]), v["input_shape"], "list"),
                                Same(np.array(v["input_shape"]), v["input_shape"], "array"),
                                Bad("ab", "a string"), Bad((1.0, 3, 4, 4), "floats"),
                                Bad((-1, 3, 4, 4), "negative"), Bad((1, 3, 5, 4), "wrong shape"),
                                Unaffordable((2**40,), "huge")],
                "output_shape": [Bad(None, "None"), Bad((1, 2, 4), "wrong shape")],
                "dtype": [Same(np.float32, np.float32, "float32"), Bad(np.int64, "int64"),
                          Bad("x", "nonsense")],
                "rng": rng_mutations(),
                "trials": int_mutations(v["trials"], 1, False) + [Bad(2**31, "2**31")],
                "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        assert result.passed and len(result.errors) == v["trials"]

    return Spec("dot_test", convop.dot_test, base, mutations, check)


def spec_check_conv() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        return dict(impl=convop.conv, kind="forward",
                    configs=[convop.LayerConfig("fuzz", (2, 2, 3, 3), (5, 5), padding=1)],
                    dtype=draw(st.sampled_from([np.float64, np.float32])), rng=0,
                    max_bytes=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        cfg = v["configs"][0]
        return {"impl": [Bad(None, "None"), Bad("conv", "a string")],
                "kind": choice_mutations("forward", ("forward",)),
                "configs": [Same("quick", "quick", "'quick'"), Same(tuple(v["configs"]),
                                                                    v["configs"], "tuple"),
                            Bad([], "empty"), Bad(None, "None"), Bad([1, 2], "ints"),
                            Bad("all", "unknown name"), Bad([cfg._replace(weight_shape=(2, 2))],
                                                             "a bad config"),
                            Bad([cfg._replace(batch=-1)], "a negative batch")],
                "dtype": [Bad(np.int32, "int32"), Bad("nonsense", "nonsense")],
                "rng": rng_mutations(), "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        assert result.passed, str(result)

    return Spec("check_conv", convop.check_conv, base, mutations, check)


def spec_standard_configs() -> Spec:
    kinds = ("forward", "input_grad", "weight_grad", "transpose")

    def base(draw: Any) -> dict[str, Any]:
        return dict(kind=draw(st.sampled_from(kinds)), which=draw(st.sampled_from(["standard",
                                                                                  "quick"])))

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"kind": choice_mutations(v["kind"], kinds),
                "which": choice_mutations(v["which"], ("standard", "quick"))}

    def check(v: dict[str, Any], result: Any) -> None:
        assert result and all(isinstance(c, convop.LayerConfig) for c in result)

    return Spec("standard_configs", convop.standard_configs, base, mutations, check)


# Pictures -----------------------------------------------------------------------------------------


def closes_figure(result: Any) -> None:
    import matplotlib.pyplot as plt

    assert hasattr(result, "figure")
    plt.close(result.figure)


def spec_plot_structure() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        W = convop.conv_matrix(np.ones((2, 2, 3, 3)), (5, 5), padding=1)
        return dict(W_or_layer=W, channels=(2, 2), max_pixels=draw(st.integers(10, 100)),
                    title=None, max_bytes=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"W_or_layer": [Bad(np.ones((3, 3)), "a dense array"), Bad(None, "None")],
                "channels": [Same(None, None, "None"), Same([2, 2], (2, 2), "list"),
                             Bad((0, 2), "zero"), Bad("2x2", "a string"), Bad((2,), "one entry")],
                "max_pixels": int_mutations(v["max_pixels"], 1, False),
                "title": [Same("t", "t", "a string"), Bad(3, "an int")],
                "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        closes_figure(result)

    return Spec("plot_structure", convop.plot_structure, base, mutations, check,
                needs=("matplotlib",))


def spec_plot_block() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        W = convop.conv_matrix(np.arange(36.0).reshape(2, 2, 3, 3), (5, 5), padding=1)
        return dict(W_or_layer=W, block=(draw(st.integers(0, 1)), draw(st.integers(0, 1))),
                    channels=(2, 2), window=draw(st.integers(1, 60)), title=None,
                    max_bytes=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"W_or_layer": [Bad(np.ones((3, 3)), "a dense array"), Bad("W", "a string")],
                "block": [Same([0, 1], (0, 1), "list"), Same(np.array([1, 0]), (1, 0), "array"),
                          Bad((2, 0), "out of range"), Bad((-1, 0), "negative"),
                          Bad((0,), "one entry"), Bad((0.5, 0), "a float")],
                "channels": [Bad(None, "None for a plain matrix"), Bad((3, 2), "not dividing"),
                             Bad((0, 2), "zero")],
                "window": [Same((4, 7), (4, 7), "a pair"), Bad(0, "zero"), Bad(2.5, "a float")],
                "title": [Same("t", "t", "a string"), Bad(3, "an int")],
                "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        image = np.asarray(result.get_images()[0].get_array().filled(np.nan))
        W = sp.csr_array(v["W_or_layer"]).toarray()
        out_c, in_c = (int(b) for b in v["block"])
        rows, cols = W.shape[0] // 2, W.shape[1] // 2
        n = np.broadcast_to(np.asarray(v["window"]), (2,))
        part = W[out_c * rows:out_c * rows + min(n[0], rows),
                 in_c * cols:in_c * cols + min(n[1], cols)]
        stored = sp.csr_array(v["W_or_layer"])[out_c * rows:out_c * rows + part.shape[0],
                                               in_c * cols:in_c * cols + part.shape[1]]
        expected = np.full(part.shape, np.nan)
        coo = stored.tocoo()
        expected[coo.row, coo.col] = coo.data
        np.testing.assert_array_equal(image, expected)
        closes_figure(result)

    return Spec("plot_block", convop.plot_block, base, mutations, check, needs=("matplotlib",))


def spec_plot_spectrum_density() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v.update(sigma_max=None, sigma_min=None, bins=draw(st.integers(1, 50)), log=None,
                 title=None, rng=0, max_bytes=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"weight": array_mutations(v["weight"], finite=True),
                "input_size": tuple_mutations(v["input_size"], 1, True), **layer_mutations(v),
                "sigma_max": [Same(2.0, 2.0, "given"), Bad(-1.0, "negative"),
                              Bad(float("inf"), "inf"), Bad("1", "a string")],
                "sigma_min": [Same(0.0, 0.0, "zero"), Bad(float("nan"), "NaN")],
                "bins": [Bad(0, "zero"), Bad(2.5, "a float")],
                "log": [Same(False, False, "False"), Bad("no", "a string")],
                "title": [Bad(1, "an int")], "rng": rng_mutations(),
                "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        dense = np.linalg.svd(dense_of(v), compute_uv=False)
        marks = [line.get_xdata()[0] for line in result.lines if len(line.get_xdata())]
        sigma_max = v["sigma_max"] if v["sigma_max"] is not None else dense[0]
        assert np.isclose(marks[0], sigma_max, rtol=1e-8, atol=1e-12), (marks, dense)
        w = np.asarray(v["weight"]).astype(np.complex128)
        reshaped = np.linalg.svd(w.reshape(w.shape[0], -1), compute_uv=False)[0]
        assert np.isclose(marks[-1], reshaped, rtol=1e-10, atol=1e-300), (marks, reshaped)
        closes_figure(result)

    return Spec("plot_spectrum_density", convop.plot_spectrum_density, base, mutations, check,
                needs=("matplotlib",))


def spec_plot_spectrum() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        return dict(values=np.array([3.0, 1.0, 2.0]), title=None, label=None, log=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        values = [m for m in array_mutations(v["values"], finite=True, complex_ok=False)
                  if m.note != "1-D"] + [Same(np.array([0.5]), np.array([0.5]), "one value")]
        return {"values": values,
                "title": [Same("t", "t", "a string"), Bad(1.5, "a float")],
                "label": [Bad(["a"], "a list")],
                "log": [Same(True, True, "True"), Same(np.bool_(False), False, "numpy bool"),
                        Bad("yes", "a string"), Bad(1, "an int")]}

    def check(v: dict[str, Any], result: Any) -> None:
        closes_figure(result)

    return Spec("plot_spectrum", convop.plot_spectrum, base, mutations, check,
                needs=("matplotlib",))


def spec_plot_frequency_response() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        return dict(weight=np.ones((2, 2, 3, 3)), input_size=(6, 6), stride=1, dilation=1,
                    groups=1, title=None, max_bytes=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"weight": array_mutations(v["weight"], finite=True),
                "input_size": tuple_mutations((6, 6), 1, True),
                "stride": [Same(np.int64(1), 1, "numpy int"), Bad(0, "zero"), Bad(1.0, "a float")],
                "dilation": [Same(np.array(1), 1, "0-d array"), Bad(-1, "negative")],
                "groups": [Same(np.int8(1), 1, "int8"), Bad(3, "not dividing"), Bad("1", "str")],
                "title": [Bad(0, "an int")], "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        closes_figure(result)

    return Spec("plot_frequency_response", convop.plot_frequency_response, base, mutations, check,
                needs=("matplotlib",))


# Running one case ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one fuzz case did: ``ok`` or the reason it is a finding."""

    spec: str
    param: str | None
    mutation: str
    status: str  # "result", "refused", "memory", or a finding: "wrong", "unnamed", "crash", ...
    detail: str = ""

    @property
    def finding(self) -> bool:
        return self.status not in ("result", "refused", "memory")


def _names(message: str, param: str) -> bool:
    """Whether the message names the parameter: `param`, or `param[i]` for an item of it."""
    return re.search(rf"`{re.escape(param)}(\[\d+\])?`", message) is not None



def call_values(base: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in base.items() if not k.startswith("_")}


def run_case(spec: Spec, base: dict[str, Any], param: str | None, mutation: Mutation | None
             ) -> Outcome:
    """Call the function with one argument mutated and judge what it did."""
    values = call_values(base)
    accepted = spec.accepted()
    kwargs = {k: v for k, v in values.items() if k in accepted}
    note = "base"
    if param is not None and mutation is not None:
        kwargs[param] = mutation.written
        note = f"{type(mutation).__name__}: {mutation.note}"
        if isinstance(mutation, Same):
            values[param] = mutation.value
    tracemalloc.start()
    try:
        result = spec.function(**kwargs)
        error: BaseException | None = None
    except (TypeError, ValueError, MemoryError) as err:
        result, error = None, err
    except Exception as err:  # anything else is a finding
        tracemalloc.stop()
        return Outcome(spec.name, param, note, "crash", f"{type(err).__name__}: {err}"[:300])
    finally:
        peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else 0
        tracemalloc.stop()
    if peak > PEAK_LIMIT:
        return Outcome(spec.name, param, note, "allocation", f"peak {peak} bytes")
    expected_bad = isinstance(mutation, (Bad, Unaffordable))
    invalid = None if expected_bad else spec.problem(values)
    if error is not None:
        message = str(error)
        if isinstance(error, MemoryError):
            if "needs an estimated" not in message or not isinstance(error, convop.BudgetError):
                return Outcome(spec.name, param, note, "bare-memory", message[:300])
            if not isinstance(mutation, Unaffordable) and not _unaffordable_values(values):
                return Outcome(spec.name, param, note, "refused-valid", message[:300])
            return Outcome(spec.name, param, note, "memory")
        if expected_bad or invalid is not None:
            names = [param] if expected_bad else [n for n in values if not n.startswith("_")]
            if param is not None and not _names(message, param) and expected_bad:
                return Outcome(spec.name, param, note, "unnamed",
                               f"{type(error).__name__}: {message}"[:300])
            if not any(_names(message, n) for n in names):
                return Outcome(spec.name, param, note, "unnamed",
                               f"{type(error).__name__}: {message}"[:300])
            return Outcome(spec.name, param, note, "refused")
        return Outcome(spec.name, param, note, "rejected-valid",
                       f"{type(error).__name__}: {message}"[:300])
    if expected_bad:
        return Outcome(spec.name, param, note, "accepted-bad", repr(result)[:200])
    if invalid is not None:
        return Outcome(spec.name, param, note, "accepted-invalid", f"{invalid}: {result!r}"[:200])
    try:
        with np.errstate(all="ignore"):  # inf and NaN inputs are part of the fuzz
            spec.check(values, result)
    except AssertionError as err:
        return Outcome(spec.name, param, note, "wrong", str(err)[:300])
    except Exception as err:  # the oracle itself failed: report it, do not hide it
        return Outcome(spec.name, param, note, "oracle-error", f"{type(err).__name__}: {err}"[:300])
    return Outcome(spec.name, param, note, "result")


def _unaffordable_values(values: dict[str, Any]) -> bool:
    return values.get("max_bytes") == 1


@st.composite
def cases(draw: Any, spec: Spec) -> tuple[dict[str, Any], str | None, Mutation | None]:
    base = spec.base(draw)
    options = spec.mutations(base)
    if not options or draw(st.integers(0, 9)) == 0:
        return base, None, None
    param = draw(st.sampled_from(sorted(options)))
    mutation = draw(st.sampled_from(options[param]))
    return base, param, mutation


def _collect(spec: Spec, per_function: int, outcomes: list[Outcome]) -> Callable[[], None]:
    """A Hypothesis test that runs ``per_function`` cases of ``spec`` into ``outcomes``."""
    from hypothesis import HealthCheck, given, settings

    @settings(max_examples=per_function, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(cases(spec))
    def one(case: Any) -> None:
        outcomes.append(run_case(spec, *case))

    return one


def survey(per_function: int) -> int:
    """Print how each function handled ``per_function`` random cases; return the findings."""
    findings = 0
    total = 0
    counts: dict[str, int] = {}
    for spec in specs():
        outcomes: list[Outcome] = []
        _collect(spec, per_function, outcomes)()
        total += len(outcomes)
        shown: set[tuple[Any, ...]] = set()
        for o in outcomes:
            counts[o.status] = counts.get(o.status, 0) + 1
            if o.finding:
                findings += 1
                key = (o.param, o.mutation, o.status)
                if key not in shown:
                    shown.add(key)
                    print(f"FINDING {o.spec}({o.param}) {o.mutation}: {o.status} {o.detail}")
        print(f"{spec.name:28} {len(outcomes):5} calls  " + ", ".join(
            f"{k} {sum(o.status == k for o in outcomes)}" for k in ("result", "refused", "memory")))
    print(f"total {total} calls: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return findings


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("error")
    sys.exit(1 if survey(int(sys.argv[1]) if len(sys.argv) > 1 else 150) else 0)
