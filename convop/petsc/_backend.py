"""petsc4py and slepc4py imported on first use; the layer and communicator checks."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._dtypes import as_weight, check_finite
from ..geometry import ConvGeometry, make_geometry

INSTALL_HINT = (
    "this needs petsc4py and slepc4py: on Debian, apt-get install python3-petsc4py "
    "python3-slepc4py python3-mpi4py, then run with Debian's python3 (see docs/distributed.md)"
)


def load_petsc() -> Any:
    try:
        from petsc4py import PETSc
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return PETSc


def load_slepc() -> Any:
    load_petsc()
    try:
        from slepc4py import SLEPc
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return SLEPc


def checked_layer(weight: Any, input_size: Any, layer: dict[str, Any]) -> tuple[np.ndarray,
                                                                        ConvGeometry]:
    w = as_weight(weight)
    check_finite(w, "weight")
    PETSc = load_petsc()
    if np.iscomplexobj(w) and np.dtype(PETSc.ScalarType).kind != "c":
        raise TypeError("`weight` is complex but this PETSc build has real scalars; use a "
                        "complex PETSc build (PETSC_DIR of its x86_64-linux-gnu-complex tree).")
    return w, make_geometry(w.shape, input_size, **layer)


def communicator(comm: Any) -> Any:
    PETSc = load_petsc()
    if comm is None:
        return PETSc.COMM_WORLD
    if isinstance(comm, PETSc.Comm):
        return comm
    try:  # an mpi4py communicator
        return PETSc.Comm(comm)
    except Exception as err:  # petsc4py raises plain exceptions here
        raise TypeError(f"`comm` must be a petsc4py or mpi4py communicator; got "
                        f"{type(comm).__name__}.") from err


