"""Where a failing configuration is wrong, and which known mistake explains it."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import numpy as np

from .._validation import (
    as_int_tuple,
    as_padding,
)
from ..adapters import same_padding_pairs
from ..modes import MODES
from ..weight_grad import conv_weight_grad
from .battery import RTOL
from .case import Case, exact_result, overflow_allowed
from .quantized import QUANTIZED_KINDS, quantized_causes


def localize(bad: np.ndarray, kind: str) -> str:
    """Which channels and positions are wrong: edges versus interior, per axis."""
    if not bad.any():
        return "non-finite values"
    if kind == "weight_grad":  # (C_out, C_in/G, *kernel)
        channel_axis, spatial_from, label = 0, 2, "output channels"
    else:  # (N, C, *spatial)
        channel_axis, spatial_from, label = 1, 2, "channels"
    parts = []
    channels = np.flatnonzero(bad.any(axis=tuple(a for a in range(bad.ndim) if a != channel_axis)))
    total = bad.shape[channel_axis]
    parts.append(f"all {total} {label}" if channels.size == total
                 else f"{label} {_ranges(channels)} of {total}")
    sizes = bad.shape[spatial_from:]
    if not sizes:
        return "; ".join(parts)
    parts.append(_where_in_space(np.asarray(bad.any(axis=tuple(range(spatial_from)))), sizes))
    return "; ".join(parts)


def _where_in_space(bad: np.ndarray, sizes: tuple[int, ...]) -> str:
    """Which spatial positions are wrong: edge slabs if that explains them, else per axis."""
    coords = np.nonzero(bad)
    # Distance of every wrong element to the nearest edge, over all spatial axes.
    depth = np.min([np.minimum(c, n - 1 - c) for c, n in zip(coords, sizes)], axis=0)
    band = int(depth.max()) + 1
    if all(n > 2 * band for n in sizes):
        # Slabs of width `band` at each edge; a corner lies in two, so slabs are picked
        # greedily by how many still unexplained elements they hold.
        slabs = {}
        for axis, (c, n) in enumerate(zip(coords, sizes)):
            slabs[axis, "first"] = c < band
            slabs[axis, "last"] = c >= n - band
        left = np.ones(depth.size, dtype=bool)
        chosen: dict[int, list[str]] = {}
        while left.any():
            (axis, side), members = max(slabs.items(), key=lambda item: int((item[1] & left).sum()))
            mine = members & left
            c, n = coords[axis], sizes[axis]
            width = int(c[mine].max()) + 1 if side == "first" else n - int(c[mine].min())
            chosen.setdefault(axis, []).append(f"{side} {width}")
            left &= ~members
            del slabs[axis, side]
        sides = [f"axis {axis}: {' and '.join(sorted(chosen[axis]))} of {sizes[axis]}"
                 for axis in sorted(chosen)]
        return (f"border only, within {band} pixel{'s' if band > 1 else ''} of the edges "
                f"({'; '.join(sides)}), interior exact")
    partial = [f"axis {axis}: positions {_ranges(np.unique(c))} of {n}"
               for axis, (c, n) in enumerate(zip(coords, sizes)) if np.unique(c).size < n]
    # An axis where every position is wrong localizes nothing: only the others are named.
    return "; ".join(partial) if partial else "every position"


def _ranges(idx: np.ndarray) -> str:
    runs, start = [], None
    for i, v in enumerate(idx):
        if start is None:
            start = v
        if i + 1 == len(idx) or idx[i + 1] != v + 1:
            runs.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ",".join(runs)


def diagnose_failure(case: Case, actual: np.ndarray, tol: np.ndarray) -> str:
    """Name the known cause whose exact result the implementation reproduces.

    A mistake whose result equals the right one on this layer (a flipped 1x1
    kernel, transposed channels of a symmetric weight) cannot explain a failure
    there: it is never named.
    """
    expected = exact_result(case)
    allowed = overflow_allowed(case, expected, tol)
    if allowed is not None and actual.shape == expected.shape:
        if np.any(np.isinf(actual) & ~allowed):
            return ("float16 overflow: infinite where the exact output fits in float16 "
                    "(|y| < 65504): a partial sum passed 65504, as accumulating in float16 "
                    "does; accumulate in float32 (pytorch/pytorch#44109, #153700)")
    quantized = case.kind in QUANTIZED_KINDS
    if quantized and actual.shape == expected.shape:
        cause = quantized_causes(case.kind, case.arrays, case.dtype, case.layer(), actual,
                                 expected, tol)
        if cause:
            return cause
    for label, candidate in _candidates(case):
        try:
            guess = candidate()
        except (ValueError, TypeError, NotImplementedError, MemoryError):
            continue
        if guess.shape != actual.shape:
            continue
        bound = (tol if tol.shape == guess.shape else
                 RTOL.get(case.dtype, 0.0) * np.abs(guess) + 1e-300)
        if guess.shape == expected.shape and np.all(np.abs(guess - expected) <= bound):
            continue  # indistinguishable from the right result: it cannot be the cause
        if np.all(np.abs(actual.astype(np.float64) - guess) <= 10 * bound):
            return label
    if case.kind in ("forward", "transpose") and actual.shape == tol.shape:
        perm = _channel_permutation(actual, expected, tol)
        if perm is not None:
            return f"output channels permuted: position i holds exact channel {perm}"
    if actual.shape == tol.shape:
        groups = _wrong_groups(case, actual, expected, tol)
        if groups:
            return groups
    if actual.shape == tol.shape and not quantized:
        return _precision(case, actual, tol)
    return _size_cause(case, actual.shape)


def _wrong_groups(case: Case, actual: np.ndarray, expected: np.ndarray, tol: np.ndarray) -> str:
    """Name a result wrong in whole groups only, right in the others ('' otherwise)."""
    groups = case.cfg.groups
    if groups < 2 or case.kind == "transpose":
        return ""
    axis = 0 if case.kind == "weight_grad" else 1
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(actual.astype(np.float64) - expected) <= tol)
    per_channel = bad.any(axis=tuple(a for a in range(bad.ndim) if a != axis))
    blocks = per_channel.reshape(groups, -1)
    wrong = [g for g in range(groups) if blocks[g].any()]
    if not wrong or len(wrong) == groups or not all(blocks[g].all() for g in wrong):
        return ""
    return (f"wrong in group{'s' if len(wrong) > 1 else ''} {', '.join(map(str, wrong))} of "
            f"{groups} only, every channel of {'them' if len(wrong) > 1 else 'it'}, and right "
            f"in the others: a per-group kernel bug (as oneDNN's grouped Conv3d weight "
            f"gradient with stride (4, 4, 1), pytorch/pytorch#68868)")


def _size_cause(case: Case, shape: tuple[int, ...]) -> str:
    """Name a wrong output size that a known slip gives.

    A size formula without the dilation or the stride (tensorflow#27667:
    depthwise layers with stride and dilation).
    """
    if case.kind != "forward" or len(shape) != 2 + len(case.cfg.input_size):
        return ""
    kernel, stride, dilation = _sizes(case)
    pairs = _pairs(case)
    ones = (1,) * len(kernel)
    for what, s, d in (("dilation were 1", stride, ones), ("stride were 1", ones, dilation)):
        size = tuple((n + lo + hi - dd * (k - 1) - 1) // ss + 1 for n, (lo, hi), k, ss, dd in
                     zip(case.cfg.input_size, pairs, kernel, s, d))
        if tuple(shape[2:]) == size:
            return (f"output size {size}, as if {what} (the size formula without it; "
                    f"tensorflow/tensorflow#27667)")
    return ""


def _precision(case: Case, actual: np.ndarray, tol: np.ndarray) -> str:
    """Name a precision loss when every error sits at a lower precision's rounding level."""
    scale = exact_result(case, absolute=True)
    scale = scale + np.max(scale, initial=0.0)  # as the tolerance: elementwise plus global
    error = float(np.max(np.abs(actual.astype(np.float64) - exact_result(case)) / np.maximum(
        scale, np.finfo(np.float64).tiny), initial=0))
    if not np.isfinite(error):
        return ""
    for low in (np.float32, np.float16):
        name, level = np.dtype(low).name, 100 * float(np.finfo(low).eps) / 2  # 100 roundoffs
        if np.finfo(case.dtype).eps < np.finfo(low).eps and error <= level:
            return (f"precision lost: every error is at {name}'s rounding level "
                    f"({error:.1e} of |W| |x|), as if computed or accumulated in {name}")
    return ""


def _channel_permutation(actual: np.ndarray, expected: np.ndarray, tol: np.ndarray
                         ) -> list[int] | None:
    n = actual.shape[1]
    perm = []
    for i in range(n):
        match = [j for j in range(n) if np.all(
            np.abs(actual[:, i] - expected[:, j]) <= 10 * tol[:, j])]
        if len(match) != 1:
            return None
        perm.append(match[0])
    return perm if sorted(perm) == list(range(n)) and perm != list(range(n)) else None


def _candidates(case: Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """Known mistakes, each computed exactly."""
    w = case.arrays["weight"]
    spatial = tuple(range(2, w.ndim))
    flipped = np.flip(w, axis=spatial)
    out: list[tuple[str, Callable[[], np.ndarray]]] = []
    kind = case.kind
    if kind == "weight_grad":
        exact = exact_result(case)
        out.append(("kernel flipped (gradient of a convolution, not a cross-correlation)",
                     lambda: np.flip(exact, axis=spatial)))
        if exact.shape[0] == exact.shape[1]:
            out.append(("transposed channels (dW[c, m] for dW[m, c])",
                        lambda: np.swapaxes(exact, 0, 1)))
    elif kind == "input_grad":
        out.append(("adjoint kernel not flipped (a convolution with the unflipped kernel "
                    "is not the adjoint)", lambda: exact_result(case, weight=flipped)))
        if w.shape[0] == w.shape[1] * case.cfg.groups and case.cfg.groups == 1:
            out.append(("transposed channels (weight[c, m] for weight[m, c])",
                        lambda: exact_result(case, weight=np.swapaxes(w, 0, 1))))
    elif kind == "transpose":
        out.append(("transposed convolution without the kernel transpose: it matches the "
                    "spatially flipped kernel, as jax.lax.conv_transpose computes by default "
                    "(transpose_kernel=False); PyTorch's transposed convolution is the "
                    "gradient of a cross-correlation, which flips the kernel",
                    lambda: exact_result(case, weight=flipped)))
    else:
        out.append(("kernel flipped (convolution instead of cross-correlation)",
                     lambda: exact_result(case, weight=flipped)))
    if kind in ("forward", "transpose"):
        if case.arrays.get("bias") is not None:
            out.append(("bias missing", lambda: exact_result(case, bias=None)))
        if w.shape[0] == w.shape[1] and case.cfg.groups == 1:
            out.append(("transposed channels (weight[c, m] for weight[m, c])",
                        lambda: exact_result(case, weight=np.swapaxes(w, 0, 1))))
    if kind == "transpose":
        for op in _output_padding_alternatives(case):
            out.append((f"wrong output_padding: the output matches output_padding={op}",
                        functools.partial(exact_result, case, output_padding=op)))
    if kind == "forward":
        out.extend(_ceil_mode(case))
    if kind == "input_grad":
        out.extend(_missing_output_padding(case))
        out.extend(_undilated_adjoint_padding(case))
    if case.cfg.groups > 1 and kind == "weight_grad":
        out.append(("every group's weight gradient taken from the first group's input "
                    "channels (grouped weight gradients, as pytorch/pytorch#51430)",
                    functools.partial(_first_group_weight_grad, case)))
    if kind == "transpose" and any(as_int_tuple(case.cfg.output_padding, "output_padding",
                                                 len(case.cfg.input_size), minimum=0)):
        out.extend(_zero_filled_output_padding(case))
    if case.cfg.groups > 1 and kind in ("forward", "input_grad"):
        out.append(("wrong group assignment (output channel m reads input group "
                    "m % groups, not m // (C_out / groups))",
                    functools.partial(_round_robin_groups, case)))
    out.extend(_padding_mixups(case))  # before "SAME": the plainer explanation first
    if kind != "transpose":
        out.extend(_same_alternatives(case))
    out.extend(_padding_alternatives(case))
    out.append(("the output is all zeros (as PyTorch's grouped 1x1 convolutions once "
                "returned: pytorch/pytorch#19912)", lambda: np.zeros_like(exact_result(case))))
    return out


def _same_alternatives(case: Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """List the input-size-dependent "SAME" paddings of TensorFlow, JAX and ONNX.

    Porting PyTorch's symmetric ``padding=k // 2`` as ``"SAME"`` changes the
    padding once there is a stride (8 pixels, 3x3, stride 2: ``(0, 1)``, not
    ``(1, 1)``); ONNX's ``SAME_LOWER`` puts the odd pixel before.
    """
    kernel, stride, dilation = _sizes(case)
    pairs = _pairs(case)
    out: list[tuple[str, Callable[[], np.ndarray]]] = []
    for odd, what in (("after", "TensorFlow's/JAX's 'SAME' (ONNX SAME_UPPER)"),
                      ("before", "ONNX's SAME_LOWER (the odd pixel before)")):
        same = same_padding_pairs(case.cfg.input_size, kernel, stride=stride,
                                  dilation=dilation, odd=odd)
        if same != pairs:
            out.append((f"padding is {what} for stride {stride}: {list(same)} instead of "
                        f"{list(pairs)}", functools.partial(exact_result, case, padding=same)))
    return out


def _sizes(case: Case) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    cfg = case.cfg
    ndim = len(cfg.input_size)
    return (tuple(cfg.weight_shape[2:]), as_int_tuple(cfg.stride, "stride", ndim, minimum=1),
            as_int_tuple(cfg.dilation, "dilation", ndim, minimum=1))


def _ceil_mode(case: Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """List the layer with one more output where the stride does not divide the span."""
    kernel, stride, dilation = _sizes(case)
    pairs = _pairs(case)
    extra = []
    for n, k, s, d, (lo, hi) in zip(case.cfg.input_size, kernel, stride, dilation, pairs):
        span = n + lo + hi - d * (k - 1) - 1
        extra.append((s - span % s) % s if span >= 0 else 0)
    if not any(extra) or MODES[case.cfg.padding_mode].folds:
        return []
    padding = tuple((lo, hi + e) for (lo, hi), e in zip(pairs, extra))
    return [("ceil-mode output size (one more output on the axes the stride does not divide; "
             "its windows read zeros past the input)",
             functools.partial(exact_result, case, padding=padding))]


def _missing_output_padding(case: Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """Return the input gradient cut to what conv_transpose gives without output_padding."""
    kernel, stride, dilation = _sizes(case)
    pairs = _pairs(case)
    out_size = case.arrays["grad_output"].shape[2:]
    short = tuple((o - 1) * s - lo - hi + d * (k - 1) + 1 for o, s, (lo, hi), d, k in zip(
        out_size, stride, pairs, dilation, kernel))
    if short == tuple(case.cfg.input_size) or min(short, default=0) < 1:
        return []
    return [("input gradient missing output_padding: the size conv_transpose gives "
             "without it (the last rows the stride never reads are dropped)",
             lambda: exact_result(case)[(Ellipsis,) + tuple(slice(0, n) for n in short)])]


def _undilated_adjoint_padding(case: Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """Return the input gradient shifted by ``(d - 1)(k - 1)`` along the dilated axes.

    An adjoint whose padding is computed from the undilated kernel, ``k - 1``
    instead of ``d (k - 1)`` (jax-ml/jax#563), places the gradient that far off.
    """
    kernel, _, dilation = _sizes(case)
    shifts = tuple((d - 1) * (k - 1) for d, k in zip(dilation, kernel))
    if not any(shifts):
        return []

    def shifted(sign: int) -> np.ndarray:
        exact = exact_result(case)
        out = np.zeros_like(exact)
        source, target = [slice(None)] * 2, [slice(None)] * 2
        for axis, s in enumerate(shifts):
            n = exact.shape[2 + axis]
            s = min(s, n)
            source.append(slice(0, n - s) if sign > 0 else slice(s, n))
            target.append(slice(s, n) if sign > 0 else slice(0, n - s))
        out[tuple(target)] = exact[tuple(source)]
        return out

    return [(f"input gradient shifted by (d - 1)(k - 1) = {shifts} {way}: the adjoint's "
             f"padding computed from the undilated kernel (jax-ml/jax#563)",
             functools.partial(shifted, sign))
            for sign, way in ((1, "toward the end"), (-1, "toward the start"))]


def _first_group_weight_grad(case: Case) -> np.ndarray:
    """Return the weight gradient with every group reading group 0's input channels."""
    x = case.arrays["x"].astype(np.float64)
    per = x.shape[1] // case.cfg.groups
    mixed = np.concatenate([x[:, :per]] * case.cfg.groups, axis=1)
    return conv_weight_grad(mixed, case.arrays["grad_output"].astype(np.float64),
                            case.cfg.weight_shape[2:], **case.layer())


def _zero_filled_output_padding(case: Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """List the transposed convolution with its output_padding rows zero-filled (tvm#19524)."""
    ndim = len(case.cfg.input_size)
    extra = as_int_tuple(case.cfg.output_padding, "output_padding", ndim, minimum=0)

    def filled(with_bias: bool) -> np.ndarray:
        y = exact_result(case).copy()
        bias = case.arrays["bias"]
        fill = (np.asarray(bias, dtype=np.float64).reshape(1, -1, *(1,) * ndim)
                if with_bias and bias is not None else 0.0)
        for axis, e in enumerate(extra):
            if e:
                rows = [slice(None)] * y.ndim
                rows[2 + axis] = slice(y.shape[2 + axis] - e, None)
                y[tuple(rows)] = 0.0
                y[tuple(rows)] += fill
        return y

    out: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("output_padding rows zero-filled: the extra rows hold no products "
         "(apache/tvm#19524)", functools.partial(filled, False))]
    if case.arrays["bias"] is not None:
        out.append(("output_padding rows hold the bias only: no products added there",
                    functools.partial(filled, True)))
    return out


def _padding_mixups(case: Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """List the padding on the wrong axes, or made symmetric (pytorch#24504)."""
    pairs = _pairs(case)
    out: list[tuple[str, Callable[[], np.ndarray]]] = []
    if len(pairs) > 1 and pairs[::-1] != pairs:
        out.append((f"padding of the spatial axes in reverse order: {list(pairs[::-1])} "
                    f"instead of {list(pairs)} (as F.pad's last-axis-first order read the "
                    f"wrong way, pytorch/pytorch#29712)",
                    functools.partial(exact_result, case, padding=pairs[::-1])))
    symmetric = tuple((max(p), max(p)) for p in pairs)
    if symmetric != pairs:
        out.append((f"padding made symmetric: {list(symmetric)} instead of {list(pairs)} "
                    f"(a side that is 0 padded anyway, pytorch/pytorch#24504)",
                    functools.partial(exact_result, case, padding=symmetric)))
    smaller = tuple((min(p), min(p)) for p in pairs)
    if smaller != pairs:
        out.append((f"padding made symmetric on the smaller side: {list(smaller)} instead of "
                    f"{list(pairs)} (SAME_UPPER / TensorFlow's asymmetric SAME exported as "
                    f"symmetric pads: pytorch/pytorch#27602, onnx/tensorflow-onnx#1028)",
                    functools.partial(exact_result, case, padding=smaller)))
    return out


def _round_robin_groups(case: Case) -> np.ndarray:
    """Return the layer with output channel m wired to input group m % groups."""
    w = case.arrays["weight"]
    groups, cig = case.cfg.groups, w.shape[1]
    full = np.zeros((w.shape[0], cig * groups, *w.shape[2:]), dtype=w.dtype)
    for m in range(w.shape[0]):
        g = m % groups
        full[m, g * cig:(g + 1) * cig] = w[m]
    return exact_result(case, weight=full, groups=1)


def _pairs(case: Case) -> tuple[tuple[int, int], ...]:
    """Return the configuration's padding as ``(before, after)`` pairs."""
    kernel, stride, dilation = _sizes(case)
    return as_padding(case.cfg.padding, len(kernel), kernel_size=kernel, dilation=dilation,
                      stride=stride)


def _padding_alternatives(case: Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """List the paddings one off, on one axis or the same way on every axis."""
    pairs = _pairs(case)
    ndim = len(pairs)
    out: list[tuple[str, Callable[[], np.ndarray]]] = []
    targets: list[tuple[str, tuple[int, ...]]] = [(f"spatial axis {a}", (a,))
                                                  for a in range(ndim)]
    if ndim > 1:
        targets.append(("every spatial axis", tuple(range(ndim))))
    # The smallest change first: when a padding row is never read, two changes give the
    # same output and the simpler explanation is named.
    for d_lo, d_hi, what in ((1, 1, "one more"), (-1, -1, "one less"),
                             (0, 1, "one more after only"), (1, 0, "one more before only"),
                             (0, -1, "one less after only"), (-1, 0, "one less before only"),
                             (1, -1, "shifted by one (before +1, after -1)"),
                             (-1, 1, "shifted by one (before -1, after +1)")):
        for where, axes in targets:
            new = [(lo + d_lo, hi + d_hi) if a in axes else (lo, hi)
                   for a, (lo, hi) in enumerate(pairs)]
            if min(min(p) for p in new) < 0:
                continue
            change = (f"{pairs[axes[0]]} -> {new[axes[0]]}" if len(axes) == 1
                      else f"{list(pairs)} -> {new}")
            out.append((f"off-by-one padding on {where}: {what} ({change})",
                        functools.partial(exact_result, case, padding=tuple(new))))
    return out


def _output_padding_alternatives(case: Case) -> list[tuple[int, ...]]:
    """Every output_padding from 0 to max(stride, dilation) (+1) on each axis but the right one.

    Off by one and off by more: any value the layer could take, and one beyond.
    """
    _, stride, dilation = _sizes(case)
    base = as_int_tuple(case.cfg.output_padding, "output_padding", len(stride), minimum=0)
    choices = [range(max(s, d, b + 1) + 1) for s, d, b in zip(stride, dilation, base)]
    return [tuple(c) for c in itertools.product(*choices) if tuple(c) != base]
