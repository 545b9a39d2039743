"""The convolutions of a torch module and the input size each one sees."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from .._progress import Progress
from .._validation import as_int_tuple
from .layer import audit_layer, refused_layer
from .report import AuditReport

__all__ = ["audit"]


def audit(model: Any, input_shape: Any, *, rtol: float = 1e-8, sigma_min: bool = False,
          rng: Any = 0) -> AuditReport:
    """Audit every convolution of a ``torch.nn.Module``: exact norm beside the estimators.

    One forward pass on a zero tensor of ``(1, *input_shape)`` with hooks learns
    the input size each ``Conv{1,2,3}d``/``ConvTranspose{1,2,3}d`` really sees;
    a module called several times is audited once per distinct input size, its
    ``calls`` counted. Each layer gets its exact ``sigma_max`` (to ``rtol``), the
    reshaped-kernel norm (what ``torch.nn.utils.parametrizations.spectral_norm``
    uses), the circular counterpart's norm and the Gram-iteration bound, and on
    request ``sigma_min`` and the condition number (up to 20 000 unknowns).

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode for the pass (and restored).
    input_shape : tuple of int
        One sample's shape, ``(C, *spatial)``.
    rtol : float
        Relative accuracy of every ``sigma_max``.
    sigma_min : bool
        Also the smallest singular value and the condition number.
    rng : int or numpy.random.Generator
        Start vectors.

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
    from ..torch import _module_layer, _torch

    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}.")
    shape = as_int_tuple(input_shape, "input_shape", len(tuple(input_shape)), minimum=1) \
        if not isinstance(input_shape, int) else (input_shape,)
    conv_types = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d,
                  torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    seen: dict[tuple[int, tuple[int, ...]], list[Any]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, conv_types):
            def hook(mod: Any, args: Any, name: str = name) -> None:
                size = tuple(int(v) for v in args[0].shape[2:])
                entry = seen.setdefault((id(mod), size), [name, mod, size, 0])
                entry[3] += 1
            handles.append(module.register_forward_pre_hook(hook))
    start = time.perf_counter()
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), dtype=next(model.parameters()).dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    rows = []
    for index, (name, module, size, calls) in enumerate(seen.values(), 1):
        weight, layer, transposed = _module_layer(module)
        # Progress on stderr for every layer that takes over a second.
        with Progress(f"auditing layer {index}/{len(seen)} {name} "
                      f"{'x'.join(map(str, weight.shape))} @{'x'.join(map(str, size))}"):
            try:
                row = audit_layer(name, type(module).__name__, weight, size, layer,
                                  transposed, rtol=rtol, sigma_min=sigma_min, rng=rng)
            except MemoryError as err:  # reported, not crashed on
                row = refused_layer(name, type(module).__name__, weight, size, layer, err)
        rows.append(dataclasses.replace(row, calls=calls))
    return AuditReport(type(model).__name__, shape, tuple(rows), time.perf_counter() - start)
