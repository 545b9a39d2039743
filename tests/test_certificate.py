"""certify_spectrum: claims on sigma_max and sigma_min proven, refuted or undecided, never wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest

import convop

LAYERS = [
    ((4, 4, 3, 3), (8, 8), dict(padding=1)),
    ((6, 3, 3, 3), (9, 8), dict(stride=2, padding=1)),
    ((4, 2, 3, 3), (7, 7), dict(groups=2, padding=1)),
    ((3, 5, 3, 3), (7, 6), dict(padding=1, padding_mode="reflect")),
    ((3, 3, 3, 3), (7, 7), dict(padding=1, padding_mode="circular")),
    ((2, 4, 3, 3), (6, 6), dict(padding=2, dilation=2)),  # wide: the output side's Gram
    ((3, 2, 3), (11,), dict(padding=1, padding_mode="replicate")),
    ((2, 2, 2, 2, 2), (4, 3, 4), dict(padding=1)),
]


def _exact(weight, size, layer):
    s = np.linalg.svd(convop.conv_matrix(weight, size, domain="input", **layer).toarray(),
                      compute_uv=False)
    return s[0], s[-1]


def _consistent(c, top, bottom):
    """Every verdict agrees with the dense SVD, and the brackets hold the truth."""
    if c.sigma_max_holds is not None:
        assert c.sigma_max_holds == (top <= c.sigma_max_at_most), c
    if c.sigma_min_holds is not None:
        assert c.sigma_min_holds == (bottom >= c.sigma_min_at_least), c
    low, high = c.sigma_max_bracket
    assert low <= top * (1 + 1e-12) and top <= high * (1 + 1e-12), c
    low, high = c.sigma_min_bracket
    assert low <= bottom * (1 + 1e-9) + 1e-12 and bottom <= high * (1 + 1e-9), c


@pytest.mark.parametrize(("shape", "size", "layer"), LAYERS)
def test_verdicts_agree_with_dense_svds(shape, size, layer):
    weight = np.random.default_rng(len(shape) + sum(size)).standard_normal(shape)
    top, bottom = _exact(weight, size, layer)
    for factor in (0.999, 1.001):
        c = convop.certify_spectrum(weight, size, sigma_max_at_most=top * factor,
                                    sigma_min_at_least=bottom * factor, rng=0, **layer)
        _consistent(c, top, bottom)
        # sigma_min is decided through the Gram matrix's inertia, 0.1% from the truth.
        assert c.sigma_min_holds is (factor < 1)
        if factor < 1:
            assert c.sigma_max_holds is False  # a Ritz value above the claim
    # Far from the truth, sigma_max is proven too (the embedding's bound carries the
    # padding matrix's norm, 2 for reflect padding 1 in 2-D).
    c = convop.certify_spectrum(weight, size, sigma_max_at_most=top * 2.5, rng=0, **layer)
    assert c.sigma_max_holds is True and c.holds and c.sigma_min_holds is None


def test_a_claim_within_rounding_is_undecided_and_its_bracket_holds():
    weight = np.random.default_rng(3).standard_normal((3, 3, 3, 3))
    top, bottom = _exact(weight, (7, 7), dict(padding=1))
    c = convop.certify_spectrum(weight, (7, 7), sigma_min_at_least=bottom, padding=1)
    assert c.sigma_min_holds is None and not c.holds
    low, high = c.sigma_min_bracket
    assert low <= bottom <= high and high - low < 1e-6 * top
    assert "disagree" in c.evidence[-1]


def test_orthogonal_layers_are_certified_within_one_plus_or_minus_eps():
    q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((6, 6)))
    pointwise = q[:, :, None, None]
    c = convop.certify_spectrum(pointwise, (9, 9), sigma_max_at_most=1 + 1e-9,
                                sigma_min_at_least=1 - 1e-9)
    assert c.holds, c
    # Scaled by 2: both claims refuted, each with its evidence.
    c = convop.certify_spectrum(2 * pointwise, (9, 9), sigma_max_at_most=1.5,
                                sigma_min_at_least=0.5)
    assert c.sigma_max_holds is False and c.sigma_min_holds is True
    assert "Ritz" in c.evidence[0] and "completes" in c.evidence[1]


def test_a_rank_deficient_layer_refutes_any_positive_sigma_min():
    weight = np.ones((4, 4, 3, 3))
    c = convop.certify_spectrum(weight, (6, 6), sigma_min_at_least=1e-3, padding=1)
    assert c.sigma_min_holds is False and "breaks down" in c.evidence[-1]


def test_aoc_layers_from_orthogonium():
    pytest.importorskip("orthogonium")
    torch = pytest.importorskip("torch")
    from orthogonium.layers.conv.AOC import AdaptiveOrthoConv2d

    torch.manual_seed(0)
    for mode in ("circular", "zeros"):
        layer = AdaptiveOrthoConv2d(16, 32, 3, padding="same", padding_mode=mode)
        weight = layer.weight.detach().float().double().numpy()  # float32 parameters
        c = convop.certify_spectrum(weight, (12, 12), sigma_max_at_most=1 + 1e-5,
                                    sigma_min_at_least=1 - 1e-5, padding=1,
                                    padding_mode=mode, rng=0)
        assert c.sigma_max_holds is True, c  # the circulant embedding's norm: 1 + 1e-7
        top, bottom = _exact(weight, (12, 12), dict(padding=1, padding_mode=mode))
        _consistent(c, top, bottom)
        # Circular: orthogonal; zero padding loses the border's energy.
        assert c.sigma_min_holds is (mode == "circular"), c


def test_lipschitz_layers_from_deel_torchlip():
    pytest.importorskip("deel.torchlip")
    torch = pytest.importorskip("torch")
    from deel.torchlip import SpectralConv2d

    torch.manual_seed(0)
    layer = SpectralConv2d(8, 8, 3, padding=1).double()
    layer.eval()
    weight = layer.weight.detach().numpy()
    top, bottom = _exact(weight, (10, 10), dict(padding=1))
    c = convop.certify_spectrum(weight, (10, 10), sigma_max_at_most=1.0,
                                sigma_min_at_least=bottom / 2, padding=1, rng=0)
    _consistent(c, top, bottom)
    assert c.sigma_min_holds is True


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({}, ValueError, "needs a claim"),
    (dict(sigma_max_at_most=-1.0), ValueError, "`sigma_max_at_most`"),
    (dict(sigma_min_at_least=math.inf), ValueError, "`sigma_min_at_least`"),
    (dict(sigma_max_at_most=1.0, rtol=0.0), ValueError, "`rtol`"),
    (dict(sigma_max_at_most="1"), TypeError, "`sigma_max_at_most`"),
])
def test_bad_claims_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        convop.certify_spectrum(np.ones((2, 2, 3, 3)), (5, 5), **kwargs)
