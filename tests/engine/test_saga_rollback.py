"""Saga rollback with real commands on the real worker pool, through `start_run`, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from failure_scripts import fails_times, hangs, prints_error, write_workstream, writes_outputs

from stepledger.engine.session.runs import RunResult, start_run
from stepledger.engine.workstream import load_workstream
from stepledger.events import RecordedEvent
from stepledger.events.state import fold
from stepledger.store.connect import open_store
from stepledger.store.port import EventStore


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """A fresh store on SQLite, then on PostgreSQL."""
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    store = open_store(url)
    yield store
    store.close()


class Notes:
    """A reporter that keeps the notes (messages) the run wrote."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def events(self, run: Any, recorded: list[RecordedEvent]) -> None:
        pass

    def note(self, text: str) -> None:
        self.lines.append(text)


def saga_ws(steps: list[dict[str, Any]], **top: Any) -> dict[str, Any]:
    return {"id": "ws-saga", "saga": {"enabled": True}, "steps": steps, **top}


def run(store: EventStore, tmp_path: Path, data: dict[str, Any], notes: Notes | None = None) -> RunResult:
    ws = load_workstream(write_workstream(tmp_path, data))
    return start_run(store, ws, workdir=tmp_path, reporter=notes)


def types(store: EventStore, run_id: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.payload) for e in store.read_run(run_id) if e.type.startswith(prefix)]


def undo_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "undo.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_reverse_rollback_substitutes_step_outputs(db: EventStore, tmp_path: Path) -> None:
    undo = "echo undo-{0} ${{step_output.id}} $STEPLEDGER_PARAM_ACCOUNT >> undo.txt"
    data = saga_ws(
        [
            {
                "id": "user",
                "tool": "shell",
                "tasks": [writes_outputs(id="u-123")],
                "compensation": {
                    "action": undo.format("user"),
                    "parameters": {"account": "acct-${step_output.id}"},
                },
            },
            {
                "id": "pay",
                "tool": "shell",
                "tasks": [writes_outputs(id="tx-456")],
                "depends_on": ["user"],
                "compensation": {
                    "action": undo.format("pay"),
                    "parameters": {"account": "acct-${step_output.id}"},
                },
            },
            {"id": "side", "tool": "shell", "tasks": ["true"]},  # passed, no compensation: left alone
            {"id": "notify", "tool": "shell", "tasks": [prints_error("smtp down")], "depends_on": ["pay"]},
            {"id": "after", "tool": "shell", "tasks": ["true"], "depends_on": ["notify"]},
        ],
        execution={"parallel": False},
        error_handling={
            "on_rollback_start": {"message": "Rolling back ${completed_steps} steps"},
            "on_rollback_complete": {"message": "all undone in ${run_id}"},
        },
    )
    notes = Notes()
    result = run(db, tmp_path, data, notes)
    assert result.outcome == "rolled_back"
    # Reverse completion order; the outputs each step recorded reach its own compensation.
    assert undo_lines(tmp_path) == ["undo-pay tx-456 acct-tx-456", "undo-user u-123 acct-u-123"]
    saga = types(db, result.run_id, "rollback.") + types(db, result.run_id, "compensation.")
    started = next(p for t, p in saga if t == "rollback.started")
    assert started["compensations"] == ["pay", "user"] and started["failed_steps"] == ["notify"]
    assert started["without_compensation"] == ["side"]
    finished = next(p for t, p in saga if t == "rollback.finished")
    assert finished["outcome"] == "rolled_back" and finished["compensated"] == ["pay", "user"]
    passed = [p["step_id"] for t, p in types(db, result.run_id, "compensation.passed")]
    assert passed == ["pay", "user"]
    final = fold(result.run_id, db.read_run(result.run_id))
    assert final.status == "rolled_back"
    assert final.steps["after"].state == "blocked"  # the fold is untouched by the saga's events
    projected = db.run_state(result.run_id)  # the projections agree, before and after a rebuild
    assert projected is not None and projected.status == "rolled_back"
    db.rebuild_projections()
    rebuilt = db.run_state(result.run_id)
    assert rebuilt is not None
    assert {s: v.state for s, v in rebuilt.steps.items()} == {s: v.state for s, v in final.steps.items()}
    assert "Rolling back 2 steps" in notes.lines and f"all undone in {result.run_id}" in notes.lines
    log = (tmp_path / ".stepledger" / "runs" / result.run_id / "orchestrator.log").read_text()
    assert "Rolling back 2 steps" in log and "↺ [pay] Compensating" in log
    assert (tmp_path / ".stepledger" / "runs" / result.run_id / "compensations" / "pay.1.log").is_file()


def test_parallel_rollback_runs_compensations_at_once(db: EventStore, tmp_path: Path) -> None:
    undo = "date +%s.%N > start-{0}; sleep 0.6; date +%s.%N > end-{0}"
    steps = [
        {"id": f"s{i}", "tool": "shell", "tasks": ["true"], "compensation": {"action": undo.format(i)}}
        for i in range(3)
    ]
    steps.append({"id": "bad", "tool": "shell", "tasks": ["exit 1"], "depends_on": ["s0", "s1", "s2"]})
    data = saga_ws(steps, saga={"enabled": True, "rollback_order": "parallel"}, execution={"max_workers": 3})
    result = run(db, tmp_path, data)
    assert result.outcome == "rolled_back"
    starts = [float((tmp_path / f"start-{i}").read_text()) for i in range(3)]
    ends = [float((tmp_path / f"end-{i}").read_text()) for i in range(3)]
    assert max(starts) < min(ends)  # all three overlapped


def test_log_and_continue_with_retries_ends_partially_rolled_back(db: EventStore, tmp_path: Path) -> None:
    data = saga_ws(
        [
            {
                "id": "a",
                "tool": "shell",
                "tasks": ["true"],
                "compensation": {"action": fails_times(1, "undo-a") + " >> undo.txt", "retries": 2},
            },
            {
                "id": "b",
                "tool": "shell",
                "tasks": ["true"],
                "depends_on": ["a"],
                "compensation": {"action": prints_error("cannot refund: gateway 503"), "retries": 1},
            },
            {"id": "c", "tool": "shell", "tasks": ["exit 1"], "depends_on": ["b"]},
        ],
        error_handling={
            "on_rollback_failure": {
                "message": "rollback incomplete: ${step_id}",
                "action": "escalate",
                "notify": ["ops@team.com"],
                "collect_diagnostics": True,
            }
        },
    )
    notes = Notes()
    result = run(db, tmp_path, data, notes)
    assert result.outcome == "partially_rolled_back"
    failed = [
        (p["step_id"], p["attempt"], p["final"]) for _, p in types(db, result.run_id, "compensation.failed")
    ]
    # b: the first try and its one retry; a: one failure, then its retry passes.
    assert failed == [("b", 1, False), ("b", 2, True), ("a", 1, False)]
    assert (
        "cannot refund: gateway 503"
        in types(db, result.run_id, "compensation.failed")[1][1]["output_excerpt"]
    )
    assert undo_lines(tmp_path) == ["undo-a ok"]
    finished = types(db, result.run_id, "rollback.finished")[0][1]
    assert finished["compensated"] == ["a"] and finished["failed"] == ["b"]
    assert "rollback incomplete: b" in notes.lines
    diagnostics = tmp_path / ".stepledger" / "runs" / result.run_id / "diagnostics" / "b" / "compensation"
    assert "cannot refund: gateway 503" in (diagnostics / "attempt-2.log").read_text()
    assert {"attempt-1.log", "environment.json", "timings.json", "summary.txt"} <= {
        p.name for p in diagnostics.iterdir()
    }
    assert any(
        line.startswith("ESCALATION: rollback incomplete: b (notify: ops@team.com)") for line in notes.lines
    )
    assert fold(result.run_id, db.read_run(result.run_id)).status == "partially_rolled_back"


def test_fail_fast_stops_at_the_first_failed_compensation(db: EventStore, tmp_path: Path) -> None:
    data = saga_ws(
        [
            {
                "id": "a",
                "tool": "shell",
                "tasks": ["true"],
                "compensation": {"action": "echo undo-a >> undo.txt"},
            },
            {
                "id": "b",
                "tool": "shell",
                "tasks": ["true"],
                "depends_on": ["a"],
                "compensation": {"action": prints_error("no such order")},
            },
            {"id": "c", "tool": "shell", "tasks": ["exit 1"], "depends_on": ["b"]},
        ],
        rollback_strategy={"on_compensation_failure": "fail_fast", "partial_rollback": True},
    )
    result = run(db, tmp_path, data)
    assert result.outcome == "partially_rolled_back"
    finished = types(db, result.run_id, "rollback.finished")[0][1]
    assert finished["failed"] == ["b"] and finished["not_attempted"] == ["a"]
    assert "fail_fast" in finished["reason"]
    assert undo_lines(tmp_path) == []


def test_no_partial_rollback_means_the_run_fails(db: EventStore, tmp_path: Path) -> None:
    data = saga_ws(
        [
            {"id": "a", "tool": "shell", "tasks": ["true"], "compensation": {"action": "exit 7"}},
            {"id": "c", "tool": "shell", "tasks": ["exit 1"], "depends_on": ["a"]},
        ],
        rollback_strategy={"on_compensation_failure": "log_and_continue", "partial_rollback": False},
    )
    result = run(db, tmp_path, data)
    assert result.outcome == "failed"
    assert types(db, result.run_id, "rollback.finished")[0][1]["outcome"] == "failed"


def test_a_hanging_compensation_times_out(db: EventStore, tmp_path: Path) -> None:
    data = saga_ws(
        [
            {
                "id": "a",
                "tool": "shell",
                "tasks": ["true"],
                "compensation": {"action": hangs(), "timeout": 0.5},
            },
            {"id": "c", "tool": "shell", "tasks": ["exit 1"], "depends_on": ["a"]},
        ]
    )
    result = run(db, tmp_path, data)
    assert result.outcome == "partially_rolled_back"
    failed = types(db, result.run_id, "compensation.failed")
    assert [(p["reason"], p["final"]) for _, p in failed] == [("timeout", True)]


def test_no_failure_no_rollback_and_nothing_to_undo_is_rolled_back(db: EventStore, tmp_path: Path) -> None:
    ok = run(
        db,
        tmp_path,
        saga_ws(
            [{"id": "a", "tool": "shell", "tasks": ["true"], "compensation": {"action": "touch undone"}}]
        ),
    )
    assert ok.outcome == "passed" and not types(db, ok.run_id, "rollback.")
    assert not (tmp_path / "undone").exists()
    notes = Notes()
    first_fails = run(
        db,
        tmp_path,
        saga_ws(
            [{"id": "a", "tool": "shell", "tasks": ["exit 1"], "compensation": {"action": "touch undone"}}]
        ),
        notes,
    )
    assert first_fails.outcome == "rolled_back"  # nothing had completed: nothing to undo
    assert not (tmp_path / "undone").exists()
    # Said in words, not as "rolling back 0 completed step(s): none".
    assert "nothing to roll back: no completed step has a compensation" in notes.lines
    assert "rollback complete: nothing needed undoing" in notes.lines
    assert not any("0 completed" in line or "0 step" in line for line in notes.lines)
