"""The spectral engine's parts, each against an independent reference.

Gram products and block Gram matrices against the explicit sparse matrix, the
nested-dissection Cholesky against dense solves, the Lanczos methods against
dense eigensolvers, and the public options (vectors, maxiter, callback,
bounds) on layers of every kind.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from strategies import moded_layers, seeds

import convop
from convop._blas import Pool, single_threaded
from convop.spectral.cholesky import BlockCholesky, NotPositiveDefinite
from convop.spectral.gram import block_gram, touched
from convop.spectral.lanczos import NoConvergence, top_eigenpair, top_eigenpairs
from convop.spectral.products import GramProduct
from convop.spectral.smallest import predicted_factor_flops


def layer_case(layer_mode, seed, complex_data=False):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(layer.weight_shape)
    if complex_data:
        weight = weight + 1j * rng.standard_normal(layer.weight_shape)
    weight[rng.random(weight.shape) < 0.2] = 0
    kw = dict(layer.kwargs(), padding_mode=mode)
    geometry = convop.conv_geometry(layer.weight_shape, layer.input_size, **kw)
    A = convop.conv_matrix(weight, layer.input_size, domain="input", order="C", **kw)
    return geometry, weight, A.tocsr(), rng


def gram_order(groups, pixels, channels):
    """The explicit matrix's index of each (group, pixel, channel) unknown."""
    g, p, c = np.unravel_index(np.arange(groups * pixels * channels), (groups, pixels, channels))
    return (g * channels + c) * pixels + p


@given(layer_mode=moded_layers(max_extra=3), seed=seeds(), complex_data=st.booleans(),
       side=st.sampled_from(["input", "output"]))
def test_block_gram_is_the_explicit_gram_matrix(layer_mode, seed, complex_data, side):
    g, weight, A, _ = layer_case(layer_mode, seed, complex_data)
    gram = block_gram(g, weight, side, np.result_type(weight, np.float64))
    expected = (A.conj().T @ A if side == "input" else A @ A.conj().T).toarray()
    index = gram_order(gram.groups, gram.pattern.shape[0], gram.channels)
    np.testing.assert_allclose(gram.to_sparse().toarray(), expected[np.ix_(index, index)],
                               rtol=0, atol=1e-12 * max(1.0, np.abs(expected).max()))


@given(layer_mode=moded_layers(max_extra=3), seed=seeds())
def test_touched_lines_are_the_nonempty_ones(layer_mode, seed):
    g, weight, A, _ = layer_case(layer_mode, seed)
    A.eliminate_zeros()
    cols, rows = touched(g, weight)
    assert np.array_equal(cols.reshape(-1), np.asarray(abs(A).sum(axis=0)).ravel() > 0)
    assert np.array_equal(rows.reshape(-1), np.asarray(abs(A).sum(axis=1)).ravel() > 0)


@given(layer_mode=moded_layers(max_extra=4), seed=seeds(), complex_data=st.booleans(),
       side=st.sampled_from(["input", "output"]), leaf=st.integers(1, 40),
       complex_rhs=st.booleans())
def test_nested_dissection_cholesky_solves(layer_mode, seed, complex_data, side, leaf,
                                           complex_rhs):
    g, weight, _, rng = layer_case(layer_mode, seed, complex_data)
    gram = block_gram(g, weight, side, np.result_type(weight, np.float64))
    G = gram.to_sparse().toarray()
    shift = rng.uniform(0.1, 2.0)
    extra = np.full((gram.groups, gram.pattern.shape[0], gram.channels), shift)
    factor = BlockCholesky(gram, extra, leaf=leaf)
    b = rng.standard_normal((G.shape[0], 3))
    if complex_rhs:
        b = b + 1j * rng.standard_normal(b.shape)
    expected = np.linalg.solve(G + shift * np.eye(G.shape[0]), b)
    np.testing.assert_allclose(factor.solve(b), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(factor.solve(b[:, 0]), expected[:, 0], rtol=1e-10, atol=1e-12)


@given(layer_mode=moded_layers(max_extra=4), seed=seeds())
def test_the_predicted_factor_arithmetic_is_the_factors(layer_mode, seed):
    # From a one-channel layer's pattern: what the layer's own factor counts.
    g, weight, A, _ = layer_case(layer_mode, seed)
    m, n = A.shape
    side = "output" if m < n else "input"
    gram = block_gram(g, weight, side, np.float64)
    # A diagonal above every Gershgorin radius: positive definite whatever the weights.
    radius = (np.diff(gram.pattern.indptr).max(initial=0) * gram.channels
              * abs(gram.table).max(initial=0.0))
    extra = np.full((gram.groups, gram.pattern.shape[0], gram.channels), 1.0 + radius)
    factor = BlockCholesky(gram, extra)
    assert predicted_factor_flops(g, weight) == factor.flops


def test_a_singular_gram_matrix_is_not_factored(rng):
    weight = rng.standard_normal((2, 3, 3, 3))  # 2 outputs: rank <= 2 per pixel of 3
    g = convop.conv_geometry(weight.shape, (6, 6), padding=1)
    gram = block_gram(g, weight, "input", np.float64)
    with pytest.raises(NotPositiveDefinite):
        BlockCholesky(gram, np.zeros((1, 36, 3)))


@given(layer_mode=moded_layers(max_extra=3), seed=seeds(), complex_data=st.booleans(),
       parallel=st.booleans())
def test_gram_products_are_the_layer_operator(layer_mode, seed, complex_data, parallel):
    g, weight, A, rng = layer_case(layer_mode, seed, complex_data)
    dtype = np.result_type(weight, np.float64)
    with Pool(2 if parallel else 1) as pool:
        product = GramProduct(g, weight, dtype, "input", pool=pool)
        x = rng.standard_normal(A.shape[1]).astype(dtype)
        y = rng.standard_normal(A.shape[0]).astype(dtype)
        scale = max(1.0, abs(A).sum(axis=1).max()) ** 2
        np.testing.assert_allclose(product.forward(x), A @ x, atol=1e-12 * scale)
        np.testing.assert_allclose(product.adjoint(y), A.conj().T @ y, atol=1e-12 * scale)
        np.testing.assert_allclose(product(x), A.conj().T @ (A @ x), atol=1e-12 * scale)
        other = GramProduct(g, weight, dtype, "output", pool=pool)
        np.testing.assert_allclose(other(y), A @ (A.conj().T @ y), atol=1e-12 * scale)


# Lanczos ------------------------------------------------------------------------------------


def test_top_eigenpair_of_a_known_spectrum(rng):
    values = np.concatenate([[10.0, 9.999], rng.uniform(0, 9, 500)])
    Q, _ = np.linalg.qr(rng.standard_normal((502, 502)))
    M = (Q * values) @ Q.T
    pair = top_eigenpair(lambda v: M @ v, 502, dtype=np.float64, tol=1e-12, rng=rng)
    assert abs(pair.values[0] - 10.0) <= 1e-11 * 10
    assert pair.residuals[0] <= 1e-12 * 10
    assert abs(abs(pair.vectors[:, 0] @ Q[:, 0]) - 1) < 1e-6


def test_a_floor_ends_lanczos_at_the_first_rayleigh_quotient_above_it(rng):
    values = np.concatenate([[10.0], 10.0 - np.geomspace(1e-4, 1e-1, 40), rng.uniform(0, 9, 400)])
    Q, _ = np.linalg.qr(rng.standard_normal((values.size, values.size)))
    M = (Q * values) @ Q.T
    full = top_eigenpair(lambda v: M @ v, values.size, dtype=np.float64, tol=1e-8,
                         rng=np.random.default_rng(1))
    floor = 10.0 * (1 - 1e-3)
    early = top_eigenpair(lambda v: M @ v, values.size, dtype=np.float64, tol=1e-8,
                          rng=np.random.default_rng(1), floor=floor)
    y = early.vectors[:, 0]
    assert floor <= early.values[0] == pytest.approx(y @ M @ y, rel=1e-14)
    assert early.values[0] <= 10.0 * (1 + 1e-14)  # a Rayleigh quotient: never above the top
    assert early.steps < full.steps


def test_a_stop_test_decides_after_the_floor(rng):
    values = np.concatenate([[4.0, 3.9], rng.uniform(0, 3, 300)])
    Q, _ = np.linalg.qr(rng.standard_normal((302, 302)))
    M = (Q * values) @ Q.T
    tested = []

    def stop(y):  # refuses the first two vectors that reach the floor
        tested.append(float(y @ M @ y))
        return len(tested) > 2

    pair = top_eigenpair(lambda v: M @ v, 302, dtype=np.float64, tol=1e-14, rng=rng,
                         floor=3.0, stop=stop)
    assert len(tested) == 3 and min(tested) >= 3.0 - 1e-9
    assert pair.values[0] >= 3.0
    assert np.linalg.norm(pair.vectors[:, 0]) == pytest.approx(1.0)


def test_partial_returns_the_pair_reached_at_maxiter(rng):
    values = np.concatenate([[1.0], 1.0 - np.geomspace(1e-9, 1e-3, 300)])
    Q, _ = np.linalg.qr(rng.standard_normal((values.size, values.size)))
    M = (Q * values) @ Q.T
    pair = top_eigenpair(lambda v: M @ v, values.size, dtype=np.float64, tol=1e-14, rng=rng,
                         maxiter=10, partial=True)
    y = pair.vectors[:, 0]
    assert pair.steps <= 11 and pair.residuals[0] > 1e-14  # ten, and the true residual
    assert pair.residuals[0] == pytest.approx(np.linalg.norm(M @ y - pair.values[0] * y))


def test_top_eigenpairs_find_repeated_eigenvalues(rng):
    values = np.concatenate([[5.0, 5.0, 5.0, 4.0], rng.uniform(0, 3, 300)])
    Q, _ = np.linalg.qr(rng.standard_normal((304, 304)))
    M = (Q * values) @ Q.T
    pairs = top_eigenpairs(lambda v: M @ v, 304, 4, dtype=np.float64, tol=1e-12, rng=rng)
    np.testing.assert_allclose(pairs.values, [5, 5, 5, 4], rtol=1e-10)


@pytest.mark.parametrize("maxiter", [6, 10, 25])
def test_top_eigenpairs_cut_short_by_maxiter_raise(rng, maxiter):
    # A limit inside the first basis: the unfilled columns once read as converged, and
    # unconverged Ritz values came back as the answer.
    values = np.concatenate([np.linspace(1.0, 0.999, 40), rng.uniform(0, 0.9, 260)])
    Q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    M = (Q * values) @ Q.T
    with pytest.raises(NoConvergence) as caught:
        top_eigenpairs(lambda v: M @ v, 300, 3, dtype=np.float64, tol=1e-12, rng=rng,
                       maxiter=maxiter)
    assert caught.value.steps == maxiter and caught.value.estimate <= 1.0 + 1e-12


def test_maxiter_stops_with_the_estimate_reached(rng):
    weight = rng.standard_normal((8, 8, 3, 3))
    with pytest.raises(NoConvergence, match="maxiter") as caught:
        convop.spectral_norm(weight, (20, 20), padding=1, maxiter=3, rng=0)
    assert isinstance(caught.value, RuntimeError)
    exact = scipy.linalg.svdvals(convop.conv_matrix(weight, (20, 20), padding=1,
                                                    domain="input").toarray())[0]
    assert 0 < np.sqrt(caught.value.estimate) <= exact * (1 + 1e-12)
    assert caught.value.steps <= 4


def test_callback_sees_every_step(rng):
    weight = rng.standard_normal((8, 8, 3, 3))
    seen = []
    norm = convop.spectral_norm(weight, (20, 20), padding=1, rng=0,
                                callback=lambda step, estimate: seen.append((step, estimate)))
    steps = [s for s, _ in seen]
    assert steps == sorted(steps) and len(steps) >= 3
    assert abs(seen[-1][1] - norm) <= 1e-6 * norm
    with pytest.raises(TypeError, match="`callback`"):
        convop.spectral_norm(weight, (20, 20), padding=1, callback=3)
    with pytest.raises(ValueError, match="`maxiter`"):
        convop.spectral_norm(weight, (20, 20), padding=1, maxiter=0)


# Singular vectors --------------------------------------------------------------------------

VECTOR_LAYERS = {
    "same": ((6, 4, 3, 3), (9, 9), dict(padding=1)),
    "stride-2-wide": ((3, 6, 3, 3), (12, 12), dict(stride=2, padding=1)),
    "circular-groups": ((6, 2, 3, 3), (8, 8), dict(padding=1, padding_mode="circular",
                                                  groups=3)),
    "unseen-pixels": ((40, 3, 2, 2), (12, 12), dict(stride=3)),
    "rank-deficient": ((4, 4, 3, 3), (9, 9), dict(padding=1)),
}


@pytest.mark.parametrize(("shape", "size", "kw"), VECTOR_LAYERS.values(),
                         ids=VECTOR_LAYERS.keys())
@pytest.mark.parametrize("which", ["largest", "smallest"])
@pytest.mark.parametrize("complex_data", [False, True])
def test_singular_vectors(shape, size, kw, which, complex_data, rng):
    weight = rng.standard_normal(shape)
    if complex_data:
        weight = weight + 1j * rng.standard_normal(shape)
    if shape == (4, 4, 3, 3):
        weight[1] = weight[0]  # duplicate filters: exact zeros
    A = convop.conv_matrix(weight, size, domain="input", order="C", **kw).toarray()
    dense = scipy.linalg.svdvals(A)
    k = 3
    u, s, vt = convop.singular_values(weight, size, k=k, which=which, return_vectors=True,
                                      rng=0, **kw)
    np.testing.assert_allclose(s, dense[:k] if which == "largest" else dense[-k:],
                               atol=1e-10 * dense[0])
    assert u.shape == (A.shape[0], k) and vt.shape == (k, A.shape[1])
    scale = dense[0]
    np.testing.assert_allclose(A @ vt.conj().T, u * s, atol=1e-8 * scale)
    np.testing.assert_allclose(A.conj().T @ u, vt.conj().T * s, atol=1e-8 * scale)
    np.testing.assert_allclose(u.conj().T @ u, np.eye(k), atol=1e-8)
    np.testing.assert_allclose(vt @ vt.conj().T, np.eye(k), atol=1e-8)
    ut, _, vtt = convop.singular_values(weight, size, k=k, which=which, return_vectors=True,
                                        tensors=True, rng=0, **kw)
    g = convop.conv_geometry(shape, size, **kw)
    assert ut.shape == (k, g.out_channels, *g.output_size)
    assert vtt.shape == (k, g.in_channels, *g.input_size)
    np.testing.assert_allclose(ut.reshape(k, -1).T, u)


def test_vectors_follow_the_operator_order(rng):
    weight = rng.standard_normal((6, 4, 3, 3))
    op = convop.LayerOperator(weight, (9, 9), padding=1, order="F")
    u, s, vt = convop.singular_values(op, k=2, return_vectors=True, rng=0)
    np.testing.assert_allclose(op.matmat(vt.T), u * s, atol=1e-8 * s[0])
    with pytest.raises(ValueError, match="`tensors=True`"):
        convop.singular_values(convop.conv_matrix(weight, (9, 9), padding=1, domain="input"),
                               k=1, return_vectors=True, tensors=True)


def test_report_bounds_how_exact_exact_is(rng):
    weight = rng.standard_normal((8, 8, 3, 3))
    report = convop.spectrum_report(weight, (16, 16), padding=1, rng=0)
    dense = scipy.linalg.svdvals(convop.conv_matrix(weight, (16, 16), padding=1,
                                                    domain="input").toarray())
    assert 0 <= report.sigma_max_error <= 1e-8 * dense[0]
    assert abs(report.sigma_max - dense[0]) <= max(report.sigma_max_error, 1e-14 * dense[0])
    assert abs(report.sigma_min - dense[-1]) <= max(report.sigma_min_error, 1e-14 * dense[0])
    assert report.products > 0
    assert "residual bound" in str(report)


def test_callback_and_maxiter_count_the_float32_phase(rng):
    weight = rng.standard_normal((8, 8, 3, 3))  # 8192 unknowns: a float32 phase first
    seen = []
    norm = convop.spectral_norm(weight, (32, 32), padding=1, rng=0,
                                callback=lambda step, estimate: seen.append((step, estimate)))
    steps = [s for s, _ in seen]
    assert steps == sorted(set(steps))  # cumulative: no restart at 1 for the float64 phase
    jumps = np.diff(steps)
    assert jumps.max() in (6, 7)  # the 5 products measuring float32 noise, between the phases
    switch = int(np.argmax(jumps))
    assert abs(seen[switch][1] - norm) <= 1e-5 * norm  # float32 phase got near the value
    with pytest.raises(NoConvergence) as caught:
        convop.spectral_norm(weight, (32, 32), padding=1, rng=0, maxiter=steps[switch] + 3)
    assert caught.value.steps <= steps[switch] + 3


def test_pool_map_keeps_order_and_raises(rng):
    import time

    def slow(x):
        time.sleep(0.002 * (x % 3))
        return x * x

    with Pool(2) as pool:
        items = list(range(11))
        assert pool.map([slow] * 11, items) == [x * x for x in items]
        assert pool.map([slow], [3]) == [9]

        def fail(x):
            raise KeyError(x)

        with pytest.raises(KeyError):
            pool.map([slow, fail, slow], [1, 2, 3])


@pytest.mark.parametrize("mode", ["circular", "zeros"])
def test_the_warm_start_reports_its_counterparts_norm(mode, rng):
    from convop.spectral.circular import circular_start

    weight = rng.standard_normal((6, 4, 3, 3))
    op = convop.LayerOperator(weight, (16, 16), padding=1, padding_mode=mode, order="C")
    found = []
    circular_start(op, np.random.default_rng(0), budget=2**30,
                   noise=0.0 if mode == "circular" else 1e-3, estimates=found)
    assert found == [pytest.approx(convop.circular_singular_values(weight, (16, 16))[0],
                                   rel=1e-13)]


@pytest.mark.parametrize("complex_data", [False, True])
def test_circular_warm_start_holds_the_top_vector(complex_data, rng):
    from convop.spectral.circular import circular_start

    weight = rng.standard_normal((6, 4, 3, 3))
    if complex_data:
        weight = weight + 1j * rng.standard_normal(weight.shape)
    op = convop.LayerOperator(weight, (16, 16), padding=1, padding_mode="circular", order="C")
    block = circular_start(op, np.random.default_rng(0), budget=2**30)
    assert block.shape == (1 if complex_data else 2, 4 * 16 * 16)
    A = op.to_matrix()
    sigma = convop.circular_singular_values(weight, (16, 16))[0]
    # The best vector of the block's span is the top singular vector up to its noise.
    q, _ = np.linalg.qr(block.T)
    best = np.linalg.svd((A @ q), compute_uv=False)[0]
    assert best >= sigma * (1 - 1e-3)
    steps = []  # vectors too come from the FFT blocks: no Lanczos step at all
    u, s, vt = convop.singular_values(weight, (16, 16), k=1, padding=1, padding_mode="circular",
                                      rng=0, return_vectors=True,
                                      callback=lambda step, _: steps.append(step))
    assert steps == []
    assert np.isclose(s[0], sigma, rtol=1e-12)
    # vt holds conjugated rows, so A @ conj(vt) is u times sigma
    assert np.linalg.norm(A @ vt[0].conj() - s[0] * u[:, 0]) <= 1e-12 * sigma
    assert circular_start(op, np.random.default_rng(0), budget=100) is None  # over budget


def test_zero_padded_warm_start_is_close_and_only_where_it_costs_under_a_product(rng):
    from convop.spectral._target import Target
    from convop.spectral.largest import _warm_start

    weight = rng.standard_normal((6, 4, 3, 3))
    target = Target(weight, (20, 20), dict(padding=1), max_bytes=None)
    block, exact = _warm_start(target, np.random.default_rng(0), "input", budget=2**30)
    assert not exact  # zero padding: the counterpart's vectors, not the layer's
    A = convop.LayerOperator(weight, (20, 20), padding=1, order="C").to_matrix()
    sigma = np.linalg.svd(A.toarray(), compute_uv=False)[0]
    q, _ = np.linalg.qr(block.T)
    random = np.linalg.qr(rng.standard_normal(q.shape))[0]
    # The enveloped wave's span holds most of the top: far closer than a random block.
    best = np.linalg.svd(A @ q, compute_uv=False)[0]
    assert best >= 0.97 * sigma > 1.5 * np.linalg.svd(A @ random, compute_uv=False)[0]
    # A strided layer whose frequency blocks are wide (many channels times stride^2)
    # would spend more on the start than a product: none; a conv1-like layer (few input
    # channels, a large kernel) gets one.
    strided = Target(weight, (20, 20), dict(padding=1, stride=2), max_bytes=None)
    assert _warm_start(strided, np.random.default_rng(0), "input", budget=2**30) == (None,
                                                                                      False)
    stem = Target(rng.standard_normal((16, 1, 7, 7)), (40, 40), dict(padding=3, stride=2),
                  max_bytes=None)
    assert _warm_start(stem, np.random.default_rng(0), "input", budget=2**30)[0] is not None
    # And the value it warms is exact.
    assert convop.spectral_norm(weight, (20, 20), padding=1, rng=0) == pytest.approx(
        sigma, rel=1e-12)


def test_a_low_precision_phase_runs_on_near_its_tolerance_on_a_continuous_top():
    # A conv layer's top spectrum is nearly continuous: the residual falls slowly, which
    # is not a stall. Products with 1e-7 relative noise, tolerance 1e-6: the phase must
    # get near 1e-6 (it stopped at 5e-5 when stagnation counted from 100x the tolerance).
    from convop.spectral.lanczos import STALL_NEAR_TOL, top_eigenpair

    n = 20_000
    lam = 1 - 0.5 * np.sqrt(np.arange(n) / n)
    noise = np.random.default_rng(5)

    def apply(v):
        y = lam * v
        return y + 1e-7 * np.linalg.norm(y) * noise.standard_normal(n) / np.sqrt(n)

    with single_threaded():
        pair = top_eigenpair(apply, n, dtype=np.dtype(np.float64), tol=1e-6,
                             rng=np.random.default_rng(0), stagnate=True)
    assert pair.residuals[0] <= 2 * STALL_NEAR_TOL * 1e-6 * pair.values[0]
    assert abs(pair.values[0] - 1) <= 1e-6


# Mixed precision ------------------------------------------------------------------------------


def noisy_pair_operator(split, n=20_000, level=1e-7, seed=5):
    """A diagonal PSD operator whose top pair is split by ``split`` (relative), the rest
    1e-3 below and nearly continuous (a conv layer's top); with products exact and
    products carrying ``level`` relative noise, and counts of each."""
    lam = np.concatenate([[1.0, 1.0 - split], 1 - 1e-3 - 0.5 * np.sqrt(np.arange(n - 2) / n)])
    noise = np.random.default_rng(seed)
    calls = {"exact": 0, "low": 0}

    def exact(v):
        calls["exact"] += 1
        return lam * v

    def low(v):
        calls["low"] += 1
        y = lam * v
        return y + level * np.linalg.norm(y) * noise.standard_normal(n) / np.sqrt(n)

    return lam, exact, low, calls


@pytest.mark.parametrize("split", [1e-10, 3e-9, 1e-8, 3e-8, 1e-7, 1e-5])
def test_mixed_precision_rounds_certify_below_the_low_products_noise(split):
    from convop.spectral.mixed_precision import TWINS, refine_top_eigenpair

    n, level, tol = 20_000, 1e-7, 2.5e-9
    lam, exact, low, calls = noisy_pair_operator(split, n, level)
    float64 = np.dtype(np.float64)
    with single_threaded():  # as the spectral functions run (level-1 BLAS)
        first = top_eigenpair(low, n, dtype=float64, tol=30 * level,
                              rng=np.random.default_rng(0), stagnate=True, twins=TWINS)
        y0 = first.vectors[:, 0]
        assert np.linalg.norm(lam * y0 - (y0 @ (lam * y0)) * y0) > 1000 * tol  # noise-bound
        pair, certified = refine_top_eigenpair(exact, low, n, first.vectors, dtype=float64,
                                               tol=tol, noise=level)
    y = pair.vectors[:, 0]
    theta = y @ (lam * y)
    true_residual = np.linalg.norm(lam * y - theta * y)
    # What it reports is the true residual of what it returns, certified or not.
    assert pair.values[0] == pytest.approx(theta, rel=1e-15)
    assert pair.residuals[0] == pytest.approx(true_residual, rel=1e-6, abs=1e-15)
    if split < tol or split >= 1e-7:  # resolved exactly, or by the low products
        assert certified
        assert true_residual <= tol * theta
        assert 1 - theta <= min(split, tol)
        assert calls["exact"] <= 6  # a few exact products; the rest are cheap
    if certified:
        assert true_residual <= tol * theta
    else:  # a split between the tolerance and the noise: exact Lanczos takes over
        assert true_residual > tol * theta


def test_gram_products_in_low_precision_come_out_in_the_vectors_dtype(rng):
    weight = rng.standard_normal((6, 4, 3, 3))
    g = convop.conv_geometry(weight.shape, (9, 11), padding=1, stride=(1, 2))
    for side in ("input", "output"):
        plain = GramProduct(g, weight, np.float32, side)
        mixed = GramProduct(g, weight, np.float32, side, result_dtype=np.float64)
        v = rng.standard_normal(plain.size)
        expected = np.array(plain(v.astype(np.float32)))
        got = mixed(v)  # float64 in, cast on the way into the float32 buffers
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, expected.astype(np.float64))


@pytest.mark.parametrize("complex_data", [False, True])
def test_spectral_norm_with_mixed_precision_matches_arpack(complex_data, rng):
    import scipy.sparse.linalg

    weight = rng.standard_normal((8, 8, 3, 3))  # 8192 unknowns: the float32 phase runs
    if complex_data:  # complex64 products, complex128 vectors
        weight = weight + 1j * rng.standard_normal(weight.shape)
    A = convop.conv_matrix(weight, (32, 32), padding=1, domain="input").tocsr()
    gram = scipy.sparse.linalg.aslinearoperator(A.conj().T @ A)
    reference = np.sqrt(scipy.sparse.linalg.eigsh(gram, k=1, tol=1e-14,
                                                   return_eigenvectors=False)[0])
    for seed in range(3):
        norm = convop.spectral_norm(weight, (32, 32), padding=1, rng=seed, rtol=1e-8)
        assert reference * (1 - 1e-8) <= norm <= reference * (1 + 1e-12)


@given(layer_mode=moded_layers(max_extra=3), seed=seeds(), complex_data=st.booleans(),
       side=st.sampled_from(["input", "output"]))
def test_low_precision_gram_products_are_the_layer_operator_to_their_rounding(
        layer_mode, seed, complex_data, side):
    # float32 (complex64) products: Winograd F(2x2, 3x3) for 3x3 stride-1 2-D layers, im2col
    # otherwise; both against the explicit matrix to float32's rounding.
    g, weight, A, rng = layer_case(layer_mode, seed, complex_data)
    low = np.complex64 if complex_data else np.float32
    with Pool(2) as pool:
        product = GramProduct(g, weight, low, side, pool=pool, winograd=True,
                              result_dtype=np.result_type(low, np.float64))
        v = rng.standard_normal(product.size)
        if complex_data:
            v = v + 1j * rng.standard_normal(product.size)
        G = A.conj().T @ A if side == "input" else A @ A.conj().T
        expected = G @ v
        scale = abs(G).sum(axis=1).max() * np.abs(v).max()
        np.testing.assert_allclose(product(v), expected, rtol=0, atol=2e-6 * max(scale, 1e-30))


@given(height=st.integers(1, 11), width=st.integers(1, 11), groups=st.sampled_from([1, 2]),
       per_group=st.integers(1, 3), out_per_group=st.integers(1, 3),
       padding=st.tuples(*[st.integers(0, 2)] * 4),
       mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
       complex_data=st.booleans(), seed=seeds())
def test_winograd_products_are_the_layer_operator(height, width, groups, per_group,
                                                  out_per_group, padding, mode, complex_data,
                                                  seed):
    # Every 3x3 stride-1 2-D layer: odd and tiny sizes, asymmetric padding, groups, modes.
    top, bottom, left, right = padding
    if height + top + bottom < 3 or width + left + right < 3:
        return
    if mode != "zeros" and (max(top, bottom) >= height or max(left, right) >= width):
        return  # PyTorch's rule for reflect (and ours for the others)
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((groups * out_per_group, per_group, 3, 3))
    if complex_data:
        weight = weight + 1j * rng.standard_normal(weight.shape)
    kw = dict(padding=((top, bottom), (left, right)), groups=groups, padding_mode=mode)
    g = convop.conv_geometry(weight.shape, (height, width), **kw)
    A = convop.LayerOperator(weight, (height, width), order="C", **kw).to_matrix()
    low = np.complex64 if complex_data else np.float32
    product = GramProduct(g, weight, low, "input", winograd=True,
                          result_dtype=np.result_type(low, np.float64))
    assert product._winograd
    x = rng.standard_normal(A.shape[1])
    scale = abs(A).sum(axis=1).max()
    np.testing.assert_allclose(product.forward(x), A @ x, rtol=0, atol=2e-6 * scale)
    np.testing.assert_allclose(product(x), A.conj().T @ (A @ x), rtol=0,
                               atol=4e-6 * scale ** 2)


@pytest.mark.parametrize("size", [(7, 7), (8, 9), (12, 5)])
@pytest.mark.parametrize("groups", [1, 2])
def test_winograd_products_cover_odd_sizes_groups_and_padding_modes(size, groups, rng):
    from convop.spectral.winograd import applies

    assert applies((3, 3), (1, 1), (1, 1)) and not applies((3, 3), (2, 2), (1, 1))
    weight = rng.standard_normal((4, 4 // groups, 3, 3))
    for mode in ("zeros", "reflect", "circular"):
        g = convop.conv_geometry(weight.shape, size, padding=1, groups=groups,
                                 padding_mode=mode)
        A = convop.LayerOperator(weight, size, padding=1, groups=groups, padding_mode=mode,
                                 order="C").to_matrix()
        product = GramProduct(g, weight, np.float32, "input", result_dtype=np.float64,
                              winograd=True)
        assert product._winograd
        x = rng.standard_normal(A.shape[1])
        np.testing.assert_allclose(product.forward(x), A @ x, rtol=0, atol=1e-5)
        np.testing.assert_allclose(product(x), A.T @ (A @ x), rtol=0, atol=1e-4)


def test_float32_asked_for_stays_im2col_and_reaches_float32s_finest_rtol(rng):
    # Winograd serves a float64 solve's float32 helpers only: its rounding (3.7e-7 on this
    # layer) stopped a float32 solve at rtol 1.2e-6 (10 eps) with NoConvergence.
    from convop.spectral._target import Target

    weight = rng.standard_normal((64, 64, 3, 3))
    target = Target(weight, (56, 56), dict(padding=1), max_bytes=None)
    assert not target.gram(np.dtype(np.float32), "input")._winograd
    assert target.gram(np.dtype(np.float32), "input", np.dtype(np.float64))._winograd
    target.close()
    exact = convop.spectral_norm(weight, (56, 56), padding=1, rng=0)
    low = convop.spectral_norm(weight, (56, 56), padding=1, rng=0, dtype=np.float32,
                               rtol=1.2e-6)
    assert abs(low - exact) <= 2e-6 * exact


def test_superlu_out_of_memory_says_what_it_factored(monkeypatch):
    # SuperLU's own MemoryError is bare ("Not enough memory", or empty) after a long run:
    # convop's says what was being factored and what the budget check assumed.
    import scipy.sparse.linalg as sla

    def exhausted(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(sla, "splu", exhausted)
    W = convop.conv_matrix(np.random.default_rng(0).standard_normal((3, 3, 3, 3)), (9, 9),
                           padding=1, domain="input")
    with pytest.raises(MemoryError, match=r"SuperLU ran out of memory factoring the "
                                          r"\d+x\d+ (Gram|augmented) matrix") as err:
        convop.singular_values(W, k=1, which="smallest", rng=0)
    assert not isinstance(err.value, convop.BudgetError)  # a real failure, not a refusal


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect"])
def test_gram_blocks_are_stored_once_per_distinct_block(rng, mode):
    weight = rng.standard_normal((3, 2, 3, 3))
    g = convop.conv_geometry(weight.shape, (24, 24), padding=1, padding_mode=mode)
    gram = block_gram(g, weight, "input", np.float64)
    every = gram.blocks().reshape(gram.pattern.nnz, -1)
    # Random weights: distinct tap-pair counts give distinct blocks.
    assert gram.table.shape[1] == np.unique(every, axis=0).shape[0] < gram.pattern.nnz // 50
