"""The adjoint identity for any pair of callables, with a tolerance from magnitudes and dtype."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _memory
from .._validation import (
    as_int,
    as_rng,
    as_shape,
    check_callable,
    check_max_bytes,
)


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
