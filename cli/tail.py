"""Printing logs, and following them as they grow (`logs --follow`).

A log comes from the engine (`Stepledger.step_logs`) as a source read in chunks, never whole: a
step's log can be far larger than the memory `logs` should take (200 MB of output once cost 617 MB
of RSS). It is a file on this machine or, for an attempt a worker ran elsewhere, the copy in the
database. Bytes that are not UTF-8 are printed as U+FFFD, a character cut between two chunks whole.
"""

from __future__ import annotations

import codecs
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from .streams import output_gone

END_CHECK_S = 1.0  # how often following asks whether the log has ended (the run, or the attempt)


class Source(Protocol):
    """A log as the engine hands it out (engine/read/logs.py)."""

    name: str

    def chunks(self) -> Iterator[bytes]: ...

    def wait(self, timeout: float) -> None: ...

    def ended(self) -> str | None: ...


def print_logs(sources: Sequence[Source], follow: bool = False, interval: float = 0.2) -> str | None:
    """Print each log (with a header when there are several); with `follow`, keep printing the last
    until it ends (what it says then is returned), Ctrl-C, or the reader of stdout went away."""
    decoders: dict[int, Any] = {}
    for n, source in enumerate(sources):
        if len(sources) > 1:
            sys.stdout.write(f"==> {source.name} <==\n")
        decoders[n] = codecs.getincrementaldecoder("utf-8")("replace")
        _copy_new(source, decoders[n])
    if not follow or not sources:
        return None
    last, decoder = sources[-1], decoders[len(sources) - 1]
    next_check = time.monotonic() + END_CHECK_S  # whether it ended is asked less often than its content
    try:
        while True:
            last.wait(interval)
            ended = None
            if time.monotonic() >= next_check:
                ended = last.ended()
                next_check = time.monotonic() + END_CHECK_S
            if ended is not None:
                # A run's orchestrator writes a line just after committing its event: one more look.
                last.wait(interval)
            _copy_new(last, decoder)
            if ended is not None:
                return ended
            if output_gone():
                return None
    except KeyboardInterrupt:
        return None


def _copy_new(source: Source, decoder: Any) -> None:
    """Copy what the log gained onto stdout."""
    for chunk in source.chunks():
        sys.stdout.write(decoder.decode(chunk))
    sys.stdout.flush()
