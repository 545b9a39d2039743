"""Stochastic Lanczos quadrature: each probe's Gauss quadrature of the Gram spectrum, with bounds.

A unit probe ``v`` (Rademacher entries over ``sqrt(n)``) defines the measure
``mu_v = sum_i |<v, q_i>|^2 delta(lambda_i)`` on the eigenvalues of the Gram
matrix ``A^H A`` (or ``A A^H``, the smaller side); its mean over probes is the
spectral measure ``(1/n) sum_i delta(lambda_i)``, whose distribution function in
``sigma = sqrt(lambda)`` is the fraction of singular values at or below ``sigma``.
``m`` Lanczos steps from ``v`` give the ``m``-node Gauss quadrature of
``mu_v``: nodes ``theta_k`` (Ritz values) and weights ``tau_k`` (squared first
components of the tridiagonal's eigenvectors).

Two errors separate that quadrature from the layer's distribution function:

- *quadrature*: by the Chebyshev-Markov-Stieltjes inequalities the distribution
  function of ``mu_v`` at ``x`` in ``[theta_k, theta_{k+1})`` lies between
  ``tau_1 + ... + tau_{k-1}`` and ``tau_1 + ... + tau_{k+1}`` (exact arithmetic;
  the basis is fully reorthogonalized to stay close to it);
- *probes*: for a Rademacher probe and a spectral projector ``P`` of trace ``r``,
  ``Var <v, P v> <= 2 min(r, n - r) / n^2``, so the mean of ``N`` probes is
  within ``Z`` standard deviations, ``Z sqrt(2 min(F, 1 - F) / (n N))``.

:class:`ProbeQuadrature` holds one probe's nodes and weights and evaluates its
bounds; :func:`lanczos_probe` runs the steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg

#: Standard deviations of the probe term in the band.
Z = 3.0
#: A node moves by at most this many product epsilons times the Gram norm (a float32
#: product errs by 1 to 3, benchmarks/TUNING.md#density-rounding).
ROUNDING = 16
#: Most probes chosen for a ``tol`` (a tiny operator would ask for thousands; its
#: values are exact anyway unless the quadrature is forced).
MAX_PROBES = 256
#: Steps between two checks of an adaptive probe's band.
CHECK_EVERY = 10


@dataclass(frozen=True)
class ProbeQuadrature:
    """One probe's Gauss quadrature: Gram eigenvalue nodes (ascending) and their weights.

    ``shift`` bounds how far the products' rounding moves a node (Weyl: at most
    the norm of the product's error), and the bounds widen by it.
    """

    theta: np.ndarray  # Ritz values of the Gram operator, ascending
    weights: np.ndarray  # summing to 1
    shift: float = 0.0

    @property
    def nodes(self) -> np.ndarray:
        """The nodes as singular values."""
        return np.sqrt(np.maximum(self.theta, 0.0))

    def bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the probe measure's distribution function at ``x``."""
        cum = np.concatenate(([0.0], np.cumsum(self.weights)))
        m = self.theta.size
        high = np.sqrt(np.maximum(self.theta + self.shift, 0.0))
        low = np.sqrt(np.maximum(self.theta - self.shift, 0.0))
        below = np.searchsorted(high, x, side="right")  # nodes surely at or below x
        maybe = np.searchsorted(low, x, side="right")  # nodes possibly at or below x
        return cum[np.maximum(below - 1, 0)], np.minimum(cum[np.minimum(maybe + 1, m)], 1.0)

    def estimate(self, x: np.ndarray, low: float, high: float) -> np.ndarray:
        """Interpolate the distribution function through each node's midpoint step.

        At node ``k`` it takes ``tau_1 + ... + tau_{k-1} + tau_k / 2``, linear in
        between, from 0 at ``low`` to 1 at ``high``: inside the bounds everywhere.
        """
        nodes = self.nodes
        middle = np.cumsum(self.weights) - self.weights / 2
        xs = np.concatenate(([min(low, nodes[0])], nodes, [max(high, nodes[-1])]))
        ys = np.concatenate(([0.0], middle, [1.0]))
        return np.interp(x, xs, ys)

    def breakpoints(self) -> np.ndarray:
        """Where the bounds jump: the nodes moved by the shift either way."""
        return np.sqrt(np.maximum(np.concatenate(
            (self.theta - self.shift, self.theta + self.shift)), 0.0))

    def widest(self) -> float:
        """Return the largest width of the bounds over all ``x``."""
        points = self.breakpoints()
        lower, upper = self.bounds(np.concatenate((points, np.nextafter(points, -np.inf))))
        return float(np.max(upper - lower))


def gauss_quadrature(alpha: np.ndarray, beta: np.ndarray, shift: float = 0.0
                     ) -> ProbeQuadrature:
    """Return the quadrature of the tridiagonal ``(alpha, beta)``."""
    if alpha.size == 1:
        theta, first = alpha.copy(), np.ones(1)
    else:
        theta, vectors = scipy.linalg.eigh_tridiagonal(alpha, beta)
        first = vectors[0]
    weights = first**2
    weights /= weights.sum()
    return ProbeQuadrature(theta, weights, shift)


def lanczos_probe(gram: Callable[[np.ndarray], np.ndarray], probe: np.ndarray, steps: int,
                  width: float | None, product_eps: float,
                  report: Callable[[int], None] | None = None) -> tuple[ProbeQuadrature, int]:
    """Run Lanczos from ``probe`` (unit norm); return its quadrature and the products used.

    ``steps`` is the most steps; with a ``width``, the probe stops as soon as
    its bounds are narrower than it everywhere (checked every ``CHECK_EVERY``
    steps). It stops at a breakdown: the Krylov space is invariant to within the
    products' rounding (``product_eps``).
    """
    n = probe.size
    dtype = probe.dtype
    basis = np.empty((steps + 1, n), dtype=dtype)
    basis[0] = probe
    alpha = np.zeros(steps)
    beta = np.zeros(steps)
    scale = 0.0
    done = steps
    for j in range(steps):
        w = np.array(gram(basis[j]), dtype=dtype)  # the product returns a reused buffer
        alpha[j] = float(np.vdot(basis[j], w).real)
        w -= alpha[j] * basis[j]
        if j:
            w -= beta[j - 1] * basis[j - 1]
        # Full reorthogonalization, a second pass when the first cancels much (DGKS).
        norm = float(np.linalg.norm(w))
        for _ in range(2):
            w -= (basis[:j + 1].conj() @ w) @ basis[:j + 1]
            before, norm = norm, float(np.linalg.norm(w))
            if norm > 0.7 * before:
                break
        beta[j] = norm
        scale = max(scale, abs(alpha[j]) + norm)
        if report is not None:
            report(j + 1)
        if norm <= 10 * product_eps * scale or j + 1 == n:
            done = j + 1
            break
        basis[j + 1] = w / norm
        if width is not None and (j + 1) % CHECK_EVERY == 0:
            shift = ROUNDING * product_eps * scale
            if gauss_quadrature(alpha[:j + 1], beta[:j], shift).widest() <= width:
                done = j + 1
                break
    # The products' error is about eps times the accumulation, far below this shift.
    shift = ROUNDING * product_eps * scale
    return gauss_quadrature(alpha[:done], beta[:done - 1], shift), done


def probe_term(lower: np.ndarray, upper: np.ndarray, count: int, probes: int) -> np.ndarray:
    """``Z`` standard deviations of a mean of ``probes`` probes, the fraction within bounds.

    The variance bound ``2 min(F, 1 - F) / n`` is taken at its largest over
    ``lower <= F <= upper``.
    """
    spread = np.minimum(upper, 1.0 - lower).clip(0.0, 0.5)
    return Z * np.sqrt(2.0 * spread / (count * probes))


def probes_for(tol: float, count: int) -> int:
    """Probes whose term stays within half of ``tol`` wherever the fraction is (capped)."""
    return min(MAX_PROBES, max(1, math.ceil((2 * Z / tol) ** 2 / count)))


def rademacher(rng: np.random.Generator, count: int, dtype: np.dtype) -> np.ndarray:
    """Return a unit probe of ``+-1/sqrt(count)`` entries."""
    signs = rng.integers(0, 2, count, dtype=np.int8).astype(dtype) * 2 - 1
    return signs / math.sqrt(count)
