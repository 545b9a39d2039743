"""The ``convop`` command line (also ``python -m convop``).

- ``convop demo``: build ``W`` for a small layer, check it against im2col and
  the adjoint identity.
- ``convop check torch|jax|tensorflow|onnxruntime``: run the standard battery
  against a framework, through its bridge (``convop.torch``, ``convop.jax``,
  ``convop.tensorflow``, ``convop.onnx``).
- ``convop check MODULE:FUNCTION --kind KIND``: run it against any importable
  callable with the signature of the matching convop function.
- ``convop inspect``: describe a layer's matrix (sizes before building, build
  time, a dot test, spectral norm, smallest singular value, condition number),
  optionally as JSON, saved with ``--save`` and drawn with ``--plot``.

Exit status: 0 when everything passes, 1 when a check fails, 2 for a usage
error (a one-line message naming the argument, no traceback).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TextIO

from .. import __version__
from .._progress import command_line
from . import audit, check, demo, inspect
from .arguments import Parser, UsageError

__all__ = ["COMMANDS", "UsageError", "build_parser", "main"]

#: The subcommands, in the order ``convop --help`` lists them: each module has
#: ``add_parser(subparsers)`` and ``run(args, out) -> exit status``.
COMMANDS = {"demo": demo, "check": check, "inspect": inspect, "audit": audit}


def build_parser() -> Parser:
    """Return the argument parser of the ``convop`` command."""
    parser = Parser(prog="convop", description="Exact sparse operators of convolution layers.")
    parser.add_argument("--version", action="version", version=f"convop {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit status."""
    out = out or sys.stdout
    try:
        args = build_parser().parse_args(argv)
        with command_line():  # every stage over a second reports, whatever stderr is
            return COMMANDS[args.command].run(args, out)
    except UsageError as err:
        print(f"convop: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # piped into a command that stopped reading (e.g. head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
