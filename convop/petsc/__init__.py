"""convop on PETSc and SLEPc: the distributed matrix of a layer and its spectrum over MPI.

petsc4py, slepc4py and MPI stay optional: they are imported when a function
here is called, never when convop is imported. See ``docs/distributed.md`` for
the set-up (Debian's packages) and ``mpiexec`` runs.

Every rank assembles only its own rows, a block of whole output channels from
:meth:`convop.ConvGeometry.row_partition` (no communication), so a layer too
large for one machine is spread over the ranks' memory:

- :func:`conv_matrix`: the matrix as a PETSc ``MPIAIJ`` ``Mat``.
- :func:`operator`: a ``MatShell`` over the matrix-free
  :class:`convop.LayerOperator`, each rank applying it to its own input channels.
- :func:`spectral_norm`, :func:`singular_values`, :func:`condition_number`,
  :func:`spectrum_report`: through SLEPc, ``sigma_max`` matrix-free (SLEPc's
  ``cross`` SVD: Krylov-Schur on ``A^T A``), the smallest values by shift-invert on the
  Gram matrix with a parallel direct solver (MUMPS); each value is refined as
  ``||A v||``, values below the normal-equations floor are certified through
  the augmented matrix, and values below convop's rank tolerance are 0, as in
  the core.

PETSc's scalars are real in Debian's default build: complex weights need a
complex PETSc build and are refused otherwise.

One job per module: :mod:`._backend` (lazy imports, communicators),
:mod:`.matrix` (the assembled matrix and who owns what), :mod:`.shell` (the
matrix-free operator), :mod:`.largest` and :mod:`.smallest` (the SLEPc solves),
:mod:`.values` (the public spectral functions).
"""

from .matrix import column_channels, conv_matrix, rank_block
from .shell import operator
from .values import condition_number, singular_values, spectral_norm, spectrum_report

__all__ = [
    "column_channels",
    "condition_number",
    "conv_matrix",
    "operator",
    "rank_block",
    "singular_values",
    "spectral_norm",
    "spectrum_report",
]
