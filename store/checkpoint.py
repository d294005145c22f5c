"""Checkpoints of the SQLite write-ahead log on a thread of their own, off the path of appends.

In WAL mode a commit only appends pages to the `-wal` file; a checkpoint copies them back into the
database file and syncs it. By default the commit that takes the WAL past 1,000 pages does that
work itself, so every few dozen appends one of them also waited for the copy and two fsyncs:
batches of 100 events ran at half the speed they reach without it. Here the store's connections
checkpoint only as a backstop (`BACKSTOP_PAGES`), and a `Checkpointer` thread runs a PASSIVE
checkpoint every `EVERY_COMMITS` commits, on its own connection. PASSIVE never blocks writers or
readers, and sqlite3 releases the GIL while it runs, so appends carry on meanwhile. The last
connection to close checkpoints what is left, as SQLite always does.

A checkpoint alone does not let the WAL start again from its beginning: SQLite rewinds it only
when a writer *begins* with every committed frame already copied. A continuous writer is inside
its next transaction by the time the thread's checkpoint ends, so the WAL grew to the backstop
(80 MB) before it was ever rewound, and every commit until then wrote to new pages of a growing
file: batches of 100 events ran at two thirds of the speed they reach once it is rewound. So the
first commit after each of the thread's checkpoints copies the few frames committed meanwhile
itself (`Checkpointer.committed`: a small PASSIVE checkpoint on the writer's connection, with no
transaction open), and its next transaction rewinds the WAL: it stays a few megabytes, and warm.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from contextlib import suppress

# Appends are a few to a few dozen pages each: a checkpoint every ~2,000 pages. Each of the thread's
# checkpoints costs the writer one catch-up (below, two fsyncs on its path): every 64 commits
# trades a WAL twice as large for fewer catch-ups than every 32 (docs/performance.md).
EVERY_COMMITS = 64
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
        self._caught_up = 0  # the thread's checkpoints that a writer has caught up with

    def committed(self, conn: sqlite3.Connection) -> None:
        """Count a write commit on `conn` (outside any transaction); every `every`-th asks the thread
        for a checkpoint, and the first after one of its checkpoints catches up with it."""
        done = self.checkpoints
        if done != self._caught_up:
            self._caught_up = done
            with suppress(sqlite3.Error):  # busy: the next checkpoint tries again
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
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
