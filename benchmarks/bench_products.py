"""Float32 Gram products of ResNet's 3x3 stride-1 layers: Winograd F(2x2, 3x3) against im2col.

A mixed-precision ``spectral_norm`` spends nearly all its time in float32 Gram
products ``A^T A x``; for 3x3 stride-1 2-D layers they run through Winograd
(:mod:`convop.spectral.winograd`, 2.25x fewer multiply-adds) instead of im2col.
This prints, for each ResNet-18 3x3 stride-1 shape, the median time of one
product both ways (two worker threads, single-threaded BLAS, as the solver runs
them), their ratio, and each one's relative error against the float64 product
(Winograd rounds a few times more: the solver measures its noise and certifies
past it with float64 residuals). ``benchmarks/TUNING.md#winograd`` cites it.

Run: ``python benchmarks/bench_products.py`` (numpy and scipy only).
"""

from __future__ import annotations

import sys
import time

import numpy as np

from convop._blas import Pool, cores, single_threaded
from convop.geometry import make_geometry
from convop.spectral.products import GramProduct

SHAPES = [(64, 56), (128, 28), (256, 14), (512, 7)]  # (channels, input size), padding 1


def median_ms(product, x, repeats: int = 15) -> float:
    product(x)  # first touch of the buffers
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        product(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def main() -> int:
    rng = np.random.default_rng(0)
    pool = Pool(cores())
    print(f"float32 Gram product A^T A x, {pool.workers} worker threads; error relative to "
          f"the float64 product")
    print(f"{'layer':>14} {'im2col ms':>9} {'winograd ms':>11} {'ratio':>6} "
          f"{'im2col err':>10} {'winograd err':>12}")
    with single_threaded():
        for channels, size in SHAPES:
            weight = rng.standard_normal((channels, channels, 3, 3)) / (3 * channels ** 0.5)
            geom = make_geometry(weight.shape, (size, size), padding=1)
            x = rng.standard_normal(channels * size * size)
            exact = np.array(GramProduct(geom, weight, np.float64, pool=pool)(x))
            row = []
            for winograd in (False, True):
                product = GramProduct(geom, weight, np.float32, pool=pool,
                                      result_dtype=np.float64, winograd=winograd)
                error = np.linalg.norm(np.array(product(x)) - exact) / np.linalg.norm(exact)
                row.append((median_ms(product, x), error))
            (t_im2col, e_im2col), (t_wino, e_wino) = row
            print(f"{f'{channels}->{channels} @{size}':>14} {t_im2col:>9.2f} {t_wino:>11.2f} "
                  f"{t_im2col / t_wino:>6.2f} {e_im2col:>10.1e} {e_wino:>12.1e}", flush=True)
    pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
