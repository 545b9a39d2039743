"""Ill-conditioned layers: exact smallest values through refinement on the augmented matrix.

Below the normal equations' floor ``sqrt(n eps) sigma_max`` the smallest values
come from solves with ``K = [[t I, B], [B^H, -t I]]``; for a layer these are
refined on the Gram step's Cholesky factor (no second factorization), and fall
back to SuperLU's LU of ``K`` where refinement cannot converge. The reference
is a dense SVD in float64; trained layers come from a small CNN fitted on
scikit-learn's digits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from real_layers import mixed, trained_digits

import convop
from convop.spectral import augmented, smallest


def dense(weight, size, **layer):
    A = convop.conv_matrix(weight, size, domain="input", **layer).toarray()
    return np.linalg.svd(A, compute_uv=False)


def refuse_superlu(*args, **kwargs):
    raise AssertionError("SuperLU's LU of the augmented matrix was not needed")


@pytest.mark.parametrize(("cond", "size", "layer", "k"), [
    (1e4, (12, 12), dict(padding=1), 3),
    (1e3, (10, 13), dict(padding=1, padding_mode="reflect"), 3),  # cond 2.0e7
    (1e5, (12, 12), dict(padding=1), 3),  # cond 3.8e7
    # Dilation 2 splits the grid into 4 decoupled ones: values come in fours.
    (1e5, (12, 12), dict(padding=2, dilation=2), 4),
])
def test_values_below_the_gram_floor_without_superlu(cond, size, layer, k, monkeypatch):
    w = mixed(8, cond)
    reference = dense(w, size, **layer)
    floor = reference[0] * math.sqrt(reference.size * np.finfo(float).eps)
    assert reference[-1] < floor  # the augmented path runs
    monkeypatch.setattr(smallest, "augmented_lu", refuse_superlu)
    got = convop.singular_values(w, size, k=k, which="smallest", rng=0, **layer)
    # A backward-stable solve: each value within a few eps ||A|| of the truth.
    np.testing.assert_allclose(got, reference[-k:], rtol=0, atol=1e-13 * reference[0])


@pytest.mark.parametrize(("cond", "patch"), [(1e4, True), (1e5, False)])
def test_a_factor_too_inexact_to_refine_falls_back_to_superlu(cond, patch, monkeypatch):
    # Refinement contracts by about eps cond^2: at cond 1.8e9 (mixing 1e5 with reflect
    # padding) it stalls by itself; at 3.8e6 only when told to give up at once.
    w = mixed(8, cond)
    layer = dict(padding=1, padding_mode="reflect")
    reference = dense(w, (10, 13), **layer)
    used = []
    original = smallest.augmented_lu

    def recording(*args, **kwargs):
        used.append(True)
        return original(*args, **kwargs)

    monkeypatch.setattr(smallest, "augmented_lu", recording)
    if patch:
        monkeypatch.setattr(augmented, "MAX_REFINEMENTS", 0)
    got = convop.singular_values(w, (10, 13), k=2, which="smallest", rng=0, **layer)
    assert used
    np.testing.assert_allclose(got, reference[-2:], rtol=0, atol=1e-13 * reference[0])


def test_refinement_reaches_a_backward_stable_residual(rng):
    # B = U diag(s) V^T with cond 1e7; the Gram solve is a Cholesky of the rounded B^T B.
    m, n, t = 300, 200, 1e-13
    u, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    B = (u * np.logspace(0, -7, n)) @ v.T
    factor = np.linalg.cholesky(B.T @ B + t**2 * np.eye(n))

    def gram_solve(b):
        return np.linalg.solve(factor.T, np.linalg.solve(factor, b))

    K = np.block([[t * np.eye(m), B], [B.T, -t * np.eye(n)]])
    solver = augmented.RefinedAugmented(lambda x: B @ x, lambda y: B.T @ y, gram_solve, t,
                                        1.0, m)
    b = rng.standard_normal((m + n, 3))
    z = solver.solve(b)
    residual = np.linalg.norm(b - K @ z, axis=0) / (np.linalg.norm(z, axis=0) + 1)
    assert np.all(residual < 1e3 * np.finfo(float).eps) and solver.steps >= 2
    # The plain block elimination, one step, is far from it: the refinement did the work.
    once = solver._precondition(b)
    assert np.max(np.linalg.norm(b - K @ once, axis=0) / np.linalg.norm(once, axis=0)) > 1e-12


def test_a_solve_at_the_rounding_floor_returns_without_a_confirming_step(rng):
    # A well-conditioned B: the block elimination alone lands at the residual's rounding.
    m, n, t = 120, 80, 1e-13
    B = rng.standard_normal((m, n))
    factor = np.linalg.cholesky(B.T @ B + t**2 * np.eye(n))
    calls = []

    def gram_solve(b):
        calls.append(b.shape)
        return np.linalg.solve(factor.T, np.linalg.solve(factor, b))

    K = np.block([[t * np.eye(m), B], [B.T, -t * np.eye(n)]])
    solver = augmented.RefinedAugmented(lambda x: B @ x, lambda y: B.T @ y, gram_solve, t,
                                        np.linalg.norm(B, 2), m)
    b = rng.standard_normal((m + n, 3))
    z = solver.solve(b)
    scale = np.linalg.norm(B, 2) * np.linalg.norm(z, axis=0) + np.linalg.norm(b, axis=0)
    assert np.all(np.linalg.norm(b - K @ z, axis=0) / scale
                  <= augmented.FLOOR_RESIDUAL * np.finfo(float).eps)
    assert len(calls) == 1 and solver.steps == 0
    # Unrefined: the elimination's one solve, whatever its residual.
    calls.clear()
    np.testing.assert_array_equal(solver.solve(b, refine=False), solver._precondition(b))
    assert len(calls) == 2


def test_the_first_subspace_step_uses_an_unrefined_solve(monkeypatch):
    w = mixed(6, 1e5)
    A = convop.conv_matrix(w, (10, 10), padding=1, domain="input").toarray()
    reference = np.linalg.svd(A, compute_uv=False)
    modes = []
    original = augmented.RefinedAugmented.solve

    def recording(self, b, refine=True):
        modes.append(refine)
        return original(self, b, refine)

    monkeypatch.setattr(augmented.RefinedAugmented, "solve", recording)
    got = convop.singular_values(w, (10, 10), k=1, which="smallest", padding=1, rng=0)
    assert modes[0] is False and all(modes[1:]) and len(modes) >= 2
    np.testing.assert_allclose(got, reference[-1:], rtol=0, atol=1e-13 * reference[0])


def test_refinement_on_a_wrong_factor_says_so(rng):
    m, n, t = 60, 40, 1e-13
    B = rng.standard_normal((m, n)) @ np.diag(np.logspace(0, -6, n))
    wrong = np.linalg.inv(B.T @ B + 1e-6 * np.eye(n))  # a shift 1e6 times sigma_min^2

    solver = augmented.RefinedAugmented(lambda x: B @ x, lambda y: B.T @ y,
                                        lambda b: wrong @ b, t, np.linalg.norm(B, 2), m)
    with pytest.raises(augmented.RefinementFailed, match="relative residual"):
        solver.solve(rng.standard_normal((m + n, 2)))


# Trained layers -----------------------------------------------------------------------------


def train_digits(channels: int) -> np.ndarray:
    """The second 3x3 convolution of a small CNN fitted on the 8x8 digits, float64."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sklearn.datasets")
    weight, accuracy = trained_digits(torch, channels)
    assert accuracy > 0.9  # it learned something: a trained layer, not an initial one
    return weight


def test_a_trained_layer_matches_the_dense_svd():
    w = train_digits(16)
    reference = dense(w, (8, 8), padding=1)
    kw = dict(padding=1, rng=0)
    small = convop.singular_values(w, (8, 8), k=3, which="smallest", **kw)
    large = convop.singular_values(w, (8, 8), k=3, **kw)
    np.testing.assert_allclose(small, reference[-3:], rtol=1e-10)
    np.testing.assert_allclose(large, reference[:3], rtol=1e-10)
    report = convop.spectrum_report(w, (8, 8), **kw)
    np.testing.assert_allclose(report.condition_number, reference[0] / reference[-1],
                               rtol=1e-9)
