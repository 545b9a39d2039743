"""Spectral analysis of the exact layer map: one job per module.

- ``values``: :func:`singular_values` and :func:`spectral_norm` (dense, Lanczos).
- ``smallest``: the smallest values (shift-invert, certified against the rank
  tolerance through the augmented matrix).
- ``report``: :func:`spectrum_report`, :class:`SpectralReport`, :func:`condition_number`.
- ``circular``: :func:`circular_singular_values` through the FFT, and the
  Lanczos warm start.
- ``bounds``: :func:`gram_iteration_bound`, a fast certified upper bound.
- ``lanczos``: the eigensolver; ``tolerance``: the rank tolerance; ``_target``:
  what the functions act on, in float64 whatever the weight's dtype.
"""

from .bounds import gram_iteration_bound
from .circular import circular_singular_values
from .report import SpectralReport, condition_number, spectrum_report
from .values import DENSE_SVD_MAX_ENTRIES, singular_values, spectral_norm

__all__ = [
    "DENSE_SVD_MAX_ENTRIES",
    "SpectralReport",
    "circular_singular_values",
    "condition_number",
    "gram_iteration_bound",
    "singular_values",
    "spectral_norm",
    "spectrum_report",
]
