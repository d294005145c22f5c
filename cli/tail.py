"""Printing log files, and following them as they grow (`logs --follow`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def print_files(paths: list[Path], follow: bool = False, interval: float = 0.2) -> None:
    """Print each file (with a header when there are several); with `follow`, keep printing the last."""
    offsets: dict[Path, int] = {}
    for path in paths:
        if len(paths) > 1:
            sys.stdout.write(f"==> {path.name} <==\n")
        offsets[path] = _copy_new(path, 0)
    if not follow or not paths:
        return
    last = paths[-1]
    try:
        while True:  # a file has no change notification we can rely on everywhere; a short poll is it
            time.sleep(interval)
            offsets[last] = _copy_new(last, offsets[last])
    except KeyboardInterrupt:
        return


def _copy_new(path: Path, offset: int) -> int:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    sys.stdout.write(data.decode("utf-8", "replace"))
    sys.stdout.flush()
    return offset + len(data)
