"""convop: the exact sparse linear operator of a convolution layer.

A convolution layer (deep-learning cross-correlation with stride, padding,
dilation and groups) is linear, ``vec(Y) = W vec(X_pad) + b``. convop builds
``W`` exactly as a ``scipy.sparse.csr_array``, uses it for the forward pass and
its transpose for the input gradient, and checks itself against im2col,
``scipy.signal.correlate`` and PyTorch.
"""

from .adapters import padding_pairs, relayout, same_padding_pairs
from .auditing import AuditReport, LayerAudit, audit
from .errors import BudgetError, NoConvergence
from .functional import conv, conv_input_grad
from .geometry import ConvGeometry, conv_geometry, output_size
from .im2col import col2im, im2col
from .layout import unvec, vec
from .matrix import bias_vector, conv_matrix
from .norms import operator_norm
from .operator import LayerOperator
from .padding import pad_matrix, source_index
from .plotting import (
    plot_block,
    plot_density,
    plot_frequency_response,
    plot_spectrum,
    plot_spectrum_density,
    plot_structure,
)
from .spectral import (
    SpectralDensity,
    SpectralReport,
    SpectrumCertificate,
    certify_spectrum,
    circular_singular_values,
    condition_number,
    gram_iteration_bound,
    singular_values,
    spectral_density,
    spectral_norm,
    spectrum_report,
)
from .transposed import conv_transpose, conv_transpose_matrix, output_padding_for
from .validation import (
    CheckReport,
    ConfigResult,
    DotTestReport,
    LayerConfig,
    check_conv,
    dot_test,
    standard_configs,
)
from .weight_grad import affine_matrix, conv_bias_grad, conv_weight_grad, weight_matrix

__version__ = "0.1.0"

__all__ = [
    "AuditReport",
    "BudgetError",
    "CheckReport",
    "ConfigResult",
    "ConvGeometry",
    "DotTestReport",
    "LayerAudit",
    "LayerConfig",
    "LayerOperator",
    "NoConvergence",
    "SpectralDensity",
    "SpectralReport",
    "SpectrumCertificate",
    "__version__",
    "affine_matrix",
    "audit",
    "bias_vector",
    "certify_spectrum",
    "check_conv",
    "circular_singular_values",
    "col2im",
    "condition_number",
    "conv",
    "conv_bias_grad",
    "conv_geometry",
    "conv_input_grad",
    "conv_matrix",
    "conv_transpose",
    "conv_transpose_matrix",
    "conv_weight_grad",
    "dot_test",
    "gram_iteration_bound",
    "im2col",
    "operator_norm",
    "output_padding_for",
    "output_size",
    "padding_pairs",
    "pad_matrix",
    "plot_block",
    "plot_density",
    "plot_frequency_response",
    "plot_spectrum",
    "plot_spectrum_density",
    "plot_structure",
    "relayout",
    "same_padding_pairs",
    "singular_values",
    "source_index",
    "spectral_density",
    "spectral_norm",
    "spectrum_report",
    "standard_configs",
    "unvec",
    "vec",
    "weight_matrix",
]
