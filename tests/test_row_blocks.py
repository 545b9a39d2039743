"""Row blocks of W: exactly the full matrix's rows, each built on its own, for distributed use."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st
from oracles import assert_canonical_csr
from strategies import moded_layers, seeds

import convop


def layer_weight(layer_mode, seed):
    layer, mode = layer_mode
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(layer.weight_shape)
    return layer, dict(layer.kwargs(), padding_mode=mode), weight


def assert_same_csr(block: sp.csr_array, expected: sp.csr_array) -> None:
    assert block.shape == expected.shape
    assert_canonical_csr(block)
    np.testing.assert_array_equal(block.indptr, expected.indptr)
    np.testing.assert_array_equal(block.indices, expected.indices)
    np.testing.assert_array_equal(block.data, expected.data)  # same sums, same rounding


@given(layer_mode=moded_layers(), seed=seeds(), domain=st.sampled_from(["padded", "input"]),
       order=st.sampled_from(["F", "C"]), bounds=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_a_row_block_is_the_rows_of_the_matrix(layer_mode, seed, domain, order, bounds):
    layer, kw, weight = layer_weight(layer_mode, seed)
    W = convop.conv_matrix(weight, layer.input_size, domain=domain, order=order, **kw)
    r0, r1 = sorted(int(b * W.shape[0]) for b in bounds)
    block = convop.conv_matrix(weight, layer.input_size, domain=domain, order=order,
                               rows=slice(r0, r1), **kw)
    assert_same_csr(block, W[r0:r1])


@given(layer_mode=moded_layers(), seed=seeds(), domain=st.sampled_from(["padded", "input"]),
       parts=st.integers(1, 4))
def test_row_partition_blocks_are_whole_channels_that_stack_to_w(layer_mode, seed, domain,
                                                                  parts):
    layer, kw, weight = layer_weight(layer_mode, seed)
    geom = convop.conv_geometry(weight.shape, layer.input_size, **kw)
    parts = min(parts, geom.out_channels)
    blocks = geom.row_partition(parts, domain)
    W = convop.conv_matrix(weight, layer.input_size, domain=domain, **kw)
    assert [b.rows.start for b in blocks] + [blocks[-1].rows.stop] == sorted(
        {b.rows.start for b in blocks} | {W.shape[0]})
    assert blocks[0].rows.start == 0 and sum(b.nnz for b in blocks) == W.nnz
    sizes = [len(b.channels) for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    built = []
    for b in blocks:
        part = convop.conv_matrix(weight, layer.input_size, domain=domain, rows=b.rows, **kw)
        assert part.nnz == b.nnz and part.indices.dtype == b.index_dtype
        assert part.data.nbytes + part.indices.nbytes + part.indptr.nbytes == b.nbytes
        built.append(part)
    assert_same_csr(sp.csr_array(sp.vstack(built, format="csr")), W)


def test_groups_read_their_own_input_channels():
    w = np.arange(6 * 2 * 3 * 3, dtype=float).reshape(6, 2, 3, 3)  # 3 groups of 2 outputs
    W = convop.conv_matrix(w, (5, 5), padding=1, groups=3, domain="input")
    rows = slice(2 * 25 + 7, 5 * 25 - 3)  # from inside group 1 to inside group 2
    assert_same_csr(convop.conv_matrix(w, (5, 5), padding=1, groups=3, domain="input",
                                       rows=rows), W[rows])


def test_a_block_costs_only_its_channels():
    w = np.ones((64, 64, 3, 3))
    geom = convop.conv_geometry(w.shape, (56, 56), padding=1)
    full = geom.matrix_nbytes("padded")
    block = geom.row_partition(8)[3]
    assert block.nbytes < full / 7
    with pytest.raises(MemoryError, match="rows 0:200704 of the padded-domain conv matrix"):
        convop.conv_matrix(w, (56, 56), padding=1, rows=slice(None), max_bytes=full // 2)
    part = convop.conv_matrix(w, (56, 56), padding=1, rows=block.rows, max_bytes=full // 4)
    assert part.shape == (200704 // 8, 64 * 58 * 58) and part.nnz == block.nnz


def test_rows_and_parts_are_validated():
    w = np.ones((4, 2, 3, 3))
    for bad, error, message in ((3, TypeError, "`rows` must be a slice"),
                                (slice(0, 4, 2), ValueError, "step 1"),
                                (slice(0.5, 4), TypeError, "integer bounds")):
        with pytest.raises(error, match=message):
            convop.conv_matrix(w, (5, 5), rows=bad)
    assert convop.conv_matrix(w, (5, 5), rows=slice(-9, None)).shape == (9, 2 * 25)
    assert convop.conv_matrix(w, (5, 5), rows=slice(7, 3)).shape == (0, 2 * 25)
    geom = convop.conv_geometry(w.shape, (5, 5))
    with pytest.raises(ValueError, match="`parts` must be at most the 4 output channels"):
        geom.row_partition(5)
    with pytest.raises(ValueError, match="`parts`"):
        geom.row_partition(0)


@given(layer_mode=moded_layers(), seed=seeds(), bounds=st.tuples(st.floats(0, 1),
                                                                   st.floats(0, 1)),
       complex_data=st.booleans(), order=st.sampled_from(["F", "C"]))
def test_operator_on_a_channel_range_is_that_row_block(layer_mode, seed, bounds, complex_data,
                                                       order):
    layer, kw, weight = layer_weight(layer_mode, seed)
    rng = np.random.default_rng(seed)
    if complex_data:
        weight = weight + 1j * rng.standard_normal(weight.shape)
    c_out = weight.shape[0]
    first, last = sorted(int(b * c_out) for b in bounds)
    last = max(last, first + 1) if first < c_out else c_out
    first = min(first, c_out - 1)
    channels = range(first, last)
    op = convop.LayerOperator(weight, layer.input_size, order=order, channels=channels, **kw)
    per = int(np.prod(convop.conv_geometry(weight.shape, layer.input_size, **kw).output_size))
    rows = slice(first * per, last * per)
    W = convop.conv_matrix(weight, layer.input_size, domain="input", order=order, rows=rows,
                           **kw)
    assert op.shape == W.shape and op.channels == channels
    assert_same_csr(op.to_matrix(), W)
    x = rng.standard_normal((W.shape[1], 2)) + 1j * rng.standard_normal((W.shape[1], 2))
    y = rng.standard_normal((W.shape[0], 2)) + 1j * rng.standard_normal((W.shape[0], 2))
    scale = max(1.0, float(np.abs(W).sum()))
    np.testing.assert_allclose(op @ x, W @ x, atol=1e-12 * scale)
    np.testing.assert_allclose(op.H @ y, W.conj().T @ y, atol=1e-12 * scale)


def test_operator_channels_are_validated():
    w = np.ones((4, 2, 3, 3))
    for bad, error, message in ((3, TypeError, "`channels` must be a range or slice"),
                                (range(0, 4, 2), ValueError, "step 1"),
                                (range(2, 2), ValueError, "non-empty range within the 4"),
                                (range(3, 5), ValueError, "non-empty range within the 4"),
                                (slice(0.5, 2), TypeError, "integer bounds")):
        with pytest.raises(error, match=message):
            convop.LayerOperator(w, (5, 5), channels=bad)
    assert convop.LayerOperator(w, (5, 5), channels=slice(-1, None)).channels == range(3, 4)


# On disk ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("domain", "mode"), [("padded", "zeros"), ("input", "reflect")])
def test_blocks_on_disk_give_back_any_row_range(tmp_path, domain, mode, monkeypatch):
    from convop.blocks import load_row_blocks, save_row_blocks

    w = np.random.default_rng(7).standard_normal((5, 3, 3, 3))
    kw = dict(padding=1, padding_mode=mode, domain=domain)
    W = convop.conv_matrix(w, (6, 7), **kw)
    written = save_row_blocks(w, (6, 7), tmp_path, 3, **kw)
    assert len(written) == 3
    assert_same_csr(load_row_blocks(tmp_path), W)
    reads = []
    original = sp.load_npz
    monkeypatch.setattr(sp, "load_npz", lambda path: reads.append(path) or original(path))
    part = load_row_blocks(tmp_path, rows=slice(45, 150))  # blocks 1 and 2 (1+2+2 channels)
    assert_same_csr(part, W[45:150])
    assert sorted(p.rsplit("/", 1)[1] for p in reads) == ["block-00001.npz", "block-00002.npz"]
    assert load_row_blocks(tmp_path, rows=slice(10, 10)).shape == (0, W.shape[1])


def test_each_rank_can_write_its_own_blocks(tmp_path):
    from convop.blocks import load_row_blocks, save_row_blocks

    w = np.random.default_rng(8).standard_normal((4, 2, 3, 3))
    for rank in range(2):  # as two ranks would, each its share of 4 blocks
        save_row_blocks(w, (5, 5), tmp_path, 4, padding=1, only=range(rank, 4, 2))
    assert_same_csr(load_row_blocks(tmp_path), convop.conv_matrix(w, (5, 5), padding=1))


def test_disk_blocks_are_validated(tmp_path):
    from convop.blocks import load_row_blocks, save_row_blocks

    with pytest.raises(FileNotFoundError, match="`directory` .* holds no blocks.json"):
        load_row_blocks(tmp_path)
    with pytest.raises(ValueError, match="`only` must index the 2 blocks"):
        save_row_blocks(np.ones((2, 1, 3, 3)), (4, 4), tmp_path, 2, only=[2])
    with pytest.raises(ValueError, match="`parts` must be at most the 2 output channels"):
        save_row_blocks(np.ones((2, 1, 3, 3)), (4, 4), tmp_path, 3)
