"""Removing the lock folders that runs left on tmpfs (files.lock_dir) once nothing can need them.

A run removes its own lock folder when it ends. One that was killed, or whose directory was
deleted with it (a test's or a benchmark's temporary folder), left it behind, and a long-lived
machine gathered hundreds. A folder goes only when both hold:

- the run directory its `run_dir` file names is gone, so no orchestrator can resume that run and
  look for its attempts' locks (a folder without that file, made by an older stepledger, stays);
- no process holds any lock in it: a worker that outlived its run directory keeps its folder.

Removing an unheld lock changes nothing for anyone who might still read it: recovery takes a
missing lock file for a lock nobody holds.
"""

from __future__ import annotations

import os

from . import files
from .recovery import lock_is_held


def sweep_lock_dirs(limit: int = 1_000) -> int:
    """Remove the stale lock folders of this user (at most `limit` looked at); returns how many."""
    parent = files.lock_root()
    if parent is None:  # no tmpfs: lock files live in the run directories themselves
        return 0
    try:
        names = os.listdir(parent)
    except OSError:
        return 0
    if len(names) > limit:
        # A different sample each time: folders that must stay (their run directory is still
        # there) would otherwise fill every sweep's share, and a stale one behind them never go.
        import random  # here: a run's end seldom needs it, and every run would import it

        names = random.sample(names, limit)
    removed = 0
    for name in names:
        folder = os.path.join(parent, name)
        if _stale(folder):
            import shutil  # here: most sweeps find nothing to remove

            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def _stale(folder: str) -> bool:
    try:
        with open(os.path.join(folder, files.RUN_DIR_FILE), encoding="utf-8") as f:
            run_dir = f.read()
    except OSError:
        return False  # still being made, or made before folders named their run directory
    if not run_dir or os.path.exists(run_dir):
        return False
    try:
        locks = [n for n in os.listdir(folder) if n.endswith(".lock")]
    except OSError:
        return False
    return not any(lock_is_held(os.path.join(folder, n)) for n in locks)
