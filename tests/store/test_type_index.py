"""The type index leaves out the types every attempt writes (statements.PER_ATTEMPT_TYPES), and the
lookups of the others state its condition, so that SQLite uses it (it uses a partial index only
then); answers are the same either way."""

from __future__ import annotations

from typing import Any

import pytest
from audit_sample import fill
from sqlalchemy import text

from stepledger.store.connect import open_store
from stepledger.store.sql import SqlEventStore


def sqlite_plan(store: SqlEventStore, sql: str, params: dict[str, Any] | None = None) -> str:
    with store.engine.connect() as conn:
        return " / ".join(str(r[-1]) for r in conn.execute(text("EXPLAIN QUERY PLAN " + sql), params or {}))


def test_lookups_by_type_find_every_event_of_the_type(sample: SqlEventStore) -> None:
    everything = list(sample.read_all())
    for types in (
        ["run.started"],
        ["step.failed"],
        ["run.started", "step.started"],
        ["step.retry_requested"],
    ):
        expected = [e for e in everything if e.type in types]
        assert expected or types == ["step.retry_requested"]
        assert list(sample.find_events(types=types)) == expected


def test_sqlite_looks_up_run_level_events_and_operator_actions_through_the_index(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(sqlite_url)
    assert isinstance(store, SqlEventStore)
    try:
        fill(store, monkeypatch)
        queries: list[tuple[str, dict[str, Any]]] = []
        original = store._query

        def recording(query: str, values: dict[str, Any] | None = None) -> list[Any]:
            queries.append((query, values or {}))
            return original(query, values)

        monkeypatch.setattr(store, "_query", recording)
        list(store.find_events(types=["run.started", "run.finished"]))
        ((found, values),) = queries
        plans = [
            sqlite_plan(store, found, values),
            sqlite_plan(store, "SELECT * FROM run_summaries"),
            sqlite_plan(store, "SELECT * FROM operator_actions"),
        ]
    finally:
        store.close()
    for plan in plans:
        assert "INDEX ix_events_type" in plan, plan
