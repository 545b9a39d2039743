"""Index dtypes and CSR construction from ready-made parts."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: Largest value an int32 index array may hold. Tests lower it to exercise the
#: int64 path without building a 17 GB matrix, so read it at call time.
INT32_LIMIT: int = int(np.iinfo(np.int32).max)
#: Largest value any index array may hold.
INT64_LIMIT: int = int(np.iinfo(np.int64).max)


def index_dtype(max_value: int) -> np.dtype:
    """Return int32 when ``max_value`` fits below :data:`INT32_LIMIT`, else int64.

    Values beyond int64 also give int64 (for byte estimates); assembly checks the
    range with :func:`check_index_range` before it writes an index.
    """
    return np.dtype(np.int32) if max_value <= INT32_LIMIT else np.dtype(np.int64)


def check_index_range(max_value: int, what: str, names: str) -> None:
    """Refuse a matrix whose indices would not fit in int64, naming the parameters to reduce."""
    if max_value > INT64_LIMIT:
        raise ValueError(f"{what} needs indices up to {max_value}, beyond int64 "
                         f"({INT64_LIMIT}); reduce {names}.")


def csr_from_parts(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_array:
    """Wrap arrays that already form a canonical CSR matrix, without copying them.

    The caller guarantees sorted, duplicate-free column indices in each row.
    """
    matrix = sp.csr_array((data, indices, indptr), shape=shape, copy=False)
    matrix.has_canonical_format = True
    return matrix
