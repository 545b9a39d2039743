"""Fuzz specs: vec, unvec and conv_bias_grad."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

import convop

from .core import (
    Spec,
    assert_matches,
    expected_dtype,
    register,
)
from .mutations import (
    Bad,
    Mutation,
    Same,
    array_mutations,
    budget_mutations,
    choice_mutations,
)


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


@register
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


@register
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


@register
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
