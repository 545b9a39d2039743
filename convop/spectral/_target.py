"""What the spectral functions act on: a weight, a sparse matrix or a LinearOperator.

Whatever the input's dtype, products run in float64 (complex128 for complex
data) unless the caller asks for lower precision: a float32 weight holds exact
numbers, and the operator they define has exact singular values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from .. import _memory
from .._blas import Pool, cores
from .._dtypes import as_weight, check_finite
from .._validation import check_max_bytes
from ..matrix import assemble
from ..operator import LayerOperator
from .products import GramProduct

#: Data types the spectral functions compute in when asked (default float64/complex128).
SPECTRAL_DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.complex64,
                                               np.complex128))


def spectral_dtype(requested: Any, complex_data: bool) -> np.dtype:
    """Return the work dtype: float64/complex128 by default, or the caller's lower precision."""
    if requested is None:
        return np.dtype(np.complex128 if complex_data else np.float64)
    try:
        dt = np.dtype(requested)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`dtype` must be a numpy dtype; got {requested!r}.") from err
    if dt not in SPECTRAL_DTYPES:
        raise TypeError(f"`dtype` must be float32, float64, complex64 or complex128; got {dt}.")
    if complex_data and dt.kind != "c":
        raise TypeError(f"`dtype` {dt} cannot hold the complex operator; use a complex dtype.")
    return dt


class Target:
    """The operator, its work dtype and description, and the explicit matrix on demand."""

    def __init__(self, obj: Any, input_size: Any, layer: dict[str, Any], *, max_bytes: Any,
                 dtype: Any = None) -> None:
        self.max_bytes = check_max_bytes(max_bytes)
        self._matrix: sp.csr_array | None = None
        self.layer: LayerOperator | None = None
        self._grams: dict[tuple[np.dtype, str, np.dtype], Any] = {}
        self.pool = Pool(cores())
        if sp.issparse(obj) or isinstance(obj, sla.LinearOperator):
            if input_size is not None:
                raise ValueError(
                    "`input_size` describes a layer given by its weight; it must be None when "
                    f"passing a {type(obj).__name__}."
                )
        if sp.issparse(obj):
            matrix = sp.csr_array(obj)
            if matrix.dtype.kind not in "biufc":
                raise TypeError(f"`weight` must be a numeric sparse matrix; got dtype "
                                f"{matrix.dtype}.")
            check_finite(matrix.data, "weight")
            self.dtype = spectral_dtype(dtype, matrix.dtype.kind == "c")
            self._matrix = matrix.astype(self.dtype, copy=False)
            self.operator: sla.LinearOperator = sla.aslinearoperator(self._matrix)
            self.description = f"sparse matrix {obj.shape[0]}x{obj.shape[1]}"
            self.is_zero = not np.any(self._matrix.data)
        elif isinstance(obj, sla.LinearOperator):
            self.dtype = spectral_dtype(dtype, np.dtype(obj.dtype).kind == "c")
            self.operator = _InDtype(obj, self.dtype)
            describe = getattr(obj, "describe", None)
            self.description = describe() if callable(describe) else repr(obj)
            if isinstance(obj, LayerOperator):
                check_finite(obj.weight, "weight")
                self.layer = obj
            self.is_zero = self.layer is not None and not np.any(self.layer.weight)
        else:
            if input_size is None:
                raise TypeError("`input_size` is required when passing a weight array.")
            w = as_weight(obj)
            check_finite(w, "weight")
            self.dtype = spectral_dtype(dtype, np.iscomplexobj(w))
            self.layer = LayerOperator(w, input_size, order="C", dtype=self.dtype,
                                       max_bytes=self.max_bytes, **layer)
            self.operator = self.layer
            self.description = self.layer.describe()
            self.is_zero = not np.any(w)
        rows, cols = self.operator.shape
        self.shape: tuple[int, int] = (int(rows), int(cols))

    def close(self) -> None:
        """Release the worker threads and the product buffers."""
        self.pool.close()
        self._grams.clear()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def row_major(self) -> bool:
        """True when products (and the vectors they return) are in PyTorch's row-major order.

        A layer's Gram products always run row-major, whatever the order of a
        LayerOperator given by the caller; explicit operators keep their own.
        """
        return self.layer is not None

    def gram(self, dtype: np.dtype, side: str, result_dtype: np.dtype | None = None) -> Any:
        """``A^H A`` (``side="input"``) or ``A A^H`` as a function of a vector, in ``dtype``.

        Results come out in ``result_dtype`` (default ``dtype``); products in a
        narrower dtype than their results are a mixed-precision solve's helpers,
        which may use Winograd (:class:`GramProduct`).
        """
        key = (np.dtype(dtype), side, np.dtype(result_dtype or dtype))
        if key not in self._grams:
            if self.layer is not None:
                self._grams[key] = GramProduct(
                    self.layer.geometry, self.layer.weight, dtype, side, pool=self.pool,
                    result_dtype=key[2], winograd=key[2].itemsize > key[0].itemsize)
            else:
                op = self.operator
                first, second = (op.matmat, op.rmatmat) if side == "input" else (
                    op.rmatmat, op.matmat)

                def gram(v: np.ndarray) -> np.ndarray:  # rows of vectors, like GramProduct
                    block = np.atleast_2d(v).T
                    out = np.asarray(second(first(block))).T.astype(key[2], copy=False)
                    return out.reshape(v.shape)

                self._grams[key] = gram
        return self._grams[key]

    def gram_bytes(self, dtype: np.dtype) -> int:
        """Bytes one Gram product holds or allocates."""
        if self.layer is not None:
            return GramProduct.bytes_for(self.layer.geometry, dtype)
        return self.vector_bytes(4)

    def apply(self, v: np.ndarray, which: str) -> np.ndarray:
        """Apply ``A`` (``"forward"``) or ``A^H`` (``"adjoint"``), vectors laid out as for gram."""
        if self.layer is not None:
            product = self.gram(self.dtype, "input")
            out = product.forward(v) if which == "forward" else product.adjoint(v)
            return np.array(out)
        return self.operator.matvec(v) if which == "forward" else self.operator.rmatvec(v)

    @property
    def eps(self) -> float:
        """Machine epsilon of the work dtype."""
        return float(np.finfo(self.dtype).eps)

    def vector_bytes(self, count: int = 1) -> int:
        """Bytes of ``count`` vectors of the larger side."""
        return count * max(self.shape) * self.dtype.itemsize

    def product_bytes(self) -> int:
        """Scratch of one product with the operator."""
        if self.layer is not None:
            return self.layer.sample_bytes(self.dtype)
        return self.vector_bytes(2)

    @property
    def explicit_matrix(self) -> sp.csr_array | None:
        """The sparse matrix the caller passed (None for a layer or a LinearOperator)."""
        return self._matrix if self.layer is None else None

    def matrix(self) -> sp.csr_array:
        """Return the explicit sparse matrix in the work dtype (built once for a layer).

        A layer's matrix is built row-major, like its products.
        """
        if self._matrix is None:
            if self.layer is None:
                raise TypeError(
                    "the smallest singular values need the explicit matrix: pass a weight, a "
                    f"sparse matrix or a LayerOperator, not a {type(self.operator).__name__}."
                )
            self._matrix = assemble(self.layer.geometry, self.layer.weight, domain="input",
                                    order="C", dtype=self.dtype, max_bytes=self.max_bytes)
        return self._matrix

    def dense(self) -> np.ndarray:
        """Return the operator as a dense array (callers check the size first)."""
        m, n = self.shape
        _memory.check_budget(3 * m * n * self.dtype.itemsize, self.max_bytes,
                             f"a dense SVD of the {m}x{n} operator")
        if self._matrix is not None or self.layer is not None:
            return self.matrix().toarray()
        return np.asarray(self.operator.matmat(np.eye(n, dtype=self.dtype)))


class _InDtype(sla.LinearOperator):
    """A LinearOperator applied to vectors of the work dtype, its results returned in it."""

    def __init__(self, op: sla.LinearOperator, dtype: np.dtype) -> None:
        self.op = op
        super().__init__(dtype=dtype, shape=op.shape)

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.op.matvec(np.asarray(x, dtype=self.dtype)), dtype=self.dtype)

    def _rmatvec(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(self.op.rmatvec(np.asarray(y, dtype=self.dtype)), dtype=self.dtype)

    def _matmat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.op.matmat(np.asarray(X, dtype=self.dtype)), dtype=self.dtype)

    def _rmatmat(self, Y: np.ndarray) -> np.ndarray:
        return np.asarray(self.op.rmatmat(np.asarray(Y, dtype=self.dtype)), dtype=self.dtype)
