"""Audit a whole model: every convolution's exact operator norm beside the estimates in use.

- :mod:`.layer`: one convolution: its exact ``sigma_max`` (optionally
  ``sigma_min``) and the estimators (reshaped kernel, circular counterpart,
  Gram iteration bound).
- :mod:`.torch_model`: the convolutions of a ``torch.nn.Module`` and the input
  size each really sees (one forward pass with hooks).
- :mod:`.onnx_model`: the ``Conv``/``ConvTranspose`` nodes of an ONNX model
  and their input sizes (shape inference; ``Pad`` nodes folded).
- :mod:`.model`: :func:`audit`, either kind of model.
- :mod:`.report`: :class:`LayerAudit` and :class:`AuditReport` (table, dict,
  JSON, CSV).
"""

from .model import audit
from .report import AuditReport, LayerAudit

__all__ = ["AuditReport", "LayerAudit", "audit"]
