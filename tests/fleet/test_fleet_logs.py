"""Attempts' logs on workers, streamed into the database while they are written (docs/workers.md):
`stepledger logs RUN STEP [--follow]` from a machine that has no file of the attempt.

Real `stepledger worker`s (fleetkit.py), a real driver, and `logs` run from another folder.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest
from fleetkit import STEPLEDGER, Fleet, driver, driver_env, query, wait_for, workstream

pytestmark = pytest.mark.postgres


def _run_id(db: str) -> str:
    return str(wait_for(lambda: query(db, "SELECT run_id FROM runs"), "the run to be recorded")[0][0])


def _logs(db: str, cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*STEPLEDGER, "logs", *args, "--db", db], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=driver_env())  # fmt: skip


class Reader:
    """Everything a process prints on stdout, as it comes (read by a thread)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.text = ""
        assert proc.stdout is not None
        stdout = proc.stdout
        self.thread = threading.Thread(target=self._read, args=(stdout,), daemon=True)
        self.thread.start()

    def _read(self, stdout: object) -> None:
        for line in stdout:  # type: ignore[attr-defined]
            self.text += line


def test_a_running_attempt_s_log_is_read_and_followed_from_another_machine(
    fleet: Fleet, tmp_path: Path
) -> None:
    m1 = fleet.start("m1")
    drv, elsewhere = tmp_path / "driver", tmp_path / "elsewhere"
    drv.mkdir()
    elsewhere.mkdir()
    go1, go2 = tmp_path / "go1", tmp_path / "go2"
    task = (f"echo line-1; echo line-2; while [ ! -e {go1} ]; do sleep 0.05; done; echo middle;"
            f" while [ ! -e {go2} ]; do sleep 0.05; done; echo the-end")  # fmt: skip
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": [task]}])
    run = driver(fleet.db, ws, drv)
    try:
        run_id = _run_id(fleet.db)
        local = m1 / ".stepledger" / "runs" / run_id / "x.1.log"

        def printed() -> str:
            shown = subprocess.run([*STEPLEDGER, "logs", run_id, "x", "--db", fleet.db], cwd=elsewhere,
                                   capture_output=True, text=True, env=driver_env(), timeout=60)  # fmt: skip
            assert shown.returncode == 0, shown.stderr
            return shown.stdout

        # Read while it runs, from a folder with no file of it (the worker's is elsewhere).
        wait_for(lambda: "\nline-2\n" in printed(), "the log in the database")
        assert not (elsewhere / ".stepledger").exists() and local.is_file()
        follow = _logs(fleet.db, elsewhere, run_id, "x", "--follow")
        try:
            seen = Reader(follow)
            wait_for(lambda: "\nline-2\n" in seen.text, "follow to print what was there")
            go1.touch()
            wait_for(lambda: "\nmiddle\n" in seen.text, "follow to print a line written after it started")
            assert follow.poll() is None  # still following: the attempt runs on
            assert "\nthe-end\n" not in seen.text
            go2.touch()
            assert follow.wait(timeout=30) == 0  # it ends by itself when the attempt ends
            seen.thread.join(timeout=10)
            assert follow.stderr is not None
            assert "-- x attempt 1 ended on m1: passed" in follow.stderr.read()
        finally:
            follow.kill()
            follow.wait()
            for pipe in (follow.stdout, follow.stderr):
                if pipe is not None:
                    pipe.close()
        # What it printed is the worker's log, whole and in order.
        assert seen.text == local.read_text()
        assert seen.text.index("\nline-2\n") < seen.text.index("\nmiddle\n") < seen.text.index("\nthe-end\n")
    finally:
        go1.touch()
        go2.touch()
        out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out


def test_a_log_over_the_cap_keeps_its_end_and_says_how_much_was_dropped(fleet: Fleet, tmp_path: Path) -> None:
    cap = 4096
    # The worker's own file is cut too once the attempt ends (its middle: STEPLEDGER_MAX_LOG_BYTES,
    # over 1 MiB past the cap): the database's copy goes on from the cut file's end.
    m1 = fleet.start("m1", env_extra={"STEPLEDGER_FLEET_LOG_BYTES": str(cap),
                                      "STEPLEDGER_MAX_LOG_BYTES": "65536"})  # fmt: skip
    drv = tmp_path / "driver"
    drv.mkdir()
    # Output in bursts, so that the streamer copies (and drops) several times while it runs.
    task = "for i in 1 2 3 4; do seq $((i * 50000 - 49999)) $((i * 50000)); sleep 0.6; done; echo THE END"
    ws = workstream(drv / "ws.json", [{"id": "x", "tasks": [task]}])
    run = driver(fleet.db, ws, drv)
    out, _ = run.communicate(timeout=120)
    assert run.returncode == 0, out
    run_id = _run_id(fleet.db)
    kept = query(fleet.db, "SELECT sum(length(data)) FROM stepledger_fleet_log WHERE run_id = %s"
                           " AND step_id = %s", run_id, "x")  # fmt: skip
    assert kept == [(cap,)]
    shown = subprocess.run([*STEPLEDGER, "logs", run_id, "x", "--db", fleet.db], cwd=tmp_path,
                           capture_output=True, text=True, env=driver_env(), timeout=60)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    first, rest = shown.stdout.split("\n", 1)
    assert first.startswith("[stepledger: the first ") and "stay on the worker's machine]" in first
    dropped = int(first.split("the first ", 1)[1].split(" bytes", 1)[0].replace(",", ""))
    assert dropped > 1_200_000  # everything seq printed but the end
    local = (m1 / ".stepledger" / "runs" / run_id / "x.1.log").read_bytes()
    assert b"bytes of output cut here" in local  # the worker's file was cut...
    assert rest.encode() == local[-cap:]  # ...and the database keeps the same end
    assert rest.rstrip().splitlines()[-2:][0] == "THE END"
    assert "cut here" not in shown.stdout  # nothing of the end was lost in the cut


def test_a_chunk_written_again_after_a_lost_commit_changes_nothing_but_what_grew(
    pg_url: str, tmp_path: Path
) -> None:
    """The worker's connection can drop after COMMIT reached the server: it then writes the same
    chunks again (its memory says they are not written), from the same place, with what the file
    gained meanwhile. The copy in the database must be the file's end all the same."""
    from collections import deque

    import psycopg

    from stepledger.engine.fleet import schema
    from stepledger.engine.fleet.log_stream import AttemptLog
    from stepledger.engine.fleet.reading import FleetLog
    from stepledger.engine.fleet.settings import conninfo

    path = tmp_path / "x.1.log"
    key = ("run-1", "x", 1)
    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
        schema.install(conn)
        log = AttemptLog(key, str(path), cap=100)
        path.write_bytes(b"a" * 80)
        assert log.copy(conn)
        before = {"offset": log.offset, "written": log.written, "seq": log.seq, "kept": deque(log.kept)}
        with path.open("ab") as f:
            f.write(b"b" * 50)
        assert log.copy(conn)  # drops 30 bytes: cuts the first chunk
        vars(log).update(before)  # ...but its answer was lost: the worker does it again
        with path.open("ab") as f:
            f.write(b"c" * 10)
        assert log.copy(conn)
        data = b"".join(FleetLog(conn, key).chunks())
    assert data.endswith(b"\n" + (b"a" * 40 + b"b" * 50 + b"c" * 10))
    assert data.startswith(b"[stepledger: the first 40 bytes of this log are not kept")


def test_the_log_s_end_commits_with_the_outcome_and_again_after_a_lost_connection(
    pg_url: str, tmp_path: Path
) -> None:
    """An attempt's end writes the rest of its log in the transaction that records its outcome: a
    reader sees both or neither, and after a database error both are written again, the log's end
    once."""
    import psycopg

    from stepledger.engine.fleet import schema
    from stepledger.engine.fleet.log_stream import LogStreamer
    from stepledger.engine.fleet.reading import FleetLog
    from stepledger.engine.fleet.settings import conninfo

    path = tmp_path / "x.1.log"
    key = ("run-settle", "x", 1)
    said: list[str] = []
    streamer = LogStreamer(conninfo(pg_url), 1000, said.append)
    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn, \
            psycopg.connect(conninfo(pg_url), autocommit=True) as reader:  # fmt: skip
        schema.install(conn)
        streamer.watch(key, str(path))
        path.write_bytes(b"$ make\nbuilt\nexit 0 in 0.01s\n")

        def lost(_: psycopg.Connection) -> bool:
            raise psycopg.OperationalError("the connection went away")

        with pytest.raises(psycopg.OperationalError):
            streamer.settle(conn, key, lost)
        assert b"".join(FleetLog(reader, key).chunks()) == b""  # rolled back with the outcome

        def record(_: psycopg.Connection) -> bool:
            # Inside the transaction: nobody else sees the log's end before the outcome commits.
            assert b"".join(FleetLog(reader, key).chunks()) == b""
            return True

        assert streamer.settle(conn, key, record) is True
        assert b"".join(FleetLog(reader, key).chunks()) == path.read_bytes()
        rows = query(pg_url, "SELECT count(*) FROM stepledger_fleet_log WHERE run_id = %s", key[0])
        assert rows == [(1,)] and said == []


def test_a_short_log_s_end_and_the_outcome_are_one_statement_a_longer_one_s_one_transaction(
    pg_url: str, tmp_path: Path
) -> None:
    """The usual end of an attempt (the rest of its log is one chunk, nothing dropped) is written by
    the outcome's own statement, in autocommit; a longer end takes the pipelined transaction.
    Either way a settled attempt has its whole log, and a fenced attempt's outcome is refused."""
    from collections.abc import Sequence
    from typing import Any

    import psycopg

    from stepledger.engine.fleet import ledger, schema
    from stepledger.engine.fleet.log_stream import LogStreamer
    from stepledger.engine.fleet.reading import FleetLog
    from stepledger.engine.fleet.settings import conninfo

    with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:
        schema.install(conn)
        ways: list[str] = []

        def settle(key: tuple[str, str, int], content: bytes, cap: int = 1000) -> bool:
            streamer = LogStreamer(conninfo(pg_url), cap, lambda line: None)
            path = tmp_path / f"{key[1]}.{key[2]}.log"
            streamer.watch(key, str(path))
            path.write_bytes(content)

            def record(c: psycopg.Connection) -> bool:
                ways.append("transaction")
                return ledger.record(c, key, "w1", {"passed": True})

            def record_along(c: psycopg.Connection, along: tuple[str, Sequence[Any]]) -> bool:
                ways.append("one statement")
                return ledger.record(c, key, "w1", {"passed": True}, along)

            return streamer.settle(conn, key, record, record_along)

        short = ("run-one", "short", 1)
        assert ledger.claim(conn, short, "m1", "w1", 1)
        assert settle(short, b"$ true\nexit 0 in 0.00s\n") is True
        assert ways == ["one statement"]
        assert b"".join(FleetLog(conn, short).chunks()) == b"$ true\nexit 0 in 0.00s\n"
        row = ledger.attempt(conn, short)
        assert row is not None and row.state == "done" and row.result == {"passed": True}

        fenced = ("run-one", "fenced", 1)
        assert ledger.claim(conn, fenced, "m1", "w1", 2)
        assert ledger.fence(conn, fenced, {"passed": False, "reason": "interrupted"})
        assert settle(fenced, b"late\n") is False  # the fence stands
        row = ledger.attempt(conn, fenced)
        assert row is not None and row.result is not None and row.result["reason"] == "interrupted"

        long = ("run-one", "long", 1)
        assert ledger.claim(conn, long, "m1", "w1", 3)
        content = b"x" * (300 << 10) + b"THE END\n"  # more than one chunk (READ_CHUNK) at once
        assert settle(long, content, cap=1 << 20) is True
        assert ways[-1] == "transaction"
        assert b"".join(FleetLog(conn, long).chunks()) == content
