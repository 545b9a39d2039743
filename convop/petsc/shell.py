"""The layer map as a distributed ``MatShell`` over the matrix-free LayerOperator."""

from __future__ import annotations

import atexit
import math
import weakref
from typing import Any

import numpy as np
import numpy.typing as npt

from .._typing import IntOrTuple, Order, PaddingLike, PaddingMode
from ..geometry import ConvGeometry, layer_arguments
from ..operator import LayerOperator
from ._backend import checked_layer, communicator, load_petsc
from .matrix import column_channels, rank_block

__all__ = ["operator"]


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
    PETSc = load_petsc()
    layer = layer_arguments(stride, padding, dilation, groups, padding_mode)
    w, geom = checked_layer(weight, input_size, layer)
    comm = communicator(comm)
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


