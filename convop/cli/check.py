"""``convop check TARGET``: the standard battery against a framework or any callable."""

from __future__ import annotations

import argparse
import importlib
import os
from typing import Any, TextIO

from .._optional import install_hint, missing
from ..bridge import BRIDGES, bridge_functions
from ..validation import KINDS, check_conv
from ..validation.case import call_problem
from ..validation.quantized import QUANTIZED_KINDS
from .arguments import UsageError, import_target

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``check`` subcommand to the subparsers ``sub``."""
    check = sub.add_parser(
        "check",
        help="check a convolution implementation against the exact operator",
        description="Run the standard battery of layers through an implementation and compare "
        "every result with the exact operator. TARGET is a framework "
        f"({', '.join(BRIDGES)}) or MODULE:FUNCTION.",
    )
    check.add_argument("target", help=f"{'|'.join(BRIDGES)}, or MODULE:FUNCTION of an "
                       "importable callable")
    check.add_argument("--kind", choices=(*KINDS, "all"), default=None,
                       help="what the callable computes (default: forward); for a framework, "
                       "default and 'all': every kind its bridge implements")
    check.add_argument("--configs", choices=("standard", "quick"), default="standard",
                       help="the battery: about 40 layers, or 8")
    check.add_argument("--dtype", choices=("float64", "float32", "float16", "bfloat16", "uint8",
                                           "int8"),
                       default=None,
                       help="default: float64, or the framework's only dtype "
                       "(float32 for onnxruntime); uint8 for the quantized kinds "
                       "(integer, quantized), which take uint8 or int8")
    check.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    check.add_argument("--reproducers", metavar="DIR", default=None,
                       help="write a standalone Python reproducer of every failing "
                       "configuration into DIR (inputs, the call, the exact expected values)")



def framework_targets(args: argparse.Namespace) -> tuple[list[tuple[str, Any]], str]:
    """Return the (kind, callable) pairs of a framework's bridge and the dtype to check."""
    module_name, needs = BRIDGES[args.target]
    absent = missing(*needs)
    if absent:
        raise UsageError(f"argument target: {install_hint(absent[0], repr(args.target))}")
    bridge = importlib.import_module(module_name).bridge
    functions = bridge_functions(bridge, module_name).by_kind()
    kinds = bridge.kinds() if args.kind in (None, "all") else (args.kind,)
    return [(kind, functions[kind]) for kind in kinds], bridge.dtypes[0]


def kind_dtype(kind: str, asked: str | None, default: str, every_kind: bool) -> str:
    """Return the dtype ``kind`` is checked in.

    The quantized kinds take uint8 unless int8 is asked for; the float kinds the
    asked float dtype or ``default``. An integer dtype asked for a float kind is
    a usage error, unless every kind runs (then it is meant for the quantized ones).
    """
    integer = asked in ("uint8", "int8")
    if kind in QUANTIZED_KINDS:
        return asked if asked is not None and integer else "uint8"
    if integer:
        if every_kind:
            return default
        raise UsageError(f"argument --dtype: {asked} is for the quantized kinds (integer, "
                         f"quantized), not {kind!r}")
    return asked or default


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``convop check``; returns 0 when every configuration passes, else 1."""
    if args.target in BRIDGES:
        targets, default = framework_targets(args)
    else:
        if args.kind == "all":
            raise UsageError("argument --kind: 'all' needs a framework target "
                             f"({', '.join(BRIDGES)})")
        targets = [(args.kind or "forward", import_target(args.target))]
        problem = call_problem(targets[0][1], targets[0][0])
        if problem:
            raise UsageError(f"argument target: {args.target}: {problem}")
        default = "float64"
    if args.reproducers:
        try:
            os.makedirs(args.reproducers, exist_ok=True)
        except OSError as err:
            raise UsageError(f"argument --reproducers: cannot create {args.reproducers!r}: "
                             f"{err.strerror or err}") from err
    passed = True
    for kind, impl in targets:
        report = check_conv(impl, kind=kind, configs=args.configs,
                            dtype=kind_dtype(kind, args.dtype, default,
                                             args.kind in (None, "all")),
                            rng=args.seed)
        print(report, file=out)
        if args.reproducers and report.failures:
            paths = report.write_reproducers(args.reproducers)
            print(f"{len(paths)} reproducer{'s' if len(paths) > 1 else ''} written to "
                  f"{args.reproducers}", file=out)
        print(file=out)
        passed &= report.passed
    print("all checks passed" if passed else "some checks FAILED", file=out)
    return 0 if passed else 1


