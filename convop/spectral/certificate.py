"""Certify bounds on a layer's extreme singular values: "sigma_max <= a and sigma_min >= b".

For Lipschitz and orthogonal layers, whose singular values cluster at 1, the
question is a claim, not a number: :func:`certify_spectrum` proves it, refutes
it, or says it cannot tell within rounding, and never returns a Ritz value in
place of a bound.

- A block-circulant (circular) layer: every singular value from its FFT blocks.
- ``sigma_max <= a`` otherwise: proven by the exact norm of the circulant the
  layer is a part of (the limit of :func:`convop.gram_iteration_bound`, through
  an SVD of every FFT block: tight on clustered spectra), refuted by a Lanczos
  Ritz value above ``a`` (a Ritz value of the Gram operator is at most its
  largest eigenvalue).
- ``sigma_min >= b`` otherwise: by Sylvester's law of inertia through a
  Cholesky factorization of the Gram matrix ``G`` of the smaller side (built
  from the layer's taps, :mod:`convop.spectral.cholesky`). With ``n`` unknowns,
  ``u`` the unit roundoff and ``d = max G_ii``, let
  ``margin = 2 n gamma_(n+1) d``, ``gamma_k = k u / (1 - k u)``. A
  floating-point Cholesky of ``G - (b^2 + margin) I`` that completes proves
  ``lambda_min(G) >= b^2`` (its backward error is at most ``gamma_(n+1)
  trace``); one of ``G - (b^2 - margin) I`` that breaks down proves
  ``lambda_min(G) < b^2`` (Cholesky completes on any matrix whose scaled
  smallest eigenvalue exceeds ``n gamma_(n+1)``: Demmel 1989). Between the two
  the answer is undecided, within ``margin`` of the claim.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._blas import single_threaded
from .._progress import Progress, check_progress
from .._typing import IntOrTuple, PaddingLike, PaddingMode
from .._validation import as_real, as_rng
from ..errors import NoConvergence
from ..geometry import layer_arguments
from ._target import Target
from .bounds import EMBEDDING_ACCURACY, embedding_ceiling
from .cholesky import BlockCholesky, NotPositiveDefinite
from .gram import scaled_block_gram
from .largest import largest
from .values import circulant_layer, circulant_values

__all__ = ["SpectrumCertificate", "certify_spectrum"]



@dataclass(frozen=True)
class SpectrumCertificate:
    """The verdict on ``sigma_max <= sigma_max_at_most`` and ``sigma_min >= sigma_min_at_least``.

    ``sigma_max_holds`` and ``sigma_min_holds`` are True (proven), False
    (refuted) or None (undecided within rounding, or not asked); ``holds`` is
    True when every claim asked is proven. ``sigma_max_bracket`` is a certified
    interval holding ``sigma_max``; ``sigma_min_bracket`` one holding
    ``sigma_min`` (``(0, inf)`` bounds where nothing is known). ``evidence``
    says how each verdict was reached.
    """

    sigma_max_at_most: float | None
    sigma_min_at_least: float | None
    sigma_max_holds: bool | None
    sigma_min_holds: bool | None
    sigma_max_bracket: tuple[float, float]
    sigma_min_bracket: tuple[float, float]
    evidence: tuple[str, ...]
    seconds: float

    @property
    def holds(self) -> bool:
        """True when every claim asked for is proven."""
        asked = [(self.sigma_max_at_most, self.sigma_max_holds),
                 (self.sigma_min_at_least, self.sigma_min_holds)]
        return all(verdict is True for claim, verdict in asked if claim is not None)

    def __str__(self) -> str:
        def word(verdict: bool | None) -> str:
            return {True: "proven", False: "refuted", None: "undecided"}[verdict]

        lines = []
        if self.sigma_max_at_most is not None:
            lines.append(f"sigma_max <= {self.sigma_max_at_most:.12g}: "
                         f"{word(self.sigma_max_holds)}")
        if self.sigma_min_at_least is not None:
            lines.append(f"sigma_min >= {self.sigma_min_at_least:.12g}: "
                         f"{word(self.sigma_min_holds)}")
        low, high = self.sigma_max_bracket
        lines.append(f"sigma_max in [{low:.12g}, {high:.12g}]")
        low, high = self.sigma_min_bracket
        lines.append(f"sigma_min in [{low:.12g}, {high:.12g}]")
        lines += [f"  {line}" for line in self.evidence]
        lines.append(f"{self.seconds:.2f} s")
        return "\n".join(lines)


def certify_spectrum(
    weight: Any,
    input_size: IntOrTuple,
    *,
    sigma_max_at_most: float | None = None,
    sigma_min_at_least: float | None = None,
    stride: IntOrTuple = 1,
    padding: PaddingLike = 0,
    dilation: IntOrTuple = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    rtol: float = 1e-8,
    rng: Any = None,
    max_bytes: int | None = None,
    progress: bool | None = None,
) -> SpectrumCertificate:
    """Prove or refute ``sigma_max <= a`` and ``sigma_min >= b`` for the layer map.

    The certificate a Lipschitz or orthogonal layer needs ("every singular value
    within ``1 +- eps``"), with a verdict per claim: proven, refuted, or
    undecided within rounding, never a Ritz value taken for a bound (module
    notes: :mod:`convop.spectral.certificate`).

    Parameters
    ----------
    weight : array_like, shape (C_out, C_in // groups, *kernel)
        The layer's filters (finite).
    input_size : int or tuple of int
        Spatial size of the unpadded input.
    sigma_max_at_most, sigma_min_at_least : float, optional
        The claims; at least one.
    stride, padding, dilation, groups, padding_mode
        As in :func:`convop.conv_matrix`.
    rtol : float
        Relative accuracy of the Lanczos estimate that refutes ``sigma_max <= a``.
    rng : None, int or numpy.random.Generator
        Lanczos start vector.
    max_bytes : int, optional
        Memory budget (the Gram matrix and its Cholesky factor).
    progress : bool, optional
        As in :func:`convop.singular_values`.

    Returns
    -------
    SpectrumCertificate

    Examples
    --------
    >>> import numpy as np
    >>> from convop import certify_spectrum
    >>> q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))
    >>> weight = q[:, :, None, None]                   # an orthogonal 1x1 convolution
    >>> c = certify_spectrum(weight, (8, 8), sigma_max_at_most=1 + 1e-9,
    ...                      sigma_min_at_least=1 - 1e-9)
    >>> c.holds
    True
    >>> c = certify_spectrum(2 * weight, (8, 8), sigma_max_at_most=1.5)
    >>> c.sigma_max_holds, c.holds
    (False, False)
    """
    if sigma_max_at_most is None and sigma_min_at_least is None:
        raise ValueError("certify_spectrum needs a claim: `sigma_max_at_most`, "
                         "`sigma_min_at_least` or both.")
    top = None if sigma_max_at_most is None else as_real(
        sigma_max_at_most, "sigma_max_at_most", low=0.0, high=math.inf,
        rule="a finite positive number")
    bottom = None if sigma_min_at_least is None else as_real(
        sigma_min_at_least, "sigma_min_at_least", low=0.0, high=math.inf,
        rule="a finite positive number")
    accuracy = as_real(rtol, "rtol", low=0.0, high=1.0, rule="a float in (0, 1)")
    enabled = check_progress(progress)
    generator = as_rng(rng)
    start = time.perf_counter()
    target = Target(weight, input_size, layer_arguments(stride, padding, dilation, groups,
                                                        padding_mode), max_bytes=max_bytes)
    evidence: list[str] = []
    with target, single_threaded(), Progress("certifying the spectrum", enabled=enabled) as stage:
        if circulant_layer(target) is not None:
            values = circulant_values(target).values
            high, low = float(values[0]), float(values[-1])
            slack_max, slack_min = EMBEDDING_ACCURACY * high, EMBEDDING_ACCURACY * high
            max_bracket = (high - slack_max, high + slack_max)
            min_bracket = (max(low - slack_min, 0.0), low + slack_min)
            evidence.append("every singular value from the FFT blocks (block-circulant layer)")
            max_verdict = None if top is None else _compare(top, max_bracket, "at most")
            min_verdict = None if bottom is None else _compare(bottom, min_bracket, "at least")
        else:
            max_verdict, max_bracket = (None, (0.0, math.inf)) if top is None else (
                _sigma_max(target, top, accuracy, generator, stage, evidence))
            min_verdict, min_bracket = (None, (0.0, math.inf)) if bottom is None else (
                _sigma_min(target, bottom, stage, evidence))
    return SpectrumCertificate(top, bottom, max_verdict, min_verdict, max_bracket, min_bracket,
                               tuple(evidence), time.perf_counter() - start)


def _compare(claim: float, bracket: tuple[float, float], how: str) -> bool | None:
    """Decide ``value <= claim`` (``how="at most"``) or ``>=`` for a value in ``bracket``."""
    low, high = bracket
    if how == "at most":
        return True if high <= claim else False if low > claim else None
    return True if low >= claim else False if high < claim else None


def _sigma_max(target: Target, claim: float, rtol: float, rng: np.random.Generator,
               stage: Progress, evidence: list[str]) -> tuple[bool | None, tuple[float, float]]:
    layer = target.layer
    assert layer is not None
    g = layer.geometry
    stage.update("the norm of the circulant embedding")
    # The exact norm of the circulant the layer is a part of (its FFT blocks' SVDs), up to
    # their rounding: tight where Gram iteration is not, on clustered spectra.
    bound = embedding_ceiling(np.asarray(layer.weight), g, target.max_bytes)
    if bound <= claim:
        evidence.append(f"sigma_max <= {bound:.12g}: the norm of the circulant embedding "
                        f"(its FFT blocks)")
        return True, (0.0, bound)
    stage.update("a Lanczos lower bound of sigma_max")
    try:
        ritz = float(largest(target, 1, rtol, rng).values[0])
    except NoConvergence as err:  # a clustered top: its Ritz value is still a lower bound
        ritz = math.sqrt(max(err.estimate, 0.0))
    low = ritz * (1 - 1e-14)  # a Ritz value is below the largest, up to the product's rounding
    evidence.append(f"sigma_max >= {low:.12g}: a Lanczos Ritz value; <= {bound:.12g}: the "
                    f"norm of the circulant embedding")
    return (False if low > claim else None), (low, bound)


def _sigma_min(target: Target, claim: float, stage: Progress, evidence: list[str]
               ) -> tuple[bool | None, tuple[float, float]]:
    layer = target.layer
    assert layer is not None
    g = layer.geometry
    m, n = target.shape
    side = "input" if n <= m else "output"
    stage.update("the Gram matrix")
    gram, scale = scaled_block_gram(g, layer.weight, side, target.dtype, target.max_bytes)
    groups, pixels, c = gram.groups, gram.pattern.shape[0], gram.channels
    size = groups * pixels * c
    biggest = float(gram.diagonal().max(initial=0.0))
    unit = float(np.finfo(target.dtype).eps) / 2
    gamma = (size + 1) * unit / (1 - (size + 1) * unit)
    margin = 2 * size * gamma * biggest
    wanted = (claim / scale) ** 2

    def completes(shift: float) -> bool:
        extra = np.full((groups, pixels, c), -shift)
        try:
            BlockCholesky(gram, extra, target.max_bytes)
        except NotPositiveDefinite:
            return False
        return True

    stage.update("the Cholesky factorization of G - (b^2 + margin) I")
    relative = margin * scale**2
    if completes(wanted + margin):
        evidence.append(f"sigma_min >= {claim:.12g}: the Cholesky factorization of "
                        f"G - (b^2 + {relative:.3g}) I completes ({size} unknowns)")
        return True, (claim, math.inf)
    stage.update("the Cholesky factorization of G - (b^2 - margin) I")
    if wanted > margin and not completes(wanted - margin):
        evidence.append(f"sigma_min < {claim:.12g}: the Cholesky factorization of "
                        f"G - (b^2 - {relative:.3g}) I breaks down ({size} unknowns)")
        return False, (0.0, claim)
    evidence.append(f"sigma_min within rounding of {claim:.12g}: the Cholesky factorizations "
                    f"of G - (b^2 -+ {relative:.3g}) I disagree")
    low = math.sqrt(max(wanted - margin, 0.0)) * scale
    return None, (low, math.sqrt(wanted + margin) * scale)
