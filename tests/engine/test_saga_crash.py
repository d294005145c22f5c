"""kill -9 of `stepledger run` in the middle of a saga rollback, then `stepledger resume` finishes it.

The compensation of the first-undone step has passed when the orchestrator dies; the second one is
running. Whether that second attempt outlives the crash (its worker is in its own process group) or
dies with the machine, resume must never run the passed compensation again.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from failure_scripts import cli, kill9, only_run_id, spawn_cli, wait_for, write_workstream

from stepledger.engine.execution.recovery import kill_attempt, wait_for_attempt
from stepledger.engine.paths import compensation_dir
from stepledger.events.state import fold
from stepledger.store.connect import open_store

WAIT_FOR_RELEASE = (
    "echo started >> a-starts; while [ ! -f release ]; do sleep 0.05; done; echo undo-a >> undo.txt"
)


WORKSTREAM = {
    "id": "ws-saga-crash",
    "saga": {"enabled": True},
    "steps": [
        {"id": "a", "tool": "shell", "tasks": ["true"], "compensation": {"action": WAIT_FOR_RELEASE}},
        {
            "id": "b",
            "tool": "shell",
            "tasks": ["true"],
            "depends_on": ["a"],
            "compensation": {"action": "echo undo-b >> undo.txt"},
        },
        {
            "id": "c",
            "tool": "shell",
            "tasks": ["echo 'ERROR: disk full' >&2; exit 1"],
            "depends_on": ["b"],
        },
    ],
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh log on SQLite, then on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def start_rollback(tmp_path: Path, db: str) -> subprocess.Popen[str]:
    """Start `stepledger run` and return once a's compensation is running (b's has passed)."""
    ws = write_workstream(tmp_path, WORKSTREAM)
    proc = spawn_cli("run", str(ws), cwd=tmp_path, db=db)
    try:
        wait_for(lambda: (tmp_path / "a-starts").exists(), what="a's compensation to start")
    except BaseException:
        kill9(proc)
        raise
    return proc


def crash_during_rollback(tmp_path: Path, db: str) -> tuple[str, dict]:
    """Run until a's compensation is running (b's has passed), then kill -9 the orchestrator."""
    kill9(start_rollback(tmp_path, db))
    assert (tmp_path / "undo.txt").read_text() == "undo-b\n"
    run_id = only_run_id(db, tmp_path)
    store = open_store(db)
    try:
        started = [e.payload for e in store.read_run(run_id) if e.type == "compensation.started"]
        assert fold(run_id, store.read_run(run_id)).status == "running"  # it never finished
    finally:
        store.close()
    return run_id, {p["step_id"]: p for p in started}


def saga_events(db: str, run_id: str) -> list[tuple[str, str, int, str]]:
    store = open_store(db)
    try:
        return [
            (e.type, e.payload.get("step_id", ""), e.payload.get("attempt", 0), e.payload.get("reason", ""))
            for e in store.read_run(run_id)
            if e.type.startswith("compensation.")
        ]
    finally:
        store.close()


def test_resume_adopts_a_compensation_that_outlived_the_crash(tmp_path: Path, db: str) -> None:
    run_id, _ = crash_during_rollback(tmp_path, db)
    (tmp_path / "release").touch()  # the orphaned compensation finishes while nobody watches
    resumed = cli("resume", run_id, cwd=tmp_path, db=db)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # rolled back: the run did not pass
    assert "resuming the rollback: 1/2 compensations done" in resumed.stdout
    assert "Workstream rolled back" in resumed.stdout
    assert (tmp_path / "undo.txt").read_text().splitlines() == ["undo-b", "undo-a"]
    assert (tmp_path / "a-starts").read_text().count("started") == 1  # adopted, not run again
    assert saga_events(db, run_id) == [
        ("compensation.started", "b", 1, ""),
        ("compensation.passed", "b", 1, ""),
        ("compensation.started", "a", 1, ""),
        ("compensation.passed", "a", 1, ""),
    ]
    status = json.loads(cli("status", run_id, "--json", cwd=tmp_path, db=db).stdout)
    assert status["status"] == "rolled_back"


def test_resume_reruns_a_compensation_that_died_with_the_machine(tmp_path: Path, db: str) -> None:
    run_id, started = crash_during_rollback(tmp_path, db)
    # The machine "died": the worker and the compensation's processes are gone too, with no result.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(started["a"]["pid"], signal.SIGKILL)
    comp_dir = str(compensation_dir(tmp_path / ".stepledger" / "runs" / run_id))
    kill_attempt(comp_dir, "a", 1)
    assert wait_for_attempt(comp_dir, "a", 1, timeout=10)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(comp_dir, "a.1.result.json"))
    (tmp_path / "release").touch()
    resumed = cli("resume", run_id, cwd=tmp_path, db=db)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr
    assert (tmp_path / "undo.txt").read_text().splitlines() == ["undo-b", "undo-a"]
    assert (tmp_path / "a-starts").read_text().count("started") == 2  # the lost attempt ran again
    assert saga_events(db, run_id) == [
        ("compensation.started", "b", 1, ""),
        ("compensation.passed", "b", 1, ""),
        ("compensation.started", "a", 1, ""),
        ("compensation.failed", "a", 1, "interrupted"),  # not counted against its retries
        ("compensation.started", "a", 2, ""),
        ("compensation.passed", "a", 2, ""),
    ]
    # Resuming a rolled-back run again changes nothing and runs nothing.
    again = cli("resume", run_id, cwd=tmp_path, db=db)
    assert again.returncode == 1
    assert (tmp_path / "a-starts").read_text().count("started") == 2
    assert len(saga_events(db, run_id)) == 6
    verified = cli("replay", run_id, "--verify", cwd=tmp_path, db=db)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_cancelled_rollback_is_finished_by_resume(tmp_path: Path, db: str) -> None:
    proc = start_rollback(tmp_path, db)
    run_id = only_run_id(db, tmp_path)
    try:
        cancelled = cli("cancel", run_id, "--reason", "maintenance window", cwd=tmp_path, db=db)
        assert cancelled.returncode == 0, cancelled.stderr
        assert proc.wait(timeout=30) == 1
    finally:
        if proc.poll() is None:
            kill9(proc)
    assert "rollback cancelled with 1 compensation(s) to go" in (tmp_path / "cli.out").read_text()
    status = json.loads(cli("status", run_id, "--json", cwd=tmp_path, db=db).stdout)
    assert status["status"] == "cancelled"
    (tmp_path / "release").touch()
    resumed = cli("resume", run_id, cwd=tmp_path, db=db)
    assert resumed.returncode == 1 and "Workstream rolled back" in resumed.stdout, resumed.stdout
    assert (tmp_path / "undo.txt").read_text().splitlines() == ["undo-b", "undo-a"]
    assert saga_events(db, run_id)[2:] == [
        ("compensation.started", "a", 1, ""),
        ("compensation.failed", "a", 1, "cancelled"),
        ("compensation.started", "a", 2, ""),
        ("compensation.passed", "a", 2, ""),
    ]


@pytest.mark.parametrize("nth", [1, 2, 3, 4, 6])
def test_killed_right_after_each_saga_commit_every_compensation_runs_once(
    tmp_path: Path, db: str, nth: int
) -> None:
    """Events: 1 rollback.started, 2/3 b started/passed, 4/5 a started/passed, 6 rollback.finished."""
    (tmp_path / "release").touch()
    ws = write_workstream(tmp_path, WORKSTREAM)
    killed = cli("run", str(ws), cwd=tmp_path, db=db, kill_at=f"rollback_after_append:{nth}")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    run_id = only_run_id(db, tmp_path)
    resumed = cli("resume", run_id, cwd=tmp_path, db=db)
    assert resumed.returncode == 1 and "Workstream rolled back" in resumed.stdout, resumed.stdout
    assert (tmp_path / "undo.txt").read_text().splitlines() == ["undo-b", "undo-a"]
    assert (tmp_path / "a-starts").read_text().count("started") == 1
    passed = [(sid, attempt) for t, sid, attempt, _ in saga_events(db, run_id) if t == "compensation.passed"]
    assert [sid for sid, _ in passed] == ["b", "a"]
    verified = cli("replay", run_id, "--verify", cwd=tmp_path, db=db)
    assert verified.returncode == 0, verified.stdout + verified.stderr
