"""Run one configuration and compare it with the exact result, with a dtype-aware tolerance."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .battery import LOW_PRECISION, LayerConfig, tolerance
from .case import Case, call_impl, case_inputs, exact_result, overflow_allowed
from .diagnose import diagnose_failure, localize
from .quantized import QUANTIZED_KINDS, output_dtype, quantized_tolerance
from .report import ConfigResult
from .reproducer import reproducer


def run_config(impl: Callable[..., Any], kind: str, cfg: LayerConfig, default: np.dtype,
               gen: np.random.Generator) -> ConfigResult:
    """Run one configuration through ``impl`` and compare with the exact result."""
    dtype = np.dtype(cfg.dtype) if cfg.dtype else default
    case = Case(cfg, kind, dtype, case_inputs(cfg, kind, dtype, gen))
    expected = exact_result(case)
    tol = case_tolerance(case, expected)
    try:
        raw = call_impl(impl, case)
        actual = np.asarray(raw)
    except NotImplementedError as exc:  # a configuration the implementation cannot express
        return ConfigResult(cfg, "skip", 0.0, 0.0, 0.0,
                            where=(str(exc) or "not implemented")[:200])
    except Exception as exc:  # the implementation's failure is the finding
        result = ConfigResult(cfg, "error", math.inf, 0.0, math.inf,
                              where=f"raised {type(exc).__name__}: {exc}"[:200])
        return _with_reproducer(result, impl, case, expected, tol)
    if actual.shape != expected.shape:
        result = ConfigResult(cfg, "fail", math.inf, 0.0, math.inf,
                              where=f"shape {actual.shape}, expected {expected.shape}",
                              cause=diagnose_failure(case, actual, tol))
        return _with_reproducer(result, impl, case, expected, tol)
    if actual.dtype != output_dtype(kind, dtype):
        # A float32 layer computed and returned in float64 (or the reverse) is not the
        # layer asked for, even when the numbers are close; ConvInteger returns int32.
        result = compare_results(cfg, kind, actual, expected, tol,
                                 overflow_allowed(case, expected, tol))
        what = _returned(raw, actual)
        result = dataclasses.replace(
            result, status="fail", where=f"returned {what} for {dtype} inputs"
            + (f" (expected {output_dtype(kind, dtype)})" if kind in QUANTIZED_KINDS else "")
            + (f"; {result.where}" if result.where else ""),
            cause="output dtype differs from the input dtype (silent promotion or demotion)")
        return _with_reproducer(result, impl, case, expected, tol)
    result = compare_results(cfg, kind, actual, expected, tol, overflow_allowed(case, expected,
                                                                             tol))
    sampled = cfg.batch >= BATCH_CHECK
    if result.passed:
        if not sampled:
            return result
        single, one, expected_one, tol_one = _first_sample(impl, case)
        if single.passed:
            return result
        # Right for the batch, wrong for its first sample alone (TensorFlow #1299, #9870).
        result = dataclasses.replace(
            single, config=cfg, where=f"the first sample alone: {single.where}",
            cause=f"results depend on the batch size: the batch of {cfg.batch} passes, its "
                  f"first sample alone does not")
        return _with_reproducer(result, impl, one, expected_one, tol_one)
    cause = diagnose_failure(case, actual, tol)
    if not cause and sampled and _first_sample(impl, case)[0].passed:
        cause = (f"results depend on the batch size: the first sample alone is right, the "
                 f"batch of {cfg.batch} is not")
    result = dataclasses.replace(result, cause=cause)
    return _with_reproducer(result, impl, case, expected, tol)


def case_tolerance(case: Case, expected: np.ndarray) -> np.ndarray:
    """Return the elementwise tolerance of a case (float16's from its accumulation length).

    Quantized kinds are exact (a requantized value next to a tie may round either way).
    """
    if case.kind in QUANTIZED_KINDS:
        return quantized_tolerance(case.kind, case.arrays, case.dtype, case.layer())
    scale = exact_result(case, absolute=True)
    if case.dtype.name not in LOW_PRECISION:
        return tolerance(case.dtype, scale)
    ones = Case(case.cfg, case.kind, case.dtype,
                {k: None if v is None else np.ones_like(v) for k, v in case.arrays.items()})
    return tolerance(case.dtype, scale, expected, exact_result(ones))


#: Configurations of at least this batch also run their first sample alone.
BATCH_CHECK = 3


def _sample(case: Case) -> Case:
    """Return the case restricted to its first sample (a batch of 1)."""
    arrays = {k: (v[:1] if k in ("x", "grad_output") and v is not None else v)
              for k, v in case.arrays.items()}
    return Case(case.cfg._replace(batch=1), case.kind, case.dtype, arrays)


def _first_sample(impl: Callable[..., Any], case: Case
                  ) -> tuple[ConfigResult, Case, np.ndarray, np.ndarray]:
    """Run the first sample alone: its result, and its case, exact result and tolerance."""
    one = _sample(case)
    expected = exact_result(one)
    tol = case_tolerance(one, expected)
    try:
        actual = np.asarray(call_impl(impl, one))
    except Exception as exc:  # noqa: BLE001 - a batch of 1 that raises is the finding
        result = ConfigResult(one.cfg, "error", math.inf, 0.0, math.inf,
                              where=f"raised {type(exc).__name__}: {exc}"[:200])
    else:
        result = (ConfigResult(one.cfg, "fail", math.inf, 0.0, math.inf,
                               where=f"shape {actual.shape}, expected {expected.shape}")
                  if actual.shape != expected.shape else
                  compare_results(one.cfg, case.kind, actual, expected, tol,
                                  overflow_allowed(one, expected, tol)))
    return result, one, expected, tol


def _with_reproducer(result: ConfigResult, impl: Callable[..., Any], case: Case,
                     expected: np.ndarray, tol: np.ndarray) -> ConfigResult:
    finding = "; ".join(s for s in (result.cause, result.where) if s) or "wrong values"
    return dataclasses.replace(result, reproducer=reproducer(impl, implementation_label(impl), case,
                                                             expected, tol, finding))


def implementation_label(impl: Callable[..., Any]) -> str:
    """Name an implementation as check_conv's report does: module.qualname."""
    name = getattr(impl, "__qualname__", None) or type(impl).__name__
    module = getattr(impl, "__module__", None)
    return f"{module}.{name}" if module else name


def compare_results(cfg: LayerConfig, kind: str, actual: np.ndarray, expected: np.ndarray,
                    tol: np.ndarray, overflow: np.ndarray | None = None) -> ConfigResult:
    """Compare same-shaped results elementwise; a failure is localized (no cause).

    Where ``overflow`` is set, an infinity of the exact value's sign is right.
    """
    got = actual.astype(np.float64)
    right_inf = (np.zeros(got.shape, dtype=bool) if overflow is None else
                 overflow & np.isinf(got) & (np.sign(got) == np.sign(expected)))
    with np.errstate(invalid="ignore"):
        err = np.where(right_inf, 0.0, np.abs(got - expected))
    err[np.isnan(err)] = np.inf  # a NaN output (inf - inf in a sum) is as wrong as can be
    ratio = float(np.max(err / tol, initial=0.0))
    worst = int(np.argmax(err / tol)) if err.size else 0
    max_error = float(err.flat[worst]) if err.size else 0.0
    tolerance = float(tol.flat[worst]) if err.size else 0.0
    if not np.isfinite(ratio) or ratio > 1.0 or not np.all(np.isfinite(got) | right_inf):
        return ConfigResult(cfg, "fail", max_error, tolerance, ratio,
                            where=localize(err > tol, kind))
    return ConfigResult(cfg, "pass", max_error, tolerance, ratio)


def _returned(raw: Any, actual: np.ndarray) -> str:
    """Say what an implementation returned: its dtype, or its type and numpy's reading."""
    if isinstance(raw, np.ndarray):
        return str(actual.dtype)
    kind = type(raw)
    name = kind.__name__ if kind.__module__ == "builtins" else (
        f"{kind.__module__}.{kind.__qualname__}")
    return f"a {name}, which numpy reads as {actual.dtype}"
