"""Pictures of a convolution operator: the structure of W and its spectrum.

matplotlib is optional (``pip install "convop[plot]"``) and imported when a
function here is called, so ``import convop`` never needs it. Every function
takes ``ax=None`` (a new figure) and returns the ``Axes`` it drew on.

- :mod:`.structure`: where the entries of ``W`` are (channel blocks) and what
  one block looks like (its Toeplitz bands, entry values).
- :mod:`.spectrum`: singular values as a curve, as a density beside the exact
  extremes, and per frequency for circular layers.
"""

from ._backend import INSTALL_HINT, pyplot
from .spectrum import (
    plot_density,
    plot_frequency_response,
    plot_spectrum,
    plot_spectrum_density,
)
from .structure import plot_block, plot_structure

__all__ = [
    "INSTALL_HINT",
    "plot_block",
    "plot_density",
    "plot_frequency_response",
    "plot_spectrum",
    "plot_spectrum_density",
    "plot_structure",
    "pyplot",
]
