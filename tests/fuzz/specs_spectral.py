"""Fuzz specs: singular values, the spectral norm, condition number, report, circular spectrum."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import strategies as st

import convop

from .core import (
    Spec,
    dense_of,
    drawn_layer,
    layer_mutations,
    layer_problem,
    reference_values,
    register,
)
from .mutations import (
    Bad,
    Mutation,
    Same,
    array_mutations,
    budget_mutations,
    choice_mutations,
    int_mutations,
    rng_mutations,
    rtol_mutations,
    tuple_mutations,
)


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


@register
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


@register
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


for _name in ("spectral_norm", "condition_number", "spectrum_report"):
    register(lambda name=_name: spec_spectral(name))


@register
def spec_operator_norm() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = spectral_base(draw)
        v["ord"] = draw(st.sampled_from([1, 2, np.inf]))
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        out = spectral_mutations(v)
        value = v["ord"]
        spellings = [Same(float(value), value, "a float"), Same(np.float64(value), value,
                                                               "a numpy float")]
        if value != np.inf:
            spellings.append(Same(np.int64(value), value, "a numpy int"))
        out["ord"] = spellings + [Bad(3, "3"), Bad(0, "0"), Bad(-np.inf, "-inf"),
                                  Bad("fro", "'fro'"), Bad(None, "None"), Bad(True, "a bool"),
                                  Bad(np.nan, "NaN")]
        return out

    def check(v: dict[str, Any], result: Any) -> None:
        assert isinstance(result, float), type(result)
        if v["ord"] == 2:
            assert_values(np.array([result]), reference_values(v)[:1], v)
            return
        A = np.abs(dense_of(v))
        sums = A.sum(axis=0 if v["ord"] == 1 else 1)
        expected = float(sums.max(initial=0.0))
        assert np.isclose(result, expected, rtol=1e-12, atol=0), (result, expected)

    return Spec("operator_norm", convop.operator_norm, base, mutations, check,
                spectral_problem)


@register
def spec_spectral_density() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v.update(method=draw(st.sampled_from(["auto", "slq"])), tol=0.1, bins=draw(
            st.integers(1, 30)), probes=4, steps=None, sigma_max=None, sigma_min=None,
            rtol=1e-8, rng=0, max_bytes=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"weight": array_mutations(v["weight"], finite=True),
                "input_size": tuple_mutations(v["input_size"], 1, True), **layer_mutations(v),
                "method": choice_mutations(v["method"], ("auto", "exact", "slq")),
                "tol": [Same(0.2, 0.2, "wider"), Bad(0.0, "zero"), Bad(0.5, "a half"),
                        Bad(float("nan"), "NaN"), Bad("0.1", "a string")],
                "bins": int_mutations(v["bins"], 1, False),
                "probes": [Same(3, 3, "three"), Same(None, None, "chosen for tol"),
                           Bad(0, "zero"), Bad(2.5, "a float")],
                "steps": [Same(4, 4, "four"), Bad(0, "zero"), Bad(-1, "negative")],
                "sigma_max": [Bad(-1.0, "negative"), Bad(float("inf"), "inf")],
                "sigma_min": [Bad(float("nan"), "NaN")],
                "rtol": rtol_mutations(), "rng": rng_mutations(),
                "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        s = np.sort(reference_values(v))
        assert result.count == s.size
        if result.values is not None:
            assert_values(result.values[::-1], s[::-1], v)
            return
        at = np.searchsorted(s, s, side="right") / s.size
        lower, upper = result.cdf_bounds(s)
        top = max(float(s[-1]), 1e-300)
        # Values within rounding of a jump may sit on either side of it.
        near = result.cdf_bounds(s + 1e-9 * top)[1]
        assert np.all((lower <= at + 1e-12) & (at <= np.maximum(upper, near) + 1e-12)), (
            lower, at, upper)

    return Spec("spectral_density", convop.spectral_density, base, mutations, check,
                spectral_problem)


@register
def spec_certify_spectrum() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        v.update(sigma_max_at_most=draw(st.sampled_from([0.5, 2.0, 10.0])),
                 sigma_min_at_least=draw(st.sampled_from([None, 1e-3, 0.5])), rtol=1e-8,
                 rng=0, max_bytes=None)
        return v

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"weight": array_mutations(v["weight"], finite=True),
                "input_size": tuple_mutations(v["input_size"], 1, True), **layer_mutations(v),
                "sigma_max_at_most": [Same(3, 3.0, "an int"), Bad(-1.0, "negative"),
                                      Bad(float("nan"), "NaN"), Bad("1", "a string")],
                "sigma_min_at_least": [Same(None, None, "None"), Bad(float("inf"), "inf")],
                "rtol": rtol_mutations(), "rng": rng_mutations(),
                "max_bytes": budget_mutations()}

    def check(v: dict[str, Any], result: Any) -> None:
        s = reference_values(v)
        top, bottom = (float(s[0]), float(s[-1])) if s.size else (0.0, 0.0)
        if result.sigma_max_holds is not None:
            assert result.sigma_max_holds == (top <= v["sigma_max_at_most"]), (result, top)
        if result.sigma_min_holds is not None:
            assert result.sigma_min_holds == (bottom >= v["sigma_min_at_least"]), (
                result, bottom)
        low, high = result.sigma_max_bracket
        assert low <= top * (1 + 1e-9) + 1e-12 and top <= high * (1 + 1e-9) + 1e-12, (
            result, top)

    return Spec("certify_spectrum", convop.certify_spectrum, base, mutations, check,
                spectral_problem)
