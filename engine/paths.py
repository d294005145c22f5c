"""Where a run's files live (kept apart from engine/runs.py so read commands need not import the reactor)."""

from __future__ import annotations

from pathlib import Path


def run_dir_of(workdir: str | Path, run_id: str) -> Path:
    """The folder holding a run's logs and attempt files."""
    return Path(workdir) / ".stepledger" / "runs" / run_id
