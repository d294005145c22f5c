"""Printing log files, and following them as they grow (`logs --follow`).

A file is copied in chunks, never read whole: a step's log can be far larger than the memory
`logs` should take (200 MB of output once cost 617 MB of RSS). Bytes that are not UTF-8 are
printed as U+FFFD, a character cut between two chunks whole.
"""

from __future__ import annotations

import codecs
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .streams import output_gone

CHUNK = 1 << 16
RUN_CHECK_S = 1.0  # how often following asks the log whether the run has ended


def print_files(
    paths: list[Path],
    follow: bool = False,
    interval: float = 0.2,
    run_over: Callable[[], str | None] | None = None,
) -> str | None:
    """Print each file (with a header when there are several); with `follow`, keep printing the last
    until `run_over` says the run ended (what it said is returned), Ctrl-C, or the reader of stdout
    went away."""
    offsets: dict[Path, int] = {}
    decoders: dict[Path, Any] = {}
    for path in paths:
        if len(paths) > 1:
            sys.stdout.write(f"==> {path.name} <==\n")
        decoders[path] = codecs.getincrementaldecoder("utf-8")("replace")
        offsets[path] = _copy_new(path, 0, decoders[path])
    if not follow or not paths:
        return None
    last = paths[-1]
    checks = max(1, round(RUN_CHECK_S / interval))  # the log is asked less often than the file
    try:
        for tick in itertools.count(1):
            # A file has no change notification we can rely on everywhere; a short poll is it.
            time.sleep(interval)
            ended = run_over() if run_over is not None and tick % checks == 0 else None
            if ended is not None:
                # The orchestrator writes a line just after committing its event: one more look.
                time.sleep(interval)
            offsets[last] = _copy_new(last, offsets[last], decoders[last])
            if ended is not None:
                return ended
            if output_gone():
                return None
    except KeyboardInterrupt:
        return None
    return None


def _copy_new(path: Path, offset: int, decoder: Any) -> int:
    """Copy `path` from `offset` to its current end onto stdout; return the new offset."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            while chunk := f.read(CHUNK):
                sys.stdout.write(decoder.decode(chunk))
                offset += len(chunk)
    except FileNotFoundError:
        return offset
    sys.stdout.flush()
    return offset
