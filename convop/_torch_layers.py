"""Reading a torch convolution module: its weight and layer arguments (torch on demand)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._optional import require

__all__ = ["load_torch", "module_layer"]


def load_torch() -> Any:
    """Import torch, or raise ``ImportError`` with the install hint."""
    return require("torch")


def module_layer(module: Any) -> tuple[np.ndarray, dict[str, Any], bool]:
    """Return a conv module's weight (numpy), convop's layer arguments, and if transposed."""
    torch = load_torch()
    conv_types = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    transpose_types = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d,
                       torch.nn.ConvTranspose3d)
    if not isinstance(module, conv_types + transpose_types):
        raise TypeError(
            f"`module` must be a torch.nn.Conv{{1,2,3}}d or ConvTranspose{{1,2,3}}d; got "
            f"{type(module).__name__}."
        )
    weight = module.weight.detach().cpu().numpy()
    layer = dict(stride=tuple(module.stride), dilation=tuple(module.dilation),
                 groups=int(module.groups))
    padding = module.padding
    layer["padding"] = padding if isinstance(padding, str) else tuple(padding)
    transposed = isinstance(module, transpose_types)
    if transposed:
        layer["output_padding"] = tuple(module.output_padding)
    else:
        layer["padding_mode"] = module.padding_mode
    return weight, layer, transposed
