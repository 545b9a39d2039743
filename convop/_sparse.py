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
    """Return int32 when ``max_value`` fits below :data:`INT32_LIMIT`, else int64."""
    if max_value > INT64_LIMIT:
        raise ValueError(
            f"the matrix needs indices up to {max_value}, beyond what int64 indices hold "
            f"({INT64_LIMIT}); reduce the sizes."
        )
    return np.dtype(np.int32) if max_value <= INT32_LIMIT else np.dtype(np.int64)


def csr_from_parts(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_array:
    """Wrap arrays that already form a canonical CSR matrix, without copying them.

    The caller guarantees sorted, duplicate-free column indices in each row.
    """
    matrix = sp.csr_array((data, indices, indptr), shape=shape, copy=False)
    matrix.has_canonical_format = True
    return matrix
