"""The ResNet-18 audit at 224x224: every convolution's exact norm beside the estimates in use.

Runs :func:`convop.audit` on ResNet-18 (torchvision's ``resnet18`` with random
initialization when torchvision is installed, else the same architecture built
here: the same module names, shapes and Kaiming-normal fan-out init) at
``3x224x224`` and prints

- the total seconds and the seconds per layer,
- for every convolution its exact ``sigma_max`` (``rtol`` 1e-8) and the ratio of
  each estimator to it: the reshaped-kernel norm of
  ``torch.nn.utils.parametrizations.spectral_norm``, the circular counterpart's
  norm (Sedghi et al. 2019) and the Gram-iteration bound (Delattre et al. 2023),
- the spread of each ratio over the layers, and the products over the layers.

``--markdown`` prints the table as the Markdown of ``docs/audit.md``; ``--plot PNG``
draws the report's per-layer bars.

Run: ``python benchmarks/bench_audit.py`` (needs ``torch``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import convop


def resnet18(torch):
    """torchvision's resnet18 (random init), or the same network built here."""
    try:
        from torchvision.models import resnet18 as torchvision_resnet18
    except ImportError:
        pass
    else:
        return torchvision_resnet18(), "torchvision.models.resnet18"
    nn = torch.nn

    class BasicBlock(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.downsample = None
            if stride != 1 or c_in != c_out:
                self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                                nn.BatchNorm2d(c_out))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)) + identity)

    class ResNet18(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            widths = (64, 128, 256, 512)
            for i, width in enumerate(widths, 1):
                c_in = widths[max(i - 2, 0)]
                setattr(self, f"layer{i}", nn.Sequential(
                    BasicBlock(c_in, width, 1 if i == 1 else 2), BasicBlock(width, width, 1)))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, 1000)
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet18(), "ResNet-18 built by hand (torchvision's architecture and init)"


def markdown(report: convop.AuditReport) -> str:
    lines = ["| layer | weight | input | exact sigma_max | reshaped kernel | circular | "
             "Gram bound | s |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in report.layers:
        lines.append(
            f"| {r.name} | {'x'.join(map(str, r.weight_shape))} | "
            f"{'x'.join(map(str, r.input_size))} | {r.sigma_max:.4f} | "
            f"{r.ratio('reshaped_kernel'):.3f} | {r.ratio('circular'):.3f} | "
            f"{r.ratio('gram_bound'):.3f} | {r.seconds:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--size", type=int, default=224, help="input height and width")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--plot", metavar="PNG", help="also draw the report's bars into PNG")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_audit needs torch: python -m pip install torch==2.13.0", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    model, source = resnet18(torch)
    model = model.double()
    start = time.perf_counter()
    report = convop.audit(model, (3, args.size, args.size), rtol=args.rtol)
    total = time.perf_counter() - start
    print(f"{source} at 3x{args.size}x{args.size}, rtol {args.rtol:g}: {len(report.layers)} "
          f"distinct convolutions audited in {total:.1f} s")
    print(markdown(report) if args.markdown else report)
    print()
    for field, label in (("reshaped_kernel", "reshaped kernel (torch spectral_norm)"),
                         ("circular", "circular counterpart (FFT)"),
                         ("gram_bound", "Gram-iteration bound")):
        ratios = [r.ratio(field) for r in report.layers]
        print(f"{label:40} ratio to exact: min {min(ratios):.3f}, max {max(ratios):.3f}")
    slowest = max(report.layers, key=lambda r: r.seconds)
    median = sorted(r.seconds for r in report.layers)[len(report.layers) // 2]
    print(f"seconds per layer: median {median:.2f}, slowest {slowest.name} "
          f"{slowest.seconds:.2f}")
    print(f"products over the layers: exact {report.product():.4g}, reshaped kernel "
          f"{report.product('reshaped_kernel'):.4g}, circular {report.product('circular'):.4g},"
          f" Gram bound {report.product('gram_bound'):.4g} (sequential networks only)")
    if report.network_bound is not None:
        b = report.network_bound
        print(f"network Lipschitz bound across the residual connections: exact norms "
              f"{b['sigma_max']:.4g}, reshaped kernel {b['reshaped_kernel']:.4g}, circular "
              f"{b['circular']:.4g}, Gram bounds {b['gram_bound']:.4g}")
    else:
        print(report.network_note)
    if args.plot:
        ax = report.plot()
        ax.figure.savefig(args.plot, dpi=100)
    return 0 if all(math.isfinite(r.sigma_max) for r in report.layers) else 1


if __name__ == "__main__":
    sys.exit(main())
