"""A layer's matrix and spectrum on PETSc/SLEPc over MPI (needs Debian's petsc4py, slepc4py).

Run (set-up in docs/distributed.md):

    mpiexec -n 2 /usr/bin/python3 docs/examples/distributed_spectrum.py

Every rank builds only its own rows; the values equal single-process convop's.
"""

import numpy as np

import convop
import convop.petsc

weight = np.random.default_rng(0).standard_normal((16, 16, 3, 3))
layer = dict(padding=1)

A = convop.petsc.conv_matrix(weight, (32, 32), **layer)  # MPIAIJ: this rank's rows
first, stop = A.getOwnershipRange()
report = convop.petsc.spectrum_report(weight, (32, 32), **layer)
single = convop.spectrum_report(weight, (32, 32), rng=0, progress=False, **layer)
assert abs(report.sigma_max / single.sigma_max - 1) < 1e-9
assert abs(report.sigma_min / single.sigma_min - 1) < 1e-8
rank = A.getComm().getRank()
print(f"rank {rank}: rows {first}:{stop} of {A.getSize()[0]}")
if rank == 0:
    print(report)
A.destroy()
