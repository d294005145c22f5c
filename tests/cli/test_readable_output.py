"""Output that reads well, through the installed command line: one event shape for `run --json` and
`events --json`, one row format for `events` and `events --follow`, `audit why --csv` values,
piped tables as wide as their rows, and the failure audit in words."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import select
import subprocess
from pathlib import Path

from failure_scripts import STEPLEDGER, write_workstream

from stepledger.events import StepReady, StreamWrite
from stepledger.store.connect import open_store

LONG_STEP = "a-step-whose-id-is-far-longer-than-eighty-columns-allow-for-in-a-table-row-of-runs-and-status"


def piped(*args: str, cwd: Path, db: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`stepledger ARGS` with stdout a pipe and no COLUMNS, as `stepledger runs | less` runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "STEPLEDGER_DB")}
    env.update(STEPLEDGER_DB=db, **extra)
    return subprocess.run([STEPLEDGER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def failing_run(tmp_path: Path, db: str) -> str:
    """A run whose step `a` prints a line, an error and fails three times (exit 3); returns its id."""
    write_workstream(tmp_path, {
        "id": "ws-readable", "circuit_breaker": {"max_attempts": 3},
        "retry": {"strategy": "fixed", "initial_delay": 0.05},
        "steps": [
            {"id": "a", "tool": "shell", "tasks": ["echo hello; echo 'ERROR: disk on fire' >&2; exit 3"]},
            {"id": LONG_STEP, "tool": "shell", "tasks": ["true"]},
        ],
    })  # fmt: skip
    done = piped("run", "ws.json", "--json", cwd=tmp_path, db=db)
    assert done.returncode == 1, done.stderr
    return str(json.loads(done.stdout.splitlines()[0])["run_id"])


def test_run_json_and_events_json_print_events_in_one_shape(tmp_path: Path, sqlite_url: str) -> None:
    write_workstream(tmp_path, {"id": "ws", "steps": [{"id": "a", "tool": "shell", "tasks": ["true"]}]})
    ran = piped("run", "ws.json", "--json", cwd=tmp_path, db=sqlite_url)
    assert ran.returncode == 0, ran.stderr
    printed = [json.loads(line) for line in ran.stdout.splitlines()]
    run_id = printed[0]["run_id"]
    listed = [
        json.loads(line)
        for line in piped("events", run_id, "--json", cwd=tmp_path, db=sqlite_url).stdout.splitlines()
    ]
    assert printed == listed  # the same keys, values and time format, event by event
    first = printed[0]
    assert set(first) == {"position", "recorded_at", "run_id", "step", "stream", "version", "type",
                          "schema_version", "event_id", "payload"}  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["recorded_at"])
    assert len({e["event_id"] for e in printed}) == len(printed)


class Lines:
    """Lines of a pipe as they come, each awaited for at most a given time (select on the raw fd:
    a buffered reader would hold lines select cannot see)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buffer = fd, b""

    def next(self, seconds: float) -> str:
        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], seconds)
            assert ready, f"no line within {seconds} s"
            chunk = os.read(self.fd, 65536)
            assert chunk, "the pipe closed"
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def test_events_follow_prints_rows_in_the_table_format(tmp_path: Path, sqlite_url: str) -> None:
    run_id = failing_run(tmp_path, sqlite_url)
    table = piped("events", run_id, cwd=tmp_path, db=sqlite_url).stdout.splitlines()
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    command = [STEPLEDGER, "events", run_id, "--follow", "--db", sqlite_url]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env) as follower:
        try:
            assert follower.stdout is not None
            lines = Lines(follower.stdout.fileno())
            scanned = [lines.next(30) for _ in table]
            assert scanned == table  # the scan prints the table as it is
            store = open_store(sqlite_url)
            store.append([StreamWrite(run_id, f"{run_id}/late", 0, [StepReady()])])
            store.close()
            new = lines.next(30)
        finally:
            follower.terminate()
            follower.wait(10)
    header, last = table[0], table[-1]
    # The followed row has the scanned rows' columns: each starts where its header starts.
    for column in ("recorded (UTC)", "run", "type"):
        at = header.index(column)
        assert new[at - 1] == " " and new[at] != " " and last[at] != " ", (column, new, last)
    assert new.split()[4:7:2] == ["late", "step.ready"]  # step and type, in their columns
    assert new.index("step.ready") == last.index("run.finished")


def test_audit_why_csv_writes_values(tmp_path: Path, sqlite_url: str) -> None:
    run_id = failing_run(tmp_path, sqlite_url)
    done = piped("audit", "why", run_id, "a", "--csv", cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    started = next(r for r in rows if r["type"] == "step.started")
    assert json.loads(started["payload"])["attempt"] == 1  # JSON, not a Python dict's repr
    assert "'" not in started["payload"] and "True" not in started["payload"]
    assert float(started["at"]) > 0


def test_piped_tables_are_as_wide_as_their_rows(tmp_path: Path, sqlite_url: str) -> None:
    run_id = failing_run(tmp_path, sqlite_url)
    for args in (["runs"], ["status", run_id], ["audit", "timeline", run_id]):
        done = piped(*args, cwd=tmp_path, db=sqlite_url)
        assert done.returncode == 0, (args, done.stderr)
        if args[0] != "runs":
            assert LONG_STEP in done.stdout, (args, done.stdout)  # whole, on one line
        assert run_id in done.stdout, (args, done.stdout)
        assert "…" not in done.stdout and "\x1b[" not in done.stdout, (args, done.stdout)  # no colour piped
        widest = max(len(line) for line in done.stdout.splitlines())
        assert widest > 80 or args == ["runs"], (args, done.stdout)
    runs = piped("runs", cwd=tmp_path, db=sqlite_url).stdout
    (row,) = [line for line in runs.splitlines() if run_id in line]
    assert "ws-readable" in row and "failed" in row  # not folded into "ws-r…" / "fai…"


def test_failure_audit_shows_the_error_and_the_steps_last_line(tmp_path: Path, sqlite_url: str) -> None:
    run_id = failing_run(tmp_path, sqlite_url)
    failures = piped("audit", "failures", cwd=tmp_path, db=sqlite_url)
    assert failures.returncode == 0, failures.stderr
    (row,) = [line for line in failures.stdout.splitlines() if "ws-readable" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells[:4] == ["ws-readable", "a", "exit 3", "hello | ERROR: disk on fire"]
    assert cells[-1] == "ERROR: disk on fire"  # the step's own last line, not "exit 3 in 0.01s"
    assert "$ echo" not in failures.stdout and " in 0.0" not in failures.stdout
    retries = piped("audit", "retries", cwd=tmp_path, db=sqlite_url)
    (row,) = [line for line in retries.stdout.splitlines() if run_id in line]
    assert "exit 3: hello | ERROR: disk on fire" in row
    assert "exit_code" not in row  # the reason once, in words
    # Scripts keep the raw signature next to the words.
    (group,) = [
        json.loads(line)
        for line in piped("audit", "failures", "--json", cwd=tmp_path, db=sqlite_url).stdout.splitlines()
    ]
    assert group["error_signature"].startswith("exit_code:3:$ echo hello")
    assert (group["failure"], group["last_output"]) == ("exit 3", "ERROR: disk on fire")
