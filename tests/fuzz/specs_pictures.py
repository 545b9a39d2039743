"""Fuzz specs: the plotting functions."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st

import convop

from .core import (
    Spec,
    dense_of,
    drawn_layer,
    layer_mutations,
    register,
)
from .mutations import (
    Bad,
    Mutation,
    Same,
    array_mutations,
    budget_mutations,
    int_mutations,
    rng_mutations,
    tuple_mutations,
)


def closes_figure(result: Any) -> None:
    import matplotlib.pyplot as plt

    assert hasattr(result, "figure")
    plt.close(result.figure)


@register
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


@register
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


@register
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


@register
def spec_plot_density() -> Spec:
    def base(draw: Any) -> dict[str, Any]:
        v = drawn_layer(draw)
        layer = {k: v[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode")}
        method = draw(st.sampled_from(["auto", "slq"]))
        d = convop.spectral_density(v["weight"], v["input_size"], method=method, tol=0.2,
                                    rng=0, **layer)
        return dict(density=d, bins=draw(st.integers(1, 40)), log=None, title=None)

    def mutations(v: dict[str, Any]) -> dict[str, list[Mutation]]:
        return {"density": [Bad(np.ones(3), "an array"), Bad(None, "None")],
                "bins": [Bad(0, "zero"), Bad(2.5, "a float")],
                "log": [Same(False, False, "False"), Bad("no", "a string")],
                "title": [Same("t", "t", "a string"), Bad(1, "an int")]}

    def check(v: dict[str, Any], result: Any) -> None:
        marks = [line.get_xdata()[0] for line in result.lines if len(line.get_xdata())]
        assert np.isclose(marks[0], v["density"].sigma_max), (marks, v["density"])
        closes_figure(result)

    return Spec("plot_density", convop.plot_density, base, mutations, check,
                needs=("matplotlib",))


@register
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


@register
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
