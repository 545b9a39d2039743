"""matplotlib, imported on first use, and the checks every plotting function shares."""

from __future__ import annotations

import os
from typing import Any

from .._optional import install_hint

INSTALL_HINT = install_hint("matplotlib", "plotting")


def pyplot() -> Any:
    """Return ``matplotlib.pyplot``, on the Agg backend when there is no display."""
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
            if not os.environ.get("DISPLAY") and os.name != "nt":
                matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return plt


def check_text(value: Any, name: str) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"`{name}` must be a string or None; got {value!r}.")


def axes(ax: Any, size: tuple[float, float] = (6, 6)) -> Any:
    if ax is not None:
        return ax
    _, ax = pyplot().subplots(figsize=size)
    return ax
