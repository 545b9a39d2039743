"""The convolutions of a torch module and the input size each one sees (one forward pass)."""

from __future__ import annotations

from typing import Any

from ..adapters import padding_pairs
from .layer import Bounds, LayerRow, Norms

__all__ = ["torch_layers"]


def torch_layers(model: Any, input_shape: tuple[int, ...]
                 ) -> tuple[str, list[LayerRow], Bounds]:
    """Return a ``torch.nn.Module``'s convolutions, each with the input size it sees.

    Also its name, and the function that bounds the network from the audited
    norms (:func:`.lipschitz.network_bounds`, through ``torch.fx``).

    One forward pass on a zero tensor of ``(1, *input_shape)``, in eval mode
    (restored after), with a pre-hook on every ``Conv{1,2,3}d`` and
    ``ConvTranspose{1,2,3}d``; a module called several times with one input
    size is one row with its ``calls`` counted.
    """
    from ..torch import _module_layer, _torch

    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, an onnx.ModelProto or the path "
                        f"of an .onnx file; got {type(model).__name__}.")
    conv_types = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose1d,
                  torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    seen: dict[tuple[int, tuple[int, ...]], LayerRow] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, conv_types):
            def hook(mod: Any, args: Any, name: str = name) -> None:
                size = tuple(int(v) for v in args[0].shape[2:])
                key = (id(mod), size)
                if key in seen:
                    seen[key].calls += 1
                    return
                weight, layer, transposed = _module_layer(mod)
                # Padding as pairs, as the ONNX path reads it: the same row either way.
                layer["padding"] = padding_pairs(layer["padding"], tuple(weight.shape[2:]),
                                                 stride=layer["stride"],
                                                 dilation=layer["dilation"])
                seen[key] = LayerRow(name, type(mod).__name__, weight, size, layer, transposed)
            handles.append(module.register_forward_pre_hook(hook))
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), dtype=next(model.parameters()).dtype))
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    def bounds(norms: Norms) -> tuple[dict[str, float] | None, str]:
        from .lipschitz import network_bounds

        training = model.training
        try:
            model.eval()
            return network_bounds(model, input_shape, norms)
        finally:
            model.train(training)
    return type(model).__name__, list(seen.values()), bounds
