"""Requests that would not fit in memory are refused before allocating."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convop
from convop import _memory


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


def test_budget_refusals_are_budget_errors_with_the_estimate():
    with pytest.raises(convop.BudgetError) as caught:
        convop.conv_matrix(np.ones((8, 8, 3, 3)), (64, 64), padding=1, max_bytes=10**5)
    err = caught.value
    assert isinstance(err, MemoryError)
    assert err.budget == 10**5 and err.needed > err.budget
    assert str(err.needed) in str(err) and "conv matrix" in err.what
    with pytest.raises(convop.BudgetError):  # the spectral paths too
        convop.spectral_norm(np.ones((4, 4, 3, 3)), (64, 64), padding=1, max_bytes=10**4)


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
    avail = _memory.available_memory()
    assert avail is None or avail > 0
    budget = _memory.default_budget()
    assert budget is None or budget <= avail


def _fake_proc(tmp_path, monkeypatch, cgroup_line):
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup_line + "\n")
    (proc / "meminfo").write_text("MemTotal: 100000000 kB\nMemAvailable: 50000000 kB\n")
    monkeypatch.setattr(_memory, "PROC_CGROUP", proc / "cgroup")
    monkeypatch.setattr(_memory, "MEMINFO", proc / "meminfo")
    root = tmp_path / "cgroup"
    monkeypatch.setattr(_memory, "CGROUP_ROOT", root)
    return root


def test_cgroup_v2_limit_and_its_parents(tmp_path, monkeypatch):
    root = _fake_proc(tmp_path, monkeypatch, "0::/jobs/job7")
    leaf = root / "jobs" / "job7"
    leaf.mkdir(parents=True)
    (leaf / "memory.max").write_text("max\n")
    (root / "jobs" / "memory.max").write_text(f"{4 * 2**30}\n")  # the parent limits
    (root / "jobs" / "memory.current").write_text(f"{3 * 2**30}\n")
    (root / "jobs" / "memory.stat").write_text(f"anon 1\ninactive_file {2**30}\n")
    # 4 GiB limit - (3 GiB used - 1 GiB reclaimable cache) = 2 GiB
    assert _memory.available_memory() == 2 * 2**30
    assert _memory.default_budget() == int(1.5 * 2**30)
    with pytest.raises(MemoryError, match=r"default budget .* of 1\.5 GiB"):
        convop.conv_matrix(np.ones((64, 64, 3, 3)), (80, 80), padding=1)


def test_cgroup_v1_memory_controller(tmp_path, monkeypatch):
    root = _fake_proc(tmp_path, monkeypatch, "4:cpu,memory:/batch")
    folder = root / "memory" / "batch"
    folder.mkdir(parents=True)
    (folder / "memory.limit_in_bytes").write_text(f"{2**30}\n")
    (folder / "memory.usage_in_bytes").write_text(f"{2**28}\n")
    assert _memory.available_memory() == 2**30 - 2**28
    (folder / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # unlimited
    assert _memory.available_memory() == 50000000 * 1024


def test_cgroup_path_missing_in_a_namespace_uses_the_mount_root(tmp_path, monkeypatch):
    root = _fake_proc(tmp_path, monkeypatch, "0::/somewhere/else")
    root.mkdir()
    (root / "memory.max").write_text(f"{2**31}\n")
    assert _memory.available_memory() == 2**31


def test_rlimit_as_is_respected(tmp_path):
    # Under `ulimit -v 6GiB` a request of 8 GiB must be refused, not attempted.
    script = textwrap.dedent("""
        import resource
        limit = 6 * 2**30
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        import numpy as np
        import convop
        from convop import _memory
        budget = _memory.default_budget()
        assert budget is not None and budget < limit, budget
        try:
            convop.conv_matrix(np.ones((64, 64, 3, 3)), (150, 150), padding=1)
        except MemoryError as err:
            assert "needs an estimated" in str(err) and "default budget" in str(err), err
            print("refused", budget)
        else:
            raise SystemExit("not refused")
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("refused")


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


def test_base_pages_turn_numpy_huge_page_advice_off_and_restore_it(monkeypatch):
    switch = _memory._madvise_switch()
    if switch is None:
        pytest.skip("this numpy has no madvise switch")
    before = switch(True)
    try:
        with _memory.base_pages():
            assert switch(False) is False  # off inside (and setting it again keeps it so)
            with _memory.base_pages():  # nested: still off, and the outer restores
                pass
            assert switch(False) is False
        assert switch(True) is True  # restored to what it was
    finally:
        switch(before)


def test_base_pages_do_nothing_without_the_switch(monkeypatch):
    monkeypatch.setattr(_memory, "_madvise_switch", lambda: None)
    with _memory.base_pages():
        a = np.ones(10)
    assert a.sum() == 10


def test_parallel_zeros_are_zero_and_writable():
    from convop import _memory

    out = _memory.zeros(_memory.PARALLEL_FILL // 8 + 5, np.float64, workers=3)
    assert out.shape == (_memory.PARALLEL_FILL // 8 + 5,) and not out.any()
    out[-1] = 1.0
    assert _memory.zeros(7, np.complex128, workers=2).tolist() == [0j] * 7
