"""Printing log files, and following them as they grow (`logs --follow`).

A file is copied in chunks, never read whole: a step's log can be far larger than the memory
`logs` should take (200 MB of output once cost 617 MB of RSS). Bytes that are not UTF-8 are
printed as U+FFFD, a character cut between two chunks whole.
"""

from __future__ import annotations

import codecs
import sys
import time
from pathlib import Path
from typing import Any

CHUNK = 1 << 16


def print_files(paths: list[Path], follow: bool = False, interval: float = 0.2) -> None:
    """Print each file (with a header when there are several); with `follow`, keep printing the last."""
    offsets: dict[Path, int] = {}
    decoders: dict[Path, Any] = {}
    for path in paths:
        if len(paths) > 1:
            sys.stdout.write(f"==> {path.name} <==\n")
        decoders[path] = codecs.getincrementaldecoder("utf-8")("replace")
        offsets[path] = _copy_new(path, 0, decoders[path])
    if not follow or not paths:
        return
    last = paths[-1]
    try:
        while True:  # a file has no change notification we can rely on everywhere; a short poll is it
            time.sleep(interval)
            offsets[last] = _copy_new(last, offsets[last], decoders[last])
    except KeyboardInterrupt:
        return


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
