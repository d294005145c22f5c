"""The cross-run audit questions read the `step_outcomes` projection (migration 0006), on SQLite and
PostgreSQL: cases the sample log of audit_sample.py does not hold, and the plans SQLite uses."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from audit_sample import T0, Log, recorded_at_clock

from stepledger.engine import audit
from stepledger.engine.audit import sources
from stepledger.events import (
    RetryScheduled,
    RunStarted,
    StepFailed,
    StepPassed,
    StepReady,
    StepStarted,
)
from stepledger.store.connect import open_store
from stepledger.store.port import AuditReader, EventStore


def run_started(workstream_id: str, steps: list[str]) -> RunStarted:
    workstream = {"id": workstream_id, "steps": [{"id": s, "requires": []} for s in steps]}
    return RunStarted(workstream_id=workstream_id, workstream=workstream, workstream_hash="h",
                      source_path="-", workdir=".")  # fmt: skip


def failed(attempt: int, start: float, end: float, signature: str = "boom") -> StepFailed:
    return StepFailed(attempt=attempt, reason="exit_code", started_at=start, finished_at=end, exit_code=1,
                      error_signature=signature, output_excerpt=f"...\n{signature}")  # fmt: skip


@pytest.fixture
def log(sql_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EventStore, Log]]:
    """An empty SQL store (each dialect) and a Log writing into it at chosen times."""
    store = open_store(sql_url)
    with recorded_at_clock(monkeypatch) as clock:
        yield store, Log(store, clock)
    store.close()


def test_an_attempt_running_after_a_failure_counts_and_is_the_resolution(
    log: tuple[EventStore, Log],
) -> None:
    store, events = log
    events.add(T0, "r", None, run_started("ws", ["flaky", "steady"]))
    events.add(T0, "r", "flaky", StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1))
    events.add(T0 + 5, "r", "flaky", failed(1, T0 + 1, T0 + 5),
               RetryScheduled(attempt=1, next_attempt=2, not_before=T0 + 6, delay_s=1.0))  # fmt: skip
    events.add(T0 + 6, "r", "flaky", StepStarted(attempt=2, host="h", pid=2, pgid=2))
    # One failed attempt and no other: not a retried step.
    events.add(T0, "r", "steady", StepReady(), StepStarted(attempt=1, host="h", pid=3, pgid=3))
    events.add(T0 + 2, "r", "steady", failed(1, T0 + 1, T0 + 2))
    (row,) = audit.retries(store)
    assert (row["step_id"], row["attempts"], row["failures"], row["passed_on"]) == ("flaky", 2, 1, None)
    assert (row["last_attempt"], row["last_outcome"]) == (2, "running")
    assert row["resolution"] == "attempt 2 still running"
    assert (row["first_started_at"], row["last_finished_at"], row["workstream_id"]) == (T0 + 1, T0 + 5, "ws")
    assert row["last_failure"] == "non-zero exit: boom"


def test_retries_take_the_last_failure_and_every_attempt_of_a_passed_step(
    log: tuple[EventStore, Log],
) -> None:
    store, events = log
    events.add(T0, "r", None, run_started("ws", ["s"]))
    events.add(T0, "r", "s", StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1))
    for attempt, signature in ((1, "first"), (2, "second")):
        start = T0 + 10 * attempt
        events.add(start + 1, "r", "s", failed(attempt, start, start + 1, signature),
                   StepStarted(attempt=attempt + 1, host="h", pid=1, pgid=1))  # fmt: skip
    events.add(T0 + 40, "r", "s", StepPassed(attempt=3, started_at=T0 + 30, finished_at=T0 + 40))
    (row,) = audit.retries(store)
    assert (row["attempts"], row["failures"], row["passed_on"], row["last_outcome"]) == (3, 2, 3, "passed")
    assert (row["last_failure"], row["first_started_at"], row["last_finished_at"]) == (
        "non-zero exit: second", T0 + 10, T0 + 40
    )  # fmt: skip
    assert [r["step_id"] for r in audit.retries(store, audit.AuditFilter(step_id="s", run_id="r"))] == ["s"]
    assert audit.retries(store, audit.AuditFilter(step_id="t")) == []
    # The window picks the steps by their failures, and their counts still cover every attempt.
    (late,) = audit.retries(store, audit.AuditFilter(since=T0 + 15))
    assert late["attempts"] == 3
    assert audit.retries(store, audit.AuditFilter(since=T0 + 25)) == []


def test_durations_of_a_step_id_in_two_workstreams_each_in_time_order(log: tuple[EventStore, Log]) -> None:
    store, events = log
    # Run ids sort against time: the trend must follow the log's order, not the runs' names.
    samples = [("x4", "ws-x", 10.0), ("y2", "ws-y", 2.0), ("x3", "ws-x", 12.0), ("y1", "ws-y", 4.0),
               ("x2", "ws-x", 14.0), ("x1", "ws-x", 16.0)]  # fmt: skip
    for i, (run_id, workstream_id, took) in enumerate(samples):
        t = T0 + 100 * i
        events.add(t, run_id, None, run_started(workstream_id, ["build"]))
        events.add(t, run_id, "build", StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1))
        events.add(t + took, run_id, "build", StepPassed(attempt=1, started_at=t, finished_at=t + took))
    rows = {r["workstream_id"]: r for r in audit.durations(store)}
    assert set(rows) == {"ws-x", "ws-y"}
    x, y = rows["ws-x"], rows["ws-y"]
    assert (x["count"], x["median_s"], x["max_s"], x["mean_s"]) == (4, 13.0, 16.0, 13.0)
    assert x["trend"] == pytest.approx(15.0 / 11.0 - 1) and x["trend_text"] == "↑ 36%"
    assert (y["count"], y["median_s"], y["p95_s"]) == (2, 3.0, pytest.approx(3.9))
    assert audit.historical_durations(store, "ws-y") == {"build": 3.0}
    assert [r["count"] for r in audit.durations(store, audit.AuditFilter(since=T0 + 150))] == [3, 1]


def test_failure_times_keep_every_digit(log: tuple[EventStore, Log]) -> None:
    store, events = log
    start = T0 + 0.123456789012  # SQLite's JSON arrays write 15 digits: this needs 17
    events.add(T0, "r", None, run_started("ws", ["s"]))
    events.add(T0, "r", "s", StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1))
    events.add(T0 + 2, "r", "s", failed(1, start, start + 1))
    (row,) = audit.failures(store)
    assert row["first_seen"] == start and row["last_seen"] == start


def test_a_negative_duration_counts_as_none(log: tuple[EventStore, Log]) -> None:
    store, events = log
    events.add(T0, "r", None, run_started("ws", ["s"]))
    events.add(T0, "r", "s", StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1))
    events.add(T0, "r", "s", StepPassed(attempt=1, started_at=T0 + 5, finished_at=T0 + 4))
    (row,) = audit.durations(store)
    assert (row["median_s"], row["max_s"]) == (0.0, 0.0)


def plans(store: EventStore, scan: Callable[[AuditReader, audit.AuditFilter], object]) -> list[str]:
    """SQLite's query plan of each statement `scan` runs (on a filled log, as its answer needs)."""
    found: list[str] = []
    with store.audit_reading() as read, pytest.MonkeyPatch.context() as patch:
        original = read.rows

        def explain(sql: str, params: Any = None) -> list[tuple[Any, ...]]:
            plan = original("EXPLAIN QUERY PLAN " + sql, params)
            found.append(" / ".join(str(row[-1]) for row in plan))
            return original(sql, params)

        patch.setattr(read, "rows", explain)  # the reader's own calls of `rows` too
        scan(read, audit.AuditFilter())
    return found


def test_sqlite_answers_from_the_outcomes_without_scanning_the_log(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit_sample import fill

    store = open_store(sqlite_url)
    try:
        fill(store, monkeypatch)
        (passed,) = plans(store, sources.passed_by_step)
        (failed_plan,) = plans(store, sources.failed_by_step)
        (retried,) = plans(store, sources.retried_steps)
    finally:
        store.close()
    for plan in (passed, failed_plan, retried):
        assert "SCAN step_outcomes" in plan, plan
        assert "SCAN events" not in plan and "ix_events_type" not in plan, plan
    for plan in (passed, failed_plan):
        assert "events" not in plan, plan
    # The running attempts of streams without a pass: a seek by stream into the (stream, version) key.
    seek = r"SEARCH s USING (COVERING )?INDEX sqlite_autoindex_events_\d \(stream=\?\)"
    assert re.search(seek, retried), retried
