"""Distributed spectra (convop.petsc on PETSc/SLEPc) against single-process convop, one run.

Run with Debian's PETSc (``docs/distributed.md``), for P = 1 and 2::

    mpiexec -n P /usr/bin/python3 benchmarks/bench_distributed.py

Rank 0 first times single-process convop (the others wait without spinning),
then every rank runs the distributed computation; the ratio is distributed time
over single-process time, measured in the same run. Goal (issue 13): within 1.5
on 2 ranks. Cases: ``sigma_max`` of 64->64 3x3 @56 (rtol 1e-8, matrix-free) and
``sigma_min`` of 16->16 3x3 @32. Then the memory per rank of two layers too
large for one machine, from ``ConvGeometry.row_partition`` (nothing built).
"""

from __future__ import annotations

import time

import numpy as np

import convop
import convop.petsc as cp


def wait_quietly(comm) -> None:
    """A barrier that sleeps instead of spinning (rank 0 times on a core of its own)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.01)


def main() -> None:
    from petsc4py import PETSc

    comm = PETSc.COMM_WORLD.tompi4py()
    rank, size = comm.Get_rank(), comm.Get_size()
    rng = np.random.default_rng(0)
    cases = [
        ("sigma_max 64->64 3x3 @56", rng.standard_normal((64, 64, 3, 3)) / 24.0, (56, 56),
         dict(padding=1), "largest", 1e-8),
        ("sigma_min 16->16 3x3 @32", rng.standard_normal((16, 16, 3, 3)), (32, 32),
         dict(padding=1), "smallest", 1e-10),
    ]
    if rank == 0:
        print(f"{size} rank(s); single-process convop {convop.__version__} vs convop.petsc "
              f"(PETSc {'.'.join(map(str, PETSc.Sys.getVersion()))})")
        print(f"{'case':26} {'single s':>9} {'ranks s':>9} {'ratio':>6}  values")
    for name, weight, input_size, layer, which, rtol in cases:
        single = value = 0.0
        if rank == 0:
            start = time.perf_counter()
            value = convop.singular_values(weight, input_size, k=1, which=which, rtol=rtol,
                                           rng=0, progress=False, **layer)[0]
            single = time.perf_counter() - start
        wait_quietly(comm)
        start = time.perf_counter()
        distributed = cp.singular_values(weight, input_size, k=1, which=which, rtol=rtol,
                                         **layer)[0]
        elapsed = comm.allreduce(time.perf_counter() - start, op=_max())
        if rank == 0:
            print(f"{name:26} {single:>9.2f} {elapsed:>9.2f} {elapsed / single:>6.2f}  "
                  f"{value:.12g} / {distributed:.12g} (rel {abs(distributed / value - 1):.1e})",
                  flush=True)
    if rank == 0:
        print("memory per rank (input domain, float64; peak while assembling ~2x):")
        for shape, n in (((64, 64, 3, 3), 224), ((256, 256, 3, 3), 112)):
            g = convop.conv_geometry(shape, (n, n), padding=1)
            per = [max(b.nbytes for b in g.row_partition(p, "input")) / 2**30
                   for p in (1, 2, 8, 64)]
            print(f"  {shape[0]}->{shape[1]} @{n}: {g.nnz('input'):.3g} entries; ranks 1/2/8/64:"
                  f" " + " / ".join(f"{gib:.2f}" for gib in per) + " GiB")


def _max():
    from mpi4py import MPI

    return MPI.MAX


if __name__ == "__main__":
    main()
