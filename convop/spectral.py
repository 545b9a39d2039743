"""Singular values, spectral norm and conditioning of the exact layer map.

The operator is the layer's own map ``vec(X) -> vec(Y)`` (``domain="input"``)
for any stride, padding, padding mode, dilation and groups. Every function
takes the layer arguments of :func:`convop.conv_matrix`, or instead of a
weight an explicit sparse matrix or a ``LinearOperator`` (such as
:class:`convop.LayerOperator`).

- Largest singular values: Lanczos (ARPACK ``eigsh``) on the Gram operator
  ``A^T A`` (or ``A A^T``, the smaller), applied matrix-free with one GEMM per
  kernel tap.
- Smallest: shift-invert Lanczos with a sparse LU factorization of the Gram
  matrix of the explicit sparse matrix, each value refined as ``||A v||``.
  ARPACK's plain smallest mode does not converge on these operators.
- All: a dense SVD, where the matrix is small enough.
- Circular padding: every singular value exactly through the FFT (Sedghi,
  Gupta and Long, 2019), with the polyphase decomposition for strides.

Singular values below ``max(m, n) * eps * ||A||`` (``numpy.linalg.matrix_rank``'s
tolerance) are reported as exactly 0; rows and columns of ``A`` that are
structurally zero (pixels a stride never reads) give exact zeros.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.linalg
import scipy.sparse as sp
import scipy.sparse.linalg as sla

from . import _memory
from ._typing import IntOrTuple, PaddingLike, PaddingMode
from ._validation import (
    as_int,
    as_int_tuple,
    as_padding,
    as_weight,
    check_choice,
    check_max_bytes,
)
from .geometry import conv_geometry
from .operator import LayerOperator

__all__ = [
    "SpectralReport",
    "circular_singular_values",
    "condition_number",
    "singular_values",
    "spectral_norm",
    "spectrum_report",
]

#: Largest matrix (entries) whose full SVD is computed densely by default.
DENSE_SVD_MAX_ENTRIES = 2**24
#: Below this smaller dimension a dense SVD is cheaper and safer than ARPACK.
_DENSE_SMALL = 64


@dataclass(frozen=True)
class SpectralReport:
    """Extreme singular values of one operator, and which operator that is.

    Attributes
    ----------
    operator : str
        The layer (geometry, padding mode, stride, input size) or matrix described.
    shape : tuple of int
        Shape of the operator ``(rows, cols)``.
    sigma_max, sigma_min : float
        Largest and smallest (the ``min(rows, cols)``-th) singular value.
    condition_number : float
        ``sigma_max / sigma_min``; ``inf`` when the operator is rank deficient.
    seconds : float
        Wall time of the computation.
    """

    operator: str
    shape: tuple[int, int]
    sigma_max: float
    sigma_min: float
    condition_number: float
    seconds: float

    @property
    def rank_deficient(self) -> bool:
        """True when the smallest singular value is zero."""
        return self.sigma_min == 0.0

    def __str__(self) -> str:
        return "\n".join(
            [
                f"operator        {self.operator}",
                f"shape           {self.shape[0]} x {self.shape[1]}",
                f"sigma_max       {self.sigma_max:.12g}  (spectral norm, Lipschitz constant)",
                f"sigma_min       {self.sigma_min:.12g}"
                + ("  (rank deficient)" if self.rank_deficient else ""),
                f"condition       {self.condition_number:.6g}",
                f"seconds         {self.seconds:.3f}",
            ]
        )


class _Target:
    """What the spectral functions act on: products, and the explicit matrix on demand."""

    def __init__(self, obj: Any, input_size: Any, layer: dict[str, Any], max_bytes: Any):
        self.max_bytes = check_max_bytes(max_bytes)
        self._matrix: sp.csr_array | None = None
        self.weight_is_zero = False
        if sp.issparse(obj) or isinstance(obj, sla.LinearOperator):
            if input_size is not None:
                raise ValueError(
                    "`input_size` describes a layer given by its weight; it must be None when "
                    f"passing a {type(obj).__name__}."
                )
            if sp.issparse(obj):
                self._matrix = sp.csr_array(obj)
                self.operator: sla.LinearOperator = sla.aslinearoperator(self._matrix)
                self.description = f"sparse matrix {obj.shape[0]}x{obj.shape[1]}"
                self.weight_is_zero = not np.any(self._matrix.data)
            else:
                self.operator = obj
                describe = getattr(obj, "describe", None)
                self.description = describe() if callable(describe) else repr(obj)
        else:
            if input_size is None:
                raise TypeError("`input_size` is required when passing a weight array.")
            layer_op = LayerOperator(obj, input_size, order="C", **layer)
            self.operator = layer_op
            self.description = layer_op.describe()
            self.weight_is_zero = not np.any(layer_op.weight)
        rows, cols = self.operator.shape
        self.shape: tuple[int, int] = (int(rows), int(cols))

    def matrix(self) -> sp.csr_array:
        """Return the explicit sparse matrix (built once for a layer)."""
        if self._matrix is None:
            op = self.operator
            if not isinstance(op, LayerOperator):
                raise TypeError(
                    "the smallest singular values need the explicit matrix: pass a weight, a "
                    f"sparse matrix or a LayerOperator, not a {type(op).__name__}."
                )
            self._matrix = op.to_matrix(max_bytes=self.max_bytes)
        return self._matrix

    def dense(self) -> np.ndarray:
        m, n = self.shape
        if m * n > DENSE_SVD_MAX_ENTRIES:
            raise ValueError(
                f"all singular values need a dense SVD of the {m}x{n} matrix "
                f"({_memory.format_bytes(8 * m * n)}), more than convop does densely "
                f"({DENSE_SVD_MAX_ENTRIES} entries); pass `k=` for the k largest or smallest, "
                f"or use `circular_singular_values` for circular padding."
            )
        _memory.check_budget(8 * m * n * 3, self.max_bytes, f"a dense {m}x{n} SVD")
        if self._matrix is not None or isinstance(self.operator, LayerOperator):
            return self.matrix().toarray()
        return np.asarray(self.operator @ np.eye(n, dtype=self.operator.dtype))


def singular_values(
    weight: Any,
    input_size: IntOrTuple | None = None,
    *,
    k: int | None = None,
    which: str = "largest",
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    rng: Any = None,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Singular values of the layer map ``vec(X) -> vec(Y)``, in descending order.

    Parameters
    ----------
    weight : array_like, scipy sparse matrix or LinearOperator
        The layer's filters ``(C_out, C_in // groups, *kernel)``; or an explicit
        operator, in which case ``input_size`` must be None and the layer
        arguments are ignored.
    input_size : int or tuple of int
        Spatial size of the unpadded input (with a weight).
    k : int, optional
        How many singular values. ``None`` gives all of them through a dense SVD
        (only for matrices of at most ``DENSE_SVD_MAX_ENTRIES`` entries).
    which : {"largest", "smallest"}
        The ``k`` largest (Lanczos on the Gram operator) or smallest
        (shift-invert Lanczos with a sparse LU of the Gram matrix).
    stride, padding, dilation, groups, padding_mode
        As in :func:`convop.conv_matrix`.
    rtol : float
        Relative accuracy of the largest singular values.
    rng : None, int or numpy.random.Generator
        Seeds the Lanczos start vector.
    max_bytes : int, optional
        Memory budget for explicit matrices and factorizations.

    Returns
    -------
    numpy.ndarray
        ``k`` (or ``min(rows, cols)``) singular values, descending. Values below
        ``max(rows, cols) * eps * ||A||`` are exactly 0.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import singular_values
    >>> w = np.random.default_rng(0).standard_normal((2, 2, 3, 3))
    >>> s = singular_values(w, (6, 6), padding=1)
    >>> s.shape, bool(np.all(np.diff(s) <= 0))
    ((72,), True)
    >>> top = singular_values(w, (6, 6), padding=1, k=2, rng=0)
    >>> bool(np.allclose(top, s[:2], rtol=1e-9))
    True
    """
    check_choice(which, "which", ("largest", "smallest"))
    target = _Target(weight, input_size, _layer(stride, padding, dilation, groups, padding_mode),
                     max_bytes)
    full = min(target.shape)
    if k is not None:
        k = as_int(k, "k", minimum=1)
        if k > full:
            raise ValueError(
                f"`k` must be at most min(rows, cols) = {full} for this {target.shape[0]}x"
                f"{target.shape[1]} operator; got {k}."
            )
    return _singular_values(target, k, which, _check_rtol(rtol), np.random.default_rng(rng))


def spectral_norm(
    weight: Any,
    input_size: IntOrTuple | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    rng: Any = None,
    max_bytes: int | None = None,
) -> float:
    """Compute the exact spectral norm (largest singular value, Lipschitz constant) of the layer.

    Not the norm of the reshaped kernel that frameworks report: the norm of the
    operator itself, for the given input size, stride, padding and mode.

    Parameters
    ----------
    weight, input_size, stride, padding, dilation, groups, padding_mode, rng, max_bytes
        As in :func:`singular_values`.
    rtol : float
        Relative accuracy of the result.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> from convop import spectral_norm
    >>> spectral_norm(np.ones((1, 1, 3, 3)), (8, 8), padding=1, padding_mode="circular")
    9.0
    """
    values = singular_values(
        weight, input_size, k=1, stride=stride, padding=padding, dilation=dilation,
        groups=groups, padding_mode=padding_mode, rtol=rtol, rng=rng, max_bytes=max_bytes,
    )
    return float(values[0])


def condition_number(
    weight: Any,
    input_size: IntOrTuple | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    rng: Any = None,
    max_bytes: int | None = None,
) -> float:
    """``sigma_max / sigma_min`` of the layer map; ``inf`` when it is rank deficient.

    ``sigma_min`` is the ``min(rows, cols)``-th singular value.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import condition_number
    >>> condition_number(np.ones((8, 1, 1, 1)), (4, 4), stride=2)   # 12 of 16 pixels unread
    inf
    >>> condition_number(np.ones((1, 1, 1, 1)), (4, 4), stride=2)   # wide: 4 values, all 1
    1.0
    """
    return spectrum_report(
        weight, input_size, stride=stride, padding=padding, dilation=dilation, groups=groups,
        padding_mode=padding_mode, rtol=rtol, rng=rng, max_bytes=max_bytes,
    ).condition_number


def spectrum_report(
    weight: Any,
    input_size: IntOrTuple | None = None,
    *,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-10,
    rng: Any = None,
    max_bytes: int | None = None,
) -> SpectralReport:
    """Spectral norm, smallest singular value and condition number, naming the operator.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import spectrum_report
    >>> r = spectrum_report(np.ones((1, 1, 3, 3)), (8, 8), padding=1, padding_mode="circular")
    >>> round(r.sigma_max, 10), round(r.sigma_min, 10), r.rank_deficient
    (9.0, 0.1715728753, False)
    """
    start = time.perf_counter()
    target = _Target(weight, input_size, _layer(stride, padding, dilation, groups, padding_mode),
                     max_bytes)
    gen = np.random.default_rng(rng)
    tol = _check_rtol(rtol)
    sigma_max = float(_singular_values(target, 1, "largest", tol, gen)[0])
    sigma_min = float(_singular_values(target, 1, "smallest", tol, gen)[0])
    cond = math.inf if sigma_min == 0.0 else sigma_max / sigma_min
    return SpectralReport(
        operator=target.description,
        shape=target.shape,
        sigma_max=sigma_max,
        sigma_min=sigma_min,
        condition_number=cond,
        seconds=time.perf_counter() - start,
    )


def circular_singular_values(
    weight: npt.ArrayLike,
    input_size: IntOrTuple,
    *,
    stride: IntOrTuple = 1,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding: PaddingLike | None = None,
    chunk_bytes: int = 2**27,
) -> np.ndarray:
    r"""All singular values of a circular-padded layer, exactly, through the FFT.

    With circular padding of total ``d*(k-1)`` per axis the layer is a block
    circulant operator: on the frequency grid of ``input_size / stride`` it is
    diagonalized into one ``C_out x (C_in * prod(stride))`` matrix per frequency
    (Sedghi, Gupta and Long, ICLR 2019; the polyphase decomposition of the
    input for strides), whose singular values together are the operator's.

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        Filters with 1, 2 or 3 spatial axes.
    input_size : int or tuple of int
        Spatial size, divisible by the stride on every axis.
    stride, dilation, groups
        As in :func:`convop.conv_matrix`.
    padding : optional
        Circular padding; its total must be ``d*(k-1)`` per axis (the split
        does not change the singular values). Default: PyTorch's ``"same"`` split.
    chunk_bytes : int
        Memory for the per-frequency matrices processed at once.

    Returns
    -------
    numpy.ndarray
        All ``prod(input_size / stride) * min(C_out, C_in * prod(stride))``
        singular values, descending; the same as those of
        ``conv_matrix(..., padding_mode="circular", domain="input")``.

    Notes
    -----
    With ``K_{full}[m, c, z] = \sum_u K[m, c, u] [z \equiv u d - p (\bmod n)]`` and
    polyphase kernels ``K_p[m, c, t] = K_{full}[m, c, t s + p]`` on the grid
    ``n / s``, the layer is ``y[m, o] = \sum_{c, p, j} K_p[m, c, j - o] x[c, j s + p]``,
    a circular correlation per phase; the DFT turns it into
    ``\hat y(f) = \overline{\hat K(f)} \hat x(f)`` with ``\hat K(f)`` of size
    ``C_out x C_in s^d``.

    Examples
    --------
    >>> import numpy as np
    >>> from convop import circular_singular_values
    >>> circular_singular_values(np.ones((1, 1, 3)), 4)   # |1 + 2cos(2 pi f / 4)|
    array([3., 1., 1., 1.])
    """
    w = as_weight(weight)
    kernel = w.shape[2:]
    if padding is None:
        padding = circular_padding(kernel, dilation)
    geom = conv_geometry(w.shape, input_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode="circular")
    problem = circulant_problem(geom)
    if problem is not None:
        raise ValueError(problem)
    spectrum, count = _block_spectrum(geom, w)
    c_out, c_in = geom.out_channels, geom.in_channels
    width = c_in * math.prod(geom.stride)
    mats = spectrum.reshape(-1, c_out, width)  # one block per frequency
    per_matrix = 16 * c_out * width * 3
    step = max(1, chunk_bytes // per_matrix)
    values = np.concatenate([
        np.linalg.svd(mats[i:i + step], compute_uv=False) for i in range(0, len(mats), step)
    ])
    return np.sort(np.repeat(values, count.reshape(-1), axis=0).ravel())[::-1]


# Internals ----------------------------------------------------------------------------

def _layer(stride: Any, padding: Any, dilation: Any, groups: Any, padding_mode: Any
           ) -> dict[str, Any]:
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode)


def circulant_problem(geom: Any) -> str | None:
    """Why the layer with circular padding would not be block circulant; None when it is.

    Circulant means padding totalling ``d*(k-1)`` on every axis (the output grid is the
    input grid divided by the stride) and an input size divisible by the stride.
    """
    for axis, (n, s, (lo, hi), k, d) in enumerate(zip(
        geom.input_size, geom.stride, geom.padding, geom.kernel_size, geom.dilation
    )):
        if lo + hi != d * (k - 1):
            return (f"`padding` must total dilation*(kernel-1) = {d * (k - 1)} on spatial axis "
                    f"{axis} for the layer to be circulant; got {(lo, hi)}.")
        if n % s:
            return (f"`input_size` {n} on spatial axis {axis} must be divisible by the stride "
                    f"{s} for the polyphase FFT.")
    return None


def circular_padding(kernel: tuple[int, ...], dilation: Any) -> tuple[tuple[int, int], ...]:
    """PyTorch's "same" split of the total ``d*(k-1)``, which makes a circular layer circulant."""
    ndim = len(kernel)
    return as_padding("same", ndim, kernel_size=tuple(kernel),
                      dilation=as_int_tuple(dilation, "dilation", ndim, minimum=1),
                      stride=(1,) * ndim)


def _check_rtol(rtol: Any) -> float:
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 < rtol < 1:
        raise ValueError(f"`rtol` must be a float in (0, 1); got {rtol!r}.")
    return float(rtol)


def _singular_values(target: _Target, k: int | None, which: str, rtol: float,
                     rng: np.random.Generator) -> np.ndarray:
    m, n = target.shape
    full = min(m, n)
    if full == 0:
        return np.zeros(0)
    if target.weight_is_zero:
        return np.zeros(full if k is None else k)
    if k is None:
        return _dense_values(target.dense(), m, n)
    if which == "largest":
        return _largest(target, k, rtol, rng)
    return _smallest(target.matrix(), k, rng, target.max_bytes)


def _block_spectrum(geom: Any, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frequency ``C_out x C_in*prod(s)`` blocks of the circular layer, and multiplicities.

    Returns the blocks with shape ``(*freqs, C_out, C_in, *phases)`` and, per
    frequency, how many frequencies of the full grid share its singular values
    (2 for the conjugate pairs folded by the real FFT).
    """
    ndim = geom.ndim
    c_out, c_in = geom.out_channels, geom.in_channels
    # The kernel wrapped onto the input grid: K_full[m, c, (u*d - lo) mod n].
    full = np.zeros((c_out, c_in, *geom.input_size), dtype=np.result_type(w, np.float64))
    for group in range(geom.groups):
        rows = slice(group * geom.out_per_group, (group + 1) * geom.out_per_group)
        cols = slice(group * geom.in_per_group, (group + 1) * geom.in_per_group)
        for tap in np.ndindex(*geom.kernel_size):
            at = tuple((u * d - lo) % n for u, d, (lo, _), n in zip(
                tap, geom.dilation, geom.padding, geom.input_size))
            target: tuple[Any, ...] = (rows, cols, *at)
            source: tuple[Any, ...] = (rows, slice(None), *tap)
            full[target] += w[source]
    # Polyphase split: z = t * s + p  ->  axes (t_1, p_1, t_2, p_2, ...).
    grid = tuple(n // s for n, s in zip(geom.input_size, geom.stride))
    split = full.reshape(c_out, c_in, *[v for q, s in zip(grid, geom.stride) for v in (q, s)])
    t_axes = tuple(2 + 2 * i for i in range(ndim))
    p_axes = tuple(3 + 2 * i for i in range(ndim))
    blocks = split.transpose(*t_axes, 0, 1, *p_axes)
    real = not np.iscomplexobj(blocks)
    spectrum = (np.fft.rfftn if real else np.fft.fftn)(blocks, axes=tuple(range(ndim)))
    count = np.ones(spectrum.shape[:ndim], dtype=np.int64)
    if real:  # frequencies f and -f have conjugate blocks, hence equal singular values
        last = np.arange(spectrum.shape[ndim - 1])
        count[..., (last > 0) & (2 * last != grid[-1])] = 2
    return spectrum, count


def _circular_start(op: LayerOperator, rng: np.random.Generator) -> np.ndarray | None:
    """Top right singular vector of the layer's circular counterpart, as a Lanczos start.

    Exists when the stride divides the input and the padding totals d*(k-1) (the
    "same" layers of most networks); None otherwise. A little noise keeps the
    start from being orthogonal to the true top singular vector.
    """
    g = op.geometry
    if g.groups != 1 or op.order != "C" or circulant_problem(g) is not None:
        return None
    circular = conv_geometry(op.weight.shape, g.input_size, stride=g.stride, padding=g.padding,
                             dilation=g.dilation, padding_mode="circular")
    spectrum, _ = _block_spectrum(circular, op.weight)
    ndim = g.ndim
    mats = spectrum.reshape(-1, g.out_channels, g.in_channels * math.prod(g.stride))
    top = np.linalg.norm(mats, ord=2, axis=(1, 2))  # per-frequency largest singular value
    f = int(np.argmax(top))
    _, _, vh = np.linalg.svd(mats[f])
    freq = np.unravel_index(f, spectrum.shape[:ndim])
    grid = tuple(n // s for n, s in zip(g.input_size, g.stride))
    # x[c, j*s + p] = Re(conj(v[c, p]) exp(2 pi i <f, j> / q)): the block's right singular vector.
    phase = np.ones((), dtype=complex)
    for axis in range(ndim):
        wave = np.exp(2j * np.pi * freq[axis] * np.arange(grid[axis]) / grid[axis])
        phase = np.multiply.outer(phase, wave)
    v = vh[0].conj().reshape(g.in_channels, *g.stride)
    x = np.real(np.multiply.outer(v, phase))  # (C_in, *phases, *grid)
    # -> (C_in, q_1, s_1, q_2, s_2, ...) -> (C_in, *input_size)
    order = [0] + [a for i in range(ndim) for a in (1 + ndim + i, 1 + i)]
    x = x.transpose(order).reshape(g.in_channels, *g.input_size).reshape(-1)
    norm = np.linalg.norm(x)
    if norm == 0:
        return None
    noise = rng.standard_normal(x.size)
    return x / norm + 1e-2 * noise / np.linalg.norm(noise)


def _zero_small(values: np.ndarray, m: int, n: int, norm_bound: float) -> np.ndarray:
    """numpy.linalg.matrix_rank's tolerance: values below it are zero."""
    values = np.where(values <= max(m, n) * np.finfo(np.float64).eps * norm_bound, 0.0, values)
    return np.sort(values)[::-1]


def _dense_values(dense: np.ndarray, m: int, n: int) -> np.ndarray:
    values = scipy.linalg.svdvals(dense)
    return _zero_small(values, m, n, float(values[0]) if values.size else 0.0)


def _largest(target: _Target, k: int, rtol: float, rng: np.random.Generator) -> np.ndarray:
    m, n = target.shape
    if min(m, n) <= _DENSE_SMALL or k >= min(m, n) - 1:
        return _dense_values(target.dense(), m, n)[:k]
    op = target.operator
    if m >= n:
        gram = sla.LinearOperator((n, n), matvec=lambda v: op.rmatvec(op.matvec(v)),
                                  dtype=op.dtype)
    else:
        gram = sla.LinearOperator((m, m), matvec=lambda v: op.matvec(op.rmatvec(v)),
                                  dtype=op.dtype)
    start = None
    if k == 1 and m >= n and isinstance(op, LayerOperator):
        start = _circular_start(op, rng)
    # |lambda - lambda*| <= tol * |lambda| gives |sigma - sigma*| <= tol/2 * sigma.
    lam, _ = _top_eigenpairs(gram, k, 2 * rtol, rng, start)
    sigma = np.sqrt(np.clip(lam, 0.0, None))
    return _zero_small(sigma, m, n, float(sigma.max()))


def _top_eigenpairs(
    operator: sla.LinearOperator,
    k: int,
    tol: float,
    rng: np.random.Generator,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Find the k largest eigenpairs of a symmetric PSD operator, repeated eigenvalues included.

    Lanczos from one start vector cannot see a second copy of a repeated
    eigenvalue (circular and symmetric kernels have many). So after it converges,
    Lanczos runs again on the operator with the found eigenvectors projected out;
    whatever it finds above the k-th value was missed and joins the set, until
    nothing above remains. For k == 1 the value cannot be missed and no check runs.
    """
    size = operator.shape[0]
    ncv = min(size, max(2 * k + 1, 40))  # conv spectra cluster: fewer restarts
    v0 = rng.standard_normal(size) if start is None else start
    if not np.any(operator.matvec(v0)):
        # A nonzero PSD operator maps a random vector to zero with probability 0: this is
        # the zero operator (say, a layer whose taps all land on zero padding).
        return np.zeros(k), np.eye(size, k)
    lam, vecs = sla.eigsh(operator, k=k, which="LA", tol=tol, v0=v0, ncv=ncv)
    if k == 1:
        return lam, vecs
    while vecs.shape[1] < size - 1:
        basis = vecs

        def deflated(v: np.ndarray, basis: np.ndarray = basis) -> np.ndarray:
            v = v - basis @ (basis.T @ v)
            w = operator.matvec(v)
            return w - basis @ (basis.T @ w)

        rest = sla.LinearOperator(operator.shape, matvec=deflated, dtype=operator.dtype)
        v0 = rng.standard_normal(size)
        extra, extra_vec = sla.eigsh(rest, k=1, which="LA", tol=tol, v0=v0 - basis @ (basis.T @ v0),
                                     ncv=min(size, 40))
        kth = np.sort(lam)[-k]
        if extra[0] <= kth * (1 + 2 * tol):
            break
        lam = np.append(lam, extra)
        vecs = np.hstack([vecs, extra_vec])
    top = np.argsort(lam)[-k:]
    return lam[top], vecs[:, top]


def _smallest(A: sp.csr_array, k: int, rng: np.random.Generator,
              max_bytes: int | None) -> np.ndarray:
    m, n = A.shape
    full = min(m, n)
    B = A.copy()
    B.eliminate_zeros()
    # Zero rows and columns (pixels a stride never reads) only add exact zeros.
    B = B[np.flatnonzero(np.diff(B.indptr))][:, np.unique(B.indices)]
    norm_bound = math.sqrt(float(abs(B).sum(axis=0).max(initial=0.0))
                           * float(abs(B).sum(axis=1).max(initial=0.0)))
    rm, rn = B.shape
    zeros = full - min(rm, rn)
    if k <= zeros:
        return np.zeros(k)
    need = k - zeros
    small = min(rm, rn)
    if small <= _DENSE_SMALL or need >= small - 1:
        values = scipy.linalg.svdvals(B.toarray())[::-1][:need]
    else:
        tall = rm >= rn
        G = (B.T @ B if tall else B @ B.T).tocsc()
        _memory.check_budget(
            # SuperLU fill on these grids stays within ~10x the Gram matrix.
            12 * (G.data.nbytes + G.indices.nbytes) + G.indptr.nbytes,
            max_bytes,
            f"the sparse LU of the {small}x{small} Gram matrix ({G.nnz} stored entries)",
        )
        shift = 1e-12 * float(abs(G).sum(axis=0).max())
        shifted = (G + shift * sp.eye_array(small, format="csc")).tocsc()
        lu = sla.splu(shifted, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0)
        # The largest eigenvalues 1/(lambda + shift) of the inverse are the smallest lambda;
        # _top_eigenpairs also finds repeated ones.
        inverse = sla.LinearOperator(G.shape, matvec=lu.solve, rmatvec=lu.solve, dtype=G.dtype)
        _, vectors = _top_eigenpairs(inverse, need, 1e-13, rng)
        applied = B @ vectors if tall else B.T @ vectors
        values = np.linalg.norm(applied, axis=0)  # ||A v||: no squared rounding error
    result = np.concatenate([values, np.zeros(zeros)])
    return _zero_small(result, m, n, norm_bound)[-k:] if k <= result.size else result

