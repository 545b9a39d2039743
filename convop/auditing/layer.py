"""One convolution's exact norm and the estimators beside it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NoConvergence
from ..geometry import ConvGeometry, make_geometry
from ..norms import absolute_sums
from ..spectral.bounds import gram_iteration_bound
from ..spectral.circular import is_circulant
from ..spectral.density import SMALLEST_LIMIT, spectral_density
from ..spectral.estimators import counterpart_singular_values, reshaped_kernel_norm
from ..spectral.smallest import predicted_factor_flops
from ..spectral.values import singular_values, spectral_norm
from ..transposed import transposed_output_size
from .report import LayerAudit

__all__ = ["Bounds", "LayerRow", "Norms", "audit_layer", "refused_layer"]

#: The most multiply-adds of the sparse Cholesky behind a layer's sigma_min in an audit:
#: 7.9e11 for 64->64 3x3 at 32x32 (15 s with its solves), 1.6e12 for 512->512 at 7x7
#: (32 s), 2.8e12 for 256->256 at 14x14 (44 s, skipped).
SIGMA_MIN_FLOPS = 2e12
#: Each convolution's audited values, by (row name, input size), then by field.
Norms = dict[tuple[str, tuple[int, ...]], dict[str, float]]
#: From the audited norms, the network's bound per field (or None) and a note.
Bounds = Callable[[Norms], tuple[dict[str, float] | None, str]]



@dataclass
class LayerRow:
    """One convolution found in a model, before it is audited.

    ``layer`` holds convop's layer arguments (``padding`` as pairs); a row
    convop cannot read has ``weight`` None and says why in ``note``.
    """

    name: str
    kind: str
    weight: np.ndarray | None
    input_size: tuple[int, ...]
    layer: dict[str, Any]
    transposed: bool
    calls: int = 1
    note: str = ""


def audit_layer(name: str, kind: str, weight: np.ndarray, input_size: tuple[int, ...],
                layer: dict[str, Any], transposed: bool, *, rtol: float, sigma_min: bool,
                rng: Any, norms: tuple[float, ...] = (), density: bool = False) -> LayerAudit:
    """Audit one convolution (a transposed one through the convolution it is the adjoint of).

    ``norms`` may hold 1 and ``math.inf``: the exact l1 and l-infinity operator
    norms as well; ``density`` adds the distribution of every singular value
    (:func:`convop.spectral_density`, the transposed layer's are its convolution's).
    """
    start = time.perf_counter()
    layer = dict(layer)
    if transposed:
        # conv_transpose with weight (C_in, C_out/g, *k) is the adjoint of the convolution
        # with that weight on its output size: the same singular values.
        output_padding = layer.pop("output_padding", 0)
        size = transposed_output_size(weight.shape, input_size, output_padding=output_padding,
                                      **layer)
        conv_layer, conv_size = dict(layer, padding_mode="zeros"), size
    else:
        conv_layer, conv_size = layer, input_size
    geom = make_geometry(weight.shape, conv_size, **conv_layer)
    bound = gram_iteration_bound(weight, conv_size, **conv_layer)
    bracket = None
    note = ""
    try:
        sigma = spectral_norm(weight, conv_size, rtol=rtol, rng=rng, progress=False,
                              **conv_layer)
    except NoConvergence as err:
        # The bracket spectral_norm attaches: the Ritz value's root below, the circulant
        # embedding's exact norm above.
        sigma = math.nan
        bracket = err.bracket
        assert bracket is not None
        note = (f"sigma_max not converged to rtol {rtol:g} ({err.steps} products): certified "
                f"in [{bracket[0]:.8g}, {bracket[1]:.8g}] (a Ritz value, the norm of the "
                f"circulant embedding)")
    reshaped = reshaped_kernel_norm(weight)
    values, _ = counterpart_singular_values(weight, geom)
    circular = float(values[0]) if values.size else 0.0
    low = cond = None
    m, n = geom.matrix_shape("input")
    circulant = is_circulant(geom)
    if sigma_min and bracket is None:
        # A circulant layer's is the FFT's; another's costs a sparse Cholesky, predicted
        # before any numeric work.
        flops = 0.0 if circulant or min(m, n) <= SMALLEST_LIMIT else predicted_factor_flops(
            geom, weight)
        if flops <= SIGMA_MIN_FLOPS:
            low = float(singular_values(weight, conv_size, k=1, which="smallest", rng=rng,
                                        progress=False, **conv_layer)[0])
            cond = math.inf if low == 0 else sigma / low
        else:
            note = (f"sigma_min skipped: its sparse Cholesky takes {flops:.1e} multiply-adds, "
                    f"more than the audit's {SIGMA_MIN_FLOPS:.0e} (about 30 s on two cores); "
                    f"convop.singular_values(..., which=\"smallest\") computes it")
    spectrum = None
    if density:
        try:
            spectrum = spectral_density(
                weight, conv_size, sigma_max=None if bracket is not None else sigma,
                sigma_min=low, rng=rng, progress=False, **conv_layer)
        except MemoryError as err:  # the row stands without it
            note = "; ".join(n for n in (note, f"density refused: {err}") if n)
    one = inf = None
    if norms:
        one, inf = _l1_linf(weight, geom, tuple(input_size) if transposed else None)
    if transposed:
        m, n = n, m
    return LayerAudit(name, kind, tuple(weight.shape), tuple(input_size), layer, (m, n),
                      geom.nnz("input"), sigma, reshaped, circular, bound,
                      time.perf_counter() - start, low, cond, note=note,
                      norm_1=one if 1.0 in norms else None,
                      norm_inf=inf if math.inf in norms else None, sigma_max_bracket=bracket,
                      density=spectrum)


def _l1_linf(weight: np.ndarray, geom: ConvGeometry, transposed_input: tuple[int, ...] | None
             ) -> tuple[float, float]:
    """Return the l1 and l-infinity operator norms of the convolution, or of its transpose.

    A transposed convolution is ``A_kept^T``: the convolution's rows whose output
    position lies inside ``transposed_input`` (all of them unless output_padding
    reaches the stride). Its l1 norm is the largest row sum of ``A_kept``, its
    l-infinity norm the largest column sum over the kept rows.
    """
    kept = None
    if transposed_input is not None and transposed_input != geom.output_size:
        mask = np.zeros((geom.out_channels, *geom.output_size), dtype=bool)
        mask[(slice(None),) + tuple(slice(0, n) for n in transposed_input)] = True
        kept = mask.reshape(-1)
    rows, cols = absolute_sums(geom, weight, None, rows_kept=kept)
    if kept is not None:
        rows = rows[kept]
    row_max, col_max = float(rows.max(initial=0.0)), float(cols.max(initial=0.0))
    return (row_max, col_max) if transposed_input is not None else (col_max, row_max)


def refused_layer(row: LayerRow, why: str) -> LayerAudit:
    """Return the row of a layer not audited (unreadable, over the memory budget): NaN values.

    ``why`` joins the note the row may already carry.
    """
    nan = math.nan
    shape = () if row.weight is None else tuple(row.weight.shape)
    note = "; ".join(n for n in (why, row.note) if n)
    return LayerAudit(row.name, row.kind, shape, tuple(row.input_size), dict(row.layer),
                      (0, 0), 0, nan, nan, nan, nan, 0.0, calls=row.calls, note=note)
