"""`stepledger events` and `stepledger db ...` through the installed command, as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from dbs import pg_admin_url
from sqlalchemy import text
from sqlalchemy.engine import make_url

from stepledger.events import RunStarted, StepPassed, StepReady, StepStarted, StreamWrite
from stepledger.store.connect import engine_for, open_store

STEPLEDGER = str(Path(sys.executable).with_name("stepledger"))


def run(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "STEPLEDGER_DB"}
    environment.update(env or {})
    return subprocess.run(
        [STEPLEDGER, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=environment
    )


def fill(url: str) -> None:
    store = open_store(url)
    started = RunStarted(
        workstream_id="ws", workstream={"id": "ws"}, workstream_hash="h", source_path="ws.json", workdir="."
    )
    store.append([StreamWrite("r1", "r1", 0, [started]), StreamWrite("r2", "r2", 0, [started])])
    store.append(
        [StreamWrite("r1", "r1/a", 0, [StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1)])]
    )
    store.append([StreamWrite("r1", "r1/a", 2, [StepPassed(attempt=1, started_at=1.0, finished_at=2.0)])])
    store.append([StreamWrite("r2", "r2/a", 0, [StepReady()])])
    store.close()


def test_events_as_json_lines_csv_and_a_table(sqlite_url: str) -> None:
    fill(sqlite_url)
    result = run("events", "--json", "--db", sqlite_url)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["position"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert (
        records[3]["type"] == "step.started"
        and records[3]["step"] == "a"
        and records[3]["payload"]["pid"] == 1
    )
    rows = list(csv.DictReader(io.StringIO(run("events", "r1", "--csv", "--db", sqlite_url).stdout)))
    assert [r["type"] for r in rows] == ["run.started", "step.ready", "step.started", "step.passed"]
    assert json.loads(rows[2]["payload"])["attempt"] == 1
    table = run("events", "r1", "--db", sqlite_url, env={"COLUMNS": "200"})
    assert table.returncode == 0 and "step.passed" in table.stdout and "r2" not in table.stdout
    # Piped with no width given: one line per event, its details whole (not folded into a column
    # a few characters wide).
    environment = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    piped = subprocess.run([STEPLEDGER, "events", "r1", "--db", sqlite_url], capture_output=True, text=True,
                           timeout=60, env=environment)  # fmt: skip
    (passed,) = [line for line in piped.stdout.splitlines() if "step.passed" in line]
    assert "attempt=1" in passed and "finished_at=2.0" in passed


def test_events_filters(sqlite_url: str) -> None:
    fill(sqlite_url)

    def positions(*args: str) -> list[int]:
        result = run("events", "--json", *args, env={"STEPLEDGER_DB": sqlite_url})  # the env var works too
        assert result.returncode == 0, result.stderr
        return [json.loads(line)["position"] for line in result.stdout.splitlines()]

    assert positions("--step", "a") == [3, 4, 5, 6]
    assert positions("r1", "--step", "a", "--type", "step.ready", "--type", "step.passed") == [3, 5]
    assert positions("--since", "4") == [5, 6]
    assert positions("--type", "run.started") == [1, 2]
    missing = run("events", "nope", "--db", sqlite_url)
    assert missing.returncode == 2 and "no run 'nope'" in missing.stderr


def _line_within(stream: Any, seconds: float, what: str) -> str:
    ready, _, _ = select.select([stream], [], [], seconds)
    assert ready, f"no {what} within {seconds} s"
    return str(stream.readline())


def test_events_follow_prints_new_events_as_they_come(sql_url: str) -> None:
    fill(sql_url)
    command = [STEPLEDGER, "events", "r1", "--json", "--follow", "--since", "4", "--db", sql_url]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as follower:
        try:
            assert follower.stdout is not None
            # The scan's event first: the follower has read the log's head before it, so whatever
            # is appended from here on is printed by the live part.
            assert json.loads(_line_within(follower.stdout, 20, "scanned event"))["position"] == 5
            store = open_store(sql_url)
            store.append([StreamWrite("r2", "r2/a", 1, [StepReady()])])  # another run: filtered out
            store.append([StreamWrite("r1", "r1/b", 0, [StepReady()])])
            store.close()
            assert json.loads(_line_within(follower.stdout, 20, "new event"))["stream"] == "r1/b"
        finally:
            follower.terminate()
            follower.wait(10)


@pytest.mark.postgres
def test_events_follow_rides_out_a_connection_the_server_cut(pg_url: str) -> None:
    fill(pg_url)
    command = [STEPLEDGER, "events", "r1", "--json", "--follow", "--since", "4", "--db", pg_url]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as follower:
        try:
            assert follower.stdout is not None and follower.stderr is not None
            _line_within(follower.stdout, 20, "scanned event")  # it is polling now
            database = make_url(pg_url).database
            with psycopg.connect(pg_admin_url("postgres").replace("+psycopg", ""), autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()",
                    (database,),
                )
            assert "out of reach" in _line_within(follower.stderr, 20, "outage notice")
            assert "is back" in _line_within(follower.stderr, 20, "notice of the database's return")
            store = open_store(pg_url)
            store.append([StreamWrite("r1", "r1/b", 0, [StepReady()])])
            store.close()
            assert json.loads(_line_within(follower.stdout, 20, "new event"))["stream"] == "r1/b"
            assert follower.poll() is None  # still following
        finally:
            follower.terminate()
            follower.wait(10)


def test_db_commands(tmp_path: Path) -> None:
    history = run("db", "history")
    assert history.returncode == 0 and "(head)" in history.stdout and "<base> -> 0001" in history.stdout
    assert run("db", "current", cwd=tmp_path).stdout.strip() == "(none) (empty)"
    upgraded = run("db", "upgrade", cwd=tmp_path)  # the default database: .stepledger/ledger.db
    assert upgraded.returncode == 0 and "upgraded an empty database" in upgraded.stdout
    assert (tmp_path / ".stepledger" / "ledger.db").is_file()
    current = json.loads(run("db", "current", "--json", cwd=tmp_path).stdout)
    assert current["state"] == "head" and current["revision"] == current["head"]
    assert run("db", "upgrade", cwd=tmp_path).stdout.startswith("already at")
    fill(f"sqlite:///{tmp_path / '.stepledger' / 'ledger.db'}")
    rebuilt = run("db", "rebuild", cwd=tmp_path)
    assert rebuilt.returncode == 0 and "2 run(s) from 6 event(s)" in rebuilt.stdout


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:1/stepledger", "Connection refused"),
        (
            "postgresql+psycopg://nobody_here:secret@127.0.0.1:5432/postgres",
            'role "nobody_here" does not exist',
        ),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/no_such_database_here", "does not exist"),
        ("sqlite:////no/such/folder/ledger.db", "does not exist"),
        ("nosuchdialect://x/y", "unsupported database URL"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_exit_2(url: str, fragment: str) -> None:
    for command in (["events"], ["db", "current"], ["db", "upgrade"]):
        result = run(*command, "--db", url)
        assert_one_line_error(result, fragment)
        assert "secret" not in result.stderr  # the password is never printed


def test_a_schema_newer_than_stepledger_is_one_line_exit_2(sqlite_url: str) -> None:
    open_store(sqlite_url).close()
    engine = engine_for(sqlite_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    assert_one_line_error(run("events", "--db", sqlite_url), "9999_future", "upgrade stepledger")
    assert_one_line_error(run("db", "upgrade", "--db", sqlite_url), "9999_future")
    assert "newer than this stepledger" in run("db", "current", "--db", sqlite_url).stdout
