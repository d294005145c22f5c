"""The read-only audit views (migration 0003_audit_views) on SQLite and PostgreSQL, and the plain-SQL
examples of docs/audit.md run on both."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from audit_sample import T0
from sqlalchemy import exc, text

from stepledger.engine.audit.sources import attempts_of
from stepledger.store.sql import SqlEventStore

DOC = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
VIEW_COLUMNS = ("run_id", "workstream_id", "step_id", "stream", "attempt", "host", "pid", "started_at",
                "finished_at", "duration_s", "outcome", "reason", "exit_code", "error_signature",
                "output_excerpt", "position")  # fmt: skip


def query(store: SqlEventStore, sql: str, **params: Any) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def test_attempts_view_has_one_row_per_attempt_equal_to_the_events(sample: SqlEventStore) -> None:
    rows = query(sample, "SELECT * FROM attempts ORDER BY position")
    assert tuple(rows[0]) == VIEW_COLUMNS
    expected = []
    for run_id, workstream in (("r1", "ws-a"), ("r2", "ws-a"), ("r3", "ws-b")):
        expected += attempts_of(sample.read_run(run_id), workstream)
    assert sorted(rows, key=lambda r: r["position"]) == sorted(expected, key=lambda r: r["position"])
    assert len(rows) == 10
    counts = query(sample, "SELECT outcome, count(*) AS n FROM attempts GROUP BY outcome ORDER BY outcome")
    assert [(c["outcome"], c["n"]) for c in counts] == [("failed", 4), ("passed", 5), ("running", 1)]


def test_attempts_view_takes_the_worker_from_the_start_event(sample: SqlEventStore) -> None:
    sql = (
        "SELECT attempt, host, pid, duration_s, reason FROM attempts WHERE run_id = :run AND step_id = :step"
    )
    rows = query(sample, sql + " ORDER BY attempt", run="r1", step="lint")
    assert rows == [
        {"attempt": 1, "host": "h1", "pid": 12, "duration_s": 2.0, "reason": "exit_code"},
        {"attempt": 2, "host": "h1", "pid": 13, "duration_s": 4.0, "reason": None},
    ]
    (running,) = query(sample, "SELECT * FROM attempts WHERE outcome = 'running'")
    assert (running["step_id"], running["started_at"], running["pid"]) == ("only", T0 + 5001, 31)


def test_run_summaries_and_operator_actions_views(sample: SqlEventStore) -> None:
    runs = {r["run_id"]: r for r in query(sample, "SELECT * FROM run_summaries")}
    assert (runs["r1"]["status"], runs["r1"]["elapsed_s"], runs["r1"]["blocked"]) == ("failed", 134.0, 1)
    r3 = runs["r3"]
    assert (r3["status"], r3["cancel_requests"], r3["drain_requests"], r3["resumes"]) == ("running", 1, 1, 0)
    assert runs["r1"]["drain_requests"] == 0
    actions = query(sample, "SELECT * FROM operator_actions ORDER BY position")
    assert [(a["action"], a["actor"], a["step_id"]) for a in actions] == [
        ("retry", "alice", "lint"), ("skip", "bob", "deploy"),
        ("drain", "carol", None), ("cancel", "carol", None),
    ]  # fmt: skip
    assert (actions[2]["reason"], actions[2]["at"]) == ("Ctrl-C", T0 + 5030)
    assert actions[0]["at"] == T0 + 1009


def test_views_are_read_only(sample: SqlEventStore) -> None:
    for view in ("attempts", "run_summaries", "operator_actions"):
        with pytest.raises(exc.DBAPIError), sample.engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {view}"))
    assert len(query(sample, "SELECT * FROM attempts")) == 10


def doc_queries() -> list[str]:
    """The ```sql blocks of docs/audit.md."""
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_the_documented_queries_run_on_both_dialects(sample: SqlEventStore) -> None:
    slowest, not_passed, by_host, stopped = doc_queries()
    rows = query(sample, slowest)
    assert [(r["step_id"], r["passed"], float(r["avg_s"]), float(r["max_s"])) for r in rows] == [
        ("test", 1, 20.0, 20.0), ("build", 2, 11.0, 12.0), ("lint", 2, 4.5, 5.0)
    ]  # fmt: skip
    rows = query(sample, not_passed)
    assert [(r["run_id"], r["status"]) for r in rows] == [("r3", "running"), ("r1", "failed")]
    assert float(rows[1]["elapsed_s"]) == 134.0
    rows = query(sample, by_host)
    assert [(r["host"], r["reason"], r["failed_attempts"], r["runs"]) for r in rows] == [
        ("h1", "exit_code", 2, 2), ("h1", "timeout", 2, 1)
    ]  # fmt: skip
    rows = query(sample, stopped)
    assert [(r["run_id"], r["action"], r["actor"], r["reason"]) for r in rows] == [
        ("r3", "drain", "carol", "Ctrl-C"), ("r3", "cancel", "carol", "stuck")
    ]  # fmt: skip
