"""Fuzz specs: dot_test, check_conv and standard_configs."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

import convop

from .core import (
    Spec,
    register,
)
from .mutations import (
    Bad,
    Mutation,
    Same,
    Unaffordable,
    budget_mutations,
    choice_mutations,
    int_mutations,
    rng_mutations,
)


@register
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


@register
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


@register
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
