"""The settings every connection to the log gets, whether the store opens it (dbapi.py) or a
SQLAlchemy engine does (engines.py)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from .checkpoint import BACKSTOP_PAGES

BUSY_TIMEOUT_MS = 30_000
MIGRATION_LOCK_KEY = 0x5354_4550_4C45_4447 & 0x7FFF_FFFF_FFFF_FFFF  # "STEPLEDG", a stable bigint

SQLITE_PRAGMAS = (
    # WAL: readers never block the writer and the writer never blocks readers (tailing, status).
    "PRAGMA journal_mode=WAL",
    # NORMAL in WAL mode: a commit is in the WAL before COMMIT returns, so a crashed or killed
    # (kill -9) process loses nothing; only an OS crash or power cut can roll back the last
    # commits, and the file stays consistent. FULL would fsync every commit (far slower).
    "PRAGMA synchronous=NORMAL",
    # Wait for another process's write transaction instead of failing with "database is locked".
    f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
    # SQLite leaves foreign keys off by default; the schema declares none today, but a future one
    # should be enforced.
    "PRAGMA foreign_keys=ON",
)
# The store's own connections leave checkpoints to a thread (checkpoint.py says why).
STORE_PRAGMAS = (*SQLITE_PRAGMAS, f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")


def apply_pragmas(conn: Any, pragmas: Sequence[str]) -> None:
    """Run `pragmas` on a new SQLite connection (or cursor).

    Switching a file to WAL takes an exclusive lock, and a process that finds another switching the
    same new file at that moment is told "database is locked" at once: SQLite does not wait for a
    lock it is upgrading to, lest two upgraders deadlock. So a locked pragma is tried again, for up
    to the busy timeout (three processes opening a new file together failed one time in eight).
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    for pragma in pragmas:
        while True:
            try:
                conn.execute(pragma)
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)
