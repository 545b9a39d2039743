"""``convop inspect``: a layer's exact matrix, a dot test and its spectrum; JSON, --save, --plot."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from typing import Any, TextIO

import numpy as np
import scipy.sparse as sp

from .._memory import format_bytes
from .._progress import Progress
from .._typing import DOMAINS, ORDERS, PADDING_MODES
from ..geometry import ConvGeometry, conv_geometry
from ..matrix import assemble
from ..operator import LayerOperator
from ..padding import pad_matrix
from ..spectral import singular_values
from ..spectral.circular import is_circulant
from ..validation import dot_test
from .arguments import UsageError, check_plot_dir, check_seed, flag_names, padding, sizes

__all__ = ["add_parser", "run"]

#: Above this smaller dimension `--spectrum auto` skips the smallest singular value.
AUTO_SMALLEST_LIMIT = 20_000
#: Weight dtypes ``inspect --weight`` reads (scipy.sparse stores no float16).
WEIGHT_DTYPES = ("float32", "float64", "complex64", "complex128")


def add_parser(sub: Any) -> None:
    """Add the ``inspect`` subcommand to the subparsers ``sub``."""
    inspect = sub.add_parser(
        "inspect",
        help="describe a layer's exact matrix and spectrum",
        description="Describe the exact matrix of a convolution layer: sizes before building, "
        "build time, a dot test, spectral norm, smallest singular value and condition number. "
        "With no options: a fixed-seed 3x3, 3->8 layer on a 16x16 input, padding 1.",
    )
    inspect.add_argument("--in", dest="input", default="3x16x16", metavar="CxHxW",
                         help="input channels and spatial size, e.g. 3x32x32, 4x100, 2x8x8x8")
    inspect.add_argument("--out-channels", type=int, default=None, help="C_out (default 8)")
    inspect.add_argument("--kernel", default=None, help="kernel size, e.g. 3x3 or 5 (default 3)")
    inspect.add_argument("--weight", default=None, metavar="FILE.npy",
                         help="real weights (C_out, C_in/groups, *kernel) instead of random ones")
    inspect.add_argument("--stride", default="1", help="e.g. 2 or 2x1")
    inspect.add_argument("--padding", default="1",
                         help="same, valid, 1, 1x2, or before:after per axis like 1:2x0:1")
    inspect.add_argument("--dilation", default="1", help="e.g. 2 or 1x2")
    inspect.add_argument("--groups", type=int, default=1)
    inspect.add_argument("--padding-mode", choices=PADDING_MODES, default="zeros")
    inspect.add_argument("--order", choices=ORDERS, default="F")
    inspect.add_argument("--domain", choices=DOMAINS, default="padded")
    inspect.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    inspect.add_argument("--spectrum", choices=("auto", "full", "none"), default="auto",
                         help="auto: the smallest singular value only up to "
                         f"{AUTO_SMALLEST_LIMIT} unknowns; full: always; none: skip")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--save", metavar="W.npz", help="write W with scipy.sparse.save_npz")
    inspect.add_argument("--plot", metavar="DIR", help="write PNG pictures into DIR")


def _layer(args: argparse.Namespace) -> tuple[np.ndarray, ConvGeometry, str]:
    shape = sizes(args.input, "--in")
    if not 2 <= len(shape) <= 4 or min(shape) < 1:
        raise UsageError(f"argument --in: expected C x 1 to 3 spatial sizes, all positive; got "
                         f"{args.input!r}")
    channels, size = shape[0], shape[1:]
    ndim = len(size)
    if args.groups < 1:
        raise UsageError(f"argument --groups: must be a positive integer; got {args.groups}")
    if args.weight:
        if args.kernel or args.out_channels:
            raise UsageError("argument --weight: replaces --kernel and --out-channels; pass "
                             "one or the other")
        weight = _load_weight(args.weight)
        source = f"from {args.weight}"
    else:
        kernel = sizes(args.kernel or "3", "--kernel", ndim)
        if min(kernel) < 1:
            raise UsageError(f"argument --kernel: sizes must be positive; got {args.kernel!r}")
        c_out = 8 if args.out_channels is None else args.out_channels
        if c_out < 1:
            raise UsageError(f"argument --out-channels: must be a positive integer; got {c_out}")
        if channels % args.groups or c_out % args.groups:
            raise UsageError(f"argument --groups: {args.groups} must divide the {channels} "
                             f"input channels and the {c_out} output channels")
        rng = np.random.default_rng(args.seed)
        weight = rng.standard_normal((c_out, channels // args.groups, *kernel))
        source = f"random normal, seed {args.seed}"
    if weight.ndim != ndim + 2:
        raise UsageError(f"argument --weight: shape {weight.shape} does not match {ndim} "
                         f"spatial axes of --in {args.input}")
    if weight.shape[0] % args.groups:
        raise UsageError(f"argument --groups: {args.groups} must divide the {weight.shape[0]} "
                         f"output channels of --weight")
    if weight.shape[1] * args.groups != channels:
        raise UsageError(f"argument --in: {channels} channels, but the weight {weight.shape} "
                         f"with {args.groups} groups reads {weight.shape[1] * args.groups}")
    try:
        geom = conv_geometry(weight.shape, size, stride=sizes(args.stride, "--stride", ndim),
                             padding=padding(args.padding, ndim),
                             dilation=sizes(args.dilation, "--dilation", ndim),
                             groups=args.groups, padding_mode=args.padding_mode)
    except (ValueError, TypeError) as err:
        raise UsageError(flag_names(str(err))) from err
    return weight, geom, source


def _load_weight(path: str) -> np.ndarray:
    try:
        weight = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UsageError(f"argument --weight: cannot read {path!r}: {err}") from err
    if not isinstance(weight, np.ndarray) or weight.dtype.name not in WEIGHT_DTYPES:
        dtype = getattr(weight, "dtype", type(weight).__name__)
        raise UsageError(f"argument --weight: {path!r} holds {dtype}; expected one of "
                         f"{', '.join(WEIGHT_DTYPES)} (convert with numpy's astype)")
    if not 3 <= weight.ndim <= 5 or 0 in weight.shape:
        raise UsageError(f"argument --weight: shape {weight.shape} is not (C_out, C_in/groups, "
                         f"*kernel) with 1 to 3 non-empty spatial axes")
    if not np.all(np.isfinite(weight)):
        raise UsageError(f"argument --weight: {path!r} holds NaN or infinite entries")
    return weight


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable --save and --plot paths before any computation."""
    if args.save:
        folder = os.path.dirname(os.path.abspath(args.save))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise UsageError(f"argument --save: cannot write {args.save!r}: {folder!r} is not a "
                             f"writable directory")
        if os.path.isdir(args.save):
            raise UsageError(f"argument --save: {args.save!r} is a directory")
    if args.plot:
        check_plot_dir(args.plot)


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``convop inspect``; returns 0, or 1 when the dot test fails."""
    check_seed(args.seed)
    weight, geom, source = _layer(args)
    _check_outputs(args)
    shape = geom.matrix_shape(args.domain)
    nnz = geom.nnz(args.domain)
    idx = geom.index_dtype(args.domain)
    nbytes = geom.matrix_nbytes(args.domain, weight.dtype)
    report: dict[str, Any] = {
        "layer": {
            "description": geom.describe(), "weight": source,
            "weight_shape": list(weight.shape), "input_size": list(geom.input_size),
            "output_size": list(geom.output_size), "stride": list(geom.stride),
            "padding": [list(p) for p in geom.padding], "dilation": list(geom.dilation),
            "groups": geom.groups, "padding_mode": geom.padding_mode,
        },
        "matrix": {
            "domain": args.domain, "order": args.order, "shape": list(shape), "nnz": nnz,
            "density": nnz / max(1, shape[0] * shape[1]), "bytes": nbytes,
            "index_dtype": str(idx), "dtype": str(weight.dtype),
        },
    }
    text = not args.json
    if text:
        print(f"layer      {geom.describe()}", file=out)
        print(f"weight     {weight.shape}, {source}", file=out)
        print(f"matrix     {args.domain} domain, order {args.order}: {shape[0]} x {shape[1]}, "
              f"nnz {nnz}, density {report['matrix']['density']:.3%}, {format_bytes(nbytes)} "
              f"({weight.dtype} data, {idx} indices)", file=out, flush=True)
    # Products, the dot test and the spectrum run in float64 (complex128) on the exact
    # weights, whatever dtype the matrix is stored in.
    work = np.dtype(np.complex128 if np.iscomplexobj(weight) else np.float64)
    layer = geom.layer_arguments()
    try:
        with Progress("building the matrix") as stage:
            W = assemble(geom, weight, domain=args.domain, order=args.order, dtype=weight.dtype)
        op = LayerOperator(weight, geom.input_size, order=args.order, dtype=work, **layer)
    except MemoryError as err:
        print(f"convop: {err}", file=sys.stderr)
        return 1
    report["matrix"]["build_seconds"] = stage.elapsed
    if text:
        print(f"build      {stage.elapsed:.3f} s", file=out, flush=True)

    # The adjoint of the built matrix, composed with P^T in the padded domain.
    P = pad_matrix(geom.in_channels, geom.input_size, geom.padding,
                   padding_mode=geom.padding_mode, order=args.order) if (
        args.domain == "padded") else None
    W_adjoint = W.T.conj() if np.iscomplexobj(W) else W.T

    def adjoint(y: np.ndarray) -> np.ndarray:
        back = W_adjoint @ y
        return back if P is None else P.T @ back

    with Progress("the dot test"):
        dot = dot_test(op.matvec, adjoint, (op.shape[1],), (op.shape[0],), dtype=work,
                       rng=args.seed)
    report["dot_test"] = {"passed": dot.passed, "worst": dot.worst, "tolerance": dot.tolerance,
                          "dtype": dot.dtype,
                          "pair": "matrix-free forward vs. adjoint of the built matrix"}
    if text:
        print(f"dot test   {'passed' if dot.passed else 'FAILED'}: matrix-free forward vs. W^H "
              f"(worst relative error {dot.worst:.1e}, tolerance {dot.tolerance:.1e}, "
              f"{dot.dtype})", file=out, flush=True)

    spectral_op = LayerOperator(weight, geom.input_size, order="C", dtype=work, **layer)
    report["spectrum"] = _spectrum(args, spectral_op, text, out)
    if args.save:
        with Progress(f"saving {args.save}"):
            sp.save_npz(args.save, W)
        report["saved"] = args.save
        if text:
            print(f"saved      {args.save}", file=out)
    if args.plot:
        report["plots"] = _plots(args, weight, geom, spectral_op, W, report["spectrum"])
        if text:
            print(f"plots      {', '.join(report['plots'])}", file=out)
    if args.json:
        print(json.dumps(report, indent=2, default=_json_default), file=out)
    return 0 if dot.passed else 1


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _spectrum(args: argparse.Namespace, op: LayerOperator, text: bool, out: TextIO
              ) -> dict[str, Any]:
    m, n = op.shape
    result: dict[str, Any] = {"operator": f"the layer map (input domain, {m} x {n})"}
    if args.spectrum == "none":
        result["skipped"] = "--spectrum none"
        return result
    if text:
        print(f"spectrum   of {result['operator']}", file=out, flush=True)
    try:
        with Progress("the spectral norm"):
            sigma_max = float(singular_values(op, k=1, rng=args.seed)[0])
    except MemoryError as err:
        return _skipped(result, f"{err}", text, out)
    result["spectral_norm"] = sigma_max
    if text:
        print(f"  spectral norm      {sigma_max:.12g}", file=out, flush=True)
    # A circulant layer's smallest value is the FFT's, at any size.
    if args.spectrum == "auto" and min(m, n) > AUTO_SMALLEST_LIMIT and not is_circulant(
            op.geometry):
        return _skipped(result, f"the smallest singular value of a {m} x {n} operator needs a "
                        f"sparse Cholesky factorization of its {min(m, n)}-unknown Gram matrix "
                        f"(minutes at this size); pass --spectrum full",
                        text, out)
    try:
        with Progress("the smallest singular value"):
            sigma_min = float(singular_values(op, k=1, which="smallest", rng=args.seed)[0])
    except MemoryError as err:
        return _skipped(result, f"{err}", text, out)
    cond = math.inf if sigma_min == 0 else sigma_max / sigma_min
    result["sigma_min"] = sigma_min
    result["condition_number"] = cond if math.isfinite(cond) else "inf"
    if text:
        print(f"  smallest           {sigma_min:.12g}", file=out)
        print(f"  condition number   {cond:.6g}" + ("  (rank deficient)" if cond == math.inf
                                                     else ""), file=out)
    return result


def _skipped(result: dict[str, Any], reason: str, text: bool, out: TextIO) -> dict[str, Any]:
    result.setdefault("sigma_min", None)
    result.setdefault("condition_number", None)
    result["skipped"] = reason
    if text:
        print(f"  skipped            {reason}", file=out, flush=True)
    return result


def _plots(args: argparse.Namespace, weight: np.ndarray, geom: ConvGeometry, op: LayerOperator,
           W: Any, spectrum: dict[str, Any]) -> list[str]:
    from .. import plotting

    plt = plotting.pyplot()
    written = []

    def save(figure: Any, name: str) -> None:
        path = os.path.join(args.plot, name)
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)

    channels = (geom.out_channels, geom.in_channels)
    with Progress("drawing structure.png"):
        figure, (overview, zoom) = plt.subplots(1, 2, figsize=(13, 6))
        plotting.plot_structure(W, overview, channels=channels)
        plotting.plot_block(W, (0, 0), zoom, channels=channels)
        figure.suptitle(textwrap.fill(geom.describe(), 110))
        save(figure, "structure.png")
    layer = geom.layer_arguments()
    with Progress("drawing spectrum.png"):
        ax = plotting.plot_spectrum_density(
            weight, geom.input_size, sigma_max=spectrum.get("spectral_norm"),
            sigma_min=spectrum.get("sigma_min"), rng=args.seed, **layer)
        save(ax.figure, "spectrum.png")
    if is_circulant(geom):
        with Progress("drawing frequency.png"):
            ax = plotting.plot_frequency_response(weight, geom.input_size, stride=geom.stride,
                                                  dilation=geom.dilation, groups=geom.groups)
            save(ax.figure, "frequency.png")
    return written


