"""Train with the true norm: exact spectral normalization of PyTorch convolutions.

``torch.nn.utils.parametrizations.spectral_norm`` divides a convolution's
weight by the norm of the *reshaped kernel* ``weight.reshape(C_out, -1)``, not by
the norm of the layer: stride, padding, dilation and the input size change the
operator, and the reshaped kernel's norm is neither a bound nor an estimate of
it. This module, exposed as ``convop.torch``, divides by the norm of the layer
itself:

- :func:`spectral_norm`: a ``torch.nn.utils.parametrize`` parametrization.
  Power iteration on the layer's own map (``conv{n}d`` forward, its adjoint
  through autograd), with ``u``/``v`` buffers warm-started across steps, and
  ``sigma = <u, A(v)>`` so that autograd gives the exact gradient ``u v^T``
  mapped onto the kernel. Torch code only: any device and dtype.
- :func:`clip_singular_values_`: the projection of a circular layer onto
  ``sigma_max <= max_value`` through its FFT blocks (Sedghi et al. 2019).

torch is imported when a function here is called, never when convop is.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import numpy as np

from ._optional import require
from ._torch_layers import module_layer
from ._validation import as_int, as_int_tuple, as_real
from .adapters import padding_pairs

__all__ = ["clip_singular_values_", "spectral_norm"]

#: Relative accuracy of the exact top singular pair the buffers start from.
INIT_RTOL = 1e-8


# The parametrization ------------------------------------------------------------------------


def spectral_norm(module: Any, input_size: Any, *, n_power_iterations: int = 1,
                  eps: float = 1e-12) -> Any:
    r"""Normalize a convolution's weight by the exact operator norm of the layer.

    Registers a ``torch.nn.utils.parametrize`` parametrization on
    ``module.weight``: the weight the module uses is ``W / sigma(W)`` with
    ``sigma(W)`` the largest singular value of the layer map at ``input_size``
    (its stride, padding in every mode, dilation, groups and output_padding),
    estimated by power iteration on that map, so the layer is 1-Lipschitz in l2
    once the iteration has converged. Unlike
    ``torch.nn.utils.parametrizations.spectral_norm``, which divides by the norm
    of ``weight.reshape(C_out, -1)``, a different matrix.

    Parameters
    ----------
    module : torch.nn.Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d or ConvTranspose3d
        The layer; changed in place and returned.
    input_size : int or tuple of int
        Spatial size of the layer's input (the norm depends on it).
    n_power_iterations : int
        Power iterations per training forward pass (default 1, as torch's). The
        vectors persist in buffers ``u`` and ``v``, so the estimate follows the
        weight as it trains. They start from the layer's exact top singular
        pair (convop's Lanczos, at registration), not from random vectors:
        a conv layer's top values come in near-degenerate pairs, which power
        iteration from a random start resolves only after thousands of steps.
    eps : float
        Floor of the norms divided by, as in torch.

    Returns
    -------
    module

    Notes
    -----
    With ``A`` the layer map and unit buffers ``u``, ``v``, a training step runs

    .. math::

        v \leftarrow A^T u / \|A^T u\|, \quad u \leftarrow A v / \|A v\|, \quad
        \sigma = \langle u, A v \rangle,

    the first two without gradient. ``sigma`` is linear in ``W`` for fixed
    ``u``, ``v``: its gradient is ``u v^T`` written onto the kernel's taps,
    and autograd differentiates ``W / sigma`` exactly. In eval mode the
    buffers stay as they are (as in torch). ``state_dict`` holds the original
    weight and both buffers.

    Examples
    --------
    >>> import pytest
    >>> torch = pytest.importorskip("torch")
    >>> import convop.torch
    >>> layer = convop.torch.spectral_norm(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
    ...                                    .double(), (16, 16))
    >>> w = layer.weight.detach().numpy()
    >>> sigma = convop.spectral_norm(w, (16, 16), stride=2, padding=1)
    >>> abs(sigma - 1) < 1e-6
    True
    """
    torch = require("torch", "convop.torch.spectral_norm")
    weight, layer, transposed = module_layer(module)  # refuses other modules
    size = as_int_tuple(input_size, "input_size", weight.ndim - 2, minimum=1)
    steps = as_int(n_power_iterations, "n_power_iterations", minimum=1)
    floor = as_real(eps, "eps", low=0.0, high=math.inf, rule="a positive float")
    u, v = _exact_pair(weight, layer, transposed, size)
    parametrization = _parametrization_type()(module, size, transposed, steps, floor, u, v)
    torch.nn.utils.parametrize.register_parametrization(module, "weight", parametrization)
    return module


def _exact_pair(weight: np.ndarray, layer: dict[str, Any], transposed: bool,
                size: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Return the layer's top singular pair ``(u, v)`` as ``(1, C, *spatial)`` arrays.

    Validates the layer at ``size`` with convop's own checks on the way. A
    transposed convolution ``T = A^T`` (``A`` the convolution on its output
    size) swaps ``A``'s vectors; one whose ``output_padding`` reaches the stride
    keeps only some of ``A``'s rows, and goes through its explicit matrix.
    """
    from .spectral import singular_values

    if not transposed:
        u, _, vt = singular_values(weight, size, k=1, rtol=INIT_RTOL, rng=0,
                                   return_vectors=True, tensors=True, progress=False,
                                   **layer)
        return u, vt
    from .transposed import conv_transpose_matrix, transposed_layer

    geom = transposed_layer(weight.shape, size, layer["stride"], layer["padding"],
                            layer["output_padding"], layer["dilation"], layer["groups"])
    conv = geom.conv
    if not geom.trimmed:
        u, _, vt = singular_values(weight, conv.input_size, k=1, rtol=INIT_RTOL, rng=0,
                                   return_vectors=True, tensors=True, progress=False,
                                   **conv.layer_arguments())
        return vt, u
    T = conv_transpose_matrix(weight, size, order="C", **layer)
    u, _, vt = singular_values(T, k=1, rtol=INIT_RTOL, rng=0, return_vectors=True,
                               progress=False)
    return (u[:, 0].reshape(1, conv.in_channels, *geom.output_size),
            vt[0].reshape(1, conv.out_channels, *size))


@cache
def _parametrization_type() -> type:
    """Define the parametrization module (it subclasses torch.nn.Module: torch on demand)."""
    torch = require("torch")
    F = torch.nn.functional

    class ConvSpectralNorm(torch.nn.Module):  # type: ignore[name-defined]
        """``W -> W / sigma(W)``, ``sigma`` the layer's spectral norm by power iteration."""

        def __init__(self, module: Any, input_size: tuple[int, ...], transposed: bool,
                     n_power_iterations: int, eps: float, u: np.ndarray, v: np.ndarray
                     ) -> None:
            super().__init__()
            self.input_size = input_size
            self.transposed = transposed
            self.ndim = len(module.kernel_size)
            self.stride = tuple(module.stride)
            self.dilation = tuple(module.dilation)
            self.groups = int(module.groups)
            self.n_power_iterations = n_power_iterations
            self.eps = eps
            name = "conv_transpose" if transposed else "conv"
            self._function = getattr(F, f"{name}{self.ndim}d")
            if transposed:
                self.padding: Any = tuple(module.padding)
                self.output_padding = tuple(module.output_padding)
                self._pad = None
            elif module.padding_mode == "zeros":
                self.padding = module.padding if isinstance(module.padding, str) else tuple(
                    module.padding)
                self._pad = None
            else:  # F.pad's order: the last axis first
                self.padding = 0
                pairs = padding_pairs(module.padding, tuple(module.kernel_size),
                                      stride=tuple(module.stride),
                                      dilation=tuple(module.dilation))
                self._pad = (tuple(p for pair in reversed(pairs) for p in pair),
                             module.padding_mode)
            weight = module.weight.detach()
            like = dict(dtype=weight.dtype, device=weight.device)
            self.register_buffer("_u", self._unit(torch.as_tensor(u.real, **like)))
            self.register_buffer("_v", self._unit(torch.as_tensor(v.real, **like)))

        def forward_map(self, v: Any, weight: Any) -> Any:
            """Return ``A v``: the layer applied to ``v`` (no bias)."""
            if self.transposed:
                return self._function(v, weight, None, self.stride, self.padding,
                                      self.output_padding, self.groups, self.dilation)
            if self._pad is not None:
                v = F.pad(v, self._pad[0], mode=self._pad[1])
            return self._function(v, weight, None, self.stride, self.padding, self.dilation,
                                  self.groups)

        def adjoint_map(self, u: Any, weight: Any) -> Any:
            """Return ``A^T u``, by autograd of the linear map (any padding mode folded exactly)."""
            with torch.enable_grad():
                x = torch.zeros_like(self._v, requires_grad=True)
                out = self.forward_map(x, weight.detach())
                (back,) = torch.autograd.grad(out, x, grad_outputs=u)
            return back

        def _unit(self, t: Any) -> Any:
            return t / torch.clamp(torch.linalg.vector_norm(t), min=self.eps)

        def _power_method(self, weight: Any, iterations: int) -> None:
            u, v = self._u, self._v
            for _ in range(iterations):
                v = self._unit(self.adjoint_map(u, weight))
                u = self._unit(self.forward_map(v, weight))
            self._u.copy_(u)
            self._v.copy_(v)

        def sigma(self, weight: Any) -> Any:
            """Return ``<u, A v>`` with the current buffers: differentiable in ``weight``."""
            u = self._u.clone(memory_format=torch.contiguous_format)
            v = self._v.clone(memory_format=torch.contiguous_format)
            return torch.sum(u * self.forward_map(v, weight))

        def forward(self, weight: Any) -> Any:
            if self.training:
                with torch.no_grad():
                    self._power_method(weight, self.n_power_iterations)
            return weight / torch.clamp(self.sigma(weight), min=self.eps)

        def right_inverse(self, value: Any) -> Any:
            # As torch's spectral_norm: assigning a weight stores it as the original.
            return value

    return ConvSpectralNorm


# Projection of circular layers ----------------------------------------------------------------


def clip_singular_values_(module: Any, input_size: Any, max_value: float, *,
                          iterations: int = 1) -> float:
    """Clip a circular convolution's singular values at ``max_value``, in place.

    A stride-1 convolution with circular padding that keeps the size is block
    circulant: its singular values are those of one ``C_out x C_in`` block per
    frequency of the kernel's FFT. Each block's singular values above
    ``max_value`` are set to it (Sedghi, Gupta and Long 2019), and the kernel
    comes back by the inverse FFT, restricted to the module's taps (the clipped
    operator's kernel spans the whole input; ``iterations`` alternates clip and
    restriction). If the restricted kernel's exact norm still exceeds
    ``max_value``, it is scaled down to it: the layer's norm is at most
    ``max_value`` on return, whatever ``iterations``.

    Parameters
    ----------
    module : torch.nn.Conv1d, Conv2d or Conv3d
        With ``padding_mode="circular"``, stride 1 and padding totalling
        ``dilation * (kernel - 1)`` on every axis; not parametrized.
    input_size : int or tuple of int
        Spatial size of the layer's input.
    max_value : float
        The largest singular value allowed (positive).
    iterations : int
        Clip-and-restrict rounds (1 to 100).

    Returns
    -------
    float
        The layer's exact spectral norm after clipping.

    Raises
    ------
    ValueError
        For another padding mode, a stride, or padding that does not keep the
        size: those layers are not block circulant, their singular values are
        not the FFT blocks', and no per-frequency clip exists.

    Examples
    --------
    >>> import pytest
    >>> torch = pytest.importorskip("torch")
    >>> import convop.torch
    >>> layer = torch.nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular").double()
    >>> top = convop.torch.clip_singular_values_(layer, (6, 6), 0.5)
    >>> top <= 0.5 + 1e-12
    True
    """
    torch = require("torch", "convop.torch.clip_singular_values_")
    # Before reading the weight: a parametrized one would run its forward to be read.
    if isinstance(module, torch.nn.Module) and torch.nn.utils.parametrize.is_parametrized(
            module, "weight"):
        raise ValueError("`module`'s weight is parametrized: clip the original weight "
                         "(torch.nn.utils.parametrize.remove_parametrizations first).")
    weight, layer, transposed = module_layer(module)  # refuses other modules
    if transposed:
        raise TypeError("`module` must be a torch.nn.Conv{1,2,3}d: a transposed convolution "
                        "has no padding mode (its zero padding is not circulant).")
    size = as_int_tuple(input_size, "input_size", weight.ndim - 2, minimum=1)
    limit = as_real(max_value, "max_value", low=0.0, high=math.inf, rule="a positive float")
    rounds = as_int(iterations, "iterations", minimum=1, maximum=100)
    if layer["padding_mode"] != "circular":
        raise ValueError(
            f"`module` has padding_mode={layer['padding_mode']!r}: clipping singular values "
            f"through the FFT needs padding_mode='circular'. With {layer['padding_mode']} "
            f"padding the layer is block Toeplitz, not block circulant: its singular values "
            f"are not those of the kernel's per-frequency blocks, and no exact clip exists "
            f"(convop.torch.spectral_norm normalizes any layer).")
    from .geometry import conv_geometry

    geom = conv_geometry(weight.shape, size, **layer)
    if any(s != 1 for s in geom.stride) or any(
            lo + hi != d * (k - 1)
            for (lo, hi), d, k in zip(geom.padding, geom.dilation, geom.kernel_size)):
        raise ValueError(
            f"`module` must have stride 1 and padding totalling dilation*(kernel-1) on every "
            f"axis (got stride {geom.stride}, padding {geom.padding}): only then is the "
            f"circular layer block circulant, its singular values those of the FFT blocks.")
    positions = _tap_positions(geom)
    clipped = weight.astype(np.result_type(weight.dtype, np.float64))
    for _ in range(rounds):
        clipped = _clip_round(clipped, geom, positions, limit)
    top = _circular_norm(clipped, geom, positions)
    if top > limit:
        clipped *= limit / top
        top = _circular_norm(clipped, geom, positions)
    with torch.no_grad():
        module.weight.copy_(torch.from_numpy(clipped).to(module.weight))
    return top


def _tap_positions(geom: Any) -> list[np.ndarray]:
    """Per axis, the input offset ``(u d - before) mod n`` each tap reads; distinct or refused."""
    out = []
    for axis, (n, k, d, (lo, _)) in enumerate(zip(geom.input_size, geom.kernel_size,
                                                   geom.dilation, geom.padding)):
        t = (np.arange(k) * d - lo) % n
        if np.unique(t).size != k:
            raise ValueError(f"the dilated kernel ({k} taps, dilation {d}) wraps around the "
                             f"input of size {n} on spatial axis {axis}: taps share pixels, "
                             f"so the kernel cannot hold a clipped operator; clip at a "
                             f"larger `input_size`.")
        out.append(t)
    return out


def _symbols(weight: np.ndarray, geom: Any, positions: list[np.ndarray]) -> np.ndarray:
    """Per group and frequency the ``C_out/G x C_in/G`` block ``sum_t w[t] e^{2 pi i f t / n}``."""
    g = geom.groups
    full = np.zeros((g, geom.out_per_group, weight.shape[1], *geom.input_size),
                    dtype=np.complex128)
    grouped = weight.reshape(g, geom.out_per_group, weight.shape[1], *geom.kernel_size)
    full[(slice(None),) * 3 + np.ix_(*positions)] = grouped
    axes = tuple(range(3, 3 + geom.ndim))
    blocks = np.fft.ifftn(full, axes=axes) * math.prod(geom.input_size)
    return np.moveaxis(blocks.reshape(g, geom.out_per_group, weight.shape[1], -1), -1, 1)


def _circular_norm(weight: np.ndarray, geom: Any, positions: list[np.ndarray]) -> float:
    blocks = _symbols(weight, geom, positions)
    return float(np.linalg.norm(blocks, ord=2, axis=(-2, -1)).max(initial=0.0))


def _clip_round(weight: np.ndarray, geom: Any, positions: list[np.ndarray], limit: float
                ) -> np.ndarray:
    """Clip every frequency block's singular values, invert the FFT, keep the module's taps."""
    blocks = _symbols(weight, geom, positions)  # (G, F, Co/G, Ci/G)
    u, s, vh = np.linalg.svd(blocks, full_matrices=False)
    blocks = (u * np.minimum(s, limit)[..., np.newaxis, :]) @ vh
    g, n = geom.groups, geom.input_size
    full = np.moveaxis(blocks, 1, -1).reshape(g, geom.out_per_group, weight.shape[1], *n)
    axes = tuple(range(3, 3 + geom.ndim))
    kernel_full = np.fft.fftn(full, axes=axes) / math.prod(n)
    taps = kernel_full[(slice(None),) * 3 + np.ix_(*positions)]
    if not np.iscomplexobj(weight):
        taps = taps.real  # a real kernel's blocks are conjugate in f and -f: real again
    return taps.reshape(weight.shape).astype(weight.dtype, copy=False)
