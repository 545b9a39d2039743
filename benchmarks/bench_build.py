"""Build speed and memory of conv_matrix on ResNet-like layers, as ratios measured in one run.

For each layer it measures the padded- and input-domain ``conv_matrix``; on the
first layer also the input domain under each padding mode and
``weight_matrix``. It prints:

- build seconds and millions of stored entries per second;
- ``build/copy``: build time over the time ``numpy.copy`` takes to copy the
  same number of bytes (the CSR arrays' total) into a new array, target <= 3.
  Both allocate fresh memory, so both pay the same page faults;
- ``build/copyto``: the same over a copy into an already touched buffer (pure
  memory bandwidth, no page faults), for information;
- ``peak/W``: peak memory allocated during the build over the bytes of ``W``
  (tracemalloc sees numpy's allocations), target <= 1.5;
- ``matvec/copyto``: time of ``W @ x`` over the pre-faulted copy time of
  ``W``'s bytes, target <= 2.

Run: ``python benchmarks/bench_build.py`` (``--quick`` skips the largest
layers; ``--check`` exits 1 when a target is missed; ``--compare-product``
also times the alternative to the direct folded assembly of the non-zero
padding modes: ``W_pad @ P`` with a sparse product, then sorting).
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from typing import NamedTuple

import numpy as np

import convop


class Layer(NamedTuple):
    name: str
    weight_shape: tuple[int, ...]
    input_size: tuple[int, ...]
    stride: int
    padding: int


LAYERS = [
    Layer("resnet conv2_x 64->64 3x3 @56", (64, 64, 3, 3), (56, 56), 1, 1),
    Layer("resnet conv3_x 128->128 3x3 @28", (128, 128, 3, 3), (28, 28), 1, 1),
    Layer("resnet conv4_x 256->256 3x3 @14", (256, 256, 3, 3), (14, 14), 1, 1),
    Layer("resnet conv5_x 512->512 3x3 @7", (512, 512, 3, 3), (7, 7), 1, 1),
    Layer("resnet stem 3->64 7x7 s2 @224", (64, 3, 7, 7), (224, 224), 2, 3),
    Layer("bottleneck 256->64 1x1 @56", (64, 256, 1, 1), (56, 56), 1, 0),
]
QUICK = {"resnet conv2_x 64->64 3x3 @56", "bottleneck 256->64 1x1 @56"}
TARGETS = {"build/copy": 3.0, "peak/W": 1.5, "matvec/copyto": 2.0}


def best_time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def copy_times(nbytes: int) -> tuple[float, float]:
    """Seconds to copy ``nbytes`` into a new array, and into a touched buffer."""
    src = np.ones(nbytes, dtype=np.uint8)
    fresh = best_time(lambda: src.copy())
    dst = np.ones_like(src)
    touched = best_time(lambda: np.copyto(dst, src))
    return fresh, touched


KINDS = ("padded", "input", "input reflect", "input replicate", "input circular",
         "weight_matrix")
# The padding modes and the weight matrix are measured on the first layer only.
ALL_KINDS_FOR = {LAYERS[0].name}


def builder(layer: Layer, kind: str, rng: np.random.Generator):
    """A zero-argument function building the matrix of `kind` for `layer`."""
    kwargs = dict(stride=layer.stride, padding=layer.padding)
    if kind == "weight_matrix":
        x = rng.standard_normal((1, layer.weight_shape[1], *layer.input_size))
        return lambda: convop.weight_matrix(x, layer.weight_shape[2:], layer.weight_shape[0],
                                            **kwargs)
    weight = rng.standard_normal(layer.weight_shape)
    domain, _, mode = kind.partition(" ")
    return lambda: convop.conv_matrix(weight, layer.input_size, **kwargs, domain=domain,
                                      padding_mode=mode or "zeros")


def measure(layer: Layer, kind: str, rng: np.random.Generator) -> dict[str, float]:
    build = builder(layer, kind, rng)
    W = build()
    nbytes = W.data.nbytes + W.indices.nbytes + W.indptr.nbytes
    nnz, cols = W.nnz, W.shape[1]
    del W
    t_build = best_time(build)
    t_copy, t_copyto = copy_times(nbytes)

    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    W = build()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()

    x = rng.standard_normal(cols)
    t_matvec = best_time(lambda: W @ x)
    return {
        "nnz": nnz,
        "MB": nbytes / 1e6,
        "build s": t_build,
        "M entries/s": nnz / t_build / 1e6,
        "build/copy": t_build / t_copy,
        "build/copyto": t_build / t_copyto,
        "peak/W": peak / nbytes,
        "matvec/copyto": t_matvec / t_copyto,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the smaller layers")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--compare-product", action="store_true",
                        help="also time W_pad @ P against the direct folded assembly")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    header = (f"{'layer':36} {'matrix':15} {'nnz':>11} {'MB':>8} {'build s':>8} "
              f"{'Mentries/s':>10} {'build/copy':>10} {'build/copyto':>12} {'peak/W':>7} "
              f"{'matvec/copyto':>13}")
    print(f"convop {convop.__version__}, numpy {np.__version__}; targets {TARGETS}")
    print(header)
    missed = []
    for layer in LAYERS:
        if args.quick and layer.name not in QUICK:
            continue
        kinds = KINDS if layer.name in ALL_KINDS_FOR else KINDS[:2]
        for kind in kinds:
            r = measure(layer, kind, rng)
            print(f"{layer.name:36} {kind:15} {r['nnz']:>11} {r['MB']:>8.1f} "
                  f"{r['build s']:>8.3f} {r['M entries/s']:>10.0f} {r['build/copy']:>10.2f} "
                  f"{r['build/copyto']:>12.2f} {r['peak/W']:>7.2f} {r['matvec/copyto']:>13.2f}",
                  flush=True)
            missed += [f"{layer.name} {kind} {k}={r[k]:.2f}" for k, limit in TARGETS.items()
                       if r[k] > limit]
    print("all targets met" if not missed else "missed: " + "; ".join(missed))
    if args.compare_product:
        compare_product(rng)
    return 1 if (missed and args.check) else 0


def compare_product(rng: np.random.Generator) -> None:
    """Direct folded assembly vs. the sparse product W_pad @ P (then sorted), first layer."""
    layer = LAYERS[0]
    weight = rng.standard_normal(layer.weight_shape)
    kwargs = dict(stride=layer.stride, padding=layer.padding)
    print(f"\ninput-domain matrix of {layer.name}: direct assembly vs. W_pad @ P")
    for mode in ("reflect", "replicate", "circular"):
        direct = best_time(lambda mode=mode: convop.conv_matrix(
            weight, layer.input_size, **kwargs, padding_mode=mode, domain="input"), repeat=2)

        def product(mode=mode):
            W = convop.conv_matrix(weight, layer.input_size, **kwargs)
            P = convop.pad_matrix(layer.weight_shape[1], layer.input_size, layer.padding,
                                  padding_mode=mode)
            A = W @ P
            A.sort_indices()
            return A

        via_product = best_time(product, repeat=2)
        print(f"  {mode:9} direct {direct:.2f} s, W_pad @ P + sort {via_product:.2f} s "
              f"({via_product / direct:.1f}x slower)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
