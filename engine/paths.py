"""Where a run's files live (kept apart from engine/runs.py so read commands need not import the reactor)."""

from __future__ import annotations

import os
from pathlib import Path


def run_dir_of(workdir: str | Path, run_id: str) -> Path:
    """The folder holding a run's logs and attempt files."""
    return Path(workdir) / ".stepledger" / "runs" / run_id


def hostname() -> str:
    """This machine's name, as leases and attempts record it (what `socket.gethostname()` says,
    without importing the socket module on the way to a run's first step)."""
    return os.uname().nodename
