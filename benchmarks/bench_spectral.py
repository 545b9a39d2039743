"""Spectral engine at real size, in units of one PyTorch Gram product, measured in this run.

Unit: the median time of one Gram product ``A^T A x`` of the 64->64 3x3 layer at
56x56 (float64, ``conv2d`` then ``conv_transpose2d``, two threads), sampled
before every measurement of the run and taken as the median of all samples, so
a slow phase of a shared machine moves the unit and the times together. Totals
are printed in units, so the targets (issue 11) do not depend on the machine:

- ``spectral_norm`` to ``rtol`` (1e-8) for the 20 convolutions of ResNet-18 at
  224x224 (shapes written out; Kaiming-normal weights as torchvision draws
  them): at most 2500 units in total. Layer by layer the table gives convop's
  time, its Gram products (float32 first-phase products included), the product
  floor (its products times one PyTorch Gram product of that layer), and the
  power iteration of the spectral-normalization literature (``conv2d`` +
  ``conv_transpose2d`` until the relative change is below ``rtol``; it
  converges from below, so convop must never be under it by more than rtol).
- ``circular_singular_values`` of 64->64 3x3 @56: at most 40 units.
- the exact smallest singular value of 16->16 3x3 @32 (zero padding): at most
  125 units.
- ``spectral_density`` of 64->64 3x3 @56 (zero padding, Kaiming) with a band of
  half-width at most 0.02, its exact ``sigma_max`` included: at most 2500 units
  (issue 25). Printed beside it: the largest difference from a second seed's
  estimate and from the circular counterpart's exact distribution (the bulk
  they share; not a check of the band, which ``tests/test_density.py`` checks
  against dense SVDs).

``--check`` also computes every ResNet value independently (scipy's ARPACK
``eigsh`` on the Gram operator of :class:`convop.LayerOperator`, tol 1e-13;
several minutes) and reports the largest relative difference.

Run: ``python benchmarks/bench_spectral.py`` (needs ``torch``; ``--quick``:
the first five layers; ``--no-power`` skips the power iteration; ``--density``:
only the density). ``--set
NAME=VALUE`` overrides a tuning constant of ``convop.spectral`` for the run
(every module holding it): each constant's measurements in ``TUNING.md`` are
reproduced this way, e.g. ``--set NOISE_MARGIN=10``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

import convop

# name, (C_out, C_in, k, k), input size, stride, padding: torchvision's resnet18.
RESNET18 = [
    ("conv1", (64, 3, 7, 7), 224, 2, 3),
    *[(f"layer1.{b}.conv{c}", (64, 64, 3, 3), 56, 1, 1) for b in (0, 1) for c in (1, 2)],
    ("layer2.0.conv1", (128, 64, 3, 3), 56, 2, 1),
    ("layer2.0.conv2", (128, 128, 3, 3), 28, 1, 1),
    ("layer2.0.downsample", (128, 64, 1, 1), 56, 2, 0),
    ("layer2.1.conv1", (128, 128, 3, 3), 28, 1, 1),
    ("layer2.1.conv2", (128, 128, 3, 3), 28, 1, 1),
    ("layer3.0.conv1", (256, 128, 3, 3), 28, 2, 1),
    ("layer3.0.conv2", (256, 256, 3, 3), 14, 1, 1),
    ("layer3.0.downsample", (256, 128, 1, 1), 28, 2, 0),
    ("layer3.1.conv1", (256, 256, 3, 3), 14, 1, 1),
    ("layer3.1.conv2", (256, 256, 3, 3), 14, 1, 1),
    ("layer4.0.conv1", (512, 256, 3, 3), 14, 2, 1),
    ("layer4.0.conv2", (512, 512, 3, 3), 7, 1, 1),
    ("layer4.0.downsample", (512, 256, 1, 1), 14, 2, 0),
    ("layer4.1.conv1", (512, 512, 3, 3), 7, 1, 1),
    ("layer4.1.conv2", (512, 512, 3, 3), 7, 1, 1),
]
TARGETS = {"resnet18": 2500, "circular": 40, "smallest": 125, "density": 2500}


def kaiming(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """torchvision's init: normal, fan-out, ReLU gain."""
    fan_out = shape[0] * math.prod(shape[2:])
    return rng.standard_normal(shape) * math.sqrt(2.0 / fan_out)


def gram_product(torch, weight, size, stride, padding):
    """One ``A^T A x`` through PyTorch as a function of ``x`` (a tensor)."""
    F = torch.nn.functional
    w = torch.from_numpy(weight)
    k = weight.shape[2]
    out = (size + 2 * padding - k) // stride + 1
    extra = size - ((out - 1) * stride - 2 * padding + k)  # output_padding: back to `size`

    def product(x):
        y = F.conv2d(x, w, stride=stride, padding=padding)
        return y, F.conv_transpose2d(y, w, stride=stride, padding=padding,
                                     output_padding=extra)

    return product


class Unit:
    """The unit product, sampled throughout the run."""

    def __init__(self, torch) -> None:
        rng = np.random.default_rng(1)
        self._torch = torch
        self._product = gram_product(torch, rng.standard_normal((64, 64, 3, 3)), 56, 1, 1)
        self._x = torch.from_numpy(rng.standard_normal((1, 64, 56, 56)))
        self.samples: list[float] = []

    def sample(self, repeats: int = 5) -> None:
        with self._torch.no_grad():
            self._product(self._x)
            for _ in range(repeats):
                start = time.perf_counter()
                self._product(self._x)
                self.samples.append(time.perf_counter() - start)

    @property
    def seconds(self) -> float:
        return float(np.median(self.samples))


def median_time(function, repeats: int) -> float:
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def power_iteration(torch, weight, size, stride, padding, rtol, cap_seconds):
    product = gram_product(torch, weight, size, stride, padding)
    x = torch.from_numpy(np.random.default_rng(1).standard_normal((1, weight.shape[1], size,
                                                                     size)))
    x /= x.norm()
    sigma_old, start = 0.0, time.perf_counter()
    with torch.no_grad():
        for iteration in range(1, 10**7):
            y, x = product(x)
            sigma = float(y.norm())
            x /= x.norm()
            if iteration > 1 and abs(sigma - sigma_old) <= rtol * sigma:
                return sigma, iteration, time.perf_counter() - start, True
            if time.perf_counter() - start > cap_seconds:
                return sigma, iteration, time.perf_counter() - start, False
            sigma_old = sigma
    raise AssertionError("unreachable")


def arpack_reference(weight, size, stride, padding) -> float:
    """The largest singular value by scipy's ARPACK on convop's LayerOperator Gram operator."""
    import scipy.sparse.linalg as sla

    op = convop.LayerOperator(weight, (size, size), stride=stride, padding=padding, order="C")
    gram = sla.LinearOperator((op.shape[1],) * 2, matvec=lambda v: op.rmatvec(op.matvec(v)),
                              dtype=np.float64)
    value = sla.eigsh(gram, k=1, which="LA", tol=1e-13, ncv=40,
                      v0=np.random.default_rng(2).standard_normal(op.shape[1]))[0][0]
    return math.sqrt(value)


def apply_settings(settings: list[str]) -> list[str]:
    """Set ``NAME=VALUE`` tuning constants in every ``convop.spectral`` module holding them."""
    import importlib
    import pkgutil

    import convop.spectral as spectral

    modules = [importlib.import_module(f"convop.spectral.{info.name}")
               for info in pkgutil.iter_modules(spectral.__path__)]
    lines = []
    for item in settings:
        name, _, text = item.partition("=")
        holders = [m for m in modules if isinstance(getattr(m, name, None), (int, float))]
        if not holders or not text:
            raise SystemExit(f"--set {item!r}: no numeric constant {name!r} in convop.spectral")
        old = getattr(holders[0], name)
        new = type(old)(float(text))
        for module in holders:
            setattr(module, name, new)
        lines.append(f"{name} = {new!r} (default {old!r}) in "
                     f"{', '.join(m.__name__.rpartition('.')[2] for m in holders)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--quick", action="store_true", help="the first five ResNet layers")
    parser.add_argument("--no-power", action="store_true", help="skip the power iteration")
    parser.add_argument("--cap-seconds", type=float, default=20.0,
                        help="time cap of each power iteration")
    parser.add_argument("--check", action="store_true",
                        help="independent ARPACK value of every layer (slow)")
    parser.add_argument("--density", action="store_true", help="only the density benchmark")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a tuning constant of convop.spectral (TUNING.md)")
    args = parser.parse_args(argv)
    for line in apply_settings(args.set):
        print(f"set {line}")
    try:
        import torch
    except ImportError:
        print("needs torch: python -m pip install torch==2.13.0")
        return 1
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    layers = RESNET18[:5] if args.quick else RESNET18
    weights = [kaiming(rng, shape) for _, shape, *_ in layers]  # same draws in every run
    unit = Unit(torch)
    unit.sample(30)
    print(f"convop {convop.__version__}, torch {torch.__version__}, rtol {args.rtol:g}; unit = "
          f"one torch Gram product of 64->64 3x3 @56 = {unit.seconds * 1e3:.2f} ms at the start")
    if args.density:
        return density(unit, rng)
    print(f"{'layer':20} {'convop s':>8} {'products':>8} {'floor s':>7} "
          f"{'sigma_max':>17} {'power s':>8} {'iters':>6} {'power sigma':>17}  ok")
    total = floor_total = 0.0
    products = 0
    worst = 0.0
    for (name, shape, size, stride, padding), weight in zip(layers, weights):
        unit.sample()
        steps = [0]
        start = time.perf_counter()
        sigma = convop.spectral_norm(weight, (size, size), stride=stride, padding=padding,
                                     rtol=args.rtol, rng=0, progress=False,
                                     callback=lambda step, _, steps=steps: steps.__setitem__(
                                         0, step))
        elapsed = time.perf_counter() - start
        product = gram_product(torch, weight, size, stride, padding)
        xl = torch.from_numpy(rng.standard_normal((1, shape[1], size, size)))
        with torch.no_grad():
            per_product = median_time(lambda product=product, xl=xl: product(xl), 10)
        floor = steps[0] * per_product
        products += steps[0]
        total += elapsed
        floor_total += floor
        line = (f"{name:20} {elapsed:>8.2f} {steps[0]:>8} {floor:>7.2f} {sigma:>17.12f}")
        ok = True
        if not args.no_power:
            p_sigma, iters, t_power, converged = power_iteration(
                torch, weight, size, stride, padding, args.rtol, args.cap_seconds)
            ok = sigma >= p_sigma * (1 - args.rtol)
            cap = "" if converged else " (cap)"
            line += f" {t_power:>8.2f} {iters:>6} {p_sigma:>17.12f}{cap}"
        if args.check:
            reference = arpack_reference(weight, size, stride, padding)
            difference = (sigma - reference) / reference
            worst = max(worst, abs(difference))
            ok = ok and abs(difference) <= args.rtol
            line += f"  ref {difference:+.1e}"
        print(f"{line}  {'yes' if ok else 'NO'}", flush=True)
    unit.sample(30)
    seconds = unit.seconds
    print(f"unit over the run: median {seconds * 1e3:.2f} ms of {len(unit.samples)} samples "
          f"(range {min(unit.samples) * 1e3:.2f}-{max(unit.samples) * 1e3:.2f} ms)")
    print(f"ResNet-18 spectral norms: {total:.1f} s = {total / seconds:.0f} units "
          f"(target <= {TARGETS['resnet18']}); product floor {floor_total / seconds:.0f} units; "
          f"{products} Gram products")
    if args.check:
        print(f"largest relative difference from ARPACK: {worst:.1e} (rtol {args.rtol:g})")

    weight = rng.standard_normal((64, 64, 3, 3))
    convop.circular_singular_values(weight, (56, 56))  # warm-up: first-touch of the buffers
    unit.sample()
    elapsed = median_time(lambda: convop.circular_singular_values(weight, (56, 56)), 5)
    print(f"circular_singular_values 64->64 3x3 @56: {elapsed:.3f} s = "
          f"{elapsed / unit.seconds:.0f} units (target <= {TARGETS['circular']})")
    weight = rng.standard_normal((16, 16, 3, 3))
    values = []
    unit.sample()
    elapsed = median_time(lambda: values.append(convop.singular_values(
        weight, (32, 32), padding=1, k=1, which="smallest", rng=0, progress=False)), 3)
    print(f"smallest singular value 16->16 3x3 @32: {values[-1][0]:.12e} in {elapsed:.3f} s = "
          f"{elapsed / unit.seconds:.0f} units (target <= {TARGETS['smallest']})")
    return 0

def density(unit: Unit, rng: np.random.Generator) -> int:
    """The density of 64->64 3x3 @56 with a 2% band, in units."""
    weight = kaiming(rng, (64, 64, 3, 3))
    unit.sample()
    start = time.perf_counter()
    d = convop.spectral_density(weight, (56, 56), padding=1, tol=0.02, rng=0, progress=False)
    elapsed = time.perf_counter() - start
    unit.sample()
    other = convop.spectral_density(weight, (56, 56), padding=1, tol=0.02, rng=1,
                                    sigma_max=d.sigma_max, progress=False)
    counterpart = np.sort(convop.circular_singular_values(weight, (56, 56)))
    x = np.linspace(0.0, d.sigma_max, 4001)
    seeds = float(np.max(abs(d.cdf(x) - other.cdf(x))))
    circular = float(np.max(abs(d.cdf(x) - np.searchsorted(counterpart, x, "right")
                                / counterpart.size)))
    rounding = float32_rounding(weight, (56, 56), d.sigma_max**2, rng)
    unit.sample(30)
    ok = d.band <= 0.02 and elapsed / unit.seconds <= TARGETS["density"]
    print(f"spectral_density 64->64 3x3 @56: {d}\n  {elapsed:.2f} s = "
          f"{elapsed / unit.seconds:.0f} units (target <= {TARGETS['density']}, band <= 0.02): "
          f"{'yes' if ok else 'NO'}; second seed differs by at most {seeds:.4f}, the circular "
          f"counterpart's exact distribution by {circular:.4f}")
    print(f"  float32 Gram product error: at most {rounding:.2f} eps times the Gram norm "
          f"(the quadrature allows ROUNDING = {convop.spectral.quadrature.ROUNDING})")
    return 0 if ok else 1


def float32_rounding(weight: np.ndarray, size: tuple[int, int], gram_norm: float,
                     rng: np.random.Generator) -> float:
    """The largest error of the density's float32 Gram products, in float32 eps times ||G||."""
    from convop.spectral.products import GramProduct

    geometry = convop.conv_geometry(weight.shape, size, padding=1)
    fast = GramProduct(geometry, weight, np.float32, result_dtype=np.float64, winograd=True)
    exact = GramProduct(geometry, weight, np.float64)
    worst = 0.0
    for _ in range(5):
        x = rng.standard_normal(geometry.vector_size("input"))
        x /= np.linalg.norm(x)
        error = np.linalg.norm(np.array(fast(x)) - np.array(exact(x)))
        worst = max(worst, error / (gram_norm * np.finfo(np.float32).eps))
    return worst


if __name__ == "__main__":
    sys.exit(main())
