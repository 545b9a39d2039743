"""``convop.audit``: a torch module or an ONNX model, every convolution audited."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any

from .._progress import Progress, check_progress
from .._validation import as_int_tuple, check_bool
from ..norms import check_ord
from ..spectral.values import check_rtol
from .layer import LayerRow, audit_layer, refused_layer
from .report import ESTIMATORS, AuditReport, LayerAudit

__all__ = ["audit"]


def audit(model: Any, input_shape: Any, *, rtol: float = 1e-8, sigma_min: bool = False,
          norms: Any = (), rng: Any = 0, progress: bool | None = None,
          density: bool = False) -> AuditReport:
    """Audit every convolution of a model: exact norm beside the estimators.

    The input size each ``Conv``/``ConvTranspose`` really sees comes from one
    forward pass with hooks on a zero tensor of ``(1, *input_shape)`` for a
    ``torch.nn.Module``, and from ONNX shape inference for an ONNX model
    (``Conv``/``ConvTranspose`` nodes with their initializers; a ``Pad`` node in
    front, or PyTorch's Slice/Concat export of circular padding, is folded into
    the layer's padding mode). A layer called several times at one input size
    is audited once, its ``calls`` counted. Each layer gets its exact
    ``sigma_max`` (to ``rtol``), the reshaped-kernel norm (what
    ``torch.nn.utils.parametrizations.spectral_norm`` uses), the circular
    counterpart's norm and the Gram-iteration bound, and on request
    ``sigma_min`` and the condition number (up to 20 000 unknowns). A layer
    too large for the memory budget is a row that says so.

    Parameters
    ----------
    model : torch.nn.Module, onnx.ModelProto, str or os.PathLike
        A module (put in eval mode for the pass, then restored), an ONNX model,
        or the path of an ``.onnx`` file. torch and onnx are imported only for
        their own kind of model.
    input_shape : tuple of int
        One sample's shape, ``(C, *spatial)``.
    rtol : float
        Relative accuracy of every ``sigma_max``.
    sigma_min : bool
        Also the smallest singular value and the condition number.
    norms : sequence of {1, numpy.inf}
        Also these operator norms of each layer, exact (:func:`convop.operator_norm`
        with ``ord=1`` / ``ord=numpy.inf``: columns ``norm_1`` / ``norm_inf``), and
        the network bound in each (its rules per norm: a concatenation adds in
        l1 and takes the larger in l-infinity, pooling and linear layers have
        their own factors).
    rng : int or numpy.random.Generator
        Start vectors.
    progress : bool, optional
        Report each layer taking over a second on stderr: ``None`` when stderr
        is a terminal (or ``CONVOP_PROGRESS=1``), ``True`` always, ``False`` never.
    density : bool
        Also the distribution of each layer's singular values
        (:func:`convop.spectral_density`, in ``LayerAudit.density``);
        :meth:`AuditReport.plot_densities` draws them side by side.

    Returns
    -------
    AuditReport

    Examples
    --------
    >>> import pytest
    >>> torch = pytest.importorskip("torch")
    >>> import convop
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
    ...                             torch.nn.Conv2d(4, 2, 3, stride=2))
    >>> report = convop.audit(model, (3, 8, 8))
    >>> [r.name for r in report.layers], report.layers[1].input_size
    (['0', '2'], (8, 8))
    """
    if isinstance(input_shape, int) or not hasattr(input_shape, "__len__"):
        raise TypeError(f"`input_shape` must be a tuple (C, *spatial); got {input_shape!r}.")
    shape = as_int_tuple(input_shape, "input_shape", len(input_shape), minimum=1)
    if not 2 <= len(shape) <= 4:
        raise ValueError(f"`input_shape` must be (C, *spatial) with 1 to 3 spatial axes; got "
                         f"{shape}.")
    check_rtol(rtol)
    extra = _check_norms(norms)
    report_progress = check_progress(progress)
    with_density = check_bool(density, "density")
    start = time.perf_counter()
    if isinstance(model, (str, os.PathLike)) or type(model).__name__ == "ModelProto":
        from .onnx_model import onnx_layers

        name, rows, bounds = onnx_layers(model, shape)
    else:
        from .torch_model import torch_layers

        name, rows, bounds = torch_layers(model, shape)
    audited = tuple(_audit_row(row, index, len(rows), rtol, sigma_min, rng, extra,
                               report_progress, with_density)
                    for index, row in enumerate(rows, 1))
    fields = ("sigma_max", *ESTIMATORS, *(_NORM_FIELDS[p] for p in extra))
    network, note = bounds({(r.name, r.input_size): {f: _value(r, f) for f in fields}
                            for r in audited})
    bracketed = [r.name for r in audited if r.sigma_max_bracket is not None]
    if network is not None and bracketed:
        note += (f"; {', '.join(bracketed)} not converged: its certified upper bound stands "
                 f"in for sigma_max")
    return AuditReport(name, shape, audited, time.perf_counter() - start, network, note)


#: The LayerAudit field of each extra norm.
_NORM_FIELDS = {1.0: "norm_1", math.inf: "norm_inf"}


def _check_norms(norms: Any) -> tuple[float, ...]:
    """Validate ``norms``: a sequence of 1 and numpy.inf (2 is always there)."""
    if isinstance(norms, (str, bytes)) or not hasattr(norms, "__iter__"):
        raise TypeError(f"`norms` must be a sequence of 1 and numpy.inf; got {norms!r}.")
    chosen = []
    for value in norms:
        try:
            number = check_ord(value)
        except (TypeError, ValueError) as err:
            raise type(err)(f"`norms` must hold 1 and numpy.inf (2 is always computed); "
                            f"got {value!r}.") from err
        if number != 2.0 and number not in chosen:
            chosen.append(number)
    return tuple(chosen)


def _value(row: LayerAudit, field: str) -> float:
    """Return a row's value for the network bound (NaN when missing).

    An unconverged ``sigma_max`` gives its certified upper bound: the network
    bound stays a bound.
    """
    if field == "sigma_max" and row.sigma_max_bracket is not None:
        return row.sigma_max_bracket[1]
    value = getattr(row, field)
    return math.nan if value is None else value


def _audit_row(row: LayerRow, index: int, total: int, rtol: float, sigma_min: bool,
               rng: Any, norms: tuple[float, ...], progress: bool | None,
               density: bool = False) -> LayerAudit:
    if row.weight is None:  # a node convop cannot read: its note says why
        return refused_layer(row, "")
    weight = row.weight
    # Progress on stderr for every layer that takes over a second.
    with Progress(f"auditing layer {index}/{total} {row.name} "
                  f"{'x'.join(map(str, weight.shape))} @{'x'.join(map(str, row.input_size))}",
                  enabled=progress):
        try:
            audited = audit_layer(row.name, row.kind, weight, row.input_size, row.layer,
                                  row.transposed, rtol=rtol, sigma_min=sigma_min, rng=rng,
                                  norms=norms, density=density)
        except MemoryError as err:  # reported, not crashed on
            return refused_layer(row, f"refused: {err}")
    note = "; ".join(n for n in (audited.note, row.note) if n)
    return dataclasses.replace(audited, calls=row.calls, note=note)
