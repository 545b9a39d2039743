"""After training: certify the convolutions of a model, exact norms beside their claims.

Exposed as :func:`convop.torch.certify`. torch is imported when it is called.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ._optional import require

__all__ = ["Certificate", "LayerCertificate", "certify"]


@dataclass(frozen=True)
class LayerCertificate:
    """One convolution: what its normalization claimed and its exact norm.

    ``normalization`` is ``"convop.torch.spectral_norm"``,
    ``"torch.nn.utils.parametrizations.spectral_norm"`` (or its older hook
    version) or ``None``; ``claimed`` the norm it divides to (1.0), None
    without one; ``gap`` the relative excess ``exact / claimed - 1`` (positive:
    the layer is larger than claimed).
    """

    name: str
    normalization: str | None
    claimed: float | None
    exact: float
    gap: float | None


@dataclass(frozen=True)
class Certificate:
    """Result of :func:`certify`: exact per-layer norms, the network bound, the largest gap."""

    layers: tuple[LayerCertificate, ...]
    #: Lipschitz bound (l2) of the whole network from the exact norms, valid across
    #: residual connections; None when the audit found no bound (``note`` says why).
    lipschitz: float | None
    largest_gap: float | None
    audit: Any
    note: str = ""

    def __str__(self) -> str:
        lines = [f"{'layer':28} {'normalization':46} {'claimed':>8} {'exact':>12} {'gap':>10}"]
        for r in self.layers:
            claimed = "-" if r.claimed is None else f"{r.claimed:.4g}"
            gap = "-" if r.gap is None else f"{r.gap:+.2e}"
            lines.append(f"{r.name[:28]:28} {str(r.normalization)[:46]:46} {claimed:>8} "
                         f"{r.exact:>12.8g} {gap:>10}")
        if self.largest_gap is not None:
            lines.append(f"largest gap between a claimed and the exact norm: "
                         f"{self.largest_gap:+.3e}")
        lines.append(f"network Lipschitz bound (l2, exact norms): {self.lipschitz:.6g}"
                     if self.lipschitz is not None else self.note)
        return "\n".join(lines)


def certify(model: Any, input_shape: Any, *, rtol: float = 1e-8, rng: Any = 0) -> Certificate:
    """Certify a trained model: every convolution's exact norm beside its normalization's claim.

    Runs :func:`convop.audit` (exact ``sigma_max`` of every convolution at the
    input size it sees, to ``rtol``, and the network's Lipschitz bound across
    residual connections) and reads how each convolution was normalized: by
    :func:`spectral_norm` (claims 1), by torch's ``spectral_norm`` (claims 1
    for its reshaped kernel, which is not the layer) or not at all.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model (put in eval mode for the audit, then restored).
    input_shape : tuple of int
        One sample's shape ``(C, *spatial)``.
    rtol : float
        Relative accuracy of each exact norm.
    rng : int or numpy.random.Generator
        Start vectors of the exact computation.

    Returns
    -------
    Certificate

    Examples
    --------
    >>> import pytest
    >>> torch = pytest.importorskip("torch")
    >>> import convop.torch
    >>> torch.set_default_dtype(torch.float64)
    >>> model = torch.nn.Sequential(
    ...     convop.torch.spectral_norm(torch.nn.Conv2d(1, 4, 3, padding=1), (8, 8)),
    ...     torch.nn.ReLU(),
    ...     torch.nn.utils.parametrizations.spectral_norm(torch.nn.Conv2d(4, 4, 3, stride=2)),
    ... )
    >>> torch.set_default_dtype(torch.float32)
    >>> cert = convop.torch.certify(model, (1, 8, 8))
    >>> [round(r.claimed, 3) for r in cert.layers]
    [1.0, 1.0]
    >>> abs(cert.layers[0].gap) < 1e-6, cert.layers[1].gap > 0.01
    (True, True)
    """
    torch = require("torch", "convop.torch.certify")
    from .auditing import audit

    report = audit(model, input_shape, rtol=rtol, rng=rng)
    modules = dict(model.named_modules())
    rows = []
    for row in report.layers:
        normalization = _normalization(torch, modules[row.name])
        claimed = None if normalization is None else 1.0
        gap = None if claimed is None or not math.isfinite(row.sigma_max) else (
            row.sigma_max / claimed - 1.0)
        rows.append(LayerCertificate(row.name, normalization, claimed, row.sigma_max, gap))
    gaps = [r.gap for r in rows if r.gap is not None]
    largest = max(gaps, key=abs) if gaps else None
    bound = None if report.network_bound is None else report.network_bound["sigma_max"]
    return Certificate(tuple(rows), bound, largest, report, report.network_note)


def _normalization(torch: Any, module: Any) -> str | None:
    """Name the spectral normalization of a module's weight, or None."""
    parametrize = torch.nn.utils.parametrize
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if type(p).__name__ == "ConvSpectralNorm":
                return "convop.torch.spectral_norm"
            if type(p).__name__ == "_SpectralNorm":
                return "torch.nn.utils.parametrizations.spectral_norm"
    if hasattr(module, "weight_orig") and hasattr(module, "weight_u"):
        return "torch.nn.utils.spectral_norm"
    return None
