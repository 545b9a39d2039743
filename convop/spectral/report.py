"""Both ends of the spectrum at once: the report, and the condition number."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy.typing as npt

from .._blas import single_threaded
from .._progress import Progress
from .._typing import IntOrTuple, PaddingLike, PaddingMode
from .._validation import as_rng
from ..geometry import layer_arguments
from ._target import Target
from .values import (
    check_options,
    check_rtol,
    check_rtol_for,
    compute,
    reporting,
)


@dataclass(frozen=True)
class SpectralReport:
    """Extreme singular values of one operator, and which operator that is.

    Attributes
    ----------
    operator : str
        The layer (geometry, padding mode, stride, input size) or matrix described.
    shape : tuple of int
        Shape of the operator ``(rows, cols)``.
    sigma_max, sigma_min : float
        Largest and smallest (the ``min(rows, cols)``-th) singular value;
        ``sigma_min`` is 0 at or below the rank tolerance.
    condition_number : float
        ``sigma_max / sigma_min``; ``inf`` when the operator is rank deficient.
    seconds : float
        Wall time of the computation.
    sigma_max_error, sigma_min_error : float
        Residual bounds: a singular value of the operator lies within this
        distance of ``sigma_max`` (``sigma_min``). ``sigma_max`` is a Ritz value,
        never above the exact largest singular value. 0 for a dense SVD.
    products : int
        Operator applications (products, or solves) the computation made.
    """

    operator: str
    shape: tuple[int, int]
    sigma_max: float
    sigma_min: float
    condition_number: float
    seconds: float
    sigma_max_error: float = 0.0
    sigma_min_error: float = 0.0
    products: int = 0

    @property
    def rank_deficient(self) -> bool:
        """True when the smallest singular value is zero."""
        return self.sigma_min == 0.0

    def __str__(self) -> str:
        return "\n".join(
            [
                f"operator        {self.operator}",
                f"shape           {self.shape[0]} x {self.shape[1]}",
                f"sigma_max       {self.sigma_max:.12g}  (spectral norm, Lipschitz constant; "
                f"residual bound {self.sigma_max_error:.1e})",
                f"sigma_min       {self.sigma_min:.12g}"
                + ("  (rank deficient)" if self.rank_deficient else "")
                + f"  (residual bound {self.sigma_min_error:.1e})",
                f"condition       {self.condition_number:.6g}",
                f"seconds         {self.seconds:.3f} ({self.products} products)",
            ]
        )


def spectrum_report(
    weight: Any,
    input_size: IntOrTuple | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    rng: Any = None,
    max_bytes: int | None = None,
    dtype: npt.DTypeLike | None = None,
    maxiter: int | None = None,
    callback: Callable[[int, float], None] | None = None,
    progress: bool | None = None,
) -> SpectralReport:
    """Spectral norm, smallest singular value and condition number, naming the operator.

    Parameters are those of :func:`convop.singular_values`; ``callback`` sees
    the largest value's estimates, then the smallest's.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import spectrum_report
    >>> r = spectrum_report(np.ones((1, 1, 3, 3)), (8, 8), padding=1, padding_mode="circular")
    >>> round(r.sigma_max, 10), round(r.sigma_min, 10), r.rank_deficient
    (9.0, 0.1715728753, False)
    """
    start = time.perf_counter()
    tol = check_rtol(rtol)
    options = check_options(maxiter, callback, progress)
    target = Target(weight, input_size, layer_arguments(stride, padding, dilation, groups,
                                                        padding_mode),
                    max_bytes=max_bytes, dtype=dtype)
    check_rtol_for(tol, target.dtype)
    gen = as_rng(rng)
    with target, single_threaded():
        with Progress("the largest singular value", enabled=options["progress"]) as stage:
            top = compute(target, 1, "largest", tol, gen, maxiter=options["maxiter"],
                          callback=reporting(stage, options["callback"]))
        sigma_max = float(top.values[0]) if top.values.size else 0.0
        with Progress("the smallest singular value", enabled=options["progress"]) as stage:
            bottom = compute(target, 1, "smallest", tol, gen, sigma_max=sigma_max,
                             maxiter=options["maxiter"],
                             callback=reporting(stage, options["callback"]))
    sigma_min = float(bottom.values[-1]) if bottom.values.size else 0.0
    cond = math.inf if sigma_min == 0.0 else sigma_max / sigma_min
    return SpectralReport(
        operator=target.description,
        shape=target.shape,
        sigma_max=sigma_max,
        sigma_min=sigma_min,
        condition_number=cond,
        seconds=time.perf_counter() - start,
        sigma_max_error=float(top.bounds[0]) if top.bounds.size else 0.0,
        sigma_min_error=float(bottom.bounds[-1]) if bottom.bounds.size else 0.0,
        products=top.steps + bottom.steps,
    )


def condition_number(
    weight: Any,
    input_size: IntOrTuple | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    rng: Any = None,
    max_bytes: int | None = None,
    dtype: npt.DTypeLike | None = None,
    maxiter: int | None = None,
    callback: Callable[[int, float], None] | None = None,
    progress: bool | None = None,
) -> float:
    """``sigma_max / sigma_min`` of the layer map; ``inf`` when it is rank deficient.

    ``sigma_min`` is the ``min(rows, cols)``-th singular value.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import condition_number
    >>> condition_number(np.ones((8, 1, 1, 1)), (4, 4), stride=2)   # 12 of 16 pixels unread
    inf
    >>> condition_number(np.ones((1, 1, 1, 1)), (4, 4), stride=2)   # wide: 4 values, all 1
    1.0
    """
    return spectrum_report(
        weight, input_size, stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, rtol=rtol, rng=rng, max_bytes=max_bytes, dtype=dtype,
        maxiter=maxiter, callback=callback, progress=progress,
    ).condition_number
