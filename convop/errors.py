"""The exceptions convop raises beyond ``ValueError`` and ``TypeError``.

Both carry what was reached, so a caller can tell a refusal or an early stop
from a real failure and act on it:

- :class:`BudgetError` (a ``MemoryError``): a request refused *before* it
  allocates, with the bytes it would need and the budget it met.
- :class:`NoConvergence` (a ``RuntimeError``): an iteration stopped at
  ``maxiter`` with its best estimate and a residual bound.
"""

from __future__ import annotations

__all__ = ["BudgetError", "NoConvergence"]


class BudgetError(MemoryError):
    """A request refused before allocating: it would need more than the memory budget.

    Raised instead of trying (and crashing, or swapping) whenever convop's
    estimate of the bytes a result needs exceeds ``max_bytes`` (or the default
    budget, 75% of the memory available to the process). A real out-of-memory
    during a computation stays a plain ``MemoryError``.

    Attributes
    ----------
    needed : int
        The estimated bytes the request needs.
    budget : int
        The budget it was refused against.
    what : str
        The request, as the message names it.

    Examples
    --------
    >>> import numpy as np, convop
    >>> try:
    ...     convop.conv_matrix(np.ones((8, 8, 3, 3)), (64, 64), padding=1, max_bytes=10**6)
    ... except convop.BudgetError as err:
    ...     print(err.needed > err.budget, isinstance(err, MemoryError))
    True True
    """

    def __init__(self, message: str, needed: int, budget: int, what: str = "") -> None:
        super().__init__(message)
        self.needed = int(needed)
        self.budget = int(budget)
        self.what = what


class NoConvergence(RuntimeError):
    """The iteration did not meet its tolerance within ``maxiter`` operator applications.

    Attributes
    ----------
    estimate : float
        The best eigenvalue estimate reached (a lower bound: a Ritz value).
    residual : float
        Its residual norm: an eigenvalue lies within this distance of it.
    steps : int
        Operator applications made.
    bracket : tuple of float or None
        For the largest singular value, a certified interval ``(low, high)``
        holding it: ``low`` the root of the Ritz value (a Ritz value never
        exceeds the largest eigenvalue of the Gram operator), ``high`` a
        certified upper bound (the Gram-iteration bound of a layer, or
        ``sqrt(||A||_1 ||A||_inf)`` of an explicit matrix); None where none was
        computed.

    Examples
    --------
    >>> import numpy as np, convop
    >>> w = np.random.default_rng(0).standard_normal((4, 4, 3, 3))
    >>> try:
    ...     convop.spectral_norm(w, (32, 32), padding=1, maxiter=3, rng=0)
    ... except convop.NoConvergence as err:
    ...     low, high = err.bracket
    ...     print(isinstance(err, RuntimeError), low <= convop.spectral_norm(w, (32, 32),
    ...                                                                padding=1) <= high)
    True True
    """

    def __init__(self, message: str, estimate: float, residual: float, steps: int,
                 bracket: tuple[float, float] | None = None) -> None:
        super().__init__(message)
        self.estimate = estimate
        self.residual = residual
        self.steps = steps
        self.bracket = bracket
