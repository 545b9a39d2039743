"""Fuzz specs: the forward pass and the input, weight and bias gradients."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

import convop

from .core import (
    Spec,
    adjoint_oracle,
    assert_matches,
    drawn_layer,
    exact_dtype,
    expected_dtype,
    forward_oracle,
    layer_mutations,
    layer_problem,
    out_size,
    padded_input,
    register,
)
from .mutations import (
    Bad,
    Mutation,
    array_mutations,
    budget_mutations,
    optional,
    tuple_mutations,
)


@register
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


@register
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


@register
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
