"""Spectral analysis of the exact layer map: one job per module.

- ``values``: :func:`singular_values` and :func:`spectral_norm`, their checks,
  and ``compute``, the one dispatcher (dense SVD, largest, smallest) where a new
  method is added.
- ``largest``: the largest values (Lanczos on the Gram operator, warm start,
  float32 phase); ``mixed_precision``: its float32 corrections certified by
  float64 residuals; ``lanczos``: the Lanczos and Krylov-Schur eigensolvers.
- ``smallest``: the smallest values (shift-invert, certified against the rank
  tolerance through the augmented matrix), with ``gram`` and ``cholesky``.
- ``results``: :class:`~convop.spectral.results.Singular`, what the solvers return.
- ``report``: :func:`spectrum_report`, :class:`SpectralReport`, :func:`condition_number`.
- ``circular``: :func:`circular_singular_values` through the FFT, and the
  Lanczos warm start.
- ``bounds``: :func:`gram_iteration_bound`, a fast certified upper bound.
- ``certificate``: :func:`certify_spectrum`, "sigma_max <= a and sigma_min >= b"
  proven, refuted or undecided within rounding.
- ``density``: :func:`spectral_density`, the distribution of all singular
  values with its band (exact, or ``quadrature``: stochastic Lanczos quadrature).
- ``products`` and ``winograd``: Gram products with reused buffers;
  ``tolerance``: the rank tolerance; ``_target``: what the functions act on, in
  float64 whatever the weight's dtype.
"""

from .bounds import gram_iteration_bound
from .certificate import SpectrumCertificate, certify_spectrum
from .circular import circular_singular_values
from .density import SpectralDensity, spectral_density
from .report import SpectralReport, condition_number, spectrum_report
from .values import DENSE_SVD_MAX_ENTRIES, singular_values, spectral_norm

__all__ = [
    "DENSE_SVD_MAX_ENTRIES",
    "SpectralDensity",
    "SpectralReport",
    "SpectrumCertificate",
    "certify_spectrum",
    "circular_singular_values",
    "condition_number",
    "gram_iteration_bound",
    "singular_values",
    "spectral_density",
    "spectral_norm",
    "spectrum_report",
]
