"""convop: the exact sparse linear operator of a convolution layer.

A convolution layer (deep-learning cross-correlation with stride, padding,
dilation and groups) is linear, ``vec(Y) = W vec(X_pad) + b``. convop builds
``W`` exactly as a ``scipy.sparse.csr_array``, uses it for the forward pass and
its transpose for the input gradient, and checks itself against im2col,
``scipy.signal.correlate`` and PyTorch.
"""

from .functional import conv, conv_input_grad
from .geometry import ConvGeometry, conv_geometry, output_size
from .im2col import col2im, im2col
from .layout import unvec, vec
from .matrix import bias_vector, conv_matrix
from .padding import pad_matrix, source_index

__version__ = "0.1.0"

__all__ = [
    "ConvGeometry",
    "__version__",
    "bias_vector",
    "col2im",
    "conv",
    "conv_geometry",
    "conv_input_grad",
    "conv_matrix",
    "im2col",
    "output_size",
    "pad_matrix",
    "source_index",
    "unvec",
    "vec",
]
