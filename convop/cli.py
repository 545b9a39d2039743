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

import argparse
import importlib
import importlib.util
import json
import math
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import numpy as np
import scipy.sparse as sp

from . import __version__
from ._cli_audit import add_audit_parser, run_audit
from ._memory import format_bytes
from ._progress import Progress
from ._typing import DOMAINS, ORDERS, PADDING_MODES
from .functional import conv, conv_input_grad
from .geometry import ConvGeometry, conv_geometry
from .im2col import im2col
from .layout import unvec, vec
from .matrix import assemble, conv_matrix
from .operator import LayerOperator
from .padding import pad_matrix
from .spectral import singular_values
from .spectral.circular import circulant_problem
from .validation import KINDS, check_conv, dot_test
from .validation.case import call_problem

DEMO_SEED = 0
#: Above this smaller dimension `--spectrum auto` skips the smallest singular value.
AUTO_SMALLEST_LIMIT = 20_000


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


#: ``convop check`` targets: the bridge module and what it needs installed.
FRAMEWORKS = {
    "torch": ("convop.torch", ("torch",), "torch==2.13.0"),
    "jax": ("convop.jax", ("jax",), "jax==0.10.2"),
    "tensorflow": ("convop.tensorflow", ("tensorflow",), "tensorflow-cpu"),
    "onnxruntime": ("convop.onnx", ("onnx", "onnxruntime"), "onnx==1.23.2 onnxruntime==1.32.0"),
}


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
        "every result with the exact operator. TARGET is a framework "
        f"({', '.join(FRAMEWORKS)}) or MODULE:FUNCTION.",
    )
    check.add_argument("target", help=f"{'|'.join(FRAMEWORKS)}, or MODULE:FUNCTION of an "
                       "importable callable")
    check.add_argument("--kind", choices=(*KINDS, "all"), default=None,
                       help="what the callable computes (default: forward); for a framework, "
                       "default and 'all': every kind its bridge implements")
    check.add_argument("--configs", choices=("standard", "quick"), default="standard",
                       help="the battery: about 40 layers, or 8")
    check.add_argument("--dtype", choices=("float64", "float32"), default=None,
                       help="default: float64, or the framework's only dtype "
                       "(float32 for onnxruntime)")
    check.add_argument("--seed", type=int, default=0, help="seed of the random inputs")

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
    add_audit_parser(sub)
    return parser


def _sizes(text: str, argument: str, ndim: int | None = None) -> tuple[int, ...]:
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


def _padding(text: str, ndim: int) -> Any:
    if text in ("same", "valid"):
        return text
    if ":" not in text:
        return _sizes(text, "--padding", ndim)
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


#: Weight dtypes ``inspect --weight`` reads (scipy.sparse stores no float16).
WEIGHT_DTYPES = ("float32", "float64", "complex64", "complex128")


def _layer(args: argparse.Namespace) -> tuple[np.ndarray, ConvGeometry, str]:
    shape = _sizes(args.input, "--in")
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
        kernel = _sizes(args.kernel or "3", "--kernel", ndim)
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
        geom = conv_geometry(weight.shape, size, stride=_sizes(args.stride, "--stride", ndim),
                             padding=_padding(args.padding, ndim),
                             dilation=_sizes(args.dilation, "--dilation", ndim),
                             groups=args.groups, padding_mode=args.padding_mode)
    except (ValueError, TypeError) as err:
        raise UsageError(_flag_names(str(err))) from err
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


def _flag_names(message: str) -> str:
    """Name the command-line flags in a library error message, not the keyword arguments."""
    for keyword, flag in (("`padding` 'same'", "--padding same"),
                          ("`input_size`", "--in"), ("`stride`", "--stride"),
                          ("`padding_mode`", "--padding-mode"), ("`padding`", "--padding"),
                          ("`dilation`", "--dilation"), ("`groups`", "--groups"),
                          ("`weight`", "--weight/--kernel")):
        message = message.replace(keyword, flag)
    return message


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
        try:
            importlib.import_module("matplotlib")
        except ImportError:
            raise UsageError('argument --plot: plotting needs matplotlib: python -m pip install '
                             '"convop[plot]"') from None
        try:
            os.makedirs(args.plot, exist_ok=True)
        except OSError as err:
            raise UsageError(f"argument --plot: cannot create {args.plot!r}: "
                             f"{err.strerror or err}") from err
        if not os.access(args.plot, os.W_OK):
            raise UsageError(f"argument --plot: {args.plot!r} is not writable")


def run_inspect(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``convop inspect``; returns 0, or 1 when the dot test fails."""
    _check_seed(args.seed)
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
    layer: dict[str, Any] = dict(stride=geom.stride, padding=geom.padding,
                                 dilation=geom.dilation, groups=geom.groups,
                                 padding_mode=geom.padding_mode)
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


def _check_seed(seed: int) -> None:
    if seed < 0:
        raise UsageError(f"argument --seed: must be a non-negative integer; got {seed}")


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
    if args.spectrum == "auto" and min(m, n) > AUTO_SMALLEST_LIMIT:
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
    from . import plotting

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
    layer: dict[str, Any] = dict(stride=geom.stride, padding=geom.padding,
                                 dilation=geom.dilation, groups=geom.groups,
                                 padding_mode=geom.padding_mode)
    with Progress("drawing spectrum.png"):
        ax = plotting.plot_spectrum_density(
            weight, geom.input_size, sigma_max=spectrum.get("spectral_norm"),
            sigma_min=spectrum.get("sigma_min"), rng=args.seed, **layer)
        save(ax.figure, "spectrum.png")
    if geom.padding_mode == "circular" and circulant_problem(geom) is None:
        with Progress("drawing frequency.png"):
            ax = plotting.plot_frequency_response(weight, geom.input_size, stride=geom.stride,
                                                  dilation=geom.dilation, groups=geom.groups)
            save(ax.figure, "frequency.png")
    return written


def _import_target(target: str) -> Callable[..., Any]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise UsageError(f"argument target: expected {', '.join(FRAMEWORKS)} or "
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


def _framework_targets(args: argparse.Namespace) -> tuple[list[tuple[str, Any]], str]:
    """Return the (kind, callable) pairs of a framework's bridge and the dtype to check."""
    module_name, needs, install = FRAMEWORKS[args.target]
    missing = [name for name in needs if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"argument target: {args.target!r} needs {', '.join(missing)}: "
                         f"python -m pip install {install}")
    from .bridge import bridge_functions

    bridge = importlib.import_module(module_name).bridge
    functions = bridge_functions(bridge, module_name).by_kind()
    kinds = bridge.kinds() if args.kind in (None, "all") else (args.kind,)
    return [(kind, functions[kind]) for kind in kinds], args.dtype or bridge.dtypes[0]


def run_check(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``convop check``; returns 0 when every configuration passes, else 1."""
    if args.target in FRAMEWORKS:
        targets, dtype = _framework_targets(args)
    else:
        if args.kind == "all":
            raise UsageError("argument --kind: 'all' needs a framework target "
                             f"({', '.join(FRAMEWORKS)})")
        targets = [(args.kind or "forward", _import_target(args.target))]
        problem = call_problem(targets[0][1], targets[0][0])
        if problem:
            raise UsageError(f"argument target: {args.target}: {problem}")
        dtype = args.dtype or "float64"
    passed = True
    for kind, impl in targets:
        report = check_conv(impl, kind=kind, configs=args.configs, dtype=dtype, rng=args.seed)
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
        if args.command == "inspect":
            return run_inspect(args, out)
        if args.command == "audit":
            return run_audit(args, out, _import_target, _sizes, UsageError)
        return run_check(args, out)
    except UsageError as err:
        print(f"convop: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # piped into a command that stopped reading (e.g. head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
