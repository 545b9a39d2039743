"""The estimates people use for a layer's norm, beside convop's exact value.

- :func:`reshaped_kernel_norm`: the spectral norm of ``weight.reshape(C_out, -1)``,
  what ``torch.nn.utils.parametrizations.spectral_norm`` computes for a convolution.
- :func:`counterpart_singular_values`: every singular value of the layer's circular
  counterpart by FFT (the layer's own for a circulant circular layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .circular import circular_singular_values, is_circulant

__all__ = ["counterpart_singular_values", "reshaped_kernel_norm"]


def reshaped_kernel_norm(weight: np.ndarray) -> float:
    """Return the spectral norm of ``weight.reshape(C_out, -1)``, in float64 (complex128)."""
    exact = weight.astype(np.result_type(weight.dtype, np.float64), copy=False)
    return float(np.linalg.norm(exact.reshape(weight.shape[0], -1), 2))


def counterpart_singular_values(weight: np.ndarray, geom: Any, max_bytes: int | None = None
                                ) -> tuple[np.ndarray, str]:
    """Return the circular counterpart's singular values (descending) and a label.

    A circular layer that is circulant gives its own; any other layer the same
    weights with circular "same" padding at its input size rounded up to a multiple
    of the stride.
    """
    if is_circulant(geom):
        values = circular_singular_values(weight, geom.input_size, stride=geom.stride,
                                          dilation=geom.dilation, groups=geom.groups,
                                          padding=geom.padding, max_bytes=max_bytes)
        return values, "this layer (circular padding, FFT)"
    size = tuple(-(-n // s) * s for n, s in zip(geom.input_size, geom.stride))
    values = circular_singular_values(weight, size, stride=geom.stride, dilation=geom.dilation,
                                      groups=geom.groups, max_bytes=max_bytes)
    return values, f"circular counterpart at {'x'.join(map(str, size))} (FFT)"
