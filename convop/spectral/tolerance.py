"""The rank tolerance that every spectral path applies the same way.

A singular value at or below ``max(m, n) * eps * sigma_max`` (the tolerance of
``numpy.linalg.matrix_rank``, with ``eps`` of the work dtype) is reported as
exactly 0: dense SVD, Lanczos, shift-invert and FFT alike.
"""

from __future__ import annotations

import numpy as np


def rank_tolerance(m: int, n: int, sigma_max: float, eps: float) -> float:
    """Return ``max(m, n) * eps * sigma_max``."""
    return max(m, n) * eps * sigma_max


def zero_below(values: np.ndarray, tolerance: float) -> np.ndarray:
    """Set the values at or below ``tolerance`` to 0 and sort them in descending order."""
    values = np.asarray(values, dtype=np.float64)
    return np.sort(np.where(values <= tolerance, 0.0, values))[::-1]
