"""What a check found: one result per configuration, and the report over a battery."""

from __future__ import annotations

from dataclasses import dataclass

from .battery import LayerConfig


@dataclass(frozen=True)
class ConfigResult:
    """The outcome of one configuration of a battery.

    ``status`` is ``"pass"``, ``"fail"`` (wrong values or shape) or ``"error"``
    (the implementation raised). ``ratio`` is the worst error over its
    tolerance; ``where`` localizes a failure and ``cause`` names a known cause
    when the implementation's output matches it exactly.
    """

    config: LayerConfig
    status: str
    max_error: float
    tolerance: float
    ratio: float
    where: str = ""
    cause: str = ""

    @property
    def passed(self) -> bool:
        """True when the configuration passed."""
        return self.status == "pass"


@dataclass(frozen=True)
class CheckReport:
    """Result of :func:`check_conv`: one row per configuration."""

    kind: str
    implementation: str
    dtype: str
    results: tuple[ConfigResult, ...]

    @property
    def passed(self) -> bool:
        """True when every configuration passed."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> tuple[ConfigResult, ...]:
        """The configurations that failed or raised."""
        return tuple(r for r in self.results if not r.passed)

    @property
    def worst(self) -> ConfigResult | None:
        """The configuration with the largest error-to-tolerance ratio."""
        return max(self.results, key=lambda r: r.ratio, default=None)

    def __str__(self) -> str:
        passed = sum(r.passed for r in self.results)
        worst = self.worst
        head = (f"check_conv(kind={self.kind!r}) of {self.implementation}, {self.dtype}: "
                f"{'PASSED' if self.passed else 'FAILED'} ({passed}/{len(self.results)} "
                f"configurations)")
        if worst is not None:
            head += (f"; worst error {worst.max_error:.2e} vs tolerance "
                     f"{worst.tolerance:.2e} ({worst.config.name})")
        lines = [head, f"{'configuration':32} {'status':6} {'error/tol':>10}  details"]
        for r in self.results:
            details = "; ".join(s for s in (r.cause, r.where) if s)
            lines.append(f"{r.config.name[:32]:32} {r.status:6} {r.ratio:>10.2e}  {details}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)
