"""convop on PETSc and SLEPc: the distributed matrix of a layer and its spectrum over MPI.

petsc4py, slepc4py and MPI stay optional: they are imported when a function
here is called, never when convop is imported. See ``docs/distributed.md`` for
the set-up (Debian's packages) and ``mpiexec`` runs.

Every rank assembles only its own rows, a block of whole output channels from
:meth:`convop.ConvGeometry.row_partition` (no communication), so a layer too
large for one machine is spread over the ranks' memory:

- :func:`conv_matrix`: the matrix as a PETSc ``MPIAIJ`` ``Mat``.
- :func:`operator`: a ``MatShell`` over the matrix-free
  :class:`convop.LayerOperator` of each rank's output channels.
- :func:`spectral_norm`, :func:`singular_values`, :func:`condition_number`,
  :func:`spectrum_report`: through SLEPc, ``sigma_max`` matrix-free (SLEPc's
  ``cross`` SVD: Krylov-Schur on ``A^T A``), the smallest values by shift-invert on the
  Gram matrix with a parallel direct solver (MUMPS); each value is refined as
  ``||A v||``, values below the normal-equations floor are certified through
  the augmented matrix, and values below convop's rank tolerance are 0, as in
  the core.

PETSc's scalars are real in Debian's default build: complex weights need a
complex PETSc build and are refused otherwise.
"""

from __future__ import annotations

import atexit
import math
import time
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

from ._blas import single_threaded
from ._typing import Domain, IntOrTuple, Order, PaddingLike, PaddingMode
from ._validation import as_int, as_real, as_weight, check_finite
from .geometry import ConvGeometry, RowBlock, make_geometry
from .matrix import conv_matrix as _conv_matrix
from .operator import LayerOperator
from .spectral.gram import BlockGram, block_gram
from .spectral.report import SpectralReport
from .spectral.tolerance import rank_tolerance

__all__ = [
    "condition_number",
    "conv_matrix",
    "operator",
    "rank_block",
    "singular_values",
    "spectral_norm",
    "spectrum_report",
]

INSTALL_HINT = (
    "this needs petsc4py and slepc4py: on Debian, apt-get install python3-petsc4py "
    "python3-slepc4py python3-mpi4py, then run with Debian's python3 (see docs/distributed.md)"
)


def _petsc() -> Any:
    try:
        from petsc4py import PETSc
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return PETSc


def _slepc() -> Any:
    _petsc()
    try:
        from slepc4py import SLEPc
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return SLEPc


def _layer(weight: Any, input_size: Any, layer: dict[str, Any]) -> tuple[np.ndarray,
                                                                        ConvGeometry]:
    w = as_weight(weight)
    check_finite(w, "weight")
    PETSc = _petsc()
    if np.iscomplexobj(w) and np.dtype(PETSc.ScalarType).kind != "c":
        raise TypeError("`weight` is complex but this PETSc build has real scalars; use a "
                        "complex PETSc build (PETSC_DIR of its x86_64-linux-gnu-complex tree).")
    return w, make_geometry(w.shape, input_size, **layer)


def _comm(comm: Any) -> Any:
    PETSc = _petsc()
    if comm is None:
        return PETSc.COMM_WORLD
    if isinstance(comm, PETSc.Comm):
        return comm
    try:  # an mpi4py communicator
        return PETSc.Comm(comm)
    except Exception as err:  # petsc4py raises plain exceptions here
        raise TypeError(f"`comm` must be a petsc4py or mpi4py communicator; got "
                        f"{type(comm).__name__}.") from err


def rank_block(geometry: ConvGeometry, rank: int, size: int, domain: str = "input"
               ) -> RowBlock:
    """Return the rows rank ``rank`` of ``size`` owns: whole output channels, none if too many.

    Ranks beyond the number of output channels own no rows.
    """
    parts = min(size, geometry.out_channels)
    if rank >= parts:
        end = geometry.out_channels
        return geometry.row_block(range(end, end), domain)
    return geometry.row_partition(parts, domain)[rank]


def column_channels(geometry: ConvGeometry, rank: int, size: int) -> range:
    """Return the input channels whose columns rank ``rank`` of ``size`` owns.

    Vectors are split by whole input channels (columns are channel-major in both
    orders), so each rank's share of a product reads only its own channels.
    """
    c = geometry.in_channels
    return range(c * rank // size, c * (rank + 1) // size)


def _local_columns(geometry: ConvGeometry, comm: Any, domain: str) -> int:
    spatial = geometry.padded_size if domain == "padded" else geometry.input_size
    return len(column_channels(geometry, comm.getRank(), comm.getSize())) * math.prod(spatial)


def conv_matrix(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    comm: Any = None,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    domain: Domain = "input",
    order: Order = "F",
    max_bytes: int | None = None,
) -> Any:
    """Build the layer's matrix as a distributed PETSc ``Mat`` (``MPIAIJ``).

    Each rank builds only its rows (:func:`rank_block`) with
    :func:`convop.conv_matrix`'s ``rows=`` and hands them to PETSc; columns
    (the vectors it multiplies) are split by whole input channels
    (:func:`column_channels`), as for :func:`operator`. ``max_bytes`` bounds each
    rank's block.

    Parameters
    ----------
    weight, input_size, stride, padding, dilation, groups, padding_mode, domain, order
        As in :func:`convop.conv_matrix` (here ``domain="input"`` by default:
        the layer's own map).
    comm : petsc4py or mpi4py communicator, optional
        Default ``PETSc.COMM_WORLD``.
    max_bytes : int, optional
        Memory budget of this rank's block.

    Returns
    -------
    petsc4py.PETSc.Mat

    Examples
    --------
    >>> import numpy as np, pytest
    >>> _ = pytest.importorskip("petsc4py")
    >>> import convop.petsc
    >>> A = convop.petsc.conv_matrix(np.ones((2, 2, 3, 3)), (5, 5), padding=1)
    >>> A.getSize()
    (50, 50)
    """
    PETSc = _petsc()
    layer: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                 padding_mode=padding_mode)
    w, geom = _layer(weight, input_size, layer)
    comm = _comm(comm)
    block = rank_block(geom, comm.getRank(), comm.getSize(), domain)
    local = _conv_matrix(w, geom.input_size, domain=domain, order=order, rows=block.rows,
                         dtype=PETSc.ScalarType, max_bytes=max_bytes, **layer)
    m, n = geom.matrix_shape(domain)
    A = PETSc.Mat().createAIJ(
        size=((local.shape[0], m), (_local_columns(geom, comm, domain), n)),
        csr=(local.indptr.astype(PETSc.IntType), local.indices.astype(PETSc.IntType),
             local.data),
        comm=comm,
    )
    A.assemble()
    return A


class _Shell:
    """The ``MatShell`` context: products split by input channels.

    Rank ``r`` holds the input channels :func:`column_channels` gives it and the
    output rows :func:`rank_block` gives it. ``A x``: each rank applies the layer
    to its own input channels (its im2col reads only those), giving a partial
    output of full length; a reduce-scatter sums the partials onto the row
    owners. ``A^T y``: an allgather of ``y``, then each rank applies the adjoint
    of its own channels' part. So the work per rank shrinks with the ranks; the
    messages are one output vector per product. Plain numpy buffers and MPI
    calls: no PETSc object outlives the matrix.
    """

    def __init__(self, pieces: list[tuple[slice, slice, LayerOperator]], comm: Any,
                 row_counts: np.ndarray, outputs: int, local_cols: int) -> None:
        self.pieces = pieces
        self.comm = comm.tompi4py()
        self.counts = row_counts
        self.offsets = np.concatenate([[0], np.cumsum(row_counts)[:-1]])
        self.full = np.empty(outputs)
        self.mine = np.empty(int(row_counts[self.comm.Get_rank()]))
        self.local_cols = local_cols
        self.products = 0  # applications of A (with SLEPc's cross SVD, Gram products)

    def mult(self, mat: Any, x: Any, y: Any) -> None:
        self.products += 1
        local = x.getArray(readonly=True)
        self.full[:] = 0.0
        for rows, cols, op in self.pieces:
            self.full[rows] += op.matvec(local[cols])
        self.comm.Reduce_scatter(self.full, self.mine, recvcounts=self.counts)
        y.setArray(self.mine)

    def multTranspose(self, mat: Any, y: Any, x: Any) -> None:  # noqa: N802 (PETSc's name)
        piece = y.getArray(readonly=True)
        self.comm.Allgatherv(piece, [self.full, self.counts, self.offsets, _mpi_double()])
        local = np.zeros(self.local_cols)
        for rows, cols, op in self.pieces:
            local[cols] += op.rmatvec(self.full[rows])
        x.setArray(local)

    multHermitian = multTranspose  # real scalars; complex builds take the same adjoint


def _pieces(w: np.ndarray, geom: ConvGeometry, channels: range, layer: dict[str, Any],
            order: Any, dtype: Any, max_bytes: int | None
            ) -> list[tuple[slice, slice, LayerOperator]]:
    """Split a range of input channels into layers: (output rows, local columns, operator).

    A partial group becomes a plain layer of its input channels; a run of whole
    groups stays one grouped layer.
    """
    per_in = math.prod(geom.input_size)
    per_out = math.prod(geom.output_size)
    cig, cog = geom.in_per_group, geom.out_per_group
    plain = {key: value for key, value in layer.items() if key != "groups"}
    pieces = []
    c = channels.start
    while c < channels.stop:
        g = c // cig
        whole_stop = min(channels.stop // cig, geom.groups)  # groups fully inside
        if c == g * cig and whole_stop > g:
            first, last, groups = g, whole_stop, whole_stop - g
            cin = range(g * cig, whole_stop * cig)
            part = w[first * cog:last * cog]
        else:
            stop = min(channels.stop, (g + 1) * cig)
            first, last, groups = g, g + 1, 1
            cin = range(c, stop)
            part = w[g * cog:(g + 1) * cog, c - g * cig:stop - g * cig]
        op = LayerOperator(part, geom.input_size, order=order, dtype=dtype,
                           max_bytes=max_bytes, groups=groups, **plain)
        rows = slice(first * cog * per_out, last * cog * per_out)
        cols = slice((cin.start - channels.start) * per_in, (cin.stop - channels.start) * per_in)
        pieces.append((rows, cols, op))
        c = cin.stop
    return pieces


def _mpi_double() -> Any:
    from mpi4py import MPI

    return MPI.DOUBLE


def operator(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    comm: Any = None,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    order: Order = "F",
    max_bytes: int | None = None,
) -> Any:
    """Return the layer map as a distributed ``MatShell`` over :class:`convop.LayerOperator`.

    Rank ``r`` owns the output rows of :func:`rank_block` and the input columns
    of :func:`column_channels`, and applies :class:`convop.LayerOperator` to its
    own input channels (see the context class for the messages); no matrix is
    built anywhere.

    Returns
    -------
    petsc4py.PETSc.Mat
        Of type ``python``, with ``mult`` and ``multTranspose``.
    """
    PETSc = _petsc()
    layer: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                 padding_mode=padding_mode)
    w, geom = _layer(weight, input_size, layer)
    comm = _comm(comm)
    m, n = geom.matrix_shape("input")
    rank, size = comm.getRank(), comm.getSize()
    row_counts = np.array([len(rank_block(geom, r, size).channels) for r in range(size)],
                          dtype=np.int64) * math.prod(geom.output_size)
    channels = column_channels(geom, rank, size)
    pieces = _pieces(w, geom, channels, layer, order, PETSc.ScalarType, max_bytes)
    local_cols = len(channels) * math.prod(geom.input_size)
    A = PETSc.Mat().createPython(((int(row_counts[rank]), m), (local_cols, n)), comm=comm)
    A.setPythonContext(_Shell(pieces, comm, row_counts, m, local_cols))
    A.setUp()
    _destroy_at_exit(A)
    return A


_live: list[weakref.ref[Any]] = []


def _destroy_at_exit(mat: Any) -> None:
    """Destroy ``mat`` at exit if still alive, before PETSc finalizes.

    A shell matrix with a Python context that is still referenced when Python
    tears its modules down is freed after ``PetscFinalize`` and crashes
    (petsc4py 3.18). Exit handlers run last-registered first, and ours is
    registered after petsc4py's, so it runs before PETSc finalizes.
    """
    if not _live:
        atexit.register(_destroy_live)
    _live[:] = [ref for ref in _live if ref() is not None] + [weakref.ref(mat)]


def _destroy_live() -> None:
    for ref in _live:
        mat = ref()
        if mat is not None:
            mat.destroy()
    _live.clear()


def _operator_of(weight: Any, input_size: Any, comm: Any, matrix_free: bool,
                 layer: dict[str, Any], max_bytes: int | None) -> Any:
    build = operator if matrix_free else conv_matrix
    return build(weight, input_size, comm=comm, max_bytes=max_bytes, **layer)


def _norm(A: Any, v: Any) -> float:
    y = A.createVecLeft()
    A.mult(v, y)
    return float(y.norm())


def _largest(A: Any, comm: Any, k: int, rtol: float, maxiter: int | None
             ) -> tuple[list[tuple[float, float]], int]:
    """Return the k largest (value, residual bound) pairs and the Gram products used."""
    SLEPc = _slepc()
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


def gram_rows(gram: BlockGram, first: int, stop: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return CSR rows of a pixel-block Gram matrix: the (group, pixel) pairs ``first:stop``.

    Unknowns are ordered ``(group, pixel, channel)`` as in
    :class:`convop.spectral.gram.BlockGram`; each rank builds its own rows with no
    communication. Pixels with the same number of neighbours are done at once.
    """
    pattern, blocks, c = gram.pattern, gram.blocks, gram.channels
    npix = pattern.shape[0]
    pairs = np.arange(first, stop)
    groups, pixels = pairs // npix, pairs % npix
    ptr = pattern.indptr.astype(np.int64)
    neighbours = np.diff(ptr)[pixels]
    row_lengths = np.repeat(neighbours * c, c)
    indptr = np.zeros(row_lengths.size + 1, dtype=np.int64)
    np.cumsum(row_lengths, out=indptr[1:])
    data = np.empty(int(indptr[-1]), dtype=blocks.dtype)
    indices = np.empty(int(indptr[-1]), dtype=np.int64)
    for count in np.unique(neighbours):
        sel = np.flatnonzero(neighbours == count)
        k = ptr[pixels[sel]][:, None] + np.arange(count)  # (S, K) pattern entries
        block = blocks[groups[sel][:, None], k]  # (S, K, c, c)
        cols = ((groups[sel][:, None] * npix + pattern.indices[k]) * c)[:, :, None] + np.arange(c)
        starts = indptr[:-1].reshape(-1, c)[sel]  # (S, c): where each row (pixel, a) starts
        where = starts[:, :, None] + np.arange(count * c)  # (S, c, K * c)
        data[where] = block.transpose(0, 2, 1, 3).reshape(sel.size, c, count * c)
        indices[where] = np.broadcast_to(cols.reshape(sel.size, 1, count * c), where.shape)
    return indptr, indices, data


def _gram(weight: np.ndarray, geom: ConvGeometry, side: str, comm: Any,
          max_bytes: int | None) -> Any:
    """Return the Gram matrix as an ``MPIAIJ``, each rank building its own pixels' rows."""
    PETSc = _petsc()
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


def _smallest(weight: np.ndarray, geom: ConvGeometry, comm: Any, k: int, rtol: float,
              layer: dict[str, Any], max_bytes: int | None
              ) -> tuple[list[tuple[float, float]], float]:
    """Return the k smallest (value, residual bound) pairs and a sigma_max scale (to 1e-4).

    Shift-invert Lanczos on the Gram matrix of the smaller side, assembled from the
    layer's taps in pixel blocks (:func:`convop.spectral.gram.block_gram`, rows
    split over the ranks) and factored by MUMPS (Cholesky). Each value is refined
    as ``||A v||`` (``||A^T u||`` on the output side) with the core's operator.
    """
    PETSc, SLEPc = _petsc(), _slepc()
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
    PETSc = _petsc()
    scatter, whole = PETSc.Scatter.toAll(vec)
    scatter.scatter(vec, whole)
    out = whole.getArray().copy()
    scatter.destroy()
    whole.destroy()
    return out


def _certify(A: Any, count: int, t: float, comm: Any) -> np.ndarray:
    """Return the ``count`` smallest singular values through the augmented matrix.

    The core's certification (:mod:`convop.spectral.smallest`) on PETSc: with ``B``
    the tall one of ``A`` and ``A^T``, ``K = [[t I, B], [B^T, -t I]]`` is factored
    by MUMPS (LU); its lower-right inverse block ``-t (B^T B + t^2 I)^{-1}``
    drives block inverse iteration, and the SVD of ``B X`` on the subspace found
    (Rayleigh-Ritz on ``B`` itself, not on the Gram matrix) gives values
    accurate to about ``eps ||B||``.
    """
    PETSc = _petsc()
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


#: Block inverse iterations of the certification at most (zeros converge in one).
_MAX_SUBSPACE_ITERATIONS = 12


def singular_values(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    k: int = 1,
    which: str = "largest",
    comm: Any = None,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    maxiter: int | None = None,
    matrix_free: bool = True,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Return the ``k`` largest or smallest singular values of the layer map, on every rank.

    ``which="largest"``: SLEPc's ``cross`` SVD on :func:`operator`
    (or on :func:`conv_matrix` with ``matrix_free=False``). ``which="smallest"``:
    shift-invert Lanczos on the distributed Gram matrix, factored by MUMPS
    (Cholesky), values below the normal-equations floor computed again through
    the augmented matrix (:func:`_certify`). Values are refined as ``||A v||``
    and set to 0 at or below ``max(m, n) * eps * sigma_max`` (the core's rank
    tolerance), in descending order as in :func:`convop.singular_values`.
    """
    values, _, _ = _singular(weight, input_size, k, which, comm, dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode), rtol, maxiter, matrix_free, max_bytes)
    return values


def _singular(weight: Any, input_size: Any, k: Any, which: str, comm: Any,
              layer: dict[str, Any], rtol: Any, maxiter: int | None, matrix_free: bool,
              max_bytes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Return values (descending), their residual bounds and the products used."""
    count = as_int(k, "k", minimum=1)
    if which not in ("largest", "smallest"):
        raise ValueError(f"`which` must be 'largest' or 'smallest'; got {which!r}.")
    tol = as_real(rtol, "rtol", low=0.0, high=1.0, rule="a float in (0, 1)")
    comm = _comm(comm)
    w, geom = _layer(weight, input_size, layer)
    m, n = geom.matrix_shape("input")
    if count > min(m, n):
        raise ValueError(f"`k` must be at most min(m, n) = {min(m, n)}; got {count}.")
    eps = float(np.finfo(np.float64).eps)
    products = 0
    # One BLAS thread per rank: ranks share the cores, and a multi-threaded OpenBLAS
    # slows the single-threaded work between its calls (see convop._blas).
    with single_threaded():
        if which == "largest":
            A = _operator_of(w, geom.input_size, comm, matrix_free, layer, max_bytes)
            pairs, products = _largest(A, comm, count, tol, maxiter)
            top = pairs[0][0]
            A.destroy()
        else:
            pairs, top = _smallest(w, geom, comm, count, tol, layer, max_bytes)
            # Below the normal-equations floor the Gram matrix cannot tell a value from
            # 0: those are computed again through the augmented matrix, as in the core.
            floor = math.sqrt(max(m, n) * eps) * top
            below = sum(value < floor for value, _ in pairs)
            if below:
                A = conv_matrix(w, geom.input_size, comm=comm, max_bytes=max_bytes, **layer)
                t = rank_tolerance(m, n, top, eps)
                certified = _certify(A, below, t, comm)
                A.destroy()
                # Accurate to about eps ||B||, below the rank tolerance t.
                pairs = sorted(pairs)[below:] + [(float(c), t) for c in certified]
    pairs = sorted(pairs, reverse=True)
    out = np.array([value for value, _ in pairs])
    bounds = np.array([bound for _, bound in pairs])
    zero = out <= rank_tolerance(m, n, top, eps)
    bounds[zero] = np.maximum(bounds[zero], out[zero])  # 0 is within the bound too
    out[zero] = 0.0
    return out, bounds, products


#: Lanczos vectors of the largest-value SVD before a restart.
NCV = 32
#: Extra basis vectors of the shift-invert (and sigma_max scale) eigensolves.
SHIFT_INVERT_EXTRA = 6


def spectral_norm(weight: npt.ArrayLike, input_size: IntOrTuple, **kwargs: Any) -> float:
    """Return the exact largest singular value of the layer map (:func:`singular_values`)."""
    return float(singular_values(weight, input_size, k=1, which="largest", **kwargs)[0])


def spectrum_report(weight: npt.ArrayLike, input_size: IntOrTuple, *, comm: Any = None,
                    stride: IntOrTuple = 1, padding: PaddingLike = 0, dilation: IntOrTuple = 1,
                    groups: int = 1, padding_mode: PaddingMode = "zeros", rtol: float = 1e-10,
                    maxiter: int | None = None, matrix_free: bool = True,
                    max_bytes: int | None = None) -> SpectralReport:
    """Return both extremes, the condition number and their residual bounds.

    As :func:`convop.spectrum_report`; ``products`` counts the Gram products of
    the ``sigma_max`` solve (the smallest value comes from a factorization).
    """
    start = time.perf_counter()
    layer: dict[str, Any] = dict(stride=stride, padding=padding, dilation=dilation,
                                 groups=groups, padding_mode=padding_mode)
    options = (rtol, maxiter, matrix_free, max_bytes)
    top, top_bound, products = _singular(weight, input_size, 1, "largest", comm, layer,
                                         *options)
    low, low_bound, _ = _singular(weight, input_size, 1, "smallest", comm, layer, *options)
    geom = make_geometry(as_weight(weight).shape, input_size, **layer)
    sigma_max, sigma_min = float(top[0]), float(low[0])
    cond = math.inf if sigma_min == 0 else sigma_max / sigma_min
    return SpectralReport(
        operator=f"the layer map (input domain) of {geom.describe()}, on PETSc/SLEPc",
        shape=geom.matrix_shape("input"), sigma_max=sigma_max, sigma_min=sigma_min,
        condition_number=cond, seconds=time.perf_counter() - start,
        sigma_max_error=float(top_bound[0]), sigma_min_error=float(low_bound[0]),
        products=products)


def condition_number(weight: npt.ArrayLike, input_size: IntOrTuple, **kwargs: Any) -> float:
    """``sigma_max / sigma_min`` of the layer map, ``inf`` when rank deficient."""
    return spectrum_report(weight, input_size, **kwargs).condition_number
