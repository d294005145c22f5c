"""How a run tells the world what happens: the reporter protocol the reactor calls.

The engine never prints. The command line supplies a reporter (a live view, plain lines, or
JSON lines); the run's `orchestrator.log` is written by `RunLogReporter`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from stepledger.events import RecordedEvent
from stepledger.events.state import RunState

from ..paths import make_run_dir
from ..read.describe import describe
from ..read.terminal_text import printable

LOG_MODE = 0o600


class Reporter(Protocol):
    """Receives every recorded event of a run, in order, as soon as it is committed."""

    def events(self, run: RunState, recorded: list[RecordedEvent]) -> None:
        """Events just committed (the run state already includes them)."""

    def note(self, text: str) -> None:
        """A remark that is not an event (e.g. a late result that was refused)."""


class NullReporter:
    """Reports nothing."""

    def events(self, run: RunState, recorded: list[RecordedEvent]) -> None:
        """Ignore the events."""

    def note(self, text: str) -> None:
        """Ignore the note."""


class RunLogReporter:
    """Appends one line per event to the run's `orchestrator.log` (so `tail -f` works)."""

    def __init__(self, path: Path) -> None:
        make_run_dir(path.parent)
        # 0600 like the run's other files (its lines name steps, errors and outages); a log an older
        # version created readable by others is narrowed when the run is resumed.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_MODE)
        if os.fstat(fd).st_mode & 0o777 != LOG_MODE:
            os.fchmod(fd, LOG_MODE)
        # Line-buffered: every line is visible to `tail -f` and survives a kill -9 of the reactor.
        self._file = os.fdopen(fd, "a", buffering=1, encoding="utf-8")

    def events(self, run: RunState, recorded: list[RecordedEvent]) -> None:
        """Write a line for each event that has something to say."""
        for event in recorded:
            line = describe(event, run)
            if line:
                # Shown by `tail -f` and `stepledger logs`: a step id's escape sequences stay text.
                self._file.write(f"{_stamp(event.recorded_at)} {printable(line)}\n")

    def note(self, text: str) -> None:
        """Write a note line."""
        import time

        self._file.write(f"{_stamp(time.time())} {printable(text)}\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


class FanOut:
    """Sends everything to several reporters."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    def events(self, run: RunState, recorded: list[RecordedEvent]) -> None:
        """Forward events."""
        for reporter in self.reporters:
            reporter.events(run, recorded)

    def note(self, text: str) -> None:
        """Forward a note."""
        for reporter in self.reporters:
            reporter.note(text)


def _stamp(at: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
