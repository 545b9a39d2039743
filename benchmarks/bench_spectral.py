"""Spectral norm: convop's Lanczos vs. the usual power iteration in PyTorch, in one process.

For each ResNet-like layer (zero padding) it prints convop's time and number
of Gram products to ``rtol``, the power iteration's time and iteration count
to the same relative change (``conv2d`` then ``conv_transpose2d``, as the
literature's spectral-norm code does), both values, and whether convop's value
is at least as large (power iteration converges from below). Then the two
other targets: the full circular spectrum of the 64->64 layer through the FFT,
and the exact smallest singular value of a square 16->16 layer at 32x32.

Run: ``python benchmarks/bench_spectral.py`` (needs ``torch``; ``--quick``
runs the first layer only; ``--cap-seconds`` bounds each power iteration).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import convop

LAYERS = [
    ("64->64 3x3 @56", (64, 64, 3, 3), (56, 56), 1, 1),
    ("128->128 3x3 @28", (128, 128, 3, 3), (28, 28), 1, 1),
    ("3->64 7x7 s2 @224", (64, 3, 7, 7), (224, 224), 2, 3),
]


def counted(op: convop.LayerOperator) -> list[int]:
    """Count the operator's forward products on the instance itself.

    The operator stays a LayerOperator, so convop takes the same path as for any
    user (a wrapper class would switch the circular warm start off).
    """
    count = [0]
    forward = op.forward

    def counting(x):
        count[0] += x.shape[0]
        return forward(x)

    op.forward = counting  # an instance attribute shadows the method
    return count


def power_iteration(torch, weight, size, stride, padding, rtol, cap_seconds):
    F = torch.nn.functional
    w = torch.from_numpy(weight)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, weight.shape[1], *size)))
    x /= x.norm()
    out = None
    sigma_old, start = 0.0, time.perf_counter()
    with torch.no_grad():
        for iteration in range(1, 10**7):
            y = F.conv2d(x, w, stride=stride, padding=padding)
            sigma = float(y.norm())
            if out is None:
                out = tuple(y.shape[2:])
            # output_padding makes conv_transpose2d return exactly the input size
            op = tuple(n - ((o - 1) * stride - 2 * padding + k)
                       for n, o, k in zip(size, out, weight.shape[2:]))
            x = F.conv_transpose2d(y, w, stride=stride, padding=padding, output_padding=op)
            x /= x.norm()
            if iteration > 1 and abs(sigma - sigma_old) <= rtol * sigma:
                return sigma, iteration, time.perf_counter() - start, True
            if time.perf_counter() - start > cap_seconds:
                return sigma, iteration, time.perf_counter() - start, False
            sigma_old = sigma
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cap-seconds", type=float, default=300.0)
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("needs torch: python -m pip install torch==2.13.0")
        return 1
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    print(f"convop {convop.__version__}, torch {torch.__version__}, rtol {args.rtol:g}")
    print(f"{'layer':20} {'convop s':>9} {'products':>9} {'sigma (convop)':>18} "
          f"{'power s':>8} {'iters':>7} {'sigma (power)':>18} {'speed-up':>8}  convop >= power")
    for name, shape, size, stride, padding in LAYERS[:1] if args.quick else LAYERS:
        weight = rng.standard_normal(shape)
        op = convop.LayerOperator(weight, size, stride=stride, padding=padding, order="C")
        products = counted(op)
        start = time.perf_counter()
        sigma = convop.spectral_norm(op, rtol=args.rtol, rng=0)
        t_convop = time.perf_counter() - start
        p_sigma, iters, t_power, converged = power_iteration(
            torch, weight, size, stride, padding, args.rtol, args.cap_seconds)
        note = "" if converged else f" (stopped at the {args.cap_seconds:.0f} s cap)"
        print(f"{name:20} {t_convop:>9.2f} {products[0]:>9} {sigma:>18.12f} {t_power:>8.2f} "
              f"{iters:>7} {p_sigma:>18.12f} {t_power / t_convop:>7.1f}x  "
              f"{sigma >= p_sigma}{note}", flush=True)

    weight = rng.standard_normal((64, 64, 3, 3))
    start = time.perf_counter()
    values = convop.circular_singular_values(weight, (56, 56))
    print(f"circular FFT spectrum 64->64 3x3 @56: {values.size} values in "
          f"{time.perf_counter() - start:.2f} s (largest {values[0]:.6f})")
    weight = rng.standard_normal((16, 16, 3, 3))
    start = time.perf_counter()
    smallest = convop.singular_values(weight, (32, 32), padding=1, k=1, which="smallest", rng=0)
    print(f"exact sigma_min, square 16->16 3x3 @32 (n = 16384): {smallest[0]:.6e} in "
          f"{time.perf_counter() - start:.2f} s (target < 15 s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
