"""Check other convolution implementations against the exact operator, and say where they fail.

- :func:`dot_test`: the adjoint identity ``<A x, y> = <x, A^T y>`` for any pair
  of callables, with a tolerance from the magnitudes and the dtype.
- :func:`check_conv`: a battery of layers (every edge case convop knows) run
  through an implementation of the forward pass, input gradient, weight
  gradient or transposed convolution, compared with the exact result. A
  failing configuration is localized (channels; border or interior positions)
  and matched against known causes (flipped kernel, transposed or permuted
  channels, off-by-one padding, wrong ``output_padding``, missing bias).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import _memory
from ._typing import PaddingMode
from ._validation import (
    as_int,
    as_int_tuple,
    as_padding,
    as_rng,
    as_shape,
    as_weight_shape,
    check_callable,
    check_choice,
    check_max_bytes,
)
from .functional import conv, conv_input_grad
from .geometry import conv_geometry
from .transposed import conv_transpose, transposed_output_size
from .weight_grad import conv_weight_grad

__all__ = [
    "CheckReport",
    "ConfigResult",
    "DotTestReport",
    "LayerConfig",
    "check_conv",
    "dot_test",
    "standard_configs",
]

KINDS = ("forward", "input_grad", "weight_grad", "transpose")
#: Relative tolerance against ``|W| @ |x|`` per dtype.
RTOL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


# Dot test -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DotTestReport:
    """Result of :func:`dot_test`: one row per trial.

    Attributes
    ----------
    lhs, rhs : tuple of float or complex
        ``<A x, y>`` and ``<x, A^H y>`` per trial (complex for complex data).
    errors : tuple of float
        ``|lhs - rhs| / (||A x|| ||y|| + ||x|| ||A^H y||)`` per trial.
    tolerance : float
        The bound each error must meet.
    dtype : str
        The dtype the trials ran in (the least precise of the inputs and results).
    """

    lhs: tuple[float | complex, ...]
    rhs: tuple[float | complex, ...]
    errors: tuple[float, ...]
    tolerance: float
    dtype: str

    @property
    def passed(self) -> bool:
        """True when every trial is within the tolerance."""
        return all(e <= self.tolerance for e in self.errors)

    @property
    def worst(self) -> float:
        """The largest relative error over the trials."""
        return max(self.errors, default=0.0)

    def __str__(self) -> str:
        lines = [f"dot test ({self.dtype}): {'PASSED' if self.passed else 'FAILED'}, worst "
                 f"relative error {self.worst:.2e} (tolerance {self.tolerance:.2e})",
                 f"{'trial':>5} {'<A x, y>':>24} {'<x, A^H y>':>24} {'rel. error':>11}"]
        for i, (a, b, e) in enumerate(zip(self.lhs, self.rhs, self.errors)):
            flag = "" if e <= self.tolerance else "  <- fails"
            lines.append(f"{i:>5} {_number(a):>24} {_number(b):>24} {e:>11.2e}{flag}")
        return "\n".join(lines)


def _number(value: float | complex) -> str:
    return f"{value:.10g}" if isinstance(value, complex) else f"{value:.16g}"


#: Data types the random arrays of :func:`dot_test` can have.
DOT_TEST_DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.complex64,
                                               np.complex128))
#: Most trials :func:`dot_test` runs.
MAX_TRIALS = 10_000


def dot_test(
    forward: Callable[[np.ndarray], Any],
    adjoint: Callable[[np.ndarray], Any],
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    *,
    dtype: npt.DTypeLike = np.float64,
    rng: Any = None,
    trials: int = 3,
    max_bytes: int | None = None,
) -> DotTestReport:
    r"""Check the adjoint identity ``<A x, y> = <x, A^H y>`` on random arrays.

    Parameters
    ----------
    forward, adjoint : callable
        ``A`` and its claimed adjoint (the conjugate transpose for complex
        data), on arrays of ``input_shape`` and ``output_shape`` respectively.
    input_shape, output_shape : tuple of int
        Shapes of ``x`` and ``y``.
    dtype : {float64, float32, complex128, complex64}
        Data type of the random arrays.
    rng : None, int or numpy.random.Generator
        Source of the random arrays.
    trials : int
        Number of random pairs, 1 to 10000.
    max_bytes : int, optional
        Memory budget for the arrays of one trial (default: 75% of the
        available memory).

    Returns
    -------
    DotTestReport

    Notes
    -----
    Each trial's error is ``|<Ax, y> - <x, A^H y>|`` over the Cauchy-Schwarz
    scale ``||Ax|| ||y|| + ||x|| ||A^H y||``; the tolerance is
    ``4 u \sqrt{\max(n_{in}, n_{out})}`` with ``u`` the unit roundoff of the
    least precise dtype among the random arrays and the two results (an
    implementation that computes in float32 is held to float32's accuracy).
    Rounding alone stays near ``0.1 u`` on that scale (measured on convolution
    matrices), while an adjoint whose entries are off by a relative ``eps``
    shows an error of about ``eps / 3``: float64 detects ``eps`` down to about
    ``1e-14``, float32 down to about ``1e-4``.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import conv, conv_input_grad, dot_test
    >>> w = np.random.default_rng(0).standard_normal((4, 3, 3, 3))
    >>> report = dot_test(lambda x: conv(x, w, padding=1),
    ...                   lambda y: conv_input_grad(y, w, (8, 8), padding=1),
    ...                   (2, 3, 8, 8), (2, 4, 8, 8), rng=0)
    >>> report.passed
    True
    """
    check_callable(forward, "forward")
    check_callable(adjoint, "adjoint")
    in_shape = as_shape(input_shape, "input_shape")
    out_shape = as_shape(output_shape, "output_shape")
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`dtype` must be a numpy dtype; got {dtype!r}.") from err
    if dt not in DOT_TEST_DTYPES:
        raise TypeError(f"`dtype` must be float32, float64, complex64 or complex128; got {dt}.")
    trials = as_int(trials, "trials", minimum=1, maximum=MAX_TRIALS)
    n_in, n_out = math.prod(in_shape), math.prod(out_shape)
    _memory.check_budget(4 * (n_in + n_out) * max(dt.itemsize, 8), check_max_bytes(max_bytes),
                         f"a dot test on arrays of shapes {in_shape} and {out_shape}")
    gen = as_rng(rng)
    lhs: list[float | complex] = []
    rhs: list[float | complex] = []
    errors = []
    least = dt
    for _ in range(trials):
        x, y = _random(gen, in_shape, dt), _random(gen, out_shape, dt)
        ax = _apply(forward, "forward", x, "input_shape")
        aty = _apply(adjoint, "adjoint", y, "output_shape")
        if ax.shape != out_shape or aty.shape != in_shape:
            raise ValueError(
                f"`forward` must return `output_shape` {out_shape} and `adjoint` `input_shape` "
                f"{in_shape}; got {ax.shape} and {aty.shape}."
            )
        least = max((least, ax.dtype, aty.dtype), key=_unit_roundoff)
        wide = np.complex128 if dt.kind == "c" or np.iscomplexobj(ax) or np.iscomplexobj(aty) \
            else np.float64
        a = complex(np.vdot(ax.astype(wide), y.astype(wide)))
        b = complex(np.vdot(x.astype(wide), aty.astype(wide)))
        scale = float(np.linalg.norm(ax) * np.linalg.norm(y)
                      + np.linalg.norm(x) * np.linalg.norm(aty))
        lhs.append(a if wide is np.complex128 else a.real)
        rhs.append(b if wide is np.complex128 else b.real)
        errors.append(abs(a - b) / scale if scale > 0 else abs(a - b))
    tolerance = 4 * _unit_roundoff(least) * math.sqrt(max(n_in, n_out, 1))
    return DotTestReport(tuple(lhs), tuple(rhs), tuple(errors), tolerance, str(least))


def _apply(function: Callable[[np.ndarray], Any], name: str, array: np.ndarray,
           shape_name: str) -> np.ndarray:
    """Call one side of the pair; its failure on the given shape is reported as such."""
    try:
        return np.asarray(function(array))
    except Exception as err:  # the user's callable: whatever it raises, say where
        raise ValueError(f"`{name}` failed on a random {array.dtype} array of `{shape_name}` "
                         f"{array.shape}: {type(err).__name__}: {err}") from err


def _unit_roundoff(dtype: np.dtype) -> float:
    """Half the machine epsilon of a floating dtype; float64's for anything else."""
    dtype = np.dtype(dtype)
    return float(np.finfo(dtype).eps) / 2 if dtype.kind in "fc" else float(np.finfo(float).eps) / 2


def _random(gen: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "c":
        return ((gen.standard_normal(shape) + 1j * gen.standard_normal(shape))
                / math.sqrt(2)).astype(dtype)
    return gen.standard_normal(shape).astype(dtype)


# Battery ---------------------------------------------------------------------------------


class LayerConfig(NamedTuple):
    """One layer of a battery.

    For ``kind="transpose"`` the weight shape is PyTorch's transposed layout
    ``(C_in, C_out // groups, *kernel)``. ``dtype=None`` uses the check's dtype.

    Examples
    --------
    >>> from convop import LayerConfig, check_conv, conv
    >>> mine = [LayerConfig("5x5 stride 2", (8, 4, 5, 5), (17, 17), stride=2, padding=2)]
    >>> check_conv(conv, configs=mine).passed
    True
    """

    name: str
    weight_shape: tuple[int, ...]
    input_size: tuple[int, ...]
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    padding_mode: PaddingMode = "zeros"
    output_padding: Any = 0
    batch: int = 2
    bias: bool = True
    dtype: str | None = None


_STANDARD = [
    LayerConfig("3x3 pad 1", (4, 3, 3, 3), (7, 8), padding=1),
    LayerConfig("1x1 kernel", (5, 3, 1, 1), (6, 5)),
    LayerConfig("kernel = input", (2, 3, 5, 4), (5, 4)),
    LayerConfig("kernel = padded input", (2, 2, 5, 6), (3, 4), padding=1),
    LayerConfig("stride 2", (4, 3, 3, 3), (9, 8), stride=2, padding=1),
    LayerConfig("stride > kernel", (3, 2, 2, 2), (10, 9), stride=3),
    LayerConfig("stride > input", (2, 2, 2, 2), (4, 4), stride=5),
    LayerConfig("dilation 2 + padding 2", (3, 2, 3, 3), (8, 9), dilation=2, padding=2),
    LayerConfig("dilation 3", (2, 2, 3, 2), (9, 8), dilation=3),
    LayerConfig("asymmetric padding", (3, 2, 3, 3), (6, 7), padding=((1, 2), (0, 1))),
    LayerConfig("same, even kernel", (3, 2, 4, 4), (7, 6), padding="same"),
    LayerConfig("same, dilation 2", (2, 3, 3, 3), (8, 8), padding="same", dilation=2),
    LayerConfig("depthwise", (6, 1, 3, 3), (7, 7), padding=1, groups=6),
    LayerConfig("groups 2", (4, 2, 3, 3), (6, 6), padding=1, groups=2),
    LayerConfig("non-square 1x5", (3, 2, 1, 5), (6, 9), padding=(0, 2)),
    LayerConfig("non-square 3x1 stride (2,1)", (3, 2, 3, 1), (9, 5), stride=(2, 1)),
    LayerConfig("single pixel", (3, 2, 1, 1), (1, 1)),
    LayerConfig("single pixel, padding 1", (2, 2, 3, 3), (1, 1), padding=1),
    LayerConfig("zero batch", (3, 2, 3, 3), (5, 5), padding=1, batch=0),
    LayerConfig("batch 3", (3, 2, 3, 3), (5, 6), padding=1, batch=3),
    LayerConfig("reflect", (3, 2, 3, 3), (6, 7), padding=1, padding_mode="reflect"),
    LayerConfig("replicate", (3, 2, 3, 3), (6, 7), padding=2, padding_mode="replicate"),
    LayerConfig("circular", (3, 2, 3, 3), (6, 7), padding=1, padding_mode="circular"),
    LayerConfig("reflect asymmetric", (2, 2, 3, 2), (5, 6), padding=((2, 1), (0, 1)),
                padding_mode="reflect"),
    LayerConfig("circular 7x7 on 3x3", (2, 2, 7, 7), (3, 3), padding=3, padding_mode="circular"),
    LayerConfig("1-D", (4, 3, 3), (11,), padding=1),
    LayerConfig("1-D stride 2 dilation 2", (3, 2, 3), (15,), stride=2, dilation=2, padding=2),
    LayerConfig("1-D reflect", (2, 2, 4), (9,), padding=((2, 1),), padding_mode="reflect"),
    LayerConfig("3-D", (3, 2, 3, 3, 3), (5, 4, 6), padding=1),
    LayerConfig("3-D stride, asymmetric", (2, 2, 2, 3, 2), (6, 5, 4), stride=(2, 1, 2),
                padding=((1, 0), (1, 1), (0, 1))),
    LayerConfig("3-D circular", (2, 2, 3, 3, 3), (4, 4, 4), padding=1, padding_mode="circular"),
    LayerConfig("float32", (4, 3, 3, 3), (7, 8), padding=1, dtype="float32"),
    LayerConfig("float32 groups", (4, 2, 3, 3), (6, 6), padding=1, groups=2, dtype="float32"),
    LayerConfig("no bias", (3, 3, 3, 3), (6, 6), padding=1, bias=False),
    LayerConfig("16 -> 16", (16, 16, 3, 3), (8, 8), padding=1),
    LayerConfig("3 -> 8 rectangular", (8, 3, 3, 3), (5, 9), padding=1),
    LayerConfig("stride 2 even input", (3, 3, 3, 3), (8, 8), stride=2, padding=1),
    LayerConfig("dilation + replicate", (2, 2, 3, 3), (7, 7), dilation=2, padding=2,
                padding_mode="replicate"),
    LayerConfig("grouped 1x1", (6, 2, 1, 1), (4, 5), groups=3),
    LayerConfig("5x5 stride 2 pad 2", (3, 2, 5, 5), (9, 10), stride=2, padding=2),
]

_QUICK_NAMES = ("3x3 pad 1", "stride 2", "asymmetric padding", "groups 2", "reflect", "1-D",
                "3-D", "float32")

# Transposed convolutions: PyTorch's weight layout (C_in, C_out // groups, *kernel).
_TRANSPOSE = [
    LayerConfig("3x3", (3, 4, 3, 3), (5, 6)),
    LayerConfig("3x3 pad 1", (3, 4, 3, 3), (5, 6), padding=1),
    LayerConfig("stride 2 output_padding 1", (3, 2, 3, 3), (4, 5), stride=2, padding=1,
                output_padding=1),
    LayerConfig("stride 2 output_padding 0", (3, 2, 3, 3), (4, 5), stride=2, padding=1),
    LayerConfig("stride 3 output_padding 2", (2, 3, 2, 2), (3, 4), stride=3, output_padding=2),
    LayerConfig("even kernel stride 2", (2, 2, 4, 4), (4, 4), stride=2, padding=1),
    LayerConfig("dilation 2 output_padding 1", (2, 3, 3, 3), (4, 4), dilation=2,
                output_padding=1),
    LayerConfig("asymmetric padding", (2, 3, 3, 3), (5, 5), stride=2,
                padding=((1, 0), (0, 2)), output_padding=(1, 0)),
    LayerConfig("groups 2", (4, 2, 3, 3), (5, 5), stride=2, padding=1, groups=2),
    LayerConfig("depthwise", (4, 1, 3, 3), (5, 5), padding=1, groups=4),
    LayerConfig("1x1 stride 2", (3, 2, 1, 1), (4, 4), stride=2, output_padding=1),
    LayerConfig("non-square", (2, 3, 1, 3), (4, 5), stride=(1, 2), padding=(0, 1),
                output_padding=(0, 1)),
    LayerConfig("single pixel", (2, 3, 3, 3), (1, 1)),
    LayerConfig("zero batch", (2, 3, 3, 3), (4, 4), stride=2, batch=0),
    LayerConfig("no bias", (3, 3, 3, 3), (4, 4), stride=2, padding=1, bias=False),
    LayerConfig("1-D", (3, 2, 4), (7,), stride=2, padding=1, output_padding=1),
    LayerConfig("3-D", (2, 2, 3, 3, 3), (3, 4, 3), stride=2, padding=1, output_padding=1),
    LayerConfig("float32", (3, 4, 3, 3), (5, 6), stride=2, padding=1, dtype="float32"),
]


def standard_configs(kind: str = "forward", which: str = "standard") -> list[LayerConfig]:
    """Return the built-in battery of layers for ``kind`` (``"standard"`` or ``"quick"``).

    Examples
    --------
    >>> from convop import standard_configs
    >>> len(standard_configs("forward")) >= 40, len(standard_configs("forward", "quick"))
    (True, 8)
    """
    check_choice(kind, "kind", KINDS)
    return _battery(kind, check_choice(which, "which", ("standard", "quick")))


def _battery(kind: str, which: str) -> list[LayerConfig]:
    if kind == "transpose":
        return list(_TRANSPOSE if which == "standard" else _TRANSPOSE[:6])
    if which == "quick":
        return [c for c in _STANDARD if c.name in _QUICK_NAMES]
    return list(_STANDARD)


@dataclass(frozen=True)
class ConfigResult:
    """The outcome of one configuration of a battery.

    ``status`` is ``"pass"``, ``"fail"`` (wrong values or shape) or ``"error"``
    (the implementation raised). ``ratio`` is the worst error over its
    tolerance; ``where`` localizes a failure and ``cause`` names a known cause
    when the implementation's output matches it exactly.
    """

    config: LayerConfig
    status: str
    max_error: float
    tolerance: float
    ratio: float
    where: str = ""
    cause: str = ""

    @property
    def passed(self) -> bool:
        """True when the configuration passed."""
        return self.status == "pass"


@dataclass(frozen=True)
class CheckReport:
    """Result of :func:`check_conv`: one row per configuration."""

    kind: str
    implementation: str
    dtype: str
    results: tuple[ConfigResult, ...]

    @property
    def passed(self) -> bool:
        """True when every configuration passed."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[ConfigResult, ...]:
        """The configurations that failed or raised."""
        return tuple(r for r in self.results if not r.passed)

    @property
    def worst(self) -> ConfigResult | None:
        """The configuration with the largest error-to-tolerance ratio."""
        return max(self.results, key=lambda r: r.ratio, default=None)

    def __str__(self) -> str:
        passed = sum(r.passed for r in self.results)
        worst = self.worst
        head = (f"check_conv(kind={self.kind!r}) of {self.implementation}, {self.dtype}: "
                f"{'PASSED' if self.passed else 'FAILED'} ({passed}/{len(self.results)} "
                f"configurations)")
        if worst is not None:
            head += (f"; worst error {worst.max_error:.2e} vs tolerance "
                     f"{worst.tolerance:.2e} ({worst.config.name})")
        lines = [head, f"{'configuration':32} {'status':6} {'error/tol':>10}  details"]
        for r in self.results:
            details = "; ".join(s for s in (r.cause, r.where) if s)
            lines.append(f"{r.config.name[:32]:32} {r.status:6} {r.ratio:>10.2e}  {details}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)


def check_conv(
    impl: Callable[..., Any],
    *,
    kind: str = "forward",
    configs: str | Sequence[LayerConfig] = "standard",
    dtype: npt.DTypeLike = np.float64,
    rng: Any = None,
    max_bytes: int | None = None,
) -> CheckReport:
    """Run a battery of layers through ``impl`` and compare with the exact operator.

    Parameters
    ----------
    impl : callable
        Takes and returns numpy arrays, with the signature of the matching
        convop function: :func:`convop.conv` (``kind="forward"``),
        :func:`convop.conv_input_grad` (``"input_grad"``),
        :func:`convop.conv_weight_grad` (``"weight_grad"``) or
        :func:`convop.conv_transpose` (``"transpose"``). Every layer argument is
        passed by keyword.
    kind : {"forward", "input_grad", "weight_grad", "transpose"}
        What ``impl`` computes.
    configs : "standard", "quick" or sequence of LayerConfig
        The battery: about 40 layers covering the edge cases, 8 of them, or
        your own.
    dtype : {float64, float32}
        Data type of the inputs, unless a configuration sets its own.
    rng : None, int or numpy.random.Generator
        Source of the random inputs.
    max_bytes : int, optional
        Memory budget of one configuration (its random inputs, the exact
        results and their matrices); by default 75% of the available memory.
        Configurations are checked against it before anything runs.

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
    try:
        default = np.dtype(dtype)
    except (TypeError, ValueError) as err:
        raise TypeError(f"`dtype` must be float32 or float64; got {dtype!r}.") from err
    if default not in RTOL:
        raise TypeError(f"`dtype` must be float32 or float64; got {default}.")
    battery = _check_configs(configs, kind, check_max_bytes(max_bytes))
    gen = as_rng(rng)
    results = tuple(_run(impl, kind, cfg, default, gen) for cfg in battery)
    name = getattr(impl, "__qualname__", None) or type(impl).__name__
    module = getattr(impl, "__module__", None)
    return CheckReport(kind, f"{module}.{name}" if module else name, str(default), results)


def _check_configs(configs: Any, kind: str, max_bytes: int | None) -> list[LayerConfig]:
    """Return the battery: a named one, or a non-empty sequence of valid LayerConfigs."""
    if isinstance(configs, str):
        return _battery(kind, check_choice(configs, "configs", ("standard", "quick")))
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
            needed = _inputs(cfg, kind, np.dtype(np.float64), np.random.default_rng(0),
                             shapes_only=True)["bytes"]
        except (TypeError, ValueError) as err:
            raise type(err)(f"`configs[{i}]` ({cfg.name!r}) is not a valid layer: {err}") from err
        _memory.check_budget(needed, max_bytes, f"`configs[{i}]` ({cfg.name!r})")
    return battery


# One configuration ------------------------------------------------------------------------


class _Case(NamedTuple):
    cfg: LayerConfig
    kind: str
    dtype: np.dtype
    arrays: dict[str, Any]

    def layer(self, **override: Any) -> dict[str, Any]:
        kw = dict(stride=self.cfg.stride, padding=self.cfg.padding, dilation=self.cfg.dilation,
                  groups=self.cfg.groups)
        if self.kind == "transpose":
            kw["output_padding"] = self.cfg.output_padding
        else:
            kw["padding_mode"] = self.cfg.padding_mode
        kw.update(override)
        return kw


def _inputs(cfg: LayerConfig, kind: str, dtype: np.dtype, gen: np.random.Generator,
            shapes_only: bool = False) -> dict[str, Any]:
    """Random inputs of a configuration (with ``shapes_only``, just its validation)."""
    shape = as_weight_shape(cfg.weight_shape, "weight_shape")
    batch = as_int(cfg.batch, "batch", minimum=0, maximum=2**16)
    if cfg.dtype is not None and np.dtype(cfg.dtype) not in RTOL:
        raise TypeError(f"`dtype` must be None, 'float32' or 'float64'; got {cfg.dtype!r}.")
    if kind == "transpose":
        out = transposed_output_size(shape, cfg.input_size, stride=cfg.stride,
                                     padding=cfg.padding, output_padding=cfg.output_padding,
                                     dilation=cfg.dilation, groups=cfg.groups)
        if shapes_only:
            geom = conv_geometry(shape, out, stride=cfg.stride, padding=cfg.padding,
                                 dilation=cfg.dilation, groups=cfg.groups)
            return {"bytes": _config_bytes(geom, batch)}
        weight = gen.standard_normal(shape).astype(dtype)
        c_in, c_out = shape[0], shape[1] * cfg.groups
        x = gen.standard_normal((batch, c_in, *cfg.input_size)).astype(dtype)
        bias = gen.standard_normal(c_out).astype(dtype) if cfg.bias else None
        return {"x": x, "weight": weight, "bias": bias}
    geom = conv_geometry(shape, cfg.input_size, stride=cfg.stride,
                         padding=cfg.padding, dilation=cfg.dilation, groups=cfg.groups,
                         padding_mode=cfg.padding_mode)
    if shapes_only:
        return {"bytes": _config_bytes(geom, batch)}
    weight = gen.standard_normal(shape).astype(dtype)
    x = gen.standard_normal((batch, geom.in_channels, *geom.input_size)).astype(dtype)
    dy = gen.standard_normal((batch, geom.out_channels, *geom.output_size)).astype(dtype)
    bias = gen.standard_normal(geom.out_channels).astype(dtype) if cfg.bias else None
    return {"x": x, "weight": weight, "bias": bias, "grad_output": dy}


def _config_bytes(geom: Any, batch: int) -> int:
    """Bytes one configuration needs: inputs, outputs and the exact results, with a matrix."""
    dense = batch * (geom.vector_size("input") + geom.vector_size("padded")
                     + geom.vector_size("output")) * 8
    return 6 * dense + 2 * geom.matrix_nbytes("padded")


def _exact(case: _Case, weight: np.ndarray | None = None, bias: Any = "same",
           absolute: bool = False, **override: Any) -> np.ndarray:
    """Convop's exact result in float64 (optionally on absolute values, or with changes)."""
    a = case.arrays
    cast = (lambda v: np.abs(v).astype(np.float64)) if absolute else (
        lambda v: v.astype(np.float64))
    w = cast(a["weight"] if weight is None else weight)
    b = a["bias"] if isinstance(bias, str) else bias
    b = None if b is None else cast(b)
    kw = case.layer(**override)
    if case.kind == "forward":
        return conv(cast(a["x"]), w, b, **kw)
    if case.kind == "input_grad":
        return conv_input_grad(cast(a["grad_output"]), w, case.cfg.input_size, **kw)
    if case.kind == "weight_grad":
        return conv_weight_grad(cast(a["x"]), cast(a["grad_output"]), w.shape[2:], **kw)
    return conv_transpose(cast(a["x"]), w, b, **kw)


def _call(impl: Callable[..., Any], case: _Case) -> np.ndarray:
    a = case.arrays
    kw = case.layer()
    if case.kind == "forward":
        out = impl(a["x"], a["weight"], a["bias"], **kw)
    elif case.kind == "input_grad":
        out = impl(a["grad_output"], a["weight"], case.cfg.input_size, **kw)
    elif case.kind == "weight_grad":
        out = impl(a["x"], a["grad_output"], case.cfg.weight_shape[2:], **kw)
    else:
        out = impl(a["x"], a["weight"], a["bias"], **kw)
    return np.asarray(out)


def _run(impl: Callable[..., Any], kind: str, cfg: LayerConfig, default: np.dtype,
         gen: np.random.Generator) -> ConfigResult:
    dtype = np.dtype(cfg.dtype) if cfg.dtype else default
    case = _Case(cfg, kind, dtype, _inputs(cfg, kind, dtype, gen))
    expected = _exact(case)
    scale = _exact(case, absolute=True)
    tol = RTOL[dtype] * scale + np.finfo(np.float64).tiny
    try:
        actual = _call(impl, case)
    except Exception as exc:  # the implementation's failure is the finding
        return ConfigResult(cfg, "error", math.inf, 0.0, math.inf,
                            where=f"raised {type(exc).__name__}: {exc}"[:200])
    if actual.shape != expected.shape:
        cause = _diagnose(case, actual, tol)
        return ConfigResult(cfg, "fail", math.inf, 0.0, math.inf,
                            where=f"shape {actual.shape}, expected {expected.shape}", cause=cause)
    result = _compare(cfg, kind, actual, expected, tol)
    if result.passed:
        return result
    return dataclasses.replace(result, cause=_diagnose(case, actual, tol))


def _compare(cfg: LayerConfig, kind: str, actual: np.ndarray, expected: np.ndarray,
             tol: np.ndarray) -> ConfigResult:
    """Compare same-shaped results elementwise; a failure is localized (no cause)."""
    err = np.abs(actual.astype(np.float64) - expected)
    ratio = float(np.max(err / tol, initial=0.0))
    worst = int(np.argmax(err / tol)) if err.size else 0
    max_error = float(err.flat[worst]) if err.size else 0.0
    tolerance = float(tol.flat[worst]) if err.size else 0.0
    if not np.isfinite(ratio) or ratio > 1.0 or not np.all(np.isfinite(actual)):
        return ConfigResult(cfg, "fail", max_error, tolerance, ratio,
                            where=_localize(err > tol, kind))
    return ConfigResult(cfg, "pass", max_error, tolerance, ratio)


def _localize(bad: np.ndarray, kind: str) -> str:
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
    coords = np.nonzero(bad)[spatial_from:]
    if not sizes:
        return "; ".join(parts)
    # Distance of every wrong element to the nearest edge, over all spatial axes.
    depth = np.min([np.minimum(c, n - 1 - c) for c, n in zip(coords, sizes)], axis=0)
    band = int(depth.max()) + 1
    if all(n > 2 * band for n in sizes):
        sides = []
        for axis, (c, n) in enumerate(zip(coords, sizes)):
            near = depth == np.minimum(c, n - 1 - c)  # elements whose nearest edge is here
            low, high = c[near & (c < band)], c[near & (c >= n - band)]
            edges = ([f"first {int(low.max()) + 1}"] if low.size else []) + (
                [f"last {n - int(high.min())}"] if high.size else [])
            if edges:
                sides.append(f"axis {axis}: {' and '.join(edges)} of {n}")
        parts.append(f"border only, within {band} pixel{'s' if band > 1 else ''} of the edges "
                     f"({'; '.join(sides)}), interior exact")
    else:
        for axis, (c, n) in enumerate(zip(coords, sizes)):
            hit = np.unique(c)
            parts.append(f"axis {axis}: every position" if hit.size == n
                         else f"axis {axis}: positions {_ranges(hit)} of {n}")
    return "; ".join(parts)


def _ranges(idx: np.ndarray) -> str:
    runs, start = [], None
    for i, v in enumerate(idx):
        if start is None:
            start = v
        if i + 1 == len(idx) or idx[i + 1] != v + 1:
            runs.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ",".join(runs)


def _diagnose(case: _Case, actual: np.ndarray, tol: np.ndarray) -> str:
    """Name the known cause whose exact result the implementation reproduces."""
    for label, candidate in _candidates(case):
        try:
            guess = candidate()
        except (ValueError, TypeError, NotImplementedError, MemoryError):
            continue
        if guess.shape != actual.shape:
            continue
        bound = tol if tol.shape == guess.shape else RTOL[case.dtype] * np.abs(guess) + 1e-300
        if np.all(np.abs(actual.astype(np.float64) - guess) <= 10 * bound):
            return label
    if case.kind in ("forward", "transpose") and actual.shape == tol.shape:
        expected = _exact(case)
        perm = _channel_permutation(actual, expected, tol)
        if perm is not None:
            return f"output channels permuted: position i holds exact channel {perm}"
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


def _candidates(case: _Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """Known mistakes, each computed exactly."""
    w = case.arrays["weight"]
    spatial = tuple(range(2, w.ndim))
    flipped = np.flip(w, axis=spatial)
    out: list[tuple[str, Callable[[], np.ndarray]]] = []
    kind = case.kind
    if kind == "weight_grad":
        exact = _exact(case)
        out.append(("kernel flipped (gradient of a convolution, not a cross-correlation)",
                     lambda: np.flip(exact, axis=spatial)))
        if exact.shape[0] == exact.shape[1]:
            out.append(("transposed channels (dW[c, m] for dW[m, c])",
                        lambda: np.swapaxes(exact, 0, 1)))
    elif kind == "input_grad":
        out.append(("adjoint kernel not flipped (a convolution with the unflipped kernel "
                    "is not the adjoint)", lambda: _exact(case, weight=flipped)))
        if w.shape[0] == w.shape[1] * case.cfg.groups and case.cfg.groups == 1:
            out.append(("transposed channels (weight[c, m] for weight[m, c])",
                        lambda: _exact(case, weight=np.swapaxes(w, 0, 1))))
    else:
        out.append(("kernel flipped (convolution instead of cross-correlation)",
                     lambda: _exact(case, weight=flipped)))
        if case.arrays["bias"] is not None:
            out.append(("bias missing", lambda: _exact(case, bias=None)))
        if w.shape[0] == w.shape[1] and case.cfg.groups == 1:
            out.append(("transposed channels (weight[c, m] for weight[m, c])",
                        lambda: _exact(case, weight=np.swapaxes(w, 0, 1))))
    if kind == "transpose":
        for op in _output_padding_alternatives(case):
            out.append((f"wrong output_padding: the output matches output_padding={op}",
                        functools.partial(_exact, case, output_padding=op)))
    out.extend(_padding_alternatives(case))
    return out


def _pairs(case: _Case) -> tuple[tuple[int, int], ...]:
    """Return the configuration's padding as ``(before, after)`` pairs."""
    cfg = case.cfg
    ndim = len(cfg.input_size)
    return as_padding(cfg.padding, ndim, kernel_size=tuple(cfg.weight_shape[2:]),
                      dilation=as_int_tuple(cfg.dilation, "dilation", ndim, minimum=1),
                      stride=as_int_tuple(cfg.stride, "stride", ndim, minimum=1))


def _padding_alternatives(case: _Case) -> list[tuple[str, Callable[[], np.ndarray]]]:
    """List the paddings one off, on one axis or the same way on every axis."""
    pairs = _pairs(case)
    ndim = len(pairs)
    out: list[tuple[str, Callable[[], np.ndarray]]] = []
    targets: list[tuple[str, tuple[int, ...]]] = [(f"spatial axis {a}", (a,))
                                                  for a in range(ndim)]
    if ndim > 1:
        targets.append(("every spatial axis", tuple(range(ndim))))
    for d_lo, d_hi, what in ((1, 1, "one more"), (-1, -1, "one less"),
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
                        functools.partial(_exact, case, padding=tuple(new))))
    return out


def _output_padding_alternatives(case: _Case) -> list[tuple[int, ...]]:
    """Every output_padding within one of the configured value on each axis."""
    op = case.cfg.output_padding
    ndim = len(case.cfg.input_size)
    base = (op,) * ndim if isinstance(op, int) else tuple(op)
    choices = [[v for v in (b - 1, b, b + 1) if v >= 0] for b in base]
    return [tuple(c) for c in itertools.product(*choices) if tuple(c) != base]
