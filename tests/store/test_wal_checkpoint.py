"""The SQLite WAL is checkpointed by the store's own thread, not by the commits of appends."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from stepledger.events import RunStarted, StepReady, StreamWrite
from stepledger.store import checkpoint
from stepledger.store.connect import open_store
from stepledger.store.sql import SqlEventStore


def events_in_the_database_file(path: Path) -> int:
    """Events the main database file holds, ignoring the WAL (what checkpoints have copied)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:  # not even the tables have been copied yet
        return 0
    finally:
        conn.close()


def test_appends_leave_checkpoints_to_the_thread_which_copies_them_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SqlEventStore)
    started = RunStarted(workstream_id="w", workstream={}, workstream_hash="h", source_path="-", workdir=".")
    store.append([StreamWrite("r", "r", 0, [started])])
    assert events_in_the_database_file(path) == 0  # a commit alone does not checkpoint
    commits = 2 * checkpoint.EVERY_COMMITS
    for version in range(commits):
        store.append([StreamWrite("r", "r/s", version, [StepReady()])])
    checkpointer = store.db._checkpointer
    # Requests made while the thread is still busy (or still starting) merge into one checkpoint,
    # which copies everything committed so far: wait for the first.
    assert checkpointer is not None and checkpointer.wait_for(1, timeout=30)
    copied = events_in_the_database_file(path)
    assert checkpoint.EVERY_COMMITS <= copied <= commits + 1
    store.close()  # stops the thread; the last connection's close checkpoints the rest
    assert events_in_the_database_file(path) == commits + 1


def test_read_transactions_do_not_count_as_commits(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert isinstance(store, SqlEventStore)
    for _ in range(3 * checkpoint.EVERY_COMMITS):
        store.last_position()
    checkpointer = store.db._checkpointer
    assert checkpointer is not None and checkpointer._thread is None
    store.close()
