"""The padding modes: one table that every module needing a mode reads.

A mode's behaviour lives in three places only: its row here (names in other
libraries, PyTorch's size limit, whether padded taps fold onto input pixels),
its index map in :func:`convop.padding.map_positions`, and its nnz count in
:mod:`convop.geometry`. ``docs/contributing.md`` lists what a new mode touches.

Examples
--------
>>> from convop.modes import MODES
>>> MODES["replicate"].numpy, MODES["replicate"].onnx, MODES["circular"].folds
('edge', 'edge', True)
>>> MODES["reflect"].limit_ok(3, 3), MODES["circular"].limit_ok(3, 3)
(False, True)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODES", "Mode", "mode_from_onnx"]


@dataclass(frozen=True)
class Mode:
    """One padding mode (PyTorch's ``padding_mode`` name) and how other libraries say it.

    Attributes
    ----------
    name : str
        convop's and PyTorch's name.
    numpy : str
        ``numpy.pad``'s ``mode`` (also ``jax.numpy.pad``'s).
    onnx : str
        The ONNX ``Pad`` operator's ``mode``.
    folds : bool
        Padded taps read input pixels (a border copies them), so in the input
        domain they fold onto those pixels; False for zeros, whose border reads
        nothing.
    limit : {"none", "smaller", "at most"}
        PyTorch's rule for the padding on an axis of size ``n``: any, ``< n``
        (reflect: the mirror excludes the edge) or ``<= n`` (circular: wraps at
        most once).
    """

    name: str
    numpy: str
    onnx: str
    folds: bool
    limit: str = "none"

    def limit_ok(self, padding: int, size: int) -> bool:
        """Return whether ``padding`` on an axis of ``size`` pixels is within PyTorch's limit."""
        if self.limit == "smaller":
            return padding < size
        if self.limit == "at most":
            return padding <= size
        return True

    @property
    def limit_rule(self) -> str:
        """The limit in words, e.g. ``"smaller than"``."""
        return {"smaller": "smaller than", "at most": "at most"}.get(self.limit, "any")

    @property
    def jax(self) -> str:
        """``jax.numpy.pad``'s ``mode`` (numpy's names)."""
        return self.numpy


#: Every padding mode, in PyTorch's order.
MODES: dict[str, Mode] = {
    m.name: m for m in (
        Mode("zeros", "constant", "constant", folds=False),
        Mode("reflect", "reflect", "reflect", folds=True, limit="smaller"),
        Mode("replicate", "edge", "edge", folds=True),
        Mode("circular", "wrap", "wrap", folds=True, limit="at most"),
    )
}


def mode_from_onnx(onnx_mode: str) -> str | None:
    """Return convop's name of an ONNX ``Pad`` mode, or None when convop has none."""
    return next((m.name for m in MODES.values() if m.onnx == onnx_mode), None)
