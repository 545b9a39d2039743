"""The largest singular values through SLEPc's SVD."""

from __future__ import annotations

from typing import Any

from ._backend import load_slepc
from .matrix import conv_matrix
from .shell import operator

#: Lanczos vectors of the largest-value SVD before a restart.
NCV = 32


def operator_of(weight: Any, input_size: Any, comm: Any, matrix_free: bool,
                layer: dict[str, Any], max_bytes: int | None) -> Any:
    """Return the layer as a PETSc shell operator (matrix-free) or an assembled matrix."""
    build = operator if matrix_free else conv_matrix
    return build(weight, input_size, comm=comm, max_bytes=max_bytes, **layer)


def largest_pairs(A: Any, comm: Any, k: int, rtol: float, maxiter: int | None
             ) -> tuple[list[tuple[float, float]], int]:
    """Return the k largest (value, residual bound) pairs and the Gram products used."""
    SLEPc = load_slepc()
    svd = SLEPc.SVD().create(comm)
    svd.setOperators(A)
    svd.setType(SLEPc.SVD.Type.CROSS)  # Krylov-Schur on A^T A: one basis to orthogonalize
    svd.setWhichSingularTriplets(SLEPc.SVD.Which.LARGEST)
    # A long Krylov space before restarting: the top of a conv layer's spectrum is a
    # near-continuum, and SLEPc's default (k + 15 vectors) restarts far too often.
    m, n = A.getSize()
    svd.setDimensions(k, ncv=min(min(m, n), max(2 * k + 1, NCV)))
    # convop's rule on the Gram operator: residual below rtol/4 of lambda.
    svd.setTolerances(tol=rtol / 4, max_it=maxiter or 10**4)
    svd.setFromOptions()
    shell = A.getType() == "python"
    before = A.getPythonContext().products if shell else 0
    svd.solve()
    found = svd.getConverged()
    if found < k:
        raise RuntimeError(f"SLEPc's SVD converged {found} of {k} singular values; pass a "
                           f"larger `maxiter` or `rtol`.")
    products = A.getPythonContext().products - before if shell else 0
    pairs = []
    v, y, z = A.createVecRight(), A.createVecLeft(), A.createVecRight()
    for i in range(k):
        svd.getSingularTriplet(i, None, v)
        v.scale(1.0 / v.norm())
        A.mult(v, y)
        sigma = max(float(svd.getValue(i)), float(y.norm()))
        # |lambda - lambda*| <= ||A^T A v - lambda v|| for some lambda*, so sigma is within
        # that over sigma of a singular value.
        A.multTranspose(y, z)
        z.axpy(-float(y.norm()) ** 2, v)
        pairs.append((sigma, float(z.norm()) / max(sigma, 1e-300)))
    for obj in (svd, v, y, z):
        obj.destroy()
    return pairs, products


