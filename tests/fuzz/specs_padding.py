"""Fuzz specs: pad_matrix, source_index and bias_vector."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from hypothesis import strategies as st
from oracles import source_pixel

import convop

from .core import (
    Spec,
    check_sparse,
    drawn_layer,
    layer_mutations,
    register,
)
from .mutations import (
    MODES,
    Bad,
    Mutation,
    Same,
    array_mutations,
    budget_mutations,
    choice_mutations,
    int_mutations,
    tuple_mutations,
)


@register
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


@register
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


@register
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
