"""What a check found: one result per configuration, and the report over a battery."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .battery import LayerConfig
from .reproducer import snippet_name


@dataclass(frozen=True)
class ConfigResult:
    """The outcome of one configuration of a battery.

    ``status`` is ``"pass"``, ``"fail"`` (wrong values or shape), ``"error"``
    (the implementation raised) or ``"skip"`` (it raised ``NotImplementedError``:
    a configuration it cannot express; ``where`` gives its reason). ``ratio``
    is the worst error over its tolerance; ``where`` localizes a failure and
    ``cause`` names a known cause when the implementation's output matches it
    exactly.
    """

    config: LayerConfig
    status: str
    max_error: float
    tolerance: float
    ratio: float
    where: str = ""
    cause: str = ""
    #: For a failure or an error: standalone Python source that reproduces it (the
    #: inputs, the call, convop's exact expected values and the tolerance).
    reproducer: str = ""

    @property
    def passed(self) -> bool:
        """True when the configuration passed."""
        return self.status == "pass"

    @property
    def skipped(self) -> bool:
        """True when the implementation declined the configuration."""
        return self.status == "skip"


@dataclass(frozen=True)
class CheckReport:
    """Result of :func:`check_conv`: one row per configuration."""

    kind: str
    implementation: str
    dtype: str
    results: tuple[ConfigResult, ...]

    @property
    def passed(self) -> bool:
        """True when every configuration that ran passed, and at least one ran."""
        ran = [r for r in self.results if not r.skipped]
        return bool(ran) and all(r.passed for r in ran)

    @property
    def failures(self) -> tuple[ConfigResult, ...]:
        """The configurations that failed or raised."""
        return tuple(r for r in self.results if not r.passed and not r.skipped)

    @property
    def skips(self) -> tuple[ConfigResult, ...]:
        """The configurations the implementation declined, with their reasons."""
        return tuple(r for r in self.results if r.skipped)

    def write_reproducers(self, directory: str | os.PathLike[str]) -> list[str]:
        """Write one runnable ``.py`` reproducer per failing configuration; return the paths.

        Each holds the inputs the check used, the call of the implementation and
        convop's exact expected output: paste it into a framework's bug report.
        """
        os.makedirs(directory, exist_ok=True)
        paths = []
        for index, r in enumerate(self.failures, 1):
            path = os.path.join(directory, snippet_name(index, r.config.name, self.kind))
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(r.reproducer)
            paths.append(path)
        return paths

    @property
    def worst(self) -> ConfigResult | None:
        """The configuration that ran with the largest error-to-tolerance ratio."""
        return max((r for r in self.results if not r.skipped), key=lambda r: r.ratio,
                   default=None)

    def __str__(self) -> str:
        passed = sum(r.passed for r in self.results)
        ran = len(self.results) - len(self.skips)
        worst = self.worst
        skipped = f", {len(self.skips)} skipped" if self.skips else ""
        nothing = "; nothing ran" if not ran else ""
        head = (f"check_conv(kind={self.kind!r}) of {self.implementation}, {self.dtype}: "
                f"{'PASSED' if self.passed else 'FAILED'} ({passed}/{ran} "
                f"configurations{skipped}{nothing})")
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
