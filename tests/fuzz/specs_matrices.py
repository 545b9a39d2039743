"""Fuzz specs: conv_matrix, weight_matrix, affine_matrix, LayerOperator, im2col and col2im."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

import convop

from .core import (
    Spec,
    adjoint_oracle,
    assert_matches,
    check_sparse,
    dense_of,
    drawn_layer,
    dtype_param_mutations,
    exact_dtype,
    expected_dtype,
    forward_oracle,
    layer_mutations,
    layer_problem,
    matrix_dtype_rule,
    out_size,
    padded_input,
    register,
    representable,
    unvec_loop,
)
from .mutations import (
    Bad,
    Mutation,
    Same,
    array_mutations,
    budget_mutations,
    choice_mutations,
    int_mutations,
    optional,
    tuple_mutations,
)


@register
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


@register
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


@register
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


@register
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
                          Same("float32", "float32", "'float32'"),
                          Same(np.longdouble, np.longdouble, "longdouble"), Bad(np.int64, "int64"),
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
            np.dtype(np.complex64) if w.dtype == np.complex64 else
            w.dtype if w.dtype in (np.longdouble, np.clongdouble) else np.dtype(np.float64))
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


@register
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


@register
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
