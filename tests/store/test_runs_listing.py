"""`stepledger runs --limit N` reads the N runs it shows, and shows what the whole listing's first N
would be, for every status and workstream filter, on every adapter."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from stepledger.engine.read.status import RUN_STATUSES, list_runs
from stepledger.events import (
    Event,
    RunCancelRequested,
    RunFinished,
    RunOutcome,
    RunStarted,
    StepFailed,
    StepPassed,
    StepReady,
    StepStarted,
    StreamWrite,
)
from stepledger.store import memory as memory_module
from stepledger.store import sql as sql_module
from stepledger.store.connect import open_store
from stepledger.store.dbapi import Mode
from stepledger.store.outages import PatientStore
from stepledger.store.port import EventStore
from stepledger.store.sql import SqlEventStore

T0 = 1_800_000_000.0
STEPS = ("build", "test")


class Clock:
    """Stands in for the stores' `time` module, so a run starts when the test says."""

    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


def add_run(
    store: EventStore,
    clock: Clock,
    run_id: str,
    workstream: str | None,
    at: float,
    outcome: RunOutcome | None,
) -> None:
    """A run of STEPS started at `at` (`workstream` None: a run stream without run.started), finished
    with `outcome` (None: still running)."""
    clock.now = at
    first: Event = RunCancelRequested(by="op", reason="no start")
    if workstream is not None:
        ws = {"id": workstream, "steps": [{"id": s} for s in STEPS], "params": {"n": at - T0}}
        first = RunStarted(workstream_id=workstream, workstream=ws, workstream_hash="h",
                           source_path=f"{workstream}.json", workdir=".")  # fmt: skip
    store.append([StreamWrite(run_id, run_id, 0, [first])])
    for step in STEPS:
        clock.now = at + 1
        end: Event = StepPassed(attempt=1, started_at=at + 1, finished_at=at + 2)
        if outcome == "failed" and step == "test":
            end = StepFailed(attempt=1, reason="exit_code", started_at=at + 1, finished_at=at + 2,
                             exit_code=1, error_signature="E", output_excerpt="E")  # fmt: skip
        events = [StepReady(), StepStarted(attempt=1, host="h", pid=1, pgid=1)]
        store.append([StreamWrite(run_id, f"{run_id}/{step}", 0, [*events, end] if outcome else events)])
    if outcome is not None:
        clock.now = at + 3
        store.append([StreamWrite(run_id, run_id, 1, [RunFinished(outcome=outcome)])])


@contextmanager
def recorded_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    clock = Clock()
    with monkeypatch.context() as patch:
        patch.setattr(sql_module, "time", clock)
        patch.setattr(memory_module, "time", clock)
        yield clock


# Two workstreams, every kind of end, three runs started at the same instant (recorded in an order
# that is not their ids'), a run recorded after newer ones but started before them, and a run
# stream without a start (the oldest, by the listing's order).
RUNS: list[tuple[str, str | None, float, RunOutcome | None]] = [
    ("run-01", "ws-a", T0, "passed"),
    ("run-02", "ws-b", T0 + 10, "failed"),
    ("run-03", "ws-a", T0 + 20, None),
    ("run-c", "ws-a", T0 + 30, "failed"),
    ("run-a", "ws-b", T0 + 30, "passed"),
    ("run-B", "ws-a", T0 + 30, "passed"),
    ("run-05", "ws-b", T0 + 40, "cancelled"),
    ("run-06", "ws-a", T0 + 50, "failed"),
    ("run-07", None, T0 + 60, None),
    ("run-08", "ws-b", T0 + 5, "passed"),
]


def test_the_newest_runs_of_a_status_and_workstream_are_the_whole_listing_s_first(
    store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with recorded_at(monkeypatch) as clock:
        for run in RUNS:
            add_run(store, clock, *run)
    every = list_runs(store)
    assert len(every) == len(RUNS)
    assert every[-1]["run_id"] == "run-07" and every[-1]["started_at"] is None
    states = store.run_states()
    patient = PatientStore(store, patience=1.0)
    for workstream in (None, "ws-a", "ws-b", "ws-none"):
        for status in (None, *RUN_STATUSES):
            for limit in (None, *range(1, len(RUNS) + 2)):
                case = (limit, status, workstream)
                shown = [r for r in every if status in (None, r["status"])
                         and workstream in (None, r["workstream_id"])][:limit]  # fmt: skip
                assert list_runs(store, limit, status, workstream) == shown, case
                # The states are whole (steps, workstream, last position), in the store's order.
                ids = {r["run_id"] for r in shown}
                wanted = [s for s in states if s.run_id in ids]
                assert store.run_states(newest=limit, status=status, workstream=workstream) == wanted, case
                assert patient.run_states(newest=limit, status=status, workstream=workstream) == wanted


class Counting:
    """A cursor that counts the rows the store fetches, and keeps the statements it runs."""

    def __init__(self, cursor: Any, fetched: list[int], statements: list[tuple[str, Any]]) -> None:
        self._cursor, self._fetched, self._statements = cursor, fetched, statements

    def execute(self, statement: str, params: Any = None) -> Any:
        self._statements.append((statement, params))
        if params is None:
            return self._cursor.execute(statement)
        return self._cursor.execute(statement, params)

    def fetchall(self) -> list[Any]:
        rows = self._cursor.fetchall()
        self._fetched.append(len(rows))
        return list(rows)

    def fetchone(self) -> Any:
        row = self._cursor.fetchone()
        self._fetched.append(row is not None)
        return row

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@contextmanager
def counting(store: SqlEventStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[int], list[Any]]]:
    fetched: list[int] = []
    statements: list[tuple[str, Any]] = []
    real = store.db.transaction

    @contextmanager
    def transaction(mode: Mode = Mode.READ) -> Iterator[Any]:
        with real(mode) as cursor:
            yield Counting(cursor, fetched, statements)

    with monkeypatch.context() as patch:
        patch.setattr(store.db, "transaction", transaction)
        yield fetched, statements


def many_runs(store: EventStore, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    with recorded_at(monkeypatch) as clock:
        for n in range(count):
            outcome: RunOutcome = "failed" if n % 3 == 0 else "passed"
            add_run(store, clock, f"run-{n:03d}", ("ws-a", "ws-b")[n % 2], T0 + 10 * n, outcome)


def test_listing_the_newest_runs_fetches_their_rows_alone(
    sql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(sql_url)
    assert isinstance(store, SqlEventStore)
    try:
        many_runs(store, monkeypatch, 30)
        for limit, status, workstream in ((3, None, None), (2, "failed", None), (3, "passed", "ws-b")):
            with counting(store, monkeypatch) as (fetched, _):
                rows = list_runs(store, limit, status, workstream)
            assert len(rows) == limit
            # The choice (one row past the limit), the runs' rows, their steps' rows: nothing of the
            # 30 runs' 60 steps beyond them (the whole listing fetches 30 + 60 + 30 rows).
            assert sum(fetched) <= limit + 1 + limit * (1 + len(STEPS)), (limit, status, fetched)
    finally:
        store.close()


def test_sqlite_finds_the_shown_runs_steps_and_last_events_by_index_and_decodes_no_other_workstream(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(sqlite_url)
    assert isinstance(store, SqlEventStore)
    try:
        many_runs(store, monkeypatch, 30)
        path = sqlite_url.removeprefix("sqlite:///")
        with counting(store, monkeypatch) as (_, statements):
            newest = [row["run_id"] for row in list_runs(store, 3)]
        assert newest == ["run-029", "run-028", "run-027"]
        plans = sqlite3.connect(path)
        details = [
            row[3]
            for statement, params in statements
            for row in plans.execute(f"EXPLAIN QUERY PLAN {statement}", params or {})
        ]
        scans = [d for d in details if d.startswith("SCAN") and ("events" in d or "step_states" in d)]
        assert not scans, details
        assert any("events USING COVERING INDEX ix_events_run_id_position (run_id=?)" in d for d in details)
        # An old run's recorded workstream that cannot be read does not matter to a list without it.
        plans.execute("UPDATE runs SET workstream = 'not json {' WHERE run_id = 'run-000'")
        plans.commit()
        plans.close()
        assert [row["run_id"] for row in list_runs(store, 3)] == newest
        assert [row["run_id"] for row in list_runs(store, 2, workstream="ws-b")] == ["run-029", "run-027"]
        with pytest.raises(ValueError):
            list_runs(store)  # the whole listing reads it
    finally:
        store.close()
