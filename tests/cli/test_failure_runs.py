"""`stepledger run` with real failing commands: retries that succeed, hangs, blocked dependents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from failure_scripts import cli, fails_times, hangs, only_run_id, prints_error, write_workstream

from stepledger.store.connect import open_store

FAST_RETRY = {"strategy": "fixed", "initial_delay": 0.05}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh log on SQLite, then on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def test_a_step_that_fails_twice_passes_on_its_third_attempt(tmp_path: Path, db: str) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "ws-flaky",
            "retry": FAST_RETRY,
            "circuit_breaker": {"max_attempts": 3},
            "steps": [{"id": "flaky", "tool": "shell", "tasks": [fails_times(2, "flaky")]}],
        },
    )
    done = cli("run", str(ws), cwd=tmp_path, db=db)
    assert done.returncode == 0, done.stdout + done.stderr
    run_id = only_run_id(db, tmp_path)
    store = open_store(db)
    try:
        events = [(e.type, e.payload.get("attempt")) for e in store.read_run(run_id) if e.step_id == "flaky"]
    finally:
        store.close()
    assert [a for t, a in events if t == "step.failed"] == [1, 2]
    assert [a for t, a in events if t == "step.passed"] == [3]
    assert (tmp_path / ".count-flaky").read_text().strip() == "3"


def test_failed_step_blocks_dependents_and_independent_steps_carry_on(tmp_path: Path, db: str) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "ws-partial",
            "retry": FAST_RETRY,
            "circuit_breaker": {"max_attempts": 2},
            "steps": [
                {
                    "id": "schema",
                    "tool": "shell",
                    "tasks": [prints_error("ERROR: schema mismatch in users", 3)],
                },
                {"id": "migrate", "tool": "shell", "tasks": ["touch migrated"], "depends_on": ["schema"]},
                {"id": "report", "tool": "shell", "tasks": ["touch reported"], "depends_on": ["migrate"]},
                {"id": "docs", "tool": "shell", "tasks": ["sleep 0.3; touch docs"]},
                {"id": "lint", "tool": "shell", "tasks": ["touch linted"], "depends_on": ["docs"]},
            ],
        },
    )
    done = cli("run", str(ws), cwd=tmp_path, db=db)
    assert done.returncode == 1, done.stdout + done.stderr
    assert (tmp_path / "docs").exists() and (tmp_path / "linted").exists()
    assert not (tmp_path / "migrated").exists() and not (tmp_path / "reported").exists()
    out = done.stdout
    assert "✗ Workstream failed" in out
    assert "✗ schema: failed (exit 3) after 2 attempts" in out
    assert "⊘ migrate: blocked by schema" in out and "⊘ report: blocked by schema" in out
    status = json.loads(cli("status", "--json", cwd=tmp_path, db=db).stdout)
    by_id = {s["step_id"]: s for s in status["steps"]}
    assert status["status"] == "failed"
    assert {sid: s["state"] for sid, s in by_id.items()} == {
        "schema": "tripped",
        "migrate": "blocked",
        "report": "blocked",
        "docs": "passed",
        "lint": "passed",
    }
    logs = cli("logs", status["run_id"], "schema", cwd=tmp_path, db=db).stdout
    assert "==> schema.1.log <==" in logs and "==> schema.2.log <==" in logs  # every attempt's output is kept
    assert logs.count("\nERROR: schema mismatch in users\n") == 2


def test_a_hanging_step_times_out_and_trips(tmp_path: Path, db: str) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "ws-hang",
            "steps": [
                {"id": "hang", "tool": "shell", "tasks": [hangs()], "timeout": 0.5},
                {"id": "after", "tool": "shell", "tasks": ["true"], "depends_on": ["hang"]},
            ],
        },
    )
    done = cli("run", str(ws), cwd=tmp_path, db=db, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    status = json.loads(cli("status", "--json", cwd=tmp_path, db=db).stdout)
    by_id = {s["step_id"]: s for s in status["steps"]}
    assert by_id["hang"]["state"] == "tripped" and by_id["after"]["state"] == "blocked"
    store = open_store(db)
    try:
        reasons = [e.payload["reason"] for e in store.read_run(status["run_id"]) if e.type == "step.failed"]
    finally:
        store.close()
    assert reasons == ["timeout"]


def test_collect_diagnostics_when_a_step_fails_for_good(tmp_path: Path, db: str) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "ws-diagnose",
            "error_handling": {"on_failure": {"collect_diagnostics": True}},
            "steps": [
                {
                    "id": "deploy",
                    "tool": "shell",
                    "env": {"DEPLOY_TOKEN": "s3cr3t-value"},
                    "tasks": [prints_error("ERROR: 403 forbidden", 2)],
                },
                {"id": "ok", "tool": "shell", "tasks": ["true"]},
            ],
        },
    )
    done = cli("run", str(ws), cwd=tmp_path, db=db)
    assert done.returncode == 1, done.stdout + done.stderr
    run_id = only_run_id(db, tmp_path)
    folder = tmp_path / ".stepledger" / "runs" / run_id / "diagnostics" / "deploy"
    assert "ERROR: 403 forbidden" in (folder / "attempt-1.log").read_text()
    assert json.loads((folder / "environment.json").read_text())["step_env_keys"] == ["DEPLOY_TOKEN"]
    assert all("s3cr3t" not in p.read_text() for p in folder.iterdir())
    assert not (tmp_path / ".stepledger" / "runs" / run_id / "diagnostics" / "ok").exists()
