"""Audit a whole model: every convolution's exact operator norm beside the estimates in use.

- :mod:`.layer`: one convolution: its exact ``sigma_max`` (optionally
  ``sigma_min``) and the estimators (reshaped kernel, circular counterpart,
  Gram iteration bound).
- :mod:`.torch_model`: the convolutions of a ``torch.nn.Module`` and the input
  size each really sees (one forward pass with hooks), and the Lipschitz rules
  of its ``torch.fx`` graph.
- :mod:`.onnx_model`: the ``Conv``/``ConvTranspose`` nodes of an ONNX model
  and their input sizes (shape inference; ``Pad`` nodes folded), and the
  Lipschitz rules of its nodes.
- :mod:`.lipschitz`: the framework-neutral network bound (:class:`~.lipschitz.Step`,
  :func:`~.lipschitz.walk`, the pooling factors).
- :mod:`.model`: :func:`audit`, either kind of model.
- :mod:`.report`: :class:`LayerAudit` and :class:`AuditReport` (table, dict,
  JSON, CSV).
"""

from .model import audit
from .report import AuditReport, LayerAudit

__all__ = ["AuditReport", "LayerAudit", "audit"]
