"""Run a battery through an implementation and compare with the exact operator."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _memory
from .._optional import require
from .._progress import Progress, check_progress
from .._validation import (
    as_rng,
    check_callable,
    check_choice,
    check_max_bytes,
)
from .battery import KINDS, LayerConfig, battery_configs, checkable_float
from .case import case_inputs
from .compare import implementation_label, run_config
from .quantized import QUANTIZED_DTYPES, QUANTIZED_KINDS
from .report import CheckReport


def check_conv(
    impl: Callable[..., Any],
    *,
    kind: str = "forward",
    configs: str | Sequence[LayerConfig] = "standard",
    dtype: npt.DTypeLike | None = None,
    rng: Any = None,
    max_bytes: int | None = None,
    progress: bool | None = None,
) -> CheckReport:
    """Run a battery of layers through ``impl`` and compare with the exact operator.

    Parameters
    ----------
    impl : callable
        Takes and returns numpy arrays, with the signature of the matching
        convop function: :func:`convop.conv` (``kind="forward"``),
        :func:`convop.conv_input_grad` (``"input_grad"``),
        :func:`convop.conv_weight_grad` (``"weight_grad"``) or
        :func:`convop.conv_transpose` (``"transpose"``); for the quantized kinds
        see :mod:`convop.validation.quantized`. Every layer argument is passed
        by keyword.
    kind : {"forward", "input_grad", "weight_grad", "transpose", "integer", "quantized"}
        What ``impl`` computes. ``"integer"``: ONNX ``ConvInteger``'s int32 sums
        of zero-point-shifted uint8/int8 inputs, held to exact equality;
        ``"quantized"``: ``QLinearConv``'s (and PyTorch's quantized
        convolution's) requantized output, exact up to a value next to a tie.
    configs : "standard", "quick" or sequence of LayerConfig
        The battery: about 40 layers covering the edge cases, 8 of them, or
        your own.
    dtype : {float64, float32, float16, bfloat16, uint8, int8}, optional
        Data type of the inputs, unless a configuration sets its own: float64
        by default, uint8 for the quantized kinds (which take uint8 or int8;
        weights int8). float16 and bfloat16 (``"bfloat16"``, through the
        ``ml_dtypes`` package) are held to a float32 accumulation rounded once
        (:func:`convop.validation.battery.tolerance`).
    rng : None, int or numpy.random.Generator
        Source of the random inputs.
    max_bytes : int, optional
        Memory budget of one configuration (its random inputs, the exact
        results and their matrices); by default 75% of the available memory.
        Configurations are checked against it before anything runs.
    progress : None, True or False
        Report the configuration being run on stderr: ``None`` once the check
        runs longer than a second and only when stderr is a terminal (or
        ``CONVOP_PROGRESS=1``), ``True`` from the start, ``False`` never.
        A framework that compiles per shape (JAX) takes seconds per battery.

    Returns
    -------
    CheckReport
        ``.passed``, the worst error and its tolerance, and a table with one row
        per configuration; failures are localized and matched to known causes.

    Notes
    -----
    The reference is convop's exact result in float64 from the same inputs.
    An output element passes when ``|impl - exact| <= rtol * (|W| @ |x|)``,
    the exact operator applied to absolute values, with ``rtol`` 1e-12 for
    float64 and 1e-5 for float32.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import check_conv, conv
    >>> check_conv(conv, configs="quick").passed
    True
    >>> def flipped(x, weight, bias=None, **kw):       # a true convolution
    ...     return conv(x, weight[..., ::-1, ::-1] if weight.ndim == 4 else weight, bias, **kw)
    >>> report = check_conv(flipped, configs="quick", rng=0)
    >>> report.passed, report.failures[0].cause
    (False, 'kernel flipped (convolution instead of cross-correlation)')
    """
    check_callable(impl, "impl")
    check_choice(kind, "kind", KINDS)
    default = _check_dtype(dtype, kind)
    battery = _check_configs(configs, kind, check_max_bytes(max_bytes))
    gen = as_rng(rng)
    label = implementation_label(impl)
    results = []
    with Progress(f"check_conv(kind={kind!r}) of {label}",
                  enabled=check_progress(progress)) as stage:
        for index, cfg in enumerate(battery, 1):
            stage.update(f"configuration {index}/{len(battery)}: {cfg.name}")
            results.append(run_config(impl, kind, cfg, default, gen))
    return CheckReport(kind, label, str(default), tuple(results))


def _check_dtype(dtype: Any, kind: str) -> np.dtype:
    """Validate ``dtype`` for ``kind``: a float for the float kinds, uint8/int8 otherwise."""
    quantized = kind in QUANTIZED_KINDS
    if dtype is None:
        return QUANTIZED_DTYPES[0] if quantized else np.dtype(np.float64)
    rule = (f"uint8 or int8 for kind={kind!r}" if quantized else
            "float64, float32, float16 or bfloat16 (uint8 and int8 are for the quantized "
            "kinds)")
    if isinstance(dtype, str) and dtype == "bfloat16":
        require("ml_dtypes", "bfloat16")  # numpy knows the name once ml_dtypes is imported
    try:
        chosen = np.dtype(dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`dtype` must be {rule}; got {dtype!r}.") from err
    if chosen not in QUANTIZED_DTYPES if quantized else not checkable_float(chosen):
        raise TypeError(f"`dtype` must be {rule}; got {chosen}.")
    return chosen


def _check_configs(configs: Any, kind: str, max_bytes: int | None) -> list[LayerConfig]:
    """Return the battery: a named one, or a non-empty sequence of valid LayerConfigs."""
    if isinstance(configs, str):
        return battery_configs(kind, check_choice(configs, "configs", ("standard", "quick")))
    if not isinstance(configs, Sequence):
        raise TypeError(f"`configs` must be 'standard', 'quick' or a sequence of LayerConfig; "
                        f"got {configs!r}.")
    battery = list(configs)
    if not battery:
        raise ValueError("`configs` must hold at least one LayerConfig; got an empty sequence "
                         "(a check that runs nothing proves nothing).")
    for i, cfg in enumerate(battery):
        if not isinstance(cfg, LayerConfig):
            raise TypeError(f"`configs[{i}]` must be a LayerConfig; got {cfg!r} of type "
                            f"{type(cfg).__name__}.")
        try:
            needed = case_inputs(cfg, kind, np.dtype(np.float64), np.random.default_rng(0),
                             shapes_only=True)["bytes"]
        except (TypeError, ValueError) as err:
            raise type(err)(f"`configs[{i}]` ({cfg.name!r}) is not a valid layer: {err}") from err
        _memory.check_budget(needed, max_bytes, f"`configs[{i}]` ({cfg.name!r})")
    return battery
