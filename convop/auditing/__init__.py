"""Audit a whole model: every convolution's exact operator norm beside the estimates in use.

- :mod:`.layer`: one convolution: its exact ``sigma_max`` (optionally
  ``sigma_min``) and the estimators (reshaped kernel, circular counterpart,
  Gram iteration bound).
- :mod:`.torch_model`: the convolutions of a ``torch.nn.Module`` and the input
  size each really sees (one forward pass with hooks).
- :mod:`.report`: :class:`LayerAudit` and :class:`AuditReport` (table, dict,
  JSON, CSV).
"""

from .report import AuditReport, LayerAudit
from .torch_model import audit

__all__ = ["AuditReport", "LayerAudit", "audit"]
