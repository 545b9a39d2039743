"""The largest eigenpairs of a Hermitian positive semi-definite operator, repeats included.

Two Lanczos methods, both certified by the true residual of what they return:

- :func:`top_eigenpair`, for the largest eigenvalue of a large operator (the
  spectral norm): the three-term recurrence with local reorthogonalization,
  the tridiagonal Ritz problem solved every step, and the Ritz vector formed at
  the end. Full reorthogonalization would cost more than the products on
  layers with 10^5 unknowns. The estimate ``beta_j |s_j|`` decides when to stop;
  the true residual ``||G y - theta y||`` of the Ritz vector certifies the
  answer (and, if loss of orthogonality made the estimate optimistic, the
  iteration restarts from ``y``).
- :func:`top_eigenpairs`, for several eigenvalues (and for the shift-invert
  operators of the smallest singular values): Krylov-Schur, i.e. Lanczos with
  full reorthogonalization and thick restarts that keep the best Ritz vectors.
  One Krylov space cannot see a second copy of a repeated eigenvalue (circular
  and symmetric kernels have many), so after convergence Lanczos runs again
  with the found eigenvectors projected out; what it finds above the k-th value
  was missed and joins the set.

The mixed-precision refinement of the top pair lives in
:mod:`convop.spectral.mixed_precision`.

Every function reports after each step through ``callback(step, theta)`` and
stops with :class:`NoConvergence` after ``maxiter`` operator applications.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.linalg.blas

from ..errors import NoConvergence

Apply = Callable[[np.ndarray], np.ndarray]
Callback = Callable[[int, float], None]

#: Lanczos basis size of the Krylov-Schur method before a thick restart.
BASIS = 40
#: Steps without halving the residual estimate that count as stagnation (low precision).
STAGNATION = 60
#: Stagnation counts only this close to the tolerance. The top of a conv layer's spectrum
#: is nearly continuous, so the estimate falls slowly long before any rounding floor
#: (benchmarks/TUNING.md#stall-near-tol).
STALL_NEAR_TOL = 2.0
#: Vectors a first phase hands on, and the size of the mixed-precision rounds' exact
#: block: the best vector and the top value's twin (or the last correction's direction;
#: benchmarks/TUNING.md#exact-block).
BLOCK = 2


@dataclass(frozen=True)
class Eigenpairs:
    """Eigenpairs found by Lanczos, largest first.

    ``residuals[i] = ||G y_i - values[i] y_i||`` for the returned unit vectors:
    an eigenvalue of ``G`` lies within it of ``values[i]``.
    """

    values: np.ndarray
    vectors: np.ndarray  # (size, k)
    residuals: np.ndarray
    steps: int


def basis_size(size: int, k: int) -> int:
    """Return the number of Lanczos vectors kept for ``k`` eigenpairs of a ``size`` operator."""
    return min(size, max(2 * k + 1, BASIS))


def random_vector(rng: np.random.Generator, size: int, dtype: np.dtype) -> np.ndarray:
    """Return a standard normal vector (complex for complex dtypes)."""
    v = rng.standard_normal(size)
    if np.dtype(dtype).kind == "c":
        v = v + 1j * rng.standard_normal(size)
    return v.astype(dtype)


# One eigenvalue, many unknowns ---------------------------------------------------------------


def top_eigenpair(apply: Apply, size: int, *, dtype: np.dtype, tol: float,
                  rng: np.random.Generator, start: np.ndarray | None = None,
                  maxiter: int | None = None, callback: Callback | None = None,
                  max_basis: int | None = None, stagnate: bool = False,
                  twins: float = 0.0, accept: float | None = None,
                  floor: float | None = None, stop: Callable[[np.ndarray], bool] | None = None,
                  partial: bool = False) -> Eigenpairs:
    """Return the largest eigenpair of a Hermitian PSD operator to relative accuracy ``tol``.

    ``start`` is a vector, or rows of vectors mixed with random weights (the
    cosine and sine waves of a circular warm start). ``max_basis`` bounds the
    stored Lanczos vectors (memory); beyond it the iteration restarts from the
    current Ritz vector. With ``stagnate`` (a low-precision first phase) the
    iteration also stops when its residual estimate stops falling; with
    ``twins`` as well, it returns as soon as its estimate converges (no product
    for the true residual: the next phase makes exact ones) and adds, as more
    columns, the Ritz vectors whose values lie within ``twins`` (relative) of
    the top one (at most ``BLOCK - 1``). ``accept`` (default ``tol``) is the
    relative true residual that ends the iteration at a restart when the
    estimate has not reached ``tol``. ``floor`` ends it too, whatever the
    residual, once a Rayleigh quotient reaches it: a caller that knows an upper
    bound of the top eigenvalue needs no more than a value that close to it.
    With ``stop`` as well, reaching ``floor`` is only necessary: ``stop`` then
    tests the Ritz vector (shift-invert's caller measures it with its own
    operator), and when it passes the pair returns at once, its residual the
    estimate's.
    With ``partial``, running out of ``maxiter`` returns the pair reached (its
    true residual says it did not converge) instead of raising.

    One vector, not a block: a block Krylov space of dimension 2j has polynomial
    degree j only, and on conv layers that cost more products than the
    near-degenerate top pairs it resolves faster (benchmarks/TUNING.md#single-vector).
    """
    dtype = np.dtype(dtype)
    limit = maxiter if maxiter is not None else default_limit(size)
    cap = max(3, min(size, max_basis or limit, limit + 1))
    work = VectorOps(size, dtype)
    v = _start_vector(start, size, dtype, rng)
    steps = 0
    eps = float(np.finfo(dtype).eps)
    accept = tol if accept is None else max(tol, accept)
    while True:
        norm = work.norm(v)
        if not (norm > 0 and math.isfinite(norm)):
            v = random_vector(rng, size, dtype)
            norm = work.norm(v)
        # The basis as separate vectors, not one big array: under malloc's mmap threshold
        # they come from (and return to) the heap, where touching memory again costs
        # nothing; first-touch page faults of a fresh array cost as much as the products
        # on some machines.
        basis = [v / norm]
        alphas: list[float] = []
        betas: list[float] = []
        w = writable(apply(basis[0]), basis[0])
        steps += 1
        estimates: list[float] = []
        s = np.ones(1)
        stalled = False
        while True:
            j = len(basis) - 1
            q = basis[j]
            alpha = work.dot(q, w).real
            work.subtract(w, alpha, q)
            if j:
                work.subtract(w, betas[-1], basis[j - 1])
            # Local reorthogonalization against the last two vectors: the recurrence's
            # rounding shows up there first.
            for previous in basis[max(0, j - 1): j + 1]:
                work.subtract(w, work.dot(previous, w), previous)
            beta = work.norm(w)
            alphas.append(alpha)
            theta, s = top_ritz(alphas, betas)
            estimate = beta * abs(s[-1])
            estimates.append(estimate)
            if callback is not None:
                callback(steps, theta)
            reached = floor is not None and theta >= floor
            if reached and stop is not None:
                y = combine(basis, s, work)
                if stop(y):
                    return Eigenpairs(np.array([theta]), y[:, np.newaxis], np.array([estimate]),
                                      steps)
                reached = False
            converged = (estimate <= tol * max(theta, 0.0) or beta <= eps * max(theta, 1e-300)
                         or reached)
            if (stagnate and len(estimates) > STAGNATION
                    and estimate <= STALL_NEAR_TOL * tol * theta):
                # Low-precision products: near their rounding level the estimate may stop
                # falling. A long window: on a continuous top of the spectrum convergence
                # is slow, not stalled.
                stalled = estimate >= 0.5 * min(estimates[-STAGNATION:-1])
                converged = converged or stalled
            if converged or j + 1 >= cap or steps >= limit:
                break
            betas.append(beta)
            basis.append(w / beta)
            w = writable(apply(basis[-1]), basis[-1])  # the product's buffer, ours for now
            steps += 1
        y = combine(basis, s, work)  # the Ritz vector
        if stagnate and (steps >= limit or stalled or twins):
            # A first phase hands on what it reached, and the top value's near twins.
            ritz, S = top_ritz_block(alphas, betas, BLOCK)
            keep = [i for i in range(ritz.size) if i and ritz[i] >= ritz[0] * (1 - twins)]
            vectors = np.stack([y] + [combine(basis, S[:, i], work) for i in keep], axis=1)
            return Eigenpairs(np.concatenate([[theta], ritz[keep]]), vectors,
                              np.full(len(keep) + 1, estimates[-1]), steps)
        gy = np.array(apply(y))
        steps += 1
        theta = work.dot(y, gy).real  # the Rayleigh quotient of the formed vector
        work.subtract(gy, theta, y)
        residual = work.norm(gy)
        # The estimate is only a guide (rounding, or low-precision products, make it
        # optimistic): the true residual decides, or a stall of the low-precision phase.
        if (residual <= accept * theta or stalled or theta == 0.0
                or (floor is not None and theta >= floor)):
            return Eigenpairs(np.array([theta]), y[:, np.newaxis], np.array([residual]), steps)
        if reached:  # the estimate's rounding, not the vector's: the floor no longer stops it
            floor = None
        if steps >= limit:
            if partial:
                return Eigenpairs(np.array([theta]), y[:, np.newaxis], np.array([residual]),
                                  steps)
            raise NoConvergence(
                f"Lanczos did not reach the relative accuracy {tol:.1e} within {limit} operator "
                f"applications; the estimate {theta:.12g} has residual {residual:.3g}. Pass a "
                f"larger `maxiter` or `rtol`.", theta, residual, steps)
        v = y  # restart from the Ritz vector (memory cap, or an optimistic estimate)


def default_limit(size: int) -> int:
    """Return :func:`top_eigenpair`'s products without ``maxiter`` before it gives up."""
    return max(1000, 20 * int(math.sqrt(size)))


def writable(w: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Return the product ``w`` if it may be changed in place, else a copy.

    In place when it is a contiguous array of its own (a product buffer that the
    next product overwrites anyway); a copy when it could be the input itself.
    """
    if (isinstance(w, np.ndarray) and w.flags.writeable and w.flags.c_contiguous
            and not np.may_share_memory(w, source)):
        return w
    return np.array(w)


def _start_vector(start: np.ndarray | None, size: int, dtype: np.dtype,
                  rng: np.random.Generator) -> np.ndarray:
    """Make a start vector: random, given, or rows mixed with random weights."""
    if start is None:
        return random_vector(rng, size, dtype)
    rows = np.atleast_2d(np.asarray(start))
    weights = rng.standard_normal(rows.shape[0])
    return (weights @ rows).astype(dtype)


def combine(basis: list[np.ndarray], coefficients: np.ndarray, work: VectorOps
             ) -> np.ndarray:
    """Return the unit vector ``sum_i coefficients[i] basis[i]``."""
    y = np.zeros_like(basis[0])
    for coefficient, vector in zip(coefficients, basis):
        work.subtract(y, -coefficient, vector)
    y /= work.norm(y)
    return y


def top_ritz_block(alphas: list[float], betas: list[float], k: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``k`` largest eigenpairs (descending) of the tridiagonal Lanczos matrix."""
    j = len(alphas)
    k = min(k, j)
    if j == 1:
        return np.array(alphas[:1]), np.ones((1, 1))
    values, vectors = scipy.linalg.eigh_tridiagonal(
        np.asarray(alphas), np.asarray(betas[: j - 1]), select="i", select_range=(j - k, j - 1))
    return values[::-1], vectors[:, ::-1]


def top_ritz(alphas: list[float], betas: list[float]) -> tuple[float, np.ndarray]:
    """Return the largest eigenpair of the tridiagonal Lanczos matrix."""
    values, vectors = top_ritz_block(alphas, betas, 1)
    return float(values[0]), vectors[:, 0]


class VectorOps:
    """In-place vector arithmetic through BLAS level 1 (the caller keeps BLAS single-threaded).

    Multi-threaded level-1 BLAS right after threaded GEMMs costs 20-100x its
    single-threaded time on two cores; the spectral functions run with BLAS at
    one thread (:func:`convop._blas.single_threaded`) and their products on a
    pool of threads.
    """

    def __init__(self, size: int, dtype: np.dtype) -> None:
        self.complex = np.dtype(dtype).kind == "c"
        self._axpy = scipy.linalg.blas.get_blas_funcs("axpy", dtype=np.dtype(dtype))

    def dot(self, a: np.ndarray, b: np.ndarray) -> complex:
        """Return ``a^H b``."""
        return complex(np.vdot(a, b)) if self.complex else complex(np.dot(a, b))

    def norm(self, a: np.ndarray) -> float:
        """Return ``||a||``."""
        return math.sqrt(max(self.dot(a, a).real, 0.0))

    def subtract(self, target: np.ndarray, coefficient: complex, vector: np.ndarray) -> None:
        """``target -= coefficient * vector`` in place (one pass)."""
        c = -coefficient if self.complex else -coefficient.real
        self._axpy(vector, target, a=c)


# Several eigenvalues -----------------------------------------------------------------------


def top_eigenpairs(apply: Apply, size: int, k: int, *, dtype: np.dtype, tol: float,
                   rng: np.random.Generator, start: np.ndarray | None = None,
                   maxiter: int | None = None, callback: Callback | None = None,
                   deflate: bool = True, above: float = math.inf) -> Eigenpairs:
    """Return the ``k`` largest eigenpairs (largest first), repeated eigenvalues included.

    Ritz values above ``above`` need not converge: the caller resolves those
    another way (the smallest singular values below the normal-equations floor).
    """
    dtype = np.dtype(dtype)
    limit = maxiter if maxiter is not None else max(2000, 50 * k * int(math.sqrt(size)))
    found = _krylov_schur(apply, size, k, dtype, tol, rng, start, limit, callback,
                          above=above)
    values, vectors, residuals, steps = (found.values, found.vectors, found.residuals,
                                         found.steps)
    # Fill up to k (an invariant Krylov space ends early), then look for missed repeats.
    while vectors.shape[1] < size and (vectors.shape[1] < k or deflate and k > 1):
        basis = vectors

        def deflated(v: np.ndarray, basis: np.ndarray = basis) -> np.ndarray:
            v = v - basis @ (basis.conj().T @ v)
            w = apply(v)
            return w - basis @ (basis.conj().T @ w)

        v0 = random_vector(rng, size, dtype)
        extra = _krylov_schur(deflated, size, 1, dtype, tol, rng,
                              v0 - basis @ (basis.conj().T @ v0), limit - steps, callback,
                              top=float(values.max(initial=0.0)), above=above)
        steps += extra.steps
        if vectors.shape[1] >= k and extra.values[0] <= np.sort(values)[::-1][k - 1] * (
                1 + 2 * tol):
            break
        values = np.append(values, extra.values)
        vectors = np.hstack([vectors, extra.vectors])
        residuals = np.append(residuals, extra.residuals)
    order = np.argsort(values)[::-1][:k]
    return Eigenpairs(values[order], vectors[:, order], residuals[order], steps)


def _krylov_schur(apply: Apply, size: int, k: int, dtype: np.dtype, tol: float,
                  rng: np.random.Generator, start: np.ndarray | None, limit: int,
                  callback: Callback | None, top: float = 0.0,
                  above: float = math.inf) -> Eigenpairs:
    """Lanczos with full reorthogonalization and thick restarts (Krylov-Schur).

    ``top`` is the operator's largest eigenvalue when known (a deflated run):
    eigenvalues far below it are judged against it.
    """
    m = basis_size(size, k)
    keep = min(m - 1, max(k, m // 2))
    V = np.zeros((m + 1, size), dtype=dtype)
    H = np.zeros((m + 1, m), dtype=dtype)
    v = random_vector(rng, size, dtype) if start is None else np.asarray(start, dtype=dtype)
    if not np.linalg.norm(v) > 0:
        v = random_vector(rng, size, dtype)
    V[0] = v / np.linalg.norm(v)
    first = 0
    steps = 0
    scale = 0.0  # a running estimate of ||G|| for the invariant-subspace test
    while True:
        filled = m  # columns of H filled in this cycle (fewer when the limit cuts it short)
        for j in range(first, m):
            w = apply(V[j])
            steps += 1
            h = V[: j + 1].conj() @ w
            w = w - V[: j + 1].T @ h
            correction = V[: j + 1].conj() @ w  # twice is enough (Kahan, Parlett)
            w = w - V[: j + 1].T @ correction
            h = h + correction
            H[: j + 1, j] = h
            beta = float(np.linalg.norm(w))
            H[j + 1, j] = beta
            scale = max(scale, float(np.abs(h).max(initial=0.0)), top)
            if beta <= math.sqrt(size) * np.finfo(dtype).eps * scale:
                # An invariant subspace: its Ritz values are exact eigenvalues.
                return _ritz(apply, V[: j + 1], H[: j + 1, : j + 1], k, steps)
            V[j + 1] = w / beta
            # The Ritz values every step: a few small eigh calls against a product each,
            # and the iteration stops as soon as the k wanted pairs have converged.
            theta, S, done = _converged(H, j + 1, k, tol, top, above)
            if callback is not None:
                callback(steps, float(theta[0]))
            if done and j + 1 >= k:
                return _ritz(apply, V[: j + 1], H[: j + 1, : j + 1], k, steps, theta, S)
            if steps >= limit:
                filled = j + 1
                break
        # Only the filled columns: the empty rest would read as converged (a zero coupling).
        theta, S, done = _converged(H, filled, k, tol, top, above)
        if (done and filled >= k) or filled >= size:
            return _ritz(apply, V[:filled], H[:filled, :filled], k, steps, theta, S)
        if steps >= limit:
            estimate = float(abs(H[filled, filled - 1] * S[filled - 1, 0]))
            raise NoConvergence(
                f"Lanczos did not converge to the relative accuracy {tol:.1e} within {limit} "
                f"operator applications; the largest estimate is {theta[0]:.12g} with residual "
                f"{estimate:.3g}. Pass a larger `maxiter` or `rtol`.", float(theta[0]),
                estimate, steps)
        # Thick restart: keep the best Ritz vectors and the residual direction.
        Y = S[:, :keep]
        V[:keep] = (V[:m].T @ Y).T
        coupling = H[m, m - 1] * S[m - 1, :keep]
        V[keep] = V[m]
        H[:] = 0
        H[:keep, :keep] = np.diag(theta[:keep])
        H[keep, :keep] = coupling
        H[:keep, keep] = np.conj(coupling)
        first = keep


def _converged(H: np.ndarray, j: int, k: int, tol: float, top: float, above: float
               ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Ritz values (descending) and vectors of ``H[:j, :j]``, and whether ``k`` converged."""
    theta, S = np.linalg.eigh(hermitian(H[:j, :j]))
    theta, S = theta[::-1], S[:, ::-1]
    estimates = np.abs(H[j, j - 1] * S[j - 1, :k])
    # Relative accuracy for each value, measured against the largest for tiny ones
    # (an exact zero cannot be met relatively).
    floor = tol * max(theta[0], top, 0.0)
    wanted = theta[:k]
    done = bool(np.all((estimates[: wanted.size] <= tol * np.maximum(wanted, floor))
                       | (wanted > above)))
    return theta, S, done


def hermitian(H: np.ndarray) -> np.ndarray:
    """Return the Hermitian part of ``H`` (rounding makes a projected Gram matrix drift)."""
    return (H + H.conj().T) / 2


def _ritz(apply: Apply, V: np.ndarray, H: np.ndarray, k: int, steps: int,
          theta: np.ndarray | None = None, S: np.ndarray | None = None) -> Eigenpairs:
    """Ritz pairs of the projection, with their true residuals (one product each)."""
    if theta is None or S is None:
        theta, S = np.linalg.eigh(hermitian(H))
        order = np.argsort(theta)[::-1]
        theta, S = theta[order], S[:, order]
    k = min(k, theta.size)
    Y = V.T @ S[:, :k]
    Y /= np.linalg.norm(Y, axis=0)
    residuals = np.empty(k)
    values = np.empty(k)
    for i in range(k):
        gy = apply(Y[:, i])
        values[i] = float(np.vdot(Y[:, i], gy).real)
        residuals[i] = float(np.linalg.norm(gy - values[i] * Y[:, i]))
    return Eigenpairs(values, Y, residuals, steps + k)
