"""Index dtypes, memory budgets and CSR construction from ready-made parts."""

from __future__ import annotations

import os

import numpy as np
import scipy.sparse as sp

#: Largest value an int32 index array may hold. Tests lower it to exercise the
#: int64 path without building a 17 GB matrix, so read it at call time.
INT32_LIMIT: int = int(np.iinfo(np.int32).max)

#: Fraction of the available memory a single result may take by default.
DEFAULT_BUDGET_FRACTION = 0.75


def index_dtype(max_value: int) -> np.dtype:
    """Return int32 when ``max_value`` fits below :data:`INT32_LIMIT`, else int64."""
    return np.dtype(np.int32) if max_value <= INT32_LIMIT else np.dtype(np.int64)


def available_memory() -> int | None:
    """Bytes of memory available to this process, or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def default_budget() -> int | None:
    """Return the default memory budget: 75% of the available memory, or None when unknown."""
    avail = available_memory()
    return None if avail is None else int(avail * DEFAULT_BUDGET_FRACTION)


def check_budget(needed: int, max_bytes: int | None, what: str) -> None:
    """Raise ``MemoryError`` when ``needed`` bytes exceed the budget.

    ``max_bytes=None`` means :func:`default_budget`. ``what`` describes the
    request (shape, nnz) for the message.
    """
    budget = default_budget() if max_bytes is None else max_bytes
    if budget is not None and needed > budget:
        source = "the default budget (75% of available memory)" if max_bytes is None else (
            "`max_bytes`"
        )
        raise MemoryError(
            f"{what} needs an estimated {format_bytes(needed)} ({needed} bytes), more than "
            f"{source} of {format_bytes(budget)} ({budget} bytes). Reduce the layer or pass "
            f"a larger `max_bytes=`."
        )


def format_bytes(n: int | float) -> str:
    """Human-readable byte count, e.g. ``1.4 GiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def csr_from_parts(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_array:
    """Wrap arrays that already form a canonical CSR matrix, without copying them.

    The caller guarantees sorted, duplicate-free column indices in each row.
    """
    matrix = sp.csr_array((data, indices, indptr), shape=shape, copy=False)
    matrix.has_canonical_format = True
    return matrix
