"""What every ``convop`` subcommand shares: the usage error, the parser, argument parsing.

A bad argument is a :class:`UsageError`: one line naming the flag, exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from .._optional import install_hint, missing
from ..bridge import BRIDGES

__all__ = ["Parser", "UsageError", "check_plot_dir", "check_seed", "flag_names",
           "import_target", "padding", "sizes"]


class UsageError(Exception):
    """A bad command-line argument: reported in one line with exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:  # noqa: D102
        raise UsageError(message)


def sizes(text: str, argument: str, ndim: int | None = None) -> tuple[int, ...]:
    """Parse ``"3x32x32"`` (or one value for every one of ``ndim`` axes) as integers."""
    try:
        values = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(
            f"argument {argument}: expected integers joined by 'x'; got {text!r}"
        ) from None
    if ndim is not None and len(values) == 1:
        values *= ndim
    if ndim is not None and len(values) != ndim:
        raise UsageError(f"argument {argument}: expected 1 or {ndim} values for {ndim} spatial "
                         f"axes; got {text!r}")
    return values


def padding(text: str, ndim: int) -> Any:
    """Parse ``--padding``: same, valid, sizes, or before:after pairs per axis."""
    if text in ("same", "valid"):
        return text
    if ":" not in text:
        return sizes(text, "--padding", ndim)
    axes = text.split("x")
    if len(axes) == 1:
        axes *= ndim
    if len(axes) != ndim:
        raise UsageError(f"argument --padding: expected {ndim} before:after pairs; got {text!r}")
    try:
        pairs = tuple(tuple(int(v) for v in axis.split(":")) for axis in axes)
    except ValueError:
        pairs = ()
    if len(pairs) != ndim or any(len(p) != 2 for p in pairs):
        raise UsageError(f"argument --padding: expected before:after integers per axis, like "
                         f"1:2x0:1; got {text!r}")
    return pairs


def flag_names(message: str) -> str:
    """Name the command-line flags in a library error message, not the keyword arguments."""
    for keyword, flag in (("`padding` 'same'", "--padding same"),
                          ("`input_size`", "--in"), ("`stride`", "--stride"),
                          ("`padding_mode`", "--padding-mode"), ("`padding`", "--padding"),
                          ("`dilation`", "--dilation"), ("`groups`", "--groups"),
                          ("`weight`", "--weight/--kernel")):
        message = message.replace(keyword, flag)
    return message


def check_seed(seed: int) -> None:
    """Refuse a negative ``--seed``."""
    if seed < 0:
        raise UsageError(f"argument --seed: must be a non-negative integer; got {seed}")


def import_target(target: str) -> Callable[..., Any]:
    """Import ``MODULE:FUNCTION`` (a module in the current directory too) and return it."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UsageError(f"argument target: expected {', '.join(BRIDGES)} or "
                         f"MODULE:FUNCTION; got {target!r}")
    # As `python -m` does: a module in the current directory is importable.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise UsageError(f"argument target: cannot load {target!r}: {err}") from err
    if not callable(obj):
        raise UsageError(f"argument target: {target!r} is not callable")
    return obj


def check_plot_dir(path: str) -> None:
    """Refuse a ``--plot DIR`` that cannot be written, or matplotlib missing, before any work."""
    if missing("matplotlib"):
        raise UsageError(f"argument --plot: {install_hint('matplotlib', 'plotting')}")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise UsageError(f"argument --plot: cannot create {path!r}: "
                         f"{err.strerror or err}") from err
    if not os.access(path, os.W_OK):
        raise UsageError(f"argument --plot: {path!r} is not writable")
