"""The ``convop`` command line (also ``python -m convop``).

- ``convop demo``: build ``W`` for a small layer, check it against im2col and
  the adjoint identity.
- ``convop check torch``: run the standard battery against PyTorch.
- ``convop check MODULE:FUNCTION --kind KIND``: run it against any importable
  callable with the signature of the matching convop function.

Exit status: 0 when everything passes, 1 when a check fails, 2 for a usage
error (a one-line message naming the argument, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import numpy as np

from . import __version__
from .functional import conv, conv_input_grad
from .im2col import im2col
from .layout import unvec, vec
from .matrix import conv_matrix
from .validation import KINDS, check_conv

DEMO_SEED = 0


class UsageError(Exception):
    """A bad command-line argument: reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def demo(out: TextIO | None = None) -> bool:
    """Build W for a 3->8 3x3 layer on 16x16, check it against im2col; return success."""
    out = out or sys.stdout
    rng = np.random.default_rng(DEMO_SEED)
    weight = rng.standard_normal((8, 3, 3, 3))
    x = rng.standard_normal((3, 16, 16))
    W = conv_matrix(weight, (16, 16), padding=1)
    print("layer: 3->8 channels, 3x3 kernel, 16x16 input, stride 1, padding 1", file=out)
    print(f"W: shape {W.shape}, nnz {W.nnz}, index dtype {W.indices.dtype}", file=out)

    x_pad = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    y_matrix = unvec(W @ vec(x_pad), (8, 16, 16))
    x_col = im2col(x[None], 3, padding=1)
    y_im2col = (weight.reshape(8, -1) @ x_col).reshape(8, 16, 16)
    err = float(np.max(np.abs(y_matrix - y_im2col)))
    print(f"W @ vec(X_pad) vs im2col W_row @ X_col: max abs difference {err:.2e}", file=out)

    dy = rng.standard_normal((8, 16, 16))
    lhs = float(np.vdot(conv(x, weight, padding=1), dy))
    rhs = float(np.vdot(x, conv_input_grad(dy, weight, (16, 16), padding=1)))
    rel = abs(lhs - rhs) / max(abs(lhs), 1e-300)
    print(f"adjoint: <W x, dy> = {lhs:.12g}, <x, W^T dy> = {rhs:.12g} (rel. diff {rel:.1e})",
          file=out)
    ok = err < 1e-12 * max(1.0, float(np.abs(y_im2col).max())) and rel < 1e-12
    print("OK" if ok else "MISMATCH", file=out)
    return ok


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``convop`` command."""
    parser = _Parser(prog="convop", description="Exact sparse operators of convolution layers.")
    parser.add_argument("--version", action="version", version=f"convop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("demo", help="build W for a small layer and check it against im2col")
    check = sub.add_parser(
        "check",
        help="check a convolution implementation against the exact operator",
        description="Run the standard battery of layers through an implementation and compare "
        "every result with the exact operator. TARGET is 'torch' or MODULE:FUNCTION.",
    )
    check.add_argument("target", help="'torch', or MODULE:FUNCTION of an importable callable")
    check.add_argument("--kind", choices=(*KINDS, "all"), default=None,
                       help="what the callable computes (default: forward; 'all' for torch)")
    check.add_argument("--configs", choices=("standard", "quick"), default="standard",
                       help="the battery: about 40 layers, or 8")
    check.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    check.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    return parser


def _import_target(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UsageError(f"argument target: expected 'torch' or MODULE:FUNCTION; got {target!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"argument target: cannot load {target!r}: {err}") from err
    if not callable(obj):
        raise UsageError(f"argument target: {target!r} is not callable")
    return obj


def _torch_impls() -> dict[str, Callable[..., Any]]:
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise UsageError(
            "argument target: 'torch' needs PyTorch: python -m pip install torch==2.13.0"
        ) from err
    from . import torch as ct

    return {"forward": ct.conv, "input_grad": ct.conv_input_grad,
            "weight_grad": ct.conv_weight_grad, "transpose": ct.conv_transpose}


def run_check(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``convop check``; returns 0 when every configuration passes, else 1."""
    if args.target == "torch":
        impls = _torch_impls()
        kinds = list(KINDS) if args.kind in (None, "all") else [args.kind]
        targets = [(kind, impls[kind]) for kind in kinds]
    else:
        if args.kind == "all":
            raise UsageError("argument --kind: 'all' needs the target 'torch'")
        targets = [(args.kind or "forward", _import_target(args.target))]
    passed = True
    for kind, impl in targets:
        report = check_conv(impl, kind=kind, configs=args.configs, dtype=args.dtype,
                            rng=args.seed)
        print(report, file=out)
        print(file=out)
        passed &= report.passed
    print("all checks passed" if passed else "some checks FAILED", file=out)
    return 0 if passed else 1


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        if args.command == "demo":
            return 0 if demo(out) else 1
        return run_check(args, out)
    except UsageError as err:
        print(f"convop: error: {err}", file=sys.stderr)
        return 2
