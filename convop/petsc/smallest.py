"""The smallest singular values: shift-invert on the Gram matrix, certified below its floor."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..geometry import ConvGeometry
from ..operator import LayerOperator
from ..spectral.gram import BlockGram, block_gram
from ._backend import load_petsc, load_slepc

#: Extra basis vectors of the shift-invert (and sigma_max scale) eigensolves.
SHIFT_INVERT_EXTRA = 6
#: Block inverse iterations of the certification at most (zeros converge in one).
_MAX_SUBSPACE_ITERATIONS = 12


def gram_rows(gram: BlockGram, first: int, stop: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return CSR rows of a pixel-block Gram matrix: the (group, pixel) pairs ``first:stop``.

    Unknowns are ordered ``(group, pixel, channel)`` as in
    :class:`convop.spectral.gram.BlockGram`; each rank builds its own rows with no
    communication. Pixels with the same number of neighbours are done at once.
    """
    pattern, c = gram.pattern, gram.channels
    npix = pattern.shape[0]
    pairs = np.arange(first, stop)
    groups, pixels = pairs // npix, pairs % npix
    ptr = pattern.indptr.astype(np.int64)
    neighbours = np.diff(ptr)[pixels]
    row_lengths = np.repeat(neighbours * c, c)
    indptr = np.zeros(row_lengths.size + 1, dtype=np.int64)
    np.cumsum(row_lengths, out=indptr[1:])
    data = np.empty(int(indptr[-1]), dtype=gram.dtype)
    indices = np.empty(int(indptr[-1]), dtype=np.int64)
    for count in np.unique(neighbours):
        sel = np.flatnonzero(neighbours == count)
        k = ptr[pixels[sel]][:, None] + np.arange(count)  # (S, K) pattern entries
        block = gram.table[groups[sel][:, None], gram.index[k]]  # (S, K, c, c)
        cols = ((groups[sel][:, None] * npix + pattern.indices[k]) * c)[:, :, None] + np.arange(c)
        starts = indptr[:-1].reshape(-1, c)[sel]  # (S, c): where each row (pixel, a) starts
        where = starts[:, :, None] + np.arange(count * c)  # (S, c, K * c)
        data[where] = block.transpose(0, 2, 1, 3).reshape(sel.size, c, count * c)
        indices[where] = np.broadcast_to(cols.reshape(sel.size, 1, count * c), where.shape)
    return indptr, indices, data


def _gram(weight: np.ndarray, geom: ConvGeometry, side: str, comm: Any,
          max_bytes: int | None) -> Any:
    """Return the Gram matrix as an ``MPIAIJ``, each rank building its own pixels' rows."""
    PETSc = load_petsc()
    gram = block_gram(geom, weight, side, np.dtype(PETSc.ScalarType), max_bytes=max_bytes)
    pairs = gram.groups * gram.pattern.shape[0]
    rank, size = comm.getRank(), comm.getSize()
    first, stop = pairs * rank // size, pairs * (rank + 1) // size
    indptr, indices, data = gram_rows(gram, first, stop)
    unknowns = pairs * gram.channels
    local = (stop - first) * gram.channels
    G = PETSc.Mat().createAIJ(
        size=((local, unknowns), (local, unknowns)),
        csr=(indptr.astype(PETSc.IntType), indices.astype(PETSc.IntType), data), comm=comm)
    G.assemble()
    return G


def smallest_pairs(weight: np.ndarray, geom: ConvGeometry, comm: Any, k: int, rtol: float,
              layer: dict[str, Any], max_bytes: int | None
              ) -> tuple[list[tuple[float, float]], float]:
    """Return the k smallest (value, residual bound) pairs and a sigma_max scale (to 1e-4).

    Shift-invert Lanczos on the Gram matrix of the smaller side, assembled from the
    layer's taps in pixel blocks (:func:`convop.spectral.gram.block_gram`, rows
    split over the ranks) and factored by MUMPS (Cholesky). Each value is refined
    as ``||A v||`` (``||A^T u||`` on the output side) with the core's operator.
    """
    PETSc, SLEPc = load_petsc(), load_slepc()
    m, n = geom.matrix_shape("input")
    side = "input" if m >= n else "output"
    G = _gram(weight, geom, side, comm, max_bytes)

    def solver(which: Any, target: float | None, tol: float, count: int) -> Any:
        eps = SLEPc.EPS().create(comm)
        eps.setOperators(G)
        eps.setProblemType(SLEPc.EPS.ProblemType.HEP)
        # Shift-invert separates the wanted values at once: a short basis is enough
        # (SLEPc's default of count + 15 costs a solve per extra vector).
        eps.setDimensions(count, ncv=min(G.getSize()[0], 2 * count + SHIFT_INVERT_EXTRA))
        eps.setWhichEigenpairs(which)
        eps.setTolerances(tol=tol, max_it=10**4)
        if target is not None:
            eps.setTarget(target)
            st = eps.getST()
            st.setType(SLEPc.ST.Type.SINVERT)
            ksp = st.getKSP()
            ksp.setType(PETSc.KSP.Type.PREONLY)
            pc = ksp.getPC()
            pc.setType(PETSc.PC.Type.CHOLESKY)
            pc.setFactorSolverType("mumps")
        eps.setFromOptions()
        eps.solve()
        return eps

    top = solver(SLEPc.EPS.Which.LARGEST_REAL, None, 1e-4, 1)  # a scale only
    sigma_max = math.sqrt(max(float(top.getEigenvalue(0).real), 0.0))
    top.destroy()
    # A shift just below 0 keeps the factored matrix positive definite when A has a
    # null space (exact zero singular values).
    op = LayerOperator(weight, geom.input_size, order="C", dtype=np.float64, **layer)
    channels = geom.in_per_group if side == "input" else geom.out_per_group
    npix = math.prod(geom.input_size if side == "input" else geom.output_size)
    v = G.createVecRight()
    scatter, whole = PETSc.Scatter.toAll(v)
    values: list[tuple[float, float]] = []
    vectors: list[Any] = []
    # One Krylov space cannot see a second copy of a repeated value (circular layers
    # have many): a second run with the found vectors deflated, as the core does.
    eps = solver(SLEPc.EPS.Which.TARGET_MAGNITUDE, -1e-12 * sigma_max**2, min(rtol, 1e-12), k)
    for run in range(2):
        if run:  # the same factorization, the found vectors deflated
            eps.setDeflationSpace(vectors)
            eps.solve()
        found = eps.getConverged()
        if found < k:
            raise RuntimeError(f"SLEPc converged {found} of the {k} smallest singular "
                               f"values.")
        for i in range(found):
            eps.getEigenpair(i, v)
            vectors.append(v.copy())
            scatter.scatter(v, whole)
            # (group, pixel, channel) -> (group * channels + channel, pixel): C order.
            x = whole.getArray().reshape(-1, npix, channels).transpose(0, 2, 1).reshape(-1)
            x /= np.linalg.norm(x)
            y = op.matvec(x) if side == "input" else op.rmatvec(x)
            sigma = float(np.linalg.norm(y))
            back = op.rmatvec(y) if side == "input" else op.matvec(y)
            residual = float(np.linalg.norm(back - sigma**2 * x))
            # A singular value lies within residual / sigma, and (||A x|| = sigma for a
            # unit x) one lies in [0, sigma].
            values.append((sigma, min(residual / sigma, sigma) if sigma > 0 else 0.0))
    for obj in (eps, scatter, whole, v, G, *vectors):
        obj.destroy()
    return sorted(values)[:k], sigma_max


def _gathered(vec: Any) -> np.ndarray:
    """Return the whole of a distributed vector on every rank."""
    PETSc = load_petsc()
    scatter, whole = PETSc.Scatter.toAll(vec)
    scatter.scatter(vec, whole)
    out = whole.getArray().copy()
    scatter.destroy()
    whole.destroy()
    return out


def certify(A: Any, count: int, t: float, comm: Any) -> np.ndarray:
    """Return the ``count`` smallest singular values through the augmented matrix.

    The core's certification (:mod:`convop.spectral.smallest`) on PETSc: with ``B``
    the tall one of ``A`` and ``A^T``, ``K = [[t I, B], [B^T, -t I]]`` is factored
    by MUMPS (LU); its lower-right inverse block ``-t (B^T B + t^2 I)^{-1}``
    drives block inverse iteration, and the SVD of ``B X`` on the subspace found
    (Rayleigh-Ritz on ``B`` itself, not on the Gram matrix) gives values
    accurate to about ``eps ||B||``.
    """
    PETSc = load_petsc()
    m, n = A.getSize()
    B = A if m >= n else A.transpose(PETSc.Mat())
    rows, cols = B.getSizes()
    Bt = B.transpose(PETSc.Mat())

    def scaled_identity(layout: Any, value: float) -> Any:
        M = PETSc.Mat().createAIJ(size=(layout, layout), nnz=1, comm=comm)
        first, stop = M.getOwnershipRange()
        for i in range(first, stop):
            M.setValue(i, i, value)
        M.assemble()
        return M

    top, bottom = scaled_identity(rows, t), scaled_identity(cols, -t)
    nest = PETSc.Mat().createNest([[top, B], [Bt, bottom]], comm=comm)
    K = nest.convert("aij", PETSc.Mat())
    ksp = PETSc.KSP().create(comm)
    ksp.setOptionsPrefix("convop_augmented_")
    options = PETSc.Options()
    if not options.hasName("convop_augmented_mat_mumps_icntl_14"):
        # K is nearly singular by design (t is the rank tolerance): MUMPS's pivoting
        # needs more room than its default 20% extra workspace.
        options.setValue("convop_augmented_mat_mumps_icntl_14", 400)
    ksp.setOperators(K)
    ksp.setType(PETSc.KSP.Type.PREONLY)
    pc = ksp.getPC()
    pc.setType(PETSc.PC.Type.LU)
    pc.setFactorSolverType("mumps")
    ksp.setFromOptions()
    _, parts = nest.getNestISs()
    rhs, sol = K.createVecs()
    width = min(cols[1], count + 2)  # a little wider than asked: faster convergence
    rng = np.random.default_rng(0)  # the same start on every rank
    X = np.linalg.qr(rng.standard_normal((cols[1], width)))[0]
    x, y = B.createVecRight(), B.createVecLeft()
    first, stop = x.getOwnershipRange()
    values = np.full(count, np.inf)
    for _ in range(_MAX_SUBSPACE_ITERATIONS):
        solved = np.empty_like(X)
        for j in range(width):
            rhs.set(0.0)
            part = rhs.getSubVector(parts[1])
            part.setArray(X[first:stop, j])
            rhs.restoreSubVector(parts[1], part)
            ksp.solve(rhs, sol)
            if not np.isfinite(sol.norm()):  # a failed factorization leaves inf or NaN
                raise RuntimeError("MUMPS could not factor the augmented matrix; pass "
                                   "PETSc options such as -convop_augmented_mat_mumps_icntl_14")
            part = sol.getSubVector(parts[1])
            solved[:, j] = _gathered(part)
            sol.restoreSubVector(parts[1], part)
        X = np.linalg.qr(solved)[0]
        product = np.empty((rows[1], width))
        for j in range(width):
            x.setArray(X[first:stop, j])
            B.mult(x, y)
            product[:, j] = _gathered(y)
        new = np.sort(np.linalg.svd(product, compute_uv=False))[:count]
        settled = bool(np.allclose(new, values, rtol=1e-12, atol=t))
        values = new
        if settled:
            break
    for obj in (ksp, K, nest, top, bottom, Bt, rhs, sol, x, y):
        obj.destroy()
    if B is not A:
        B.destroy()
    return values




