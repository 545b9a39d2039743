"""Control of the BLAS thread pools, and parallel products on the cores instead.

After a multi-threaded GEMM, OpenBLAS's worker threads keep spinning for a
while; on a machine with few cores they take the CPU from the single-threaded
work that follows (numpy copies, small LAPACK calls), which then runs 2-30x
slower. An iterative method alternates the two all the time. So the spectral
computations run with BLAS single-threaded (:func:`single_threaded`) and use
the cores by computing several products at once in Python threads (numpy and
BLAS release the GIL), see :class:`Pool`.

This is what ``threadpoolctl`` does, for the OpenBLAS libraries numpy and scipy
ship (found among the loaded shared objects); where none is found, nothing
changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# (set, get) function names the OpenBLAS builds export.
_NAMES = (
    ("openblas_set_num_threads", "openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
)
_lock = threading.Lock()
_controls: list[tuple[Any, Any]] | None = None
_depth = 0
_saved: list[int] = []


def _find() -> list[tuple[Any, Any]]:
    """Return the (set, get) thread functions of every loaded OpenBLAS library."""
    paths = set()
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 6 and "openblas" in parts[-1].lower():
                    paths.add(parts[-1])
    except OSError:
        return []
    found = []
    for path in sorted(paths):
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in _NAMES:
            if hasattr(library, set_name) and hasattr(library, get_name):
                setter, getter = getattr(library, set_name), getattr(library, get_name)
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                found.append((setter, getter))
                break
    return found


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the block with every OpenBLAS pool at one thread (nested uses are fine)."""
    global _controls, _depth
    with _lock:
        if _controls is None:
            _controls = _find()
        if _depth == 0:
            _saved[:] = [get() for _, get in _controls]
            for setter, _ in _controls:
                setter(1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                for (setter, _), count in zip(_controls, _saved):
                    setter(count)


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """Run the block with every OpenBLAS pool at ``count`` threads (BLAS 3 heavy work)."""
    global _controls
    with _lock:
        if _controls is None:
            _controls = _find()
        before = [get() for _, get in _controls]
        for setter, _ in _controls:
            setter(count)
    try:
        yield
    finally:
        with _lock:
            for (setter, _), previous in zip(_controls, before):
                setter(previous)


def cores() -> int:
    """Count the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Pool:
    """A few worker threads that apply functions to items in parallel."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._executor = (ThreadPoolExecutor(max_workers=self.workers - 1)
                          if self.workers > 1 else None)

    def map(self, functions: Sequence[Callable[[Any], Any]], items: Sequence[Any]) -> list[Any]:
        """``[f(x) for f, x in zip(functions, items)]``, the calling thread taking part.

        Each thread takes the next item when it is done with one, so uneven items
        (or more items than threads) keep every core busy.
        """
        count = len(items)
        if self._executor is None or count <= 1:
            return [f(x) for f, x in zip(functions, items)]
        results: list[Any] = [None] * count
        taken = iter(range(count))
        lock = threading.Lock()

        def work() -> None:
            while True:
                with lock:
                    i = next(taken, None)
                if i is None:
                    return
                results[i] = functions[i](items[i])

        helpers = [self._executor.submit(work) for _ in range(min(self.workers, count) - 1)]
        work()
        for helper in helpers:
            helper.result()  # re-raises a helper's exception
        return results

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
