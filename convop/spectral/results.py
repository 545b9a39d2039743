"""What the spectral solvers return: singular values with error bounds, and vectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: ``callback(step, estimate)``: called after every step with the current estimate.
Callback = Callable[[int, float], None]


@dataclass(frozen=True)
class Singular:
    """Singular values (descending), optionally their vectors, and error bounds.

    ``bounds[i]`` bounds ``|values[i] - s|`` for some exact singular value ``s``
    (from the residual of the Lanczos pair; 0 for a dense SVD).
    """

    values: np.ndarray
    bounds: np.ndarray
    u: np.ndarray | None = None  # (m, k), columns
    vt: np.ndarray | None = None  # (k, n), rows
    steps: int = 0


def select(result: Singular, part: slice) -> Singular:
    """Return the values (and vectors) of ``result`` in ``part``."""
    return Singular(result.values[part], result.bounds[part],
                    None if result.u is None else result.u[:, part],
                    None if result.vt is None else result.vt[part], result.steps)
