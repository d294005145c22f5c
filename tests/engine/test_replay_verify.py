"""`replay` and `replay --verify` on hand-written logs: a clean run verifies, each broken rule is named."""

from __future__ import annotations

from pathlib import Path

from stepledger.engine.read.replay import _Checker, replay_run, verify_run
from stepledger.events import (
    Event,
    RecordedEvent,
    RetryScheduled,
    RunStarted,
    StepFailed,
    StepPassed,
    StepReady,
    StepStarted,
    StreamWrite,
    run_stream,
    step_stream,
)
from stepledger.store.connect import open_store
from stepledger.store.dbapi import Mode
from stepledger.store.memory import InMemoryEventStore
from stepledger.store.sql import SqlEventStore

WS = {"steps": [{"id": "a", "requires": []}, {"id": "b", "requires": ["a"]}]}


def started(attempt: int) -> StepStarted:
    return StepStarted(attempt=attempt, host="h", pid=1, pgid=1)


def passed(attempt: int, start: float, end: float) -> StepPassed:
    return StepPassed(attempt=attempt, started_at=start, finished_at=end)


def failed(attempt: int, start: float, end: float) -> StepFailed:
    return StepFailed(attempt=attempt, reason="interrupted", started_at=start, finished_at=end)


def log(*steps: tuple[str, list[Event]]) -> InMemoryEventStore:
    """A store holding run r1 (workstream WS) and then each (step, events) write in order."""
    store = InMemoryEventStore()
    start = RunStarted(workstream_id="ws", workstream=WS, workstream_hash="", source_path="", workdir="/")
    store.append([StreamWrite("r1", run_stream("r1"), 0, [start])])
    for sid, events in steps:
        stream = step_stream("r1", sid)
        store.append([StreamWrite("r1", stream, store.stream_version(stream), events)])
    return store


def rules(store: InMemoryEventStore) -> list[str]:
    return [v.rule for v in verify_run(store, "r1")]


def test_a_clean_log_verifies_and_replays_at_any_position() -> None:
    store = log(
        ("a", [StepReady(), started(1), failed(1, 1.0, 2.0), RetryScheduled(attempt=1, next_attempt=2,
                                                                           not_before=2.0, delay_s=0.0)]),
        ("a", [StepReady(), started(2), passed(2, 3.0, 4.0)]),
        ("b", [StepReady(), started(1), passed(1, 5.0, 6.0)]),
    )  # fmt: skip
    assert verify_run(store, "r1") == []
    final = replay_run(store, "r1")
    summary = [(s["step_id"], s["state"], s["attempt"]) for s in final["steps"]]
    assert summary == [("a", "passed", 2), ("b", "passed", 1)]
    early = replay_run(store, "r1", at=4)  # run.started + a's first three events
    assert [(s["step_id"], s["state"]) for s in early["steps"]] == [("a", "failed"), ("b", "pending")]


def test_a_dependent_started_before_its_dependency_passed_is_named() -> None:
    store = log(("a", [StepReady(), started(1)]), ("b", [StepReady(), started(1)]))
    [violation] = verify_run(store, "r1")
    assert (violation.rule, violation.stream, violation.version, violation.type) == (
        "dependencies", "r1/b", 2, "step.started")  # fmt: skip


def test_a_step_passed_twice_is_an_illegal_transition_and_a_double_pass() -> None:
    store = log(("a", [StepReady(), started(1), passed(1, 1.0, 2.0), passed(1, 1.0, 2.0)]))
    assert sorted(rules(store)) == ["fencing", "passed-twice", "transition"]


def test_overlapping_attempts_are_named() -> None:
    store = log(
        ("a", [StepReady(), started(1), failed(1, 1.0, 5.0), RetryScheduled(attempt=1, next_attempt=2,
                                                                           not_before=2.0, delay_s=0.0)]),
        ("a", [StepReady(), started(2), passed(2, 3.0, 6.0)]),
    )  # fmt: skip
    [violation] = verify_run(store, "r1")
    assert violation.rule == "overlap" and violation.type == "step.passed"


def test_a_gap_in_stream_versions_is_named() -> None:
    checker = _Checker("r1")
    for position, version, type_name in ((1, 1, "step.ready"), (2, 3, "step.started")):
        payload = {"attempt": 1, "host": "h", "pid": 1, "pgid": 1} if version == 3 else {}
        checker.check(
            RecordedEvent(position, f"e{position}", "r1", "r1/a", version, type_name, 1, payload, 0.0)
        )
    assert [(v.rule, v.position) for v in checker.violations] == [("versions", 2)]


def test_an_outcomes_projection_that_differs_from_the_log_is_named(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert isinstance(store, SqlEventStore)
    try:
        start = RunStarted(workstream_id="ws", workstream=WS, workstream_hash="", source_path="", workdir="/")
        store.append([StreamWrite("r1", run_stream("r1"), 0, [start])])
        retry = RetryScheduled(attempt=1, next_attempt=2, not_before=2.0, delay_s=0.0)
        events = [
            StepReady(),
            started(1),
            failed(1, 1.0, 2.0),
            retry,
            StepReady(),
            started(2),
            passed(2, 3.0, 4.0),
        ]
        store.append([StreamWrite("r1", step_stream("r1", "a"), 0, events)])
        assert verify_run(store, "r1") == []
        with store.db.transaction(Mode.WRITE) as cursor:
            cursor.execute("UPDATE step_outcomes SET finished_at = 9.0 WHERE outcome = 'passed'")
        (violation,) = verify_run(store, "r1")
        assert violation.rule == "projections" and "step_outcomes" in violation.message
        with store.db.transaction(Mode.WRITE) as cursor:
            cursor.execute("DELETE FROM step_outcomes")
        assert [v.rule for v in verify_run(store, "r1")] == ["projections", "projections"]
    finally:
        store.close()
