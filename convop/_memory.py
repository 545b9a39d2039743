"""Memory budgets: how much this process may allocate, and refusing what does not fit.

The default budget is a fraction of the smallest of three limits, each read
when a request is checked (they change while a process runs):

- the system's available memory (``MemAvailable`` in ``/proc/meminfo``);
- the address-space and data-segment limits (``RLIMIT_AS``, ``RLIMIT_DATA``,
  as set by ``ulimit -v`` / ``ulimit -d``) minus what the process already maps;
- the memory limit of the process's cgroup (v1 ``memory.limit_in_bytes`` or
  v2 ``memory.max``, the tightest along the path to the root) minus its
  working set (usage less reclaimable page cache).

The paths are module attributes so that tests can point them at fake trees.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import BudgetError

#: Fraction of the available memory a single request may take by default.
DEFAULT_BUDGET_FRACTION = 0.75

MEMINFO = Path("/proc/meminfo")
PROC_STATUS = Path("/proc/self/status")
PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")

# cgroup limits at or above this mean "no limit" (v1 reports 2**63 rounded to a page).
_NO_LIMIT = 2**62


def available_memory() -> int | None:
    """Bytes this process can still allocate: the tightest known limit, or None if none is known."""
    known = [v for v in (_meminfo_available(), _rlimit_headroom(), _cgroup_headroom())
             if v is not None]
    return max(0, min(known)) if known else None


def default_budget() -> int | None:
    """Return the default memory budget: 75% of :func:`available_memory`, or None when unknown."""
    avail = available_memory()
    return None if avail is None else int(avail * DEFAULT_BUDGET_FRACTION)


def check_budget(needed: int, max_bytes: int | None, what: str) -> None:
    """Raise :class:`~convop.BudgetError` when ``needed`` bytes exceed the budget.

    ``max_bytes=None`` means :func:`default_budget`. ``what`` describes the
    request (shape, nnz) for the message.
    """
    budget = default_budget() if max_bytes is None else max_bytes
    if budget is not None and needed > budget:
        source = ("the default budget (75% of the memory available to this process)"
                  if max_bytes is None else "`max_bytes`")
        raise BudgetError(
            f"{what} needs an estimated {format_bytes(needed)} ({needed} bytes), more than "
            f"{source} of {format_bytes(budget)} ({budget} bytes). Reduce the problem or pass "
            f"a larger `max_bytes=`.", needed, budget, what)


def format_bytes(n: int | float) -> str:
    """Human-readable byte count, e.g. ``1.4 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(value) < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# The three limits --------------------------------------------------------------------------


def _meminfo_available() -> int | None:
    value = _read_keyed(MEMINFO, "MemAvailable:")
    if value is not None:
        return value * 1024
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _rlimit_headroom() -> int | None:
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    headroom = []
    for limit, field in ((resource.RLIMIT_AS, "VmSize:"), (resource.RLIMIT_DATA, "VmData:")):
        soft = resource.getrlimit(limit)[0]
        if soft == resource.RLIM_INFINITY or soft < 0:
            continue
        used = _read_keyed(PROC_STATUS, field)
        headroom.append(soft - (used or 0) * 1024)
    return min(headroom) if headroom else None


def _cgroup_headroom() -> int | None:
    try:
        lines = PROC_CGROUP.read_text(encoding="ascii").splitlines()
    except OSError:
        return None
    headroom = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2 (unified)
            for base in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
                value = _tightest(base, path, "memory.max", "memory.current", "inactive_file")
                if value is not None:
                    headroom.append(value)
                    break
        elif "memory" in controllers.split(","):  # cgroup v1
            value = _tightest(CGROUP_ROOT / "memory", path, "memory.limit_in_bytes",
                              "memory.usage_in_bytes", "total_inactive_file")
            if value is not None:
                headroom.append(value)
    return min(headroom) if headroom else None


def _tightest(base: Path, path: str, limit_file: str, usage_file: str,
              reclaimable: str) -> int | None:
    """Smallest ``limit - working set`` over the cgroup and its ancestors below ``base``.

    Inside a container the path in /proc/self/cgroup may not exist under the
    mount (cgroup namespaces); then the mount's own root is the process's cgroup.
    """
    relative = Path(path.lstrip("/"))
    chain = [relative, *relative.parents] if (base / relative).is_dir() else [Path(".")]
    best = None
    for directory in chain:
        folder = base / directory
        limit = _read_int(folder / limit_file)
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = _read_int(folder / usage_file) or 0
        cache = _read_keyed(folder / "memory.stat", reclaimable + " ") or 0
        value = limit - max(0, usage - cache)
        best = value if best is None else min(best, value)
    return best


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except OSError:
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_keyed(path: Path, key: str) -> int | None:
    """Return the integer after ``key`` on the line that starts with it."""
    try:
        with open(path, encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key):
                    return int(line[len(key):].split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None


_pages_lock = threading.Lock()
_pages_depth = 0
_pages_saved = True


@contextlib.contextmanager
def base_pages() -> Iterator[None]:
    """Allocate arrays in the block without numpy's transparent-huge-page advice.

    numpy asks the kernel for huge pages on large arrays; where the first touch of
    a huge page is slow (virtual machines whose memory the host backs lazily: 10
    times the base pages' cost here, benchmarks/TUNING.md#base-pages) a
    factorization that fills fresh gigabytes spends more time faulting than
    computing. numpy's setting is restored on exit; without the (private)
    switch this does nothing.
    """
    global _pages_depth, _pages_saved
    switch = _madvise_switch()
    if switch is None:
        yield
        return
    with _pages_lock:
        if _pages_depth == 0:
            _pages_saved = bool(switch(False))
        _pages_depth += 1
    try:
        yield
    finally:
        with _pages_lock:
            _pages_depth -= 1
            if _pages_depth == 0:
                switch(_pages_saved)


def _madvise_switch() -> Any:
    """Return numpy's ``_set_madvise_hugepage`` (numpy 2 and 1 place it apart), or None."""
    import numpy as np

    for name in ("_core", "core"):
        module = getattr(np, name, None)
        switch = getattr(getattr(module, "multiarray", None), "_set_madvise_hugepage", None)
        if switch is not None:
            return switch
    return None


#: Bytes below which :func:`zeros` fills in the calling thread alone.
PARALLEL_FILL = 64 * 2**20


def zeros(size: int, dtype: Any, workers: int) -> Any:
    """Return a fresh zeroed 1-D array whose every page has been touched, by ``workers`` threads.

    A fresh array's pages are faulted in on first touch; where the host backs a
    virtual machine's memory lazily that costs more than the arithmetic done in
    it, one core at a time (benchmarks/TUNING.md#parallel-touch). Touching the
    whole array up front, in slices side by side, faults at the speed of every
    core; ``numpy.zeros`` would instead fault page by page wherever the array is
    first written.
    """
    import numpy as np

    with base_pages():
        out = np.empty(size, dtype=dtype)
    parts = np.array_split(out, max(1, workers)) if out.nbytes >= PARALLEL_FILL else [out]
    threads = [threading.Thread(target=part.fill, args=(0,)) for part in parts[1:]]
    for thread in threads:
        thread.start()
    parts[0].fill(0)
    for thread in threads:
        thread.join()
    return out
