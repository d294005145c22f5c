"""`stepledger retry | skip | mark-passed` as subprocesses, on SQLite and PostgreSQL."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import pytest
from failure_scripts import cli, only_run_id, spawn_cli, wait_for, write_workstream

from stepledger.store.connect import open_store

NEEDS_FIX = "test -f fixed || { echo 'ERROR: config missing' >&2; exit 4; }"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh log on SQLite, then on PostgreSQL."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def chain(first_task: str = NEEDS_FIX, **extra: Any) -> dict[str, Any]:
    """a → b → c, plus an independent d."""
    return {
        "id": "ws-operator",
        "steps": [
            {"id": "a", "tool": "shell", "tasks": [first_task]},
            {"id": "b", "tool": "shell", "tasks": ["echo b >> done.txt"], "depends_on": ["a"]},
            {"id": "c", "tool": "shell", "tasks": ["echo c >> done.txt"], "depends_on": ["b"]},
            {"id": "d", "tool": "shell", "tasks": ["echo d >> done.txt"]},
        ],
        **extra,
    }


def failed_run(tmp_path: Path, db: str, data: dict[str, Any] | None = None) -> str:
    ws = write_workstream(tmp_path, data or chain())
    done = cli("run", str(ws), cwd=tmp_path, db=db)
    assert done.returncode == 1, done.stdout + done.stderr
    return only_run_id(db, tmp_path)


def states(tmp_path: Path, db: str, run_id: str) -> dict[str, str]:
    report = json.loads(cli("status", run_id, "--json", cwd=tmp_path, db=db).stdout)
    return {"run": report["status"], **{s["step_id"]: s["state"] for s in report["steps"]}}


def step_events(db: str, run_id: str, type_: str) -> list[tuple[str, dict[str, Any]]]:
    store = open_store(db)
    try:
        return [(e.step_id or "", e.payload) for e in store.read_run(run_id) if e.type == type_]
    finally:
        store.close()


def test_retry_gives_a_tripped_step_a_new_attempt_and_resumes(tmp_path: Path, db: str) -> None:
    run_id = failed_run(tmp_path, db)
    assert states(tmp_path, db, run_id) == {
        "run": "failed",
        "a": "tripped",
        "b": "blocked",
        "c": "blocked",
        "d": "passed",
    }
    (tmp_path / "fixed").touch()
    done = cli("retry", run_id, "a", "--reason", "config restored", cwd=tmp_path, db=db)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"step a of run {run_id} will be retried; unblocked: b, c" in done.stdout
    assert "✓ Workstream complete" in done.stdout
    assert states(tmp_path, db, run_id) == {
        "run": "passed",
        "a": "passed",
        "b": "passed",
        "c": "passed",
        "d": "passed",
    }
    requested = step_events(db, run_id, "step.retry_requested")
    assert requested[0] == ("a", {"by": getpass.getuser(), "reason": "config restored"})
    assert sorted(sid for sid, _ in requested[1:]) == ["b", "c"]
    assert all(p["reason"] == "a was retried" for _, p in requested[1:])
    assert (tmp_path / "done.txt").read_text().splitlines() == ["d", "b", "c"]  # d never ran twice
    verified = cli("replay", run_id, "--verify", cwd=tmp_path, db=db)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_illegal_actions_are_one_line_and_exit_2(tmp_path: Path, db: str) -> None:
    run_id = failed_run(tmp_path, db)
    for args, expected in [
        (("retry", run_id, "d"), "cannot retry step d of run"),
        (("skip", run_id, "d"), "cannot skip step d of run"),
        (("mark-passed", run_id, "d"), "cannot mark passed step d of run"),
        (("retry", run_id, "nope"), "has no step 'nope'"),
        (("skip", "run-missing", "a"), "no run 'run-missing'"),
    ]:
        done = cli(*args, cwd=tmp_path, db=db)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert "it is passed" in cli("retry", run_id, "d", cwd=tmp_path, db=db).stderr
    assert not step_events(db, run_id, "step.retry_requested")


@pytest.mark.parametrize(
    "action, event, final",
    [("skip", "step.skipped", "skipped"), ("mark-passed", "step.marked_passed", "passed")],
)
def test_skip_and_mark_passed_let_dependents_run(
    tmp_path: Path, db: str, action: str, event: str, final: str
) -> None:
    run_id = failed_run(tmp_path, db)
    done = cli(action, run_id, "a", "--reason", "done by hand", cwd=tmp_path, db=db)
    assert done.returncode == 0, done.stdout + done.stderr
    assert states(tmp_path, db, run_id) == {
        "run": "passed",
        "a": final,
        "b": "passed",
        "c": "passed",
        "d": "passed",
    }
    assert step_events(db, run_id, event) == [("a", {"by": getpass.getuser(), "reason": "done by hand"})]
    log = (tmp_path / ".stepledger" / "runs" / run_id / "orchestrator.log").read_text()
    assert (
        f"[a] {'Skipped' if action == 'skip' else 'Marked passed'} by {getpass.getuser()}: done by hand"
        in log
    )
    # Now passed (or skipped): the same action again is refused.
    again = cli(action, run_id, "a", cwd=tmp_path, db=db)
    assert again.returncode == 2 and "cannot" in again.stderr


def test_no_resume_only_records(tmp_path: Path, db: str) -> None:
    run_id = failed_run(tmp_path, db)
    done = cli("retry", run_id, "a", "--no-resume", cwd=tmp_path, db=db)
    assert done.returncode == 0, done.stderr
    assert f"stepledger resume {run_id}" in done.stdout
    assert states(tmp_path, db, run_id) == {
        "run": "failed",
        "a": "pending",
        "b": "pending",
        "c": "pending",
        "d": "passed",
    }
    # Not fixed: the retried step trips again and blocks its dependents again.
    resumed = cli("resume", run_id, cwd=tmp_path, db=db)
    assert resumed.returncode == 1
    assert states(tmp_path, db, run_id)["b"] == "blocked"


def test_a_live_orchestrator_is_woken_and_carries_on(tmp_path: Path, db: str) -> None:
    data = chain()
    data["steps"].append({"id": "long", "tool": "shell", "tasks": ["while [ ! -f go ]; do sleep 0.05; done"]})
    ws = write_workstream(tmp_path, data)
    proc = spawn_cli("run", str(ws), cwd=tmp_path, db=db)
    try:
        wait_for(lambda: (tmp_path / "done.txt").exists(), what="d to pass")
        run_id = only_run_id(db, tmp_path)
        wait_for(lambda: states(tmp_path, db, run_id)["b"] == "blocked", what="b to be blocked")
        done = cli("skip", run_id, "a", "--reason", "not needed today", cwd=tmp_path, db=db)
        assert done.returncode == 0, done.stderr
        assert f"(the orchestrator, pid {proc.pid}, is taking it up)" in done.stdout
        wait_for(lambda: states(tmp_path, db, run_id)["c"] == "passed", what="the live run to run b and c")
        assert proc.poll() is None  # the same orchestrator did it, and is still waiting for `long`
        (tmp_path / "go").touch()
        assert proc.wait(timeout=30) == 0, (tmp_path / "cli.out").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert states(tmp_path, db, run_id)["run"] == "passed"


def test_a_rolled_back_run_cannot_be_retried(tmp_path: Path, db: str) -> None:
    data = chain(saga={"enabled": True})
    data["steps"][3]["compensation"] = {"action": "echo undo-d >> undo.txt"}
    run_id = failed_run(tmp_path, db, data)
    assert states(tmp_path, db, run_id)["run"] == "rolled_back"
    done = cli("retry", run_id, "a", cwd=tmp_path, db=db)
    assert done.returncode == 2 and "rolled back (saga)" in done.stderr
