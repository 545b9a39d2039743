"""The density of a layer's singular values, for any padding and stride, with its error band.

:func:`spectral_density` returns a :class:`SpectralDensity`: every singular
value exactly where that is cheap (the FFT blocks of a block-circulant layer, a
dense SVD of a small operator), otherwise stochastic Lanczos quadrature on the
Gram operator of the smaller side (:mod:`~convop.spectral.quadrature`), its
band the sum of the quadrature's Chebyshev-Markov-Stieltjes bounds and the
probes' variance bound. The exact ``sigma_max`` (and ``sigma_min`` where
affordable) bound the support.

Stochastic Lanczos quadrature rather than the kernel polynomial method: its
Gauss quadrature comes with bounds on the distribution function itself, where
the kernel polynomial method's Chebyshev series oscillates (Gibbs) and needs a
damping kernel whose error has no such bound.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg

from .. import _memory
from .._blas import single_threaded
from .._progress import Progress, check_progress
from .._typing import IntOrTuple, PaddingLike, PaddingMode
from .._validation import as_int, as_real, as_rng, check_choice
from ..geometry import layer_arguments
from ._target import Target
from .quadrature import (
    ProbeQuadrature,
    lanczos_probe,
    probe_term,
    probes_for,
    rademacher,
)
from .values import (
    check_rtol,
    check_rtol_for,
    circulant_layer,
    circulant_values,
    compute,
    dense_values,
)

__all__ = ["SMALLEST_LIMIT", "SpectralDensity", "check_extreme", "spectral_density"]

#: Up to this many matrix entries every singular value comes from a dense SVD.
DENSE_DENSITY_MAX_ENTRIES = 2**22
#: Up to this many singular values they come from the eigenvalues of the dense Gram
#: matrix of the smaller side (4096: 3.6 s; the quadrature's probes cost more below it).
DENSE_GRAM_COUNT = 4096
#: The exact smallest singular value bounds the support up to this many unknowns
#: (a sparse Cholesky of the Gram matrix; larger layers take minutes).
SMALLEST_LIMIT = 20_000
#: Most Lanczos steps of one probe when ``steps`` is not given.
STEPS_CAP = 400
#: Products run in float32 (complex64) for a band of at least this half-width: their
#: rounding moves a node by far less than that fraction of the values.
FLOAT32_TOL = 1e-4
#: Relative slack of the computed extremes when they cut the support.
SUPPORT_SLACK = 1e-6


class SpectralDensity:
    """The distribution of a layer's singular values, with bounds.

    Attributes
    ----------
    count : int
        Number of singular values, ``min(rows, cols)`` of the layer's matrix.
    method : {"fft", "dense", "gram", "slq"}
        Exact through the FFT blocks, a dense SVD or the eigenvalues of the dense
        Gram matrix of the smaller side (to ``sqrt(count * eps) * sigma_max``
        near 0), or stochastic Lanczos quadrature.
    sigma_max, sigma_min : float or None
        The exact extremes bounding the support (``sigma_min`` None when not computed).
    edges : numpy.ndarray
        Bin edges of :attr:`density`, from ``sigma_min`` (or 0) to ``sigma_max``.
    density, density_lower, density_upper : numpy.ndarray
        Fraction of the singular values per unit of value in each bin (integrating
        to 1; bins ``(edges[i], edges[i + 1]]``, the first one closed), and bounds
        on it.
    band : float
        Largest half-width of the distribution function's band (0 when exact).
    probes, steps : int
        Probes and Lanczos steps of the quadrature (0 when exact); each step is one
        Gram product.
    values : numpy.ndarray or None
        Every singular value, ascending, when exact.
    """

    def __init__(self, count: int, method: str, sigma_max: float, sigma_min: float | None,
                 bins: int, *, values: np.ndarray | None = None,
                 quadratures: list[ProbeQuadrature] | None = None, steps: int = 0) -> None:
        self.count = count
        self.method = method
        self.sigma_max = sigma_max
        self.sigma_min = sigma_min
        self.values = values
        self._quadratures = quadratures or []
        self.probes = len(self._quadratures)
        self.steps = steps
        low = 0.0 if sigma_min is None else sigma_min
        high = sigma_max
        span = 1e-9 * max(high, 1.0)
        if high - low < span:  # all values (nearly) equal: bins of a span around them
            low, high = (low + high - span) / 2, (low + high + span) / 2
        self.edges = np.linspace(low, high, bins + 1)
        closed = self.edges.copy()
        closed[0] = np.nextafter(low, -np.inf)  # the first bin holds sigma_min
        mass, lower, upper = self.mass(closed)
        width = np.diff(self.edges)
        self.density, self.density_lower, self.density_upper = (
            mass / width, lower / width, upper / width)
        self.band = self._widest_band()

    @property
    def grid(self) -> np.ndarray:
        """The centers of the bins."""
        return (self.edges[:-1] + self.edges[1:]) / 2

    def cdf(self, x: npt.ArrayLike) -> np.ndarray:
        """Fraction of the singular values at or below ``x`` (the estimate), shaped as ``x``."""
        points = np.asarray(x, dtype=np.float64)
        flat = points.reshape(-1)
        if self.values is not None:
            return (np.searchsorted(self.values, flat, side="right") / self.count).reshape(
                points.shape)
        low, high = self._support()
        estimate = np.zeros(flat.shape)
        for q in self._quadratures:  # summed in place: hundreds of probes, many points
            estimate += q.estimate(flat, low, high)
        estimate /= self.probes
        lower, upper = self.cdf_bounds(flat)
        return np.clip(estimate, lower, upper).reshape(points.shape)

    def cdf_bounds(self, x: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the fraction of singular values at or below ``x``.

        Exact values give equal bounds. The quadrature's bounds hold in exact
        arithmetic (widened by the products' rounding of the nodes); the probes'
        term is ``Z = 3`` standard deviations of its variance bound, so the band
        holds with high probability, not certainty.
        """
        points = np.asarray(x, dtype=np.float64)
        flat = points.reshape(-1)
        if self.values is not None:
            exact = self.cdf(points)
            return exact, exact.copy()
        lower, upper = np.zeros(flat.shape), np.zeros(flat.shape)
        for q in self._quadratures:
            low_q, up_q = q.bounds(flat)
            lower += low_q
            upper += up_q
        lower /= self.probes
        upper /= self.probes
        term = probe_term(lower, upper, self.count, self.probes)
        lower, upper = np.clip(lower - term, 0.0, 1.0), np.clip(upper + term, 0.0, 1.0)
        low, high = self._support()
        below, above = flat < low, flat >= high
        lower[below], upper[below] = 0.0, 0.0
        lower[above], upper[above] = 1.0, 1.0
        return lower.reshape(points.shape), upper.reshape(points.shape)

    def mass(self, edges: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fraction of the singular values in each bin ``(edges[i], edges[i + 1]]``, and bounds."""
        e = np.asarray(edges, dtype=np.float64)
        if e.ndim != 1 or e.size < 2 or np.any(np.diff(e) <= 0):
            raise ValueError("`edges` must be a 1-D increasing array of at least two values.")
        estimate = np.diff(self.cdf(e))
        lower, upper = self.cdf_bounds(e)
        return (estimate, np.maximum(lower[1:] - upper[:-1], 0.0),
                np.minimum(upper[1:] - lower[:-1], 1.0))

    def to_dict(self) -> dict[str, Any]:
        """Return the density as plain Python values (JSON-ready)."""
        return {"method": self.method, "count": self.count, "sigma_max": self.sigma_max,
                "sigma_min": self.sigma_min, "probes": self.probes, "steps": self.steps,
                "band": self.band, "edges": self.edges.tolist(),
                "density": self.density.tolist(),
                "density_lower": self.density_lower.tolist(),
                "density_upper": self.density_upper.tolist()}

    def __repr__(self) -> str:
        low = 0.0 if self.sigma_min is None else self.sigma_min
        how = ("exact" if self.values is not None else
               f"band +-{self.band:.3g}, {self.probes} probe{'s' * (self.probes != 1)}, "
               f"{self.steps} steps")
        return (f"SpectralDensity({self.method}: {self.count} singular values in "
                f"[{low:.6g}, {self.sigma_max:.6g}], {how})")

    def _support(self) -> tuple[float, float]:
        low = 0.0 if self.sigma_min is None else self.sigma_min * (1 - SUPPORT_SLACK)
        return low, self.sigma_max * (1 + SUPPORT_SLACK)

    def _widest_band(self) -> float:
        if self.values is not None:
            return 0.0
        nodes = np.unique(np.concatenate([q.breakpoints() for q in self._quadratures]))
        points = np.concatenate((nodes, np.nextafter(nodes, -np.inf), self.edges))
        lower, upper = self.cdf_bounds(points)
        return float(np.max(upper - lower) / 2)


def spectral_density(
    weight: Any,
    input_size: IntOrTuple | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    probes: int | None = None,
    steps: int | None = None,
    tol: float = 0.02,
    bins: int = 60,
    method: str = "auto",
    sigma_max: float | None = None,
    sigma_min: float | None = None,
    rtol: float = 1e-8,
    rng: Any = None,
    max_bytes: int | None = None,
    progress: bool | None = None,
) -> SpectralDensity:
    """Compute the distribution of the layer's singular values, with an error band.

    The layer's own map, for any padding, stride, dilation and groups, not its
    circular counterpart. Exact where cheap: a block-circulant (circular)
    layer's values from its FFT blocks, a small operator's (at most
    ``2**22`` entries) from a dense SVD, up to 4096 values from the dense Gram
    matrix of the smaller side (the exact ``sigma_min`` apart). Otherwise
    stochastic Lanczos quadrature on the Gram operator of the smaller side,
    matrix-free, fully reorthogonalized, with float32 products (their rounding is far below the
    band). The band adds the quadrature's bounds (Chebyshev-Markov-Stieltjes) and
    three standard deviations of the probes' variance bound; its half-width is
    :attr:`SpectralDensity.band`. The exact ``sigma_max`` and, up to 20 000
    unknowns, ``sigma_min`` bound the support.

    Parameters
    ----------
    weight : array_like, scipy sparse matrix or LinearOperator
        The layer's filters ``(C_out, C_in // groups, *kernel)``, or an operator
        (then ``input_size`` is None and the layer arguments are ignored).
    input_size : int or tuple of int
        Spatial size of the unpadded input (with a weight).
    stride, padding, dilation, groups, padding_mode
        As in :func:`convop.conv_matrix`.
    probes : int, optional
        Random probes; by default enough for the probes' term to stay within
        ``tol / 2`` (one for a 64-channel layer at 56x56).
    steps : int, optional
        Lanczos steps per probe; by default each probe stops once its
        quadrature bounds are within what ``tol`` leaves (at most 400 steps).
    tol : float
        Half-width of the band aimed at, in fraction of the singular values.
    bins : int
        Bins of :attr:`SpectralDensity.density`.
    method : {"auto", "exact", "slq"}
        ``"exact"`` refuses what the FFT or a dense SVD cannot do; ``"slq"``
        uses the quadrature even where exact values are cheap.
    sigma_max, sigma_min : float, optional
        The exact extremes when already known (not recomputed).
    rtol : float
        Relative accuracy of the computed ``sigma_max``.
    rng : None, int or numpy.random.Generator
        Seeds the probes and the start vectors.
    max_bytes : int, optional
        Memory budget (default: 75% of the available memory).
    progress : bool, optional
        As in :func:`convop.singular_values`.

    Returns
    -------
    SpectralDensity

    Examples
    --------
    >>> import numpy as np
    >>> from convop import singular_values, spectral_density
    >>> w = np.random.default_rng(0).standard_normal((8, 8, 3, 3))
    >>> d = spectral_density(w, (16, 16), padding=1, method="slq", rng=0)
    >>> d.method, d.count, bool(d.band <= 0.02)
    ('slq', 2048, True)
    >>> s = np.sort(singular_values(w, (16, 16), padding=1))
    >>> median = s[s.size // 2]
    >>> low, high = d.cdf_bounds(median)
    >>> bool(low <= 0.5 <= high), bool(abs(d.cdf(median) - 0.5) < 0.02)
    (True, True)
    """
    check_choice(method, "method", ("auto", "exact", "slq"))
    band = as_real(tol, "tol", low=0.0, high=0.5, rule="a float in (0, 0.5)")
    count_bins = as_int(bins, "bins", minimum=1, maximum=100_000)
    wanted_probes = None if probes is None else as_int(probes, "probes", minimum=1,
                                                       maximum=100_000)
    wanted_steps = None if steps is None else as_int(steps, "steps", minimum=1)
    accuracy = check_rtol(rtol)
    known_max = check_extreme(sigma_max, "sigma_max")
    known_min = check_extreme(sigma_min, "sigma_min")
    enabled = check_progress(progress)
    generator = as_rng(rng)
    target = Target(weight, input_size, layer_arguments(stride, padding, dilation, groups,
                                                        padding_mode), max_bytes=max_bytes)
    check_rtol_for(accuracy, target.dtype)
    m, n = target.shape
    count = min(m, n)
    if count == 0:
        raise ValueError(f"the {m}x{n} operator has no singular values.")
    exact = _exact_method(target)
    if method == "exact" and exact is None:
        raise ValueError(
            f"`method='exact'` needs a circular layer, at most {DENSE_DENSITY_MAX_ENTRIES} "
            f"matrix entries (a dense SVD) or at most {DENSE_GRAM_COUNT} singular values "
            f"(the dense Gram matrix of the smaller side); this {m}x{n} operator has "
            f"{count}: use method='slq' (or 'auto').")
    chosen = "slq" if method == "slq" else exact or "slq"
    with target, single_threaded(), Progress("the singular-value density",
                                             enabled=enabled) as stage:
        if chosen == "gram":
            values = _gram_values(target, count, accuracy, generator, stage)
        elif chosen != "slq":
            values = np.sort((circulant_values(target) if chosen == "fft"
                              else dense_values(target)).values)
        if chosen != "slq":
            return SpectralDensity(count, chosen, float(values[-1]), float(values[0]),
                                   count_bins, values=values)
        if known_max is None:
            stage.update("sigma_max")
            known_max = float(compute(target, 1, "largest", accuracy, generator).values[0])
        if known_min is None and count <= SMALLEST_LIMIT and (
                target.layer is not None or target.explicit_matrix is not None):
            stage.update("sigma_min")
            known_min = float(compute(target, 1, "smallest", accuracy, generator,
                                      known_max).values[0])
        quadratures, total = _quadrature(target, count, band, wanted_probes, wanted_steps,
                                         generator, stage)
    return SpectralDensity(count, "slq", known_max, known_min, count_bins,
                           quadratures=quadratures, steps=total)


def _exact_method(target: Target) -> str | None:
    """Return how the target's values are all computed exactly and cheaply, if they are."""
    m, n = target.shape
    if circulant_layer(target) is not None:
        return "fft"
    if m * n <= DENSE_DENSITY_MAX_ENTRIES or target.is_zero:
        return "dense"
    explicit = target.layer is not None or target.explicit_matrix is not None
    return "gram" if min(m, n) <= DENSE_GRAM_COUNT and explicit else None


def _gram_values(target: Target, count: int, rtol: float, rng: np.random.Generator,
                 stage: Progress) -> np.ndarray:
    """Every singular value, ascending, from the dense Gram matrix of the smaller side.

    Squaring costs accuracy near 0 (``sqrt(count * eps) * sigma_max``): the exact
    smallest value is computed apart and the values are kept inside the extremes.
    """
    _memory.check_budget(4 * count * count * target.dtype.itemsize, target.max_bytes,
                         f"the dense {count}x{count} Gram matrix")
    stage.update("the dense Gram matrix")
    a = target.matrix()
    gram = (a.conj().T @ a) if target.shape[1] <= target.shape[0] else (a @ a.conj().T)
    theta = scipy.linalg.eigvalsh(gram.toarray(), driver="evd")
    top = math.sqrt(max(float(theta[-1]), 0.0))
    bottom = float(compute(target, 1, "smallest", rtol, rng, top).values[0])
    return np.clip(np.sqrt(np.maximum(theta, 0.0)), bottom, top)


def _quadrature(target: Target, count: int, tol: float, probes: int | None,
                steps: int | None, rng: np.random.Generator, stage: Progress
                ) -> tuple[list[ProbeQuadrature], int]:
    """Run every probe; return their quadratures and the Lanczos steps taken."""
    side = "input" if target.shape[1] <= target.shape[0] else "output"
    narrow = tol >= FLOAT32_TOL and target.layer is not None
    product_dtype = np.dtype(
        (np.complex64 if target.dtype.kind == "c" else np.float32) if narrow else target.dtype)
    gram = target.gram(product_dtype, side, target.dtype)
    total_probes = probes if probes is not None else probes_for(tol, count)
    cap = min(steps if steps is not None else STEPS_CAP, count)
    needed = (cap + 1) * count * target.dtype.itemsize + target.gram_bytes(product_dtype)
    _memory.check_budget(needed, target.max_bytes,
                         f"{cap} Lanczos vectors of {count} entries for the density")
    # What the quadrature may use of the band once the probes' term (at its widest) is in.
    widest_term = float(probe_term(np.array(0.5), np.array(0.5), count, total_probes))
    width = None if steps is not None else 2 * max(tol - widest_term, tol / 4)
    eps = float(np.finfo(product_dtype).eps)
    quadratures: list[ProbeQuadrature] = []
    total = 0
    for p in range(total_probes):
        def report(step: int, p: int = p) -> None:
            stage.update(f"probe {p + 1}/{total_probes}, step {step}")

        probe = rademacher(rng, count, target.dtype)
        quadrature, taken = lanczos_probe(gram, probe, cap, width, eps, report)
        quadratures.append(quadrature)
        total += taken
    return quadratures, total


def check_extreme(value: Any, name: str) -> float | None:
    """Validate a known extreme singular value: None or a finite non-negative number."""
    if value is None:
        return None
    if not (isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(
            value, bool) and math.isfinite(value) and value >= 0):
        raise ValueError(f"`{name}` must be a finite non-negative number or None; "
                         f"got {value!r}.")
    return float(value)
