"""Operator actions in-process: `engine.operator` functions on runs driven by `start_run` / `resume_run`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from failure_scripts import fails_times, prints_error, write_workstream

from stepledger.engine.run.lifecycle import StepLifecycle
from stepledger.engine.session.interventions import IllegalStepAction, mark_step_passed, retry_step, skip_step
from stepledger.engine.session.runs import resume_run, start_run
from stepledger.engine.workstream import load_workstream
from stepledger.events import (
    Event,
    RetryScheduled,
    StepBlocked,
    StepFailed,
    StepMarkedPassed,
    StepReady,
    StepRetryRequested,
    StepSkipped,
    StepStarted,
    StepTripped,
    StreamWrite,
    step_stream,
)
from stepledger.events.state import fold
from stepledger.store.connect import open_store
from stepledger.store.port import EventStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """A fresh store on SQLite, then on PostgreSQL."""
    store = open_store(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))
    yield store
    store.close()


def diamond(tmp_path: Path, first: str) -> dict:
    """top → (left, right) → bottom; `top` runs `first`."""
    return {
        "id": "ws-diamond",
        "steps": [
            {"id": "top", "tool": "shell", "tasks": [first]},
            {"id": "left", "tool": "shell", "tasks": ["true"], "depends_on": ["top"]},
            {"id": "right", "tool": "shell", "tasks": ["true"], "depends_on": ["top"]},
            {"id": "bottom", "tool": "shell", "tasks": ["true"], "depends_on": ["left", "right"]},
        ],
    }


def test_retry_resets_the_breaker_and_the_resumed_run_passes(db: EventStore, tmp_path: Path) -> None:
    ws = load_workstream(write_workstream(tmp_path, diamond(tmp_path, fails_times(1, "top"))))
    first = start_run(db, ws, workdir=tmp_path)
    assert first.outcome == "failed"
    assert first.run.steps["top"].counted_failures == 1
    action = retry_step(db, first.run_id, "top", reason="flaky network")
    assert action.unblocked == ("bottom", "left", "right") and action.woke_pid is None
    run = fold(first.run_id, db.read_run(first.run_id))
    assert run.steps["top"].state == "pending" and run.steps["top"].counted_failures == 0
    assert resume_run(db, first.run_id).outcome == "passed"


def test_skip_counts_as_done_for_dependents(db: EventStore, tmp_path: Path) -> None:
    ws = load_workstream(write_workstream(tmp_path, diamond(tmp_path, prints_error("ERROR: nope"))))
    first = start_run(db, ws, workdir=tmp_path)
    skip_step(db, first.run_id, "top", reason="optional")
    again = resume_run(db, first.run_id)
    assert again.outcome == "passed"
    assert {sid: s.state for sid, s in again.run.steps.items()} == {
        "top": "skipped",
        "left": "passed",
        "right": "passed",
        "bottom": "passed",
    }


@pytest.mark.parametrize(
    "state", ["pending", "ready", "running", "failed", "retrying", "passed", "skipped", "tripped", "blocked"]
)
def test_legality_follows_the_lifecycle(db: EventStore, tmp_path: Path, state: str) -> None:
    """Each action is refused exactly where the step lifecycle has no such transition."""
    ws = load_workstream(write_workstream(tmp_path, diamond(tmp_path, prints_error("ERROR: nope"))))
    run_id = start_run(db, ws, workdir=tmp_path).run_id
    # Put `left` in `state` the way the log would, through the ordinary fold.
    path: dict[str, list[Event]] = {
        "pending": [],
        "ready": [StepReady()],
        "running": [StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1)],
        "failed": [
            StepReady(),
            StepStarted(attempt=1, host="h", pid=1, pgid=1),
            StepFailed(attempt=1, reason="exit_code", started_at=0, finished_at=1),
        ],
        "passed": [StepMarkedPassed(by="t")],
        "skipped": [StepSkipped(by="t")],
        "blocked": [StepBlocked(blocked_by="top")],
    }
    path["retrying"] = [*path["failed"], RetryScheduled(attempt=1, next_attempt=2, not_before=0, delay_s=0)]
    path["tripped"] = [*path["failed"], StepTripped(attempt=1, reason="max_attempts")]
    current = fold(run_id, db.read_run(run_id)).steps["left"]
    if current.state != state:
        # `left` is blocked after the run; an operator's retry makes it pending again first.
        events = [*([] if state == "blocked" else [StepRetryRequested(by="test")]), *path[state]]
        if events:
            db.append([StreamWrite(run_id, step_stream(run_id, "left"), current.version, events)])
    assert fold(run_id, db.read_run(run_id)).steps["left"].state == state
    for trigger, act in (
        ("request_retry", retry_step),
        ("skip", skip_step),
        ("mark_passed", mark_step_passed),
    ):
        if StepLifecycle("left", state).can(trigger):
            continue  # legal actions are covered above; here only refusals
        with pytest.raises(IllegalStepAction, match=f"it is {state}"):
            act(db, run_id, "left")
