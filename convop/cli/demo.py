"""``convop demo``: build ``W`` for a small layer, check it against im2col and the adjoint."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

import numpy as np

from ..functional import conv, conv_input_grad
from ..im2col import im2col
from ..layout import unvec, vec
from ..matrix import conv_matrix

__all__ = ["add_parser", "demo", "run"]

DEMO_SEED = 0


def add_parser(sub: Any) -> None:
    """Add the ``demo`` subcommand to the subparsers ``sub``."""
    sub.add_parser("demo", help="build W for a small layer and check it against im2col")


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


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``convop demo``: 0 when the matrix matches im2col and the adjoint identity holds."""
    return 0 if demo(out) else 1
