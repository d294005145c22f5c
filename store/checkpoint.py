"""Checkpoints of the SQLite write-ahead log on a thread of their own, off the path of appends.

In WAL mode a commit only appends pages to the `-wal` file; a checkpoint copies them back into the
database file and syncs it. By default the commit that takes the WAL past 1,000 pages does that
work itself, so every few dozen appends one of them also waited for the copy and two fsyncs:
batches of 100 events ran at half the speed they reach without it. Here the store's connections
checkpoint only as a backstop (`BACKSTOP_PAGES`), and a `Checkpointer` thread runs a PASSIVE
checkpoint every `EVERY_COMMITS` commits, on its own connection. PASSIVE never blocks writers or
readers, and sqlite3 releases the GIL while it runs, so appends carry on meanwhile. The last
connection to close checkpoints what is left, as SQLite always does.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress

EVERY_COMMITS = 32  # appends are a few to a few dozen pages each: a checkpoint every ~1,000 pages
BACKSTOP_PAGES = 20_000  # if the thread ever falls far behind, a commit checkpoints after all


class Checkpointer:
    """Runs `PRAGMA wal_checkpoint(PASSIVE)` on a daemon thread every `every` commits."""

    def __init__(self, connect: Callable[[], sqlite3.Connection], every: int = EVERY_COMMITS) -> None:
        self._connect = connect
        self._every = every
        self._commits = 0
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._finished = threading.Condition()
        self.checkpoints = 0  # completed so far (tests wait on it)

    def committed(self) -> None:
        """Count a write commit; every `every`-th asks the thread for a checkpoint."""
        self._commits += 1  # a lost increment under a race only delays one checkpoint a little
        if self._commits % self._every:
            return
        with self._lock:
            if self._stopping:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stepledger-checkpoint", daemon=True)
                self._thread.start()
        self._wanted.set()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Wait until `count` checkpoints have completed; False on timeout."""
        with self._finished:
            return self._finished.wait_for(lambda: self.checkpoints >= count, timeout)

    def _run(self) -> None:
        conn = self._connect()
        try:
            while True:
                self._wanted.wait()
                self._wanted.clear()
                if self._stopping:
                    return
                # A busy database or a full disk is the next commit's problem; the WAL stays intact.
                with suppress(sqlite3.Error):
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                with self._finished:
                    self.checkpoints += 1
                    self._finished.notify_all()
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the thread (after the checkpoint it may be running)."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wanted.set()
        if thread is not None:
            thread.join()
