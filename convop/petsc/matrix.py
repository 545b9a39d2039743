"""The layer's matrix as a distributed PETSc ``Mat``, and which rows and columns each rank owns."""

from __future__ import annotations

import math
from typing import Any

import numpy.typing as npt

from .._typing import Domain, IntOrTuple, Order, PaddingLike, PaddingMode
from ..geometry import ConvGeometry, RowBlock, layer_arguments
from ..matrix import conv_matrix as _conv_matrix
from ._backend import checked_layer, communicator, load_petsc

__all__ = ["column_channels", "conv_matrix", "rank_block"]


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
    PETSc = load_petsc()
    layer = layer_arguments(stride, padding, dilation, groups, padding_mode)
    w, geom = checked_layer(weight, input_size, layer)
    comm = communicator(comm)
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


