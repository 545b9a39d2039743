"""The largest singular value inside a cluster: shift-invert just above the spectrum.

Zero-padded orthogonal layers keep thousands of values within 1e-6 of their
largest; Lanczos on the Gram operator stalls there. Lanczos on its compression
to the pixels that see no padding reaches the circulant embedding's norm
within a coarse ``rtol``; otherwise (and after ``CLUSTER_PRODUCTS`` products
on a top that is not flat) the top is found by Lanczos on
``(mu I - A^H A)^{-1}`` with ``mu`` at the embedding's squared norm.
The reference is a dense SVD; the orthogonal layers come from orthogonium when
it is installed, and otherwise from an orthogonal 1x1 mixing of a Haar-like
2x2 kernel built here.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import layers

import convop
from convop.geometry import make_geometry
from convop.spectral import largest as largest_module
from convop.spectral._target import Target
from convop.spectral.interior import interior_mask
from convop.spectral.top_shift import top_by_shift_invert


def dense_top(weight, size, **layer):
    A = convop.conv_matrix(weight, size, domain="input", **layer).toarray()
    return np.linalg.svd(A, compute_uv=False)[0]


def spy(monkeypatch, name: str) -> list[dict]:
    """Record the keyword arguments of every call of ``convop.spectral.largest.<name>``."""
    calls: list[dict] = []
    original = getattr(largest_module, name)

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(largest_module, name, recording)
    return calls


def aoc_weights(c_in: int, c_out: int) -> np.ndarray:
    """An orthogonium AOC 3x3 layer's weights, zero padding (skips without orthogonium)."""
    pytest.importorskip("orthogonium")
    torch = pytest.importorskip("torch")
    from orthogonium.layers.conv.AOC import AdaptiveOrthoConv2d

    torch.manual_seed(0)
    layer = AdaptiveOrthoConv2d(c_in, c_out, 3, padding="same", padding_mode="zeros")
    return layer.weight.detach().float().double().numpy()


def near_orthogonal(channels: int, rng) -> np.ndarray:
    """A 3x3 layer close to orthogonal with circular padding: a shifted orthogonal 1x1."""
    q, _ = np.linalg.qr(rng.standard_normal((channels, channels)))
    w = np.zeros((channels, channels, 3, 3))
    w[:, :, 1, 1] = q
    w += 1e-4 * rng.standard_normal(w.shape)
    return w


@pytest.mark.parametrize(("shape", "size", "layer"), [
    ((8, 8, 3, 3), (10, 10), dict(padding=1)),
    ((6, 4, 3, 3), (9, 11), dict(padding=1, stride=2)),
    ((4, 8, 3, 3), (10, 10), dict(padding=1, padding_mode="reflect")),  # output side
    ((4, 4, 3, 3), (12, 12), dict(padding=2, dilation=2, groups=2)),
])
def test_shift_invert_finds_the_top_pair(shape, size, layer, rng):
    square = shape[0] == shape[1] and "groups" not in layer
    w = near_orthogonal(shape[0], rng) if square else rng.standard_normal(shape)
    top = dense_top(w, size, **layer)
    with Target(w, size, layer, max_bytes=None) as target:
        m, n = target.shape
        side = "input" if m >= n else "output"
        pairs = top_by_shift_invert(target, side, 1, np.random.default_rng(0))
    assert abs(np.sqrt(pairs.values[0]) - top) <= 1e-13 * top
    # Lanczos on the inverse to 1e-10 of its top: a residual of about 1e-10 mu for G.
    assert pairs.residuals[0] <= 1e-9 * top**2


def test_a_stalled_lanczos_turns_to_shift_invert(rng, monkeypatch):
    w = near_orthogonal(8, rng)
    calls = []
    original = largest_module.top_by_shift_invert

    def recording(*args, **kwargs):
        calls.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(largest_module, "top_by_shift_invert", recording)
    monkeypatch.setattr(largest_module, "CLUSTER_PRODUCTS", 2)
    value = convop.spectral_norm(w, (12, 12), padding=1, rng=0)
    assert calls
    assert abs(value - dense_top(w, (12, 12), padding=1)) <= 1e-13


def test_a_factor_over_the_budget_goes_on_with_lanczos(rng, monkeypatch):
    w = near_orthogonal(8, rng)

    def refuse(*args, **kwargs):
        raise MemoryError("the factor does not fit")

    monkeypatch.setattr(largest_module, "top_by_shift_invert", refuse)
    monkeypatch.setattr(largest_module, "CLUSTER_PRODUCTS", 2)
    value = convop.spectral_norm(w, (12, 12), padding=1, rng=0)
    assert abs(value - dense_top(w, (12, 12), padding=1)) <= 1e-9


def test_a_zero_padded_aoc_layer():
    w = aoc_weights(8, 8)
    top = dense_top(w, (16, 16), padding=1)
    with Target(w, (16, 16), dict(padding=1), max_bytes=None) as target:
        pairs = top_by_shift_invert(target, "input", 1, np.random.default_rng(0))
    assert abs(np.sqrt(pairs.values[0]) - top) <= 1e-13


def test_a_factor_dearer_than_the_lanczos_so_far_is_not_made(rng, monkeypatch):
    from convop.spectral import cholesky

    w = near_orthogonal(8, rng)
    numeric = []
    original = cholesky.BlockCholesky._factor
    monkeypatch.setattr(cholesky.BlockCholesky, "_factor",
                        lambda self, *a: numeric.append(True) or original(self, *a))
    monkeypatch.setattr(largest_module, "CLUSTER_PRODUCTS", 2)
    monkeypatch.setattr(largest_module, "CLUSTER_FLOP_RATIO", 1e-6)
    value = convop.spectral_norm(w, (12, 12), padding=1, rng=0)
    assert not numeric  # refused from the symbolic count, before any numeric work
    assert abs(value - dense_top(w, (12, 12), padding=1)) <= 1e-9


def test_a_shift_invert_pair_short_of_the_tolerance_raises_with_its_bracket(rng, monkeypatch):
    from convop.spectral.lanczos import Eigenpairs

    w = near_orthogonal(8, rng)
    top = dense_top(w, (12, 12), padding=1)

    def rough(target, side, k, rng, **kwargs):
        v = np.random.default_rng(1).standard_normal((8 * 144, 1))
        v /= np.linalg.norm(v)
        gv = np.asarray(target.gram(target.dtype, side)(v[:, 0]))
        value = float(v[:, 0] @ gv)
        return Eigenpairs(np.array([value]), v, np.array([np.linalg.norm(gv - value * v[:, 0])]),
                          3)

    monkeypatch.setattr(largest_module, "top_by_shift_invert", rough)
    monkeypatch.setattr(largest_module, "CLUSTER_PRODUCTS", 2)
    with pytest.raises(convop.NoConvergence, match="shift-invert") as info:
        convop.spectral_norm(w, (12, 12), padding=1, rng=0)
    low, high = info.value.bracket
    assert low <= top <= high


def test_a_rayleigh_quotient_within_rtol_of_the_embedding_norm_is_certified(rng, monkeypatch):
    from convop.spectral.largest import _ceiling, largest

    w = near_orthogonal(8, rng)
    top = dense_top(w, (12, 12), padding=1)

    def refuse(*args, **kwargs):
        raise MemoryError("the factor does not fit")

    monkeypatch.setattr(largest_module, "top_by_shift_invert", refuse)
    monkeypatch.setattr(largest_module, "CLUSTER_PRODUCTS", 2)
    with Target(w, (12, 12), dict(padding=1), max_bytes=None) as target:
        ceiling = np.sqrt(_ceiling(target))
        result = largest(target, 1, 1e-4, np.random.default_rng(0))
    value, bound = result.values[0], result.bounds[0]
    assert top / (1 + 1e-4) <= value <= top * (1 + 1e-14)  # a lower bound within rtol
    assert value + bound >= top and bound <= ceiling - value + 1e-15


def test_shift_invert_stops_once_a_rayleigh_quotient_reaches_the_floor(rng):
    w = near_orthogonal(8, rng)
    top = dense_top(w, (12, 12), padding=1)
    floor = (top / (1 + 1e-7)) ** 2
    with Target(w, (12, 12), dict(padding=1), max_bytes=None) as target:
        full = top_by_shift_invert(target, "input", 1, np.random.default_rng(0))
        early = top_by_shift_invert(target, "input", 1, np.random.default_rng(0), floor=floor)
    assert floor <= early.values[0] <= top**2 * (1 + 1e-14)
    assert early.steps <= full.steps


def test_a_top_at_the_circulant_bound_skips_the_float64_lanczos_phase(rng, monkeypatch):
    from convop.spectral.lanczos import Eigenpairs

    w = near_orthogonal(8, rng)
    top = dense_top(w, (12, 12), padding=1)
    calls, phases = spy(monkeypatch, "top_by_shift_invert"), spy(monkeypatch, "top_eigenpair")
    monkeypatch.setattr(largest_module, "FLOAT32_PHASE_SIZE", 0)  # the mixed phase runs
    monkeypatch.setattr(largest_module, "CLUSTER_GAP", 1.0)  # every top counts as flat
    refine = largest_module.refine_top_eigenpair

    def unresolved(*args, **kwargs):  # the mixed phase's pair, its residual unknown
        pairs = refine(*args, **kwargs)[0]
        return Eigenpairs(pairs.values, pairs.vectors, np.full_like(pairs.residuals, np.inf),
                          pairs.steps), False

    monkeypatch.setattr(largest_module, "refine_top_eigenpair", unresolved)
    value = convop.spectral_norm(w, (12, 12), padding=1, rng=0)
    assert largest_module.CLUSTER_PRODUCTS not in [phase.get("maxiter") for phase in phases]
    assert len(calls) == 1  # weighed against the products Lanczos could still make
    assert abs(value - top) <= 1e-13 * top


def test_a_top_lanczos_resolves_never_pays_for_the_bound(rng, monkeypatch):
    def dear(target):  # the embedding's SVDs: 3.9 s on a 512-channel layer at 7x7
        raise AssertionError("the circulant embedding's norm was computed")

    monkeypatch.setattr(largest_module, "_ceiling", dear)
    w = rng.standard_normal((8, 8, 3, 3))
    value = convop.spectral_norm(w, (12, 12), padding=1, rng=0)
    assert abs(value - dense_top(w, (12, 12), padding=1)) <= 1e-9 * value


def test_a_float32_ritz_value_at_the_counterparts_norm_goes_straight_to_shift_invert(
        rng, monkeypatch):
    w = near_orthogonal(8, rng)
    top = dense_top(w, (12, 12), padding=1)
    calls = spy(monkeypatch, "top_by_shift_invert")
    rounds = spy(monkeypatch, "refine_top_eigenpair")
    monkeypatch.setattr(largest_module, "FLOAT32_PHASE_SIZE", 0)  # a float32 phase here
    monkeypatch.setattr(largest_module, "CLUSTER_GAP", 1e-3)  # this layer's top counts as flat
    value = convop.spectral_norm(w, (12, 12), padding=1, rng=0)
    assert len(calls) == 1 and not rounds  # no mixed-precision rounds, no float64 phase
    assert abs(value - top) <= 1e-13 * top
    # A Kaiming layer sits far below its counterpart's norm: no shift-invert.
    calls.clear()
    k = rng.standard_normal((8, 8, 3, 3)) * np.sqrt(2 / 72)
    value = convop.spectral_norm(k, (12, 12), padding=1, rng=0)
    assert not calls and abs(value - dense_top(k, (12, 12), padding=1)) <= 1e-9 * value


@given(layer=layers(ndims=(1, 2), max_stride=1), side=st.sampled_from(["input", "output"]))
def test_the_interior_mask_holds_exactly_the_pixels_that_see_no_padding(layer, side):
    # All-ones filters store one entry per output/tap pair: a column (input pixel) has a
    # full count when every tap lands on an output; a row (output) when none reads padding.
    w = np.ones(layer.weight_shape)
    A = convop.conv_matrix(w, layer.input_size, domain="input", order="C", **layer.kwargs())
    taps = int(np.prod(layer.kernel_size))
    if side == "input":
        counts, full = np.diff(A.tocsc().indptr), layer.out_channels // layer.groups * taps
    else:
        counts, full = np.diff(A.tocsr().indptr), layer.weight_shape[1] * taps
    geom = make_geometry(layer.weight_shape, layer.input_size, **layer.kwargs())
    mask = interior_mask(geom, side)
    expected = counts == full
    if mask is None:
        assert not expected.any()
    else:
        np.testing.assert_array_equal(mask, expected)


def test_the_interior_mask_is_none_for_strides_and_other_padding_modes():
    shape = (2, 2, 3, 3)
    for layer in (dict(padding=1, stride=2), dict(padding=1, padding_mode="reflect"),
                  dict(padding=1, padding_mode="circular")):
        assert interior_mask(make_geometry(shape, (8, 8), **layer), "input") is None


def test_a_flat_top_is_certified_away_from_the_border_without_a_factor(rng, monkeypatch):
    from convop.spectral.largest import _ceiling, largest

    w = near_orthogonal(8, rng)
    top = dense_top(w, (12, 12), padding=1)
    calls, inner = spy(monkeypatch, "top_by_shift_invert"), spy(monkeypatch, "interior_top")
    monkeypatch.setattr(largest_module, "FLOAT32_PHASE_SIZE", 0)  # a float32 phase here
    monkeypatch.setattr(largest_module, "CLUSTER_GAP", 1e-3)  # this layer's top counts as flat
    with Target(w, (12, 12), dict(padding=1), max_bytes=None) as target:
        ceiling = np.sqrt(_ceiling(target))
        result = largest(target, 1, 1e-4, np.random.default_rng(0))
    value, bound = result.values[0], result.bounds[0]
    assert len(inner) == 1 and not calls
    assert top / (1 + 1e-4) <= value <= top * (1 + 1e-14)  # a lower bound within rtol
    assert value + bound >= top and bound <= ceiling - value + 1e-15
    # Finer than the border's pull: the compression's top stays below the floor, and the
    # factor takes over from its vector.
    inner.clear()
    value = convop.spectral_norm(w, (12, 12), padding=1, rng=0)
    assert len(inner) == 1 and len(calls) == 1
    assert abs(value - top) <= 1e-13 * top


@pytest.mark.parametrize(("c_in", "c_out", "size", "rtol"), [
    (8, 8, 16, 1e-8), (16, 8, 12, 1e-6), (8, 16, 12, 1e-6)])  # (16, 8): the output side
def test_a_zero_padded_aoc_layer_away_from_the_border(c_in, c_out, size, rtol):
    w = aoc_weights(c_in, c_out)
    top = dense_top(w, (size, size), padding=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(largest_module, "FLOAT32_PHASE_SIZE", 0)  # flat: seen by the float32 phase
        calls, inner = spy(patch, "top_by_shift_invert"), spy(patch, "interior_top")
        value = convop.spectral_norm(w, (size, size), padding=1, rtol=rtol, rng=0)
    assert inner and not calls
    assert top / (1 + rtol) <= value <= top * (1 + 1e-14)


def test_a_float32_ritz_value_never_certifies_the_top(rng, monkeypatch):
    # A coarse rtol puts the floor below the float32 phase's value, which its products'
    # rounding may put above every Rayleigh quotient (here 1e-6 above the top, on purpose):
    # the value returned is a float64 one, a true lower bound.
    w = near_orthogonal(8, rng)
    top = dense_top(w, (12, 12), padding=1)
    monkeypatch.setattr(largest_module, "FLOAT32_PHASE_SIZE", 0)
    monkeypatch.setattr(largest_module, "CLUSTER_GAP", 1e-3)
    phase = largest_module._low_precision_phase

    def inflated(*args, **kwargs):
        start, done, noise, value = phase(*args, **kwargs)
        return start, done, noise, top**2 * (1 + 1e-6)

    monkeypatch.setattr(largest_module, "_low_precision_phase", inflated)
    value = convop.spectral_norm(w, (12, 12), padding=1, rtol=1e-2, rng=0)
    assert top / 1.01 <= value <= top * (1 + 1e-14)


def test_a_complex_flat_top_is_certified_away_from_the_border(monkeypatch):
    rng = np.random.default_rng(0)  # a layer whose float32 phase stops at the flat signal
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)) + 1j * rng.standard_normal((8, 8)))
    w = np.zeros((8, 8, 3, 3), complex)
    w[:, :, 1, 1] = q
    w += 1e-4 * (rng.standard_normal(w.shape) + 1j * rng.standard_normal(w.shape))
    top = dense_top(w, (12, 12), padding=1)
    calls, inner = spy(monkeypatch, "top_by_shift_invert"), spy(monkeypatch, "interior_top")
    monkeypatch.setattr(largest_module, "FLOAT32_PHASE_SIZE", 0)
    monkeypatch.setattr(largest_module, "CLUSTER_GAP", 1e-3)
    value = convop.spectral_norm(w, (12, 12), padding=1, rtol=1e-4, rng=0)
    assert len(inner) == 1 and not calls
    assert top / (1 + 1e-4) <= value <= top * (1 + 1e-14)


def test_several_values_of_a_cluster_come_from_shift_invert(rng, monkeypatch):
    w = near_orthogonal(8, rng)
    A = convop.conv_matrix(w, (12, 12), padding=1, domain="input").toarray()
    top = np.linalg.svd(A, compute_uv=False)[:3]
    calls = spy(monkeypatch, "top_by_shift_invert")
    krylov = largest_module.top_eigenpairs

    def stalled(*args, **kwargs):  # the cluster's stall, at the products allowed
        if kwargs.get("maxiter") == largest_module.CLUSTER_PRODUCTS * 3:
            raise convop.NoConvergence("stalled", np.nan, np.inf, kwargs["maxiter"])
        return krylov(*args, **kwargs)

    monkeypatch.setattr(largest_module, "top_eigenpairs", stalled)
    values = convop.singular_values(w, (12, 12), k=3, padding=1, rng=0)
    assert len(calls) == 1
    np.testing.assert_allclose(values, top, rtol=1e-12)
    # A factor refused: Lanczos goes on to convergence.
    calls.clear()

    def refuse(*args, **kwargs):
        raise MemoryError("the factor does not fit")

    monkeypatch.setattr(largest_module, "top_by_shift_invert", refuse)
    np.testing.assert_allclose(convop.singular_values(w, (12, 12), k=3, padding=1, rng=0),
                               top, rtol=1e-9)
    # The caller's own maxiter is theirs: no factor, NoConvergence with the bracket.
    with pytest.raises(convop.NoConvergence) as info:
        convop.singular_values(w, (12, 12), k=3, padding=1, rng=0, maxiter=6)
    low, high = info.value.bracket
    assert low <= top[0] <= high


def test_several_values_of_a_zero_padded_aoc_layer():
    w = aoc_weights(8, 8)
    A = convop.conv_matrix(w, (16, 16), padding=1, domain="input").toarray()
    top = np.linalg.svd(A, compute_uv=False)[:3]
    np.testing.assert_allclose(convop.singular_values(w, (16, 16), k=3, padding=1, rng=0),
                               top, rtol=1e-12)
