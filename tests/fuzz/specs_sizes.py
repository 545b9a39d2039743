"""Fuzz specs: geometry, output sizes, padding pairs, relayout, the audit and the Gram bound."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

import convop

from .core import (
    Spec,
    drawn_layer,
    layer_mutations,
    layer_problem,
    out_size,
    reference_values,
    register,
)
from .mutations import (
    Bad,
    Mutation,
    Same,
    array_mutations,
    budget_mutations,
    rng_mutations,
    rtol_mutations,
    tuple_mutations,
)


@register
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


@register
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


@register
def spec_audit() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        import torch

        channels = draw(st.integers(1, 3))
        torch.manual_seed(draw(st.integers(0, 100)))
        model = torch.nn.Sequential(torch.nn.Conv2d(channels, 2, 3, padding=1)).double()
        size = draw(st.integers(3, 6))
        return dict(model=model, input_shape=(channels, size, size), rtol=1e-10,
                    sigma_min=draw(st.booleans()), rng=0,
                    norms=draw(st.sampled_from([(), (1,), (np.inf,), (1, np.inf)])))

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        shape = v["input_shape"]
        return {"model": [Bad("resnet", "a string"), Bad(None, "None")],
                "input_shape": [Same(list(shape), shape, "list"), Bad((shape[0], 0, 4), "zero"),
                                Bad("3x8x8", "a string")],
                "rtol": rtol_mutations(), "rng": rng_mutations(),
                "sigma_min": [Same(np.bool_(True), True, "numpy bool")],
                "norms": [Same([1.0, np.inf], (1, np.inf), "a list of floats"),
                          Same((2,), (), "2 alone (always computed)"),
                          Same((np.int64(1),), (1,), "a numpy int"),
                          Bad((3,), "3"), Bad("inf", "a string"), Bad(1, "a bare int"),
                          Bad((None,), "None inside")]}

    def check(v: dict[str, Any], result: Any) -> None:
        module = v["model"][0]
        w = module.weight.detach().numpy()
        size = tuple(v["input_shape"][1:])
        A = convop.conv_matrix(w, size, padding=1, domain="input").toarray()
        exact = np.linalg.svd(A, compute_uv=False)[0]
        (row,) = result.layers
        assert abs(row.sigma_max - exact) <= 1e-8 * exact, (row.sigma_max, exact)
        assert row.gram_bound >= exact * (1 - 1e-12)
        norms = tuple(float(p) for p in v["norms"])
        for field, p, axis in (("norm_1", 1.0, 0), ("norm_inf", np.inf, 1)):
            value = getattr(row, field)
            if p not in norms:
                assert value is None, (field, value)
            else:
                expected = np.abs(A).sum(axis=axis).max()
                assert abs(value - expected) <= 1e-12 * expected, (field, value, expected)

    return Spec("audit", convop.audit, base, mutations, check, needs=("torch",))


@register
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


@register
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


@register
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


@register
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
