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
    checkpointer = store.db._checkpointer
    assert checkpointer is not None
    # Exactly as many appends as make the store's write commits (creating the schema was one, the
    # run's start another) reach EVERY_COMMITS: the last of them asks the thread for a checkpoint,
    # and none comes after it that the checkpoint could miss.
    commits = checkpoint.EVERY_COMMITS - checkpointer._commits
    for version in range(commits):
        store.append([StreamWrite("r", "r/s", version, [StepReady()])])
    assert checkpointer.wait_for(1, timeout=30)
    # No commit came after the request, so the checkpoint copied everything, without any further
    # commit or a close. (The file alone is only a whole database when nothing was committed during
    # the checkpoint: SQLite reads the rest from the WAL, which this check ignores.)
    assert events_in_the_database_file(path) == commits + 1
    store.close()
    assert events_in_the_database_file(path) == commits + 1


def test_read_transactions_do_not_count_as_commits(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert isinstance(store, SqlEventStore)
    for _ in range(3 * checkpoint.EVERY_COMMITS):
        store.last_position()
    checkpointer = store.db._checkpointer
    assert checkpointer is not None and checkpointer._thread is None
    store.close()


def test_the_first_commit_after_a_checkpoint_catches_up_so_the_wal_starts_again(tmp_path: Path) -> None:
    # SQLite rewinds the WAL only for a writer that begins with every committed frame copied. The
    # thread's checkpoint ends while a busy writer is inside its next transaction, whose commit then
    # leaves frames uncopied; without the writer catching up, the WAL would only ever grow.
    path = tmp_path / "wal.db"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpoints under test
        return conn

    writer = connect()
    writer.execute("CREATE TABLE t (x TEXT)")
    checkpointer = checkpoint.Checkpointer(connect, every=1)
    big = [("x" * 1000,)] * 200  # ~50 pages a commit

    writer.execute("BEGIN IMMEDIATE")
    writer.executemany("INSERT INTO t VALUES (?)", big)
    checkpointer.committed(writer)  # asks the thread for a checkpoint...
    assert checkpointer.wait_for(1, timeout=30)  # ...which ends while the writer is mid-transaction
    writer.execute("COMMIT")  # frames the checkpoint did not copy
    checkpointer.committed(writer)  # the first commit after the checkpoint: catches up
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO t VALUES ('small')")
    writer.execute("COMMIT")  # begun with every frame copied: written from the WAL's start

    reader = connect()
    _, frames_in_wal, _ = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert frames_in_wal <= 5  # the small commit alone, not the ~50 pages before it
    checkpointer.close()
    for conn in (reader, writer):
        conn.close()
