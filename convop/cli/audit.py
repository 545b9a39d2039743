"""``convop audit MODEL --in CxHxW``: the audit of a whole model from the command line."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any, TextIO

from .._optional import install_hint, missing
from .arguments import UsageError, check_plot_dir, import_target, sizes

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``audit`` subcommand to the subparsers ``sub``."""
    audit = sub.add_parser(
        "audit",
        help="every convolution's exact operator norm beside the usual estimates",
        description="Audit every convolution of a model at the input size it sees: the exact "
        "spectral norm beside the reshaped-kernel norm, the circular counterpart and the "
        "Gram-iteration bound. MODEL is an .onnx file (sizes from ONNX shape inference) or "
        "package.module:factory, a callable returning a torch.nn.Module "
        "(e.g. torchvision.models:resnet18).",
    )
    audit.add_argument("model", help="an .onnx file, or package.module:factory returning a "
                       "torch.nn.Module")
    audit.add_argument("--in", dest="input", required=True, metavar="CxHxW",
                       help="one sample's shape, e.g. 3x224x224")
    audit.add_argument("--rtol", type=float, default=1e-8, help="accuracy of each norm")
    audit.add_argument("--sigma-min", action="store_true",
                       help="also the smallest singular value and the condition number")
    audit.add_argument("--norms", default="", metavar="1,inf",
                       help="also the exact l1 and/or l-infinity operator norms of each layer "
                       "and the network bound in each, e.g. --norms 1,inf")
    audit.add_argument("--json", action="store_true", help="print one JSON object")
    audit.add_argument("--seed", type=int, default=0, help="seed of the start vectors")
    audit.add_argument("--density", action="store_true",
                       help="also each layer's singular-value density (densities.png with "
                            "--plot)")
    audit.add_argument("--plot", metavar="DIR", help="write audit.png (per-layer bars) into DIR")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``convop audit``: 0 when every layer was audited, 1 when one was refused."""
    onnx_file = args.model.endswith(".onnx")
    if onnx_file:
        if missing("onnx"):
            raise UsageError(f"argument model: {install_hint('onnx', 'auditing an ONNX file')}")
        if not os.path.isfile(args.model):
            raise UsageError(f"argument model: {args.model!r} is not a file")
    elif missing("torch"):
        raise UsageError(f"argument model: {install_hint('torch', 'auditing a torch model')}")
    shape = sizes(args.input, "--in")
    if not 2 <= len(shape) <= 4 or min(shape) < 1:
        raise UsageError(f"argument --in: expected C x 1 to 3 positive spatial sizes; got "
                    f"{args.input!r}")
    if args.seed < 0:
        raise UsageError(f"argument --seed: must be a non-negative integer; got {args.seed}")
    if not 0 < args.rtol < 1:
        raise UsageError(f"argument --rtol: must be in (0, 1); got {args.rtol}")
    norms = _norms(args.norms)
    if args.plot:
        check_plot_dir(args.plot)
    from ..auditing import audit

    if onnx_file:
        model: Any = args.model
    else:
        import torch

        model = import_target(args.model)()
        if not isinstance(model, torch.nn.Module):
            raise UsageError(f"argument model: {args.model}() returned {type(model).__name__}, "
                        f"not a torch.nn.Module")
        model = model.double()
    try:
        report = audit(model, (shape[0], *shape[1:]), rtol=args.rtol,
                       sigma_min=args.sigma_min, norms=norms, rng=args.seed,
                       density=args.density)
    except (TypeError, ValueError) as err:  # e.g. --in that does not fit the model's input
        raise UsageError(f"argument --in: {err}") from None
    print(report.to_json(indent=2) if args.json else report, file=out)
    if args.plot:
        from ..plotting import pyplot

        ax = report.plot()
        ax.figure.savefig(os.path.join(args.plot, "audit.png"), dpi=100)
        pyplot().close(ax.figure)
        if any(r.density is not None for r in report.layers):
            figure = report.plot_densities()
            figure.savefig(os.path.join(args.plot, "densities.png"), dpi=100)
            pyplot().close(figure)
    refused = [r.name for r in report.layers if r.note.startswith("refused")]
    return 1 if refused else 0


def _norms(text: str) -> tuple[float, ...]:
    """Parse ``--norms``: a comma-separated list of 1 and inf."""
    names = {"1": 1.0, "l1": 1.0, "inf": math.inf, "linf": math.inf, "2": 2.0}
    chosen = []
    for part in filter(None, (p.strip().lower() for p in text.split(","))):
        if part not in names:
            raise UsageError(f"argument --norms: expected 1 and/or inf, comma-separated; got "
                             f"{text!r}")
        chosen.append(names[part])
    return tuple(chosen)
