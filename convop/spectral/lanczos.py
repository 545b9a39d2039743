"""The largest eigenpairs of a Hermitian positive semi-definite operator, repeats included.

Lanczos (ARPACK ``eigsh``) from one start vector cannot see a second copy of a
repeated eigenvalue (circular and symmetric kernels have many). So after it
converges, Lanczos runs again on the operator with the found eigenvectors
projected out; whatever it finds above the k-th value was missed and joins the
set, until nothing above remains.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse.linalg as sla

#: Lanczos basis size: conv spectra cluster, and a wide basis restarts less.
BASIS = 40


def basis_size(size: int, k: int) -> int:
    """Return number of Lanczos vectors kept for ``k`` eigenpairs of a ``size`` operator."""
    return min(size, max(2 * k + 1, BASIS))


def random_vector(rng: np.random.Generator, size: int, dtype: np.dtype) -> np.ndarray:
    """Return a standard normal vector (complex for complex dtypes)."""
    v = rng.standard_normal(size)
    if np.dtype(dtype).kind == "c":
        v = v + 1j * rng.standard_normal(size)
    return v.astype(dtype)


def top_eigenpairs(
    operator: sla.LinearOperator,
    k: int,
    tol: float,
    rng: np.random.Generator,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the ``k`` largest eigenpairs of a Hermitian PSD operator (ascending, like eigsh)."""
    size = operator.shape[0]
    dtype = np.dtype(operator.dtype)
    v0 = random_vector(rng, size, dtype) if start is None else start.astype(dtype)
    if not np.any(operator.matvec(v0)):
        # A nonzero PSD operator maps a random vector to zero with probability 0: this is
        # the zero operator (say, a layer whose taps all land on zero padding).
        return np.zeros(k), np.eye(size, k, dtype=dtype)
    lam, vecs = sla.eigsh(operator, k=k, which="LA", tol=tol, v0=v0, ncv=basis_size(size, k))
    lam = lam.real
    if k == 1:
        return lam, vecs
    while vecs.shape[1] < size - 1:
        basis = vecs

        def deflated(v: np.ndarray, basis: np.ndarray = basis) -> np.ndarray:
            v = v - basis @ (basis.conj().T @ v)
            w = operator.matvec(v)
            return w - basis @ (basis.conj().T @ w)

        rest = sla.LinearOperator(operator.shape, matvec=deflated, dtype=dtype)
        v0 = random_vector(rng, size, dtype)
        extra, extra_vec = sla.eigsh(rest, k=1, which="LA", tol=tol,
                                     v0=v0 - basis @ (basis.conj().T @ v0),
                                     ncv=min(size, BASIS))
        kth = np.sort(lam)[-k]
        if extra[0].real <= kth * (1 + 2 * tol):
            break
        lam = np.append(lam, extra.real)
        vecs = np.hstack([vecs, extra_vec])
    top = np.argsort(lam)[-k:]
    return lam[top], vecs[:, top]
