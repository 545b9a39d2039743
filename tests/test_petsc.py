"""convop.petsc: every distributed result equals the single-process convop result.

Runs under MPI: ``mpiexec -n 2 python3 -m pytest tests/test_petsc.py`` (and
``-n 1``), with Debian's petsc4py/slepc4py (see ``docs/distributed.md``); every
rank runs every test, and collective calls keep them in step. Skipped where
petsc4py is not installed (the regular suite).
"""

from __future__ import annotations

import numpy as np
import pytest

PETSc = pytest.importorskip(
    "petsc4py.PETSc",
    reason="needs petsc4py and slepc4py (Debian: apt-get install python3-petsc4py "
           "python3-slepc4py python3-mpi4py; see docs/distributed.md)")
pytest.importorskip("slepc4py.SLEPc", reason="needs slepc4py (see docs/distributed.md)")

import convop  # noqa: E402
import convop.petsc as cp  # noqa: E402

COMM = PETSc.COMM_WORLD

LAYERS = {
    "same": ((6, 4, 3, 3), (9, 9), dict(padding=1)),
    "stride-dilation": ((5, 3, 3, 3), (12, 11), dict(stride=(2, 1), padding=2, dilation=2)),
    "groups-reflect": ((6, 4, 3, 3), (8, 8), dict(padding=1, groups=2,
                                                 padding_mode="reflect")),
    "groups-split": ((6, 2, 3, 3), (7, 7), dict(padding=1, groups=3)),  # 2 ranks cut group 1
    "circular-1d": ((4, 2, 5), 16, dict(padding=2, padding_mode="circular")),
    "one-output-channel": ((1, 3, 3, 3), (7, 7), dict(padding=1, padding_mode="replicate")),
}


def weight_of(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def gathered(vec) -> np.ndarray:
    """The whole of a distributed vector, on every rank."""
    scatter, whole = PETSc.Scatter.toAll(vec)
    scatter.scatter(vec, whole)
    out = whole.getArray().copy()
    scatter.destroy()
    whole.destroy()
    return out


def filled(vec, values: np.ndarray):
    lo, hi = vec.getOwnershipRange()
    vec.setArray(values[lo:hi])
    return vec


@pytest.mark.parametrize(("shape", "size", "kw"), LAYERS.values(), ids=LAYERS.keys())
@pytest.mark.parametrize(("domain", "order"), [("input", "F"), ("padded", "C")])
def test_each_rank_holds_its_rows_of_w(shape, size, kw, domain, order):
    w = weight_of(shape)
    A = cp.conv_matrix(w, size, domain=domain, order=order, **kw)
    W = convop.conv_matrix(w, size, domain=domain, order=order, **kw)
    assert A.getSize() == W.shape
    lo, hi = A.getOwnershipRange()
    indptr, indices, data = A.getValuesCSR()
    block = W[lo:hi]
    np.testing.assert_array_equal(indptr, block.indptr)
    np.testing.assert_array_equal(indices, block.indices)
    np.testing.assert_array_equal(data, block.data)
    geometry = convop.conv_geometry(w.shape, size, **kw)
    mine = cp.rank_block(geometry, COMM.getRank(), COMM.getSize(), domain)
    assert (lo, hi) == (mine.rows.start, mine.rows.stop)
    channels = cp.column_channels(geometry, COMM.getRank(), COMM.getSize())
    per_channel = W.shape[1] // geometry.in_channels
    assert A.getOwnershipRangeColumn() == (channels.start * per_channel,
                                           channels.stop * per_channel)
    A.destroy()


@pytest.mark.parametrize(("shape", "size", "kw"), LAYERS.values(), ids=LAYERS.keys())
def test_shell_products_are_the_layer_and_its_adjoint(shape, size, kw):
    w = weight_of(shape, 1)
    W = convop.conv_matrix(w, size, domain="input", **kw)
    S = cp.operator(w, size, **kw)
    A = cp.conv_matrix(w, size, **kw)
    rng = np.random.default_rng(2)  # the same vectors on every rank
    x_all, y_all = rng.standard_normal(W.shape[1]), rng.standard_normal(W.shape[0])
    x, y = filled(S.createVecRight(), x_all), filled(S.createVecLeft(), y_all)
    out, back = S.createVecLeft(), S.createVecRight()
    S.mult(x, out)
    S.multTranspose(y, back)
    scale = float(abs(W).sum())
    np.testing.assert_allclose(gathered(out), W @ x_all, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(gathered(back), W.T @ y_all, rtol=0, atol=1e-13 * scale)
    A.mult(x, out)  # the assembled matrix has the same layout
    np.testing.assert_allclose(gathered(out), W @ x_all, rtol=0, atol=1e-13 * scale)
    for obj in (S, A, x, y, out, back):
        obj.destroy()


@pytest.mark.parametrize(("shape", "size", "kw"), LAYERS.values(), ids=LAYERS.keys())
@pytest.mark.parametrize("matrix_free", [True, False])
def test_spectra_equal_the_single_process_values(shape, size, kw, matrix_free):
    w = weight_of(shape, 3)
    k = 2
    largest = cp.singular_values(w, size, k=k, matrix_free=matrix_free, **kw)
    exact = convop.singular_values(w, size, **kw)  # dense SVD: every value
    np.testing.assert_allclose(largest, exact[:k], rtol=1e-9)
    smallest = cp.singular_values(w, size, k=k, which="smallest", **kw)
    core = convop.singular_values(w, size, k=k, which="smallest", rng=0, **kw)
    np.testing.assert_allclose(smallest, exact[-k:], rtol=1e-8, atol=1e-12 * exact[0])
    np.testing.assert_array_equal(smallest == 0, core == 0)  # the same exact zeros
    report = cp.spectrum_report(w, size, **kw)
    single = convop.spectrum_report(w, size, rng=0, **kw)
    np.testing.assert_allclose([report.sigma_max, report.sigma_min],
                               [single.sigma_max, single.sigma_min], rtol=1e-8,
                               atol=1e-12 * exact[0])
    assert report.shape == single.shape and "PETSc" in report.operator
    # The residual bounds hold and say how exact: a singular value lies within each.
    for value, bound, truth in ((report.sigma_max, report.sigma_max_error, exact[0]),
                                (report.sigma_min, report.sigma_min_error, exact[-1])):
        assert 0 <= bound <= 1e-6 * exact[0]
        assert abs(value - truth) <= bound + 1e-12 * exact[0]
    assert report.products > 0
    if single.sigma_min > 0:
        assert cp.condition_number(w, size, **kw) == pytest.approx(single.condition_number,
                                                                   rel=1e-7)


def test_larger_layer_matches_the_core():
    w = weight_of((16, 16, 3, 3), 4)
    sigma = cp.spectral_norm(w, (32, 32), padding=1, rtol=1e-10)
    assert sigma == pytest.approx(convop.spectral_norm(w, (32, 32), padding=1, rng=0),
                                  rel=1e-10)
    smallest = cp.singular_values(w, (32, 32), padding=1, which="smallest")
    core = convop.singular_values(w, (32, 32), padding=1, k=1, which="smallest", rng=0)
    np.testing.assert_allclose(smallest, core, rtol=1e-8)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_rank_deficient_layers_give_the_cores_exact_zeros(mode):
    a, b = np.arange(1.0, 5.0), np.array([1.0, -2.0, 0.5])
    rank_one = a[:, None, None, None] * b[None, :, None, None] * np.ones((1, 1, 3, 3))
    duplicated = np.repeat(weight_of((1, 4, 3, 3), 5), 4, axis=0)
    for w in (rank_one, duplicated):
        kw = dict(padding=1, padding_mode=mode)
        values = cp.singular_values(w, (6, 6), k=3, which="smallest", **kw)
        np.testing.assert_array_equal(values, 0.0)
        np.testing.assert_array_equal(
            convop.singular_values(w, (6, 6), k=3, which="smallest", rng=0, **kw), 0.0)
        assert cp.condition_number(w, (6, 6), **kw) == np.inf


def test_small_nonzero_values_below_the_gram_floor_are_certified():
    # sigma_min about 1e-10 * sigma_max: below what the Gram matrix resolves (1e-6 here).
    w = weight_of((3, 3, 3, 3), 6)
    w[2] = w[1] + 1e-10 * weight_of((3, 3, 3), 7)
    values = cp.singular_values(w, (5, 5), k=2, which="smallest", padding=1)
    dense = np.linalg.svd(convop.conv_matrix(w, (5, 5), padding=1, domain="input").toarray(),
                          compute_uv=False)
    np.testing.assert_allclose(values, dense[-2:], rtol=1e-3, atol=1e-14 * dense[0])
    assert 0 < values[-1] < 1e-8 * dense[0]


def test_bad_arguments_name_the_parameter():
    w = np.ones((2, 2, 3, 3))
    with pytest.raises(TypeError, match="`comm`"):
        cp.spectral_norm(w, (5, 5), comm="world")
    with pytest.raises(ValueError, match="`which`"):
        cp.singular_values(w, (5, 5), which="middle")
    with pytest.raises(ValueError, match="`k` must be at most"):
        cp.singular_values(w, (5, 5), k=51)
    with pytest.raises(ValueError, match="`rtol`"):
        cp.spectral_norm(w, (5, 5), rtol=0.0)
    if np.dtype(PETSc.ScalarType).kind != "c":
        with pytest.raises(TypeError, match="`weight` is complex"):
            cp.conv_matrix(w + 1j, (5, 5))
    with pytest.raises(ValueError, match="`weight`"):
        cp.spectral_norm(np.full((2, 2, 3, 3), np.nan), (5, 5))
