"""A training step with exact spectral normalization against torch's, on ResNet-18's convs.

For each 3x3 stride-1 shape of ResNet-18 (64->64 @56, 128 @28, 256 @14, 512 @7)
and its strided and 1x1 downsampling layers, one SGD step on a batch (forward,
loss, backward, update) of a layer normalized by ``convop.torch.spectral_norm``
(power iteration on the layer's own map, one per step) and the same layer
normalized by ``torch.nn.utils.parametrizations.spectral_norm`` (the reshaped
kernel's norm, not the layer's). Steps alternate between the two, the median
of each is taken, and the ratio is printed: the target (issue 22) is at most
1.5x per layer. float32, two threads, as a CPU training run.

Run: ``python benchmarks/bench_training.py [--batch 16] [--steps 15]`` (needs torch).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

# name, (C_out, C_in, k, k), input size, stride, padding
LAYERS = [
    ("layer1 64->64 @56", (64, 64, 3, 3), 56, 1, 1),
    ("layer2.0.conv1 64->128 s2", (128, 64, 3, 3), 56, 2, 1),
    ("layer2 128->128 @28", (128, 128, 3, 3), 28, 1, 1),
    ("layer2.0.downsample 1x1", (128, 64, 1, 1), 56, 2, 0),
    ("layer3 256->256 @14", (256, 256, 3, 3), 14, 1, 1),
    ("layer4 512->512 @7", (512, 512, 3, 3), 7, 1, 1),
]
TARGET = 1.5


def step_function(torch, module, batch, size):
    """One SGD step of ``module`` on a fixed random batch; returns a callable."""
    x = torch.randn((batch, module.in_channels, size, size))
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)

    def step():
        loss = module(x).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=15, help="timed steps of each")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("needs torch: python -m pip install torch==2.13.0")
        return 1
    import convop.torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, batch {args.batch}, float32, 2 threads; median of "
          f"{args.steps} alternating steps each")
    print(f"{'layer':28} {'setup s':>8} {'torch ms':>9} {'convop ms':>10} {'ratio':>6}  ok")
    worst = 0.0
    for name, shape, size, stride, padding in LAYERS:
        def conv(shape=shape, stride=stride, padding=padding):
            return torch.nn.Conv2d(shape[1], shape[0], shape[2], stride=stride,
                                   padding=padding)

        theirs = torch.nn.utils.parametrizations.spectral_norm(conv())
        start = time.perf_counter()
        ours = convop.torch.spectral_norm(conv(), (size, size))
        setup = time.perf_counter() - start
        steps = {"torch": step_function(torch, theirs, args.batch, size),
                 "convop": step_function(torch, ours, args.batch, size)}
        times: dict[str, list[float]] = {"torch": [], "convop": []}
        for key in steps:  # warm-up: first touch of buffers, autograd's caches
            steps[key]()
        for _ in range(args.steps):
            for key, step in steps.items():
                start = time.perf_counter()
                step()
                times[key].append(time.perf_counter() - start)
        t_torch, t_ours = (float(np.median(times[k])) for k in ("torch", "convop"))
        ratio = t_ours / t_torch
        worst = max(worst, ratio)
        print(f"{name:28} {setup:>8.2f} {t_torch * 1e3:>9.1f} {t_ours * 1e3:>10.1f} "
              f"{ratio:>6.2f}  {'yes' if ratio <= TARGET else 'NO'}", flush=True)
    print(f"largest ratio convop / torch per training step: {worst:.2f} (target <= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
