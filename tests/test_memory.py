"""Requests that would not fit in memory are refused before allocating."""

from __future__ import annotations

import numpy as np
import pytest

import convop
from convop import _sparse


def test_huge_matrix_refused_with_estimate():
    weight = np.ones((512, 512, 3, 3), dtype=np.float32)
    with pytest.raises(MemoryError) as info:
        convop.conv_matrix(weight, (4096, 4096), padding=1)
    message = str(info.value)
    geom = convop.conv_geometry(weight.shape, (4096, 4096), padding=1)
    assert f"shape {geom.matrix_shape('padded')}" in message
    assert f"{geom.nnz('padded')} stored entries" in message
    assert "int64 indices" in message and "TiB" in message
    assert "default budget" in message


def test_max_bytes_budget_is_honoured():
    weight = np.ones((2, 2, 3, 3))
    geom = convop.conv_geometry(weight.shape, (8, 8))
    needed = geom.matrix_nbytes("padded", np.float64)
    with pytest.raises(MemoryError, match=r"more than `max_bytes` of 1\.0 KiB \(1024 bytes\)"):
        convop.conv_matrix(weight, (8, 8), max_bytes=1024)
    W = convop.conv_matrix(weight, (8, 8), max_bytes=10 * needed)
    assert W.data.nbytes + W.indices.nbytes + W.indptr.nbytes == needed


def test_conv_counts_dense_arrays_in_budget():
    weight = np.ones((1, 1, 1, 1))
    x = np.ones((1000, 1, 4, 4))
    with pytest.raises(MemoryError, match="dense arrays"):
        convop.conv(x, weight, max_bytes=200_000)
    assert convop.conv(x, weight, max_bytes=10**7).shape == x.shape


def test_im2col_budget():
    with pytest.raises(MemoryError, match=r"im2col of shape \(9, 64\)"):
        convop.im2col(np.ones((1, 1, 8, 8)), 3, padding=1, max_bytes=100)


def test_default_budget_reads_available_memory():
    avail = _sparse.available_memory()
    assert avail is None or avail > 0
    budget = _sparse.default_budget()
    assert budget is None or budget <= avail


@pytest.mark.bigmem
def test_benchmark_layer_matches_torch():
    # The 64->64 3x3 pad-1 56x56 layer: 115.6 M entries, about 1.4 GB.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 64, 3, 3))
    x = rng.standard_normal((1, 64, 56, 56))
    W = convop.conv_matrix(weight, (56, 56), padding=1, domain="input", order="C")
    assert W.nnz == convop.conv_geometry(weight.shape, (56, 56), padding=1).nnz("input")
    y = (W @ x.reshape(-1)).reshape(1, 64, 56, 56)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight),
                                          padding=1).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-10, atol=1e-10)
