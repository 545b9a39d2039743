"""Fuzz specs: the transposed convolution, its matrix and output_padding_for."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st
from oracles import loop_matrix

import convop

from .core import (
    Spec,
    assert_matches,
    check_sparse,
    drawn_layer,
    dtype_param_mutations,
    exact_dtype,
    expected_dtype,
    layer_mutations,
    layer_of,
    matrix_dtype_rule,
    register,
    representable,
)
from .mutations import (
    Mutation,
    array_mutations,
    budget_mutations,
    choice_mutations,
    optional,
    tuple_mutations,
)


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


@register
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


@register
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


@register
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
