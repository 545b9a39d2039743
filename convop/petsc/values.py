"""The public spectral functions on PETSc/SLEPc, as the core's."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from .._blas import single_threaded
from .._typing import IntOrTuple, PaddingLike, PaddingMode
from .._validation import as_int, as_real
from ..geometry import layer_arguments
from ..spectral.report import SpectralReport
from ..spectral.tolerance import rank_tolerance
from ._backend import checked_layer, communicator
from .largest import largest_pairs, operator_of
from .matrix import conv_matrix
from .smallest import certify, smallest_pairs

__all__ = ["condition_number", "singular_values", "spectral_norm", "spectrum_report"]


def singular_values(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    k: int = 1,
    which: str = "largest",
    comm: Any = None,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    maxiter: int | None = None,
    matrix_free: bool = True,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Return the ``k`` largest or smallest singular values of the layer map, on every rank.

    ``which="largest"``: SLEPc's ``cross`` SVD on :func:`operator`
    (or on :func:`conv_matrix` with ``matrix_free=False``). ``which="smallest"``:
    shift-invert Lanczos on the distributed Gram matrix, factored by MUMPS
    (Cholesky), values below the normal-equations floor computed again through
    the augmented matrix (:func:`certify`). Values are refined as ``||A v||``
    and set to 0 at or below ``max(m, n) * eps * sigma_max`` (the core's rank
    tolerance), in descending order as in :func:`convop.singular_values`.
    """
    values, _, _ = _singular(weight, input_size, k, which, comm, dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode), rtol, maxiter, matrix_free, max_bytes)
    return values


def _singular(weight: Any, input_size: Any, k: Any, which: str, comm: Any,
              layer: dict[str, Any], rtol: Any, maxiter: int | None, matrix_free: bool,
              max_bytes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Return values (descending), their residual bounds and the products used."""
    count = as_int(k, "k", minimum=1)
    if which not in ("largest", "smallest"):
        raise ValueError(f"`which` must be 'largest' or 'smallest'; got {which!r}.")
    tol = as_real(rtol, "rtol", low=0.0, high=1.0, rule="a float in (0, 1)")
    comm = communicator(comm)
    w, geom = checked_layer(weight, input_size, layer)
    m, n = geom.matrix_shape("input")
    if count > min(m, n):
        raise ValueError(f"`k` must be at most min(m, n) = {min(m, n)}; got {count}.")
    eps = float(np.finfo(np.float64).eps)
    products = 0
    # One BLAS thread per rank: ranks share the cores, and a multi-threaded OpenBLAS
    # slows the single-threaded work between its calls (see convop._blas).
    with single_threaded():
        if which == "largest":
            A = operator_of(w, geom.input_size, comm, matrix_free, layer, max_bytes)
            pairs, products = largest_pairs(A, comm, count, tol, maxiter)
            top = pairs[0][0]
            A.destroy()
        else:
            pairs, top = smallest_pairs(w, geom, comm, count, tol, layer, max_bytes)
            # Below the normal-equations floor the Gram matrix cannot tell a value from
            # 0: those are computed again through the augmented matrix, as in the core.
            floor = math.sqrt(max(m, n) * eps) * top
            below = sum(value < floor for value, _ in pairs)
            if below:
                A = conv_matrix(w, geom.input_size, comm=comm, max_bytes=max_bytes, **layer)
                t = rank_tolerance(m, n, top, eps)
                certified = certify(A, below, t, comm)
                A.destroy()
                # Accurate to about eps ||B||, below the rank tolerance t.
                pairs = sorted(pairs)[below:] + [(float(c), t) for c in certified]
    pairs = sorted(pairs, reverse=True)
    out = np.array([value for value, _ in pairs])
    bounds = np.array([bound for _, bound in pairs])
    zero = out <= rank_tolerance(m, n, top, eps)
    bounds[zero] = np.maximum(bounds[zero], out[zero])  # 0 is within the bound too
    out[zero] = 0.0
    return out, bounds, products




def spectral_norm(weight: npt.ArrayLike, input_size: IntOrTuple, **kwargs: Any) -> float:
    """Return the exact largest singular value of the layer map (:func:`singular_values`)."""
    return float(singular_values(weight, input_size, k=1, which="largest", **kwargs)[0])


def spectrum_report(weight: npt.ArrayLike, input_size: IntOrTuple, *, comm: Any = None,
                    stride: IntOrTuple = 1, padding: PaddingLike = 0, dilation: IntOrTuple = 1,
                    groups: int = 1, padding_mode: PaddingMode = "zeros", rtol: float = 1e-10,
                    maxiter: int | None = None, matrix_free: bool = True,
                    max_bytes: int | None = None) -> SpectralReport:
    """Return both extremes, the condition number and their residual bounds.

    As :func:`convop.spectrum_report`; ``products`` counts the Gram products of
    the ``sigma_max`` solve (the smallest value comes from a factorization).
    """
    start = time.perf_counter()
    layer = layer_arguments(stride, padding, dilation, groups, padding_mode)
    options = (rtol, maxiter, matrix_free, max_bytes)
    top, top_bound, products = _singular(weight, input_size, 1, "largest", comm, layer,
                                         *options)
    low, low_bound, _ = _singular(weight, input_size, 1, "smallest", comm, layer, *options)
    _, geom = checked_layer(weight, input_size, layer)
    sigma_max, sigma_min = float(top[0]), float(low[0])
    cond = math.inf if sigma_min == 0 else sigma_max / sigma_min
    return SpectralReport(
        operator=f"the layer map (input domain) of {geom.describe()}, on PETSc/SLEPc",
        shape=geom.matrix_shape("input"), sigma_max=sigma_max, sigma_min=sigma_min,
        condition_number=cond, seconds=time.perf_counter() - start,
        sigma_max_error=float(top_bound[0]), sigma_min_error=float(low_bound[0]),
        products=products)


def condition_number(weight: npt.ArrayLike, input_size: IntOrTuple, **kwargs: Any) -> float:
    """``sigma_max / sigma_min`` of the layer map, ``inf`` when rank deficient."""
    return spectrum_report(weight, input_size, **kwargs).condition_number
