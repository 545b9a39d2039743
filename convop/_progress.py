"""Progress on stderr for anything that may run longer than a second.

A :class:`Progress` is a context manager around one stage of work. Once the
stage has run for ``delay`` seconds (or less, when another stage printed a line
just before it started: the silence counts from that line) it prints what it
is doing, then a line
every ``interval`` seconds with the latest status the work reported through
:meth:`Progress.update` (an iteration count, an estimate), and a closing line
with the time taken. Stages that finish quickly print nothing.

Library functions that build large arrays report on their own once they pass a
second (:func:`building`); the long computations take ``progress=None``
(report once the call runs longer than a second), ``True`` (report from the
start) or ``False`` (never). The environment variable ``CONVOP_PROGRESS=0``
silences every report, ``CONVOP_PROGRESS=1`` makes them start at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

#: Seconds of silence before a stage says what it is doing.
DELAY = 1.0
#: Seconds between two status lines after that.
INTERVAL = 1.0
#: Builders report only above this many bytes: smaller calls end well within a second.
LARGE_BYTES = 256 * 2**20

#: When any stage last printed a line (perf_counter seconds).
_last_line = [-float("inf")]


class Progress:
    """Report one stage of work on a stream while it runs."""

    def __init__(self, what: str, *, enabled: bool | None = None, stream: TextIO | None = None,
                 delay: float | None = None, interval: float | None = None) -> None:
        setting = os.environ.get("CONVOP_PROGRESS", "")
        if enabled is None and setting in ("0", "1"):
            enabled = setting == "1"
        self.what = what
        self.enabled = enabled is not False
        self.stream = stream
        self.delay = 0.0 if enabled is True else (DELAY if delay is None else delay)
        self.interval = INTERVAL if interval is None else interval
        self.status = ""
        self.printed = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._start = 0.0
        self._thread: threading.Thread | None = None

    def update(self, status: str) -> None:
        """Set the status shown in the next line."""
        self.status = status

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self.printed:
            outcome = "done" if kind is None else f"stopped by {kind.__name__}"
            self._print(f"{self.what}: {outcome} in {self.elapsed:.1f} s")

    @property
    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return time.perf_counter() - self._start

    def _run(self) -> None:
        # The silence counts from the last line of a stage that ended just before this one
        # started, not from this start: short stages in a row are not silent for longer.
        deadline = self._start + self.delay
        if self._start - _last_line[0] < self.delay:
            deadline = min(deadline, _last_line[0] + self.delay)
        if self._done.wait(max(0.0, deadline - time.perf_counter())):
            return
        self._print(f"{self.what} ...")
        while not self._done.wait(self.interval):
            status = f": {self.status}" if self.status else ""
            self._print(f"  {self.what}, {self.elapsed:.0f} s{status}")

    def _print(self, line: str) -> None:
        with self._lock:
            self.printed = True
            stream = self.stream if self.stream is not None else sys.stderr
            print(line, file=stream, flush=True)
            _last_line[0] = time.perf_counter()


def building(what: str, nbytes: int) -> contextlib.AbstractContextManager[Any]:
    """Return a :class:`Progress` for a large allocation, or nothing for a small one."""
    return Progress(what) if nbytes >= LARGE_BYTES else contextlib.nullcontext()


def check_progress(value: Any) -> bool | None:
    """Validate a ``progress`` argument: None, True or False."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"`progress` must be None, True or False; got {value!r}.")
    return value
