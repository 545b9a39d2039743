"""Progress on stderr for anything that may run longer than a second.

A :class:`Progress` is a context manager around one stage of work. Once the
stage has run for ``delay`` seconds it prints what it is doing, then a line
every ``interval`` seconds with the latest status the work reported through
:meth:`Progress.update` (an iteration count, an estimate), and a closing line
with the time taken. Stages that finish quickly print nothing.

A library is quiet unless asked: by default a stage reports only when its
stream (stderr) is a terminal. ``progress=True`` on the long computations, or
``CONVOP_PROGRESS=1`` in the environment, reports always (from the start);
``progress=False`` or ``CONVOP_PROGRESS=0`` never. The command line runs inside
:func:`command_line`, where every stage reports after its delay whatever stderr
is, and stages in a row count their silence from the previous stage's last line
(quick stages in a row are never silent for longer than the delay together).

A stage that starts inside a reporting stage prints no lines of its own: its
status goes to the outer stage's line (one line per stage, not one per nested
call: ``inspect``'s "building the matrix" holds the matrix builder's stage).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
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
#: Inside the command line: every stage reports, and stages chain their silence.
_command_line = [False]
#: The stages open on each thread, innermost last.
_open = threading.local()


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Run the block as the command line does: every stage reports after its delay."""
    before = _command_line[0]
    _command_line[0] = True
    try:
        yield
    finally:
        _command_line[0] = before


def _stack() -> list[Progress]:
    if not hasattr(_open, "stages"):
        _open.stages = []
    stages: list[Progress] = _open.stages
    return stages


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed, or not a real file
        return False


class Progress:
    """Report one stage of work on a stream while it runs."""

    def __init__(self, what: str, *, enabled: bool | None = None, stream: TextIO | None = None,
                 delay: float | None = None, interval: float | None = None) -> None:
        setting = os.environ.get("CONVOP_PROGRESS", "")
        if enabled is None and setting in ("0", "1"):
            enabled = setting == "1"
        self.what = what
        self._asked = enabled  # None: decided on entry (terminal, or the command line)
        self.enabled = enabled is not False
        self.stream = stream
        self.delay = 0.0 if enabled is True else (DELAY if delay is None else delay)
        self.interval = INTERVAL if interval is None else interval
        self.status = ""
        self.printed = False
        self._outer: Progress | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._start = 0.0
        self._thread: threading.Thread | None = None

    def update(self, status: str) -> None:
        """Set the status shown in the next line (the outer stage's, for a nested stage)."""
        self.status = status
        if self._outer is not None:
            self._outer.update(status)

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        stages = _stack()
        outer = next((stage for stage in reversed(stages) if stage.enabled), None)
        if self._asked is None:
            self.enabled = _command_line[0] or _is_terminal(self._target())
        if outer is not None and self.enabled:
            self._outer, self.enabled = outer, False  # one line per stage: the outer one
        stages.append(self)
        if self.enabled:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._done.set()
        stages = _stack()
        if self in stages:
            stages.remove(self)
        if self._thread is not None:
            self._thread.join()
        if self.printed:
            outcome = "done" if kind is None else f"stopped by {kind.__name__}"
            self._print(f"{self.what}: {outcome} in {self.elapsed:.1f} s")

    def _target(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    @property
    def elapsed(self) -> float:
        """Seconds since the stage started."""
        return time.perf_counter() - self._start

    def _run(self) -> None:
        # On the command line the silence counts from the last line of a stage that ended
        # just before this one started: short stages in a row are not silent for longer.
        # (Not across library calls: a loop over layers would print every call.)
        deadline = self._start + self.delay
        if _command_line[0] and self._start - _last_line[0] < self.delay:
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
            print(line, file=self._target(), flush=True)
            _last_line[0] = time.perf_counter()


def building(what: str, nbytes: int) -> contextlib.AbstractContextManager[Any]:
    """Return a :class:`Progress` for a large allocation, or nothing for a small one."""
    return Progress(what) if nbytes >= LARGE_BYTES else contextlib.nullcontext()


def check_progress(value: Any) -> bool | None:
    """Validate a ``progress`` argument: None, True or False."""
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"`progress` must be None, True or False; got {value!r}.")
    return value
