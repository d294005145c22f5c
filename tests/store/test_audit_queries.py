"""The audit questions on SQLite and PostgreSQL, against a sample log whose answers are known
(see audit_sample.py for the story of its three runs)."""

from __future__ import annotations

import pytest
from audit_sample import T0

from stepledger.engine import audit
from stepledger.engine.errors import RunNotFound
from stepledger.store.connect import open_store
from stepledger.store.port import EventStore


def test_timeline_lists_every_attempt_in_start_order_with_offsets(sample: EventStore) -> None:
    rows = audit.timeline(sample, "r1")
    got = [(r["step_id"], r["attempt"], r["outcome"], r["offset_s"], r["duration_s"]) for r in rows]
    assert got == [
        ("build", 1, "passed", 1.0, 10.0),
        ("lint", 1, "failed", 1.0, 2.0),
        ("lint", 2, "passed", 4.0, 4.0),
        ("test", 1, "failed", 12.0, 60.0),
        ("test", 2, "failed", 73.0, 60.0),
    ]
    assert {(r["host"], r["pid"]) for r in rows} == {
        ("h1", 11),
        ("h1", 12),
        ("h1", 13),
        ("h1", 14),
        ("h1", 15),
    }
    assert rows[3]["reason"] == "timeout" and rows[0]["workstream_id"] == "ws-a"


def test_timeline_shows_a_running_attempt_from_its_start_event(sample: EventStore) -> None:
    (row,) = audit.timeline(sample, "r3")
    assert (row["step_id"], row["outcome"], row["started_at"], row["finished_at"]) == (
        "only",
        "running",
        T0 + 5001,
        None,
    )
    assert row["offset_s"] == 1.0


def test_timeline_filters_by_step_and_time(sample: EventStore) -> None:
    only_test = audit.timeline(sample, "r1", audit.AuditFilter(step_id="test"))
    assert [r["attempt"] for r in only_test] == [1, 2]
    late = audit.timeline(sample, "r1", audit.AuditFilter(since=T0 + 10, until=T0 + 70))
    assert [(r["step_id"], r["attempt"]) for r in late] == [("test", 1)]


def test_timeline_of_an_unknown_run_is_a_clear_error(sample: EventStore) -> None:
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        audit.timeline(sample, "nope")


def test_failures_are_grouped_by_step_and_signature(sample: EventStore) -> None:
    rows = audit.failures(sample)
    got = [(r["workstream_id"], r["step_id"], r["error_signature"], r["count"], r["runs"]) for r in rows]
    assert got == [("ws-a", "lint", "E501 line too long", 2, 2), ("ws-a", "test", "timeout", 2, 1)]
    lint, test = rows
    assert (lint["first_seen"], lint["last_seen"], lint["last_run_id"]) == (T0 + 1, T0 + 1001, "r2")
    assert lint["output_excerpt"].endswith("E501 line too long (attempt 1)")
    assert (test["reason"], test["exit_code"], test["first_seen"], test["last_seen"]) == (
        "timeout",
        1,
        T0 + 12,
        T0 + 73,
    )


def test_failures_filters(sample: EventStore) -> None:
    assert [r["count"] for r in audit.failures(sample, audit.AuditFilter(since=T0 + 500))] == [1]
    assert [r["step_id"] for r in audit.failures(sample, audit.AuditFilter(run_id="r1"))] == ["test", "lint"]
    assert [r["step_id"] for r in audit.failures(sample, audit.AuditFilter(step_id="test"))] == ["test"]
    assert audit.failures(sample, audit.AuditFilter(workstream_id="ws-b")) == []
    assert audit.failures(sample, audit.AuditFilter(until=T0)) == []


def test_durations_per_step_across_runs(sample: EventStore) -> None:
    rows = {r["step_id"]: r for r in audit.durations(sample)}
    assert set(rows) == {"build", "lint", "test"}
    build = rows["build"]
    assert (build["count"], build["median_s"], build["max_s"]) == (2, 11.0, 12.0)
    assert build["p95_s"] == pytest.approx(11.9)
    assert (rows["lint"]["median_s"], rows["test"]["count"], rows["test"]["median_s"]) == (4.5, 1, 20.0)
    assert build["trend"] is None  # two samples are too few for a trend
    assert audit.historical_durations(sample, "ws-a") == {"build": 11.0, "lint": 4.5, "test": 20.0}
    assert audit.historical_durations(sample, "ws-b") == {}
    assert [
        r["median_s"] for r in audit.durations(sample, audit.AuditFilter(run_id="r2", step_id="build"))
    ] == [12.0]


def test_retries_say_what_made_a_step_pass(sample: EventStore) -> None:
    rows = audit.retries(sample)
    got = [(r["run_id"], r["step_id"], r["attempts"], r["failures"], r["passed_on"]) for r in rows]
    assert got == [("r1", "lint", 2, 1, 2), ("r1", "test", 2, 2, None), ("r2", "lint", 2, 1, 2)]
    assert [r["resolution"] for r in rows] == [
        "passed on attempt 2 (automatic retry)",
        "never passed (2 failed attempts)",
        "passed on attempt 2 after a retry by alice (flaky)",
    ]
    assert rows[1]["last_failure"] == "timed out: timeout"
    assert audit.newest_retries(sample, newest=2) == (rows[-2:], 3)  # a table's rows, and the count
    assert audit.newest_retries(sample, audit.AuditFilter(workstream_id="ws-b"), newest=2) == ([], 0)
    assert [r["run_id"] for r in audit.retries(sample, audit.AuditFilter(since=T0 + 500))] == ["r2"]
    assert audit.retries(sample, audit.AuditFilter(workstream_id="ws-b")) == []


def test_actions_list_who_did_what_when_and_why(sample: EventStore) -> None:
    rows = audit.actions(sample)
    got = [(r["at"], r["action"], r["actor"], r["run_id"], r["step_id"], r["reason"]) for r in rows]
    assert got == [
        (T0 + 1009, "retry", "alice", "r2", "lint", "flaky"),
        (T0 + 1035, "skip", "bob", "r2", "deploy", "no deploy on fridays"),
        (T0 + 5030, "drain", "carol", "r3", None, "Ctrl-C"),
        (T0 + 5060, "cancel", "carol", "r3", None, "stuck"),
    ]
    ws_b = audit.actions(sample, audit.AuditFilter(workstream_id="ws-b"))
    assert [r["action"] for r in ws_b] == ["drain", "cancel"]
    assert [r["actor"] for r in audit.actions(sample, audit.AuditFilter(step_id="deploy"))] == ["bob"]
    assert [r["action"] for r in audit.actions(sample, audit.AuditFilter(since=T0 + 5040))] == ["cancel"]


def test_why_explains_each_kind_of_state(sample: EventStore) -> None:
    blocked = audit.why(sample, "r1", "deploy")
    assert blocked["state"] == "blocked" and "depends on test" in blocked["reason"]
    tripped = audit.why(sample, "r1", "test")
    assert tripped["state"] == "tripped" and "max_attempts" in tripped["reason"]
    assert [e["type"] for e in tripped["events"]][-2:] == ["step.failed", "step.tripped"]
    assert audit.why(sample, "r2", "deploy")["reason"] == "skipped by bob (no deploy on fridays)"
    assert audit.why(sample, "r2", "lint")["reason"].startswith("attempt 2 passed")
    running = audit.why(sample, "r3", "only")
    assert running["state"] == "running" and "h1 (pid 31)" in running["reason"]
    waiting = audit.why(sample, "r3", "after")
    assert waiting["state"] == "pending" and waiting["events"] == []
    assert waiting["waits_on"] == [{"step_id": "only", "state": "running"}]
    assert waiting["reason"] == "it waits for only (running)"


def test_why_rejects_unknown_runs_and_steps(sample: EventStore) -> None:
    with pytest.raises(RunNotFound):
        audit.why(sample, "nope", "build")
    with pytest.raises(audit.StepNotFound, match="build, lint, test, deploy"):
        audit.why(sample, "r1", "nope")


def test_run_summaries(sample: EventStore) -> None:
    rows = {r["run_id"]: r for r in audit.run_summaries(sample)}
    r1, r2, r3 = rows["r1"], rows["r2"], rows["r3"]
    assert (r1["status"], r1["passed"], r1["failed"], r1["blocked"], r1["elapsed_s"]) == (
        "failed",
        2,
        1,
        1,
        134.0,
    )
    assert (r2["status"], r2["skipped"], r2["workstream_id"]) == ("passed", 1, "ws-a")
    assert (r3["status"], r3["finished_at"], r3["cancel_requests"], r3["workstream_id"]) == (
        "running",
        None,
        1,
        "ws-b",
    )
    assert (r1["drain_requests"], r3["drain_requests"]) == (0, 1)
    assert [r["run_id"] for r in audit.run_summaries(sample, audit.AuditFilter(workstream_id="ws-a"))] == [
        "r1",
        "r2",
    ]


def test_html_page_is_self_contained_and_colours_steps(sample: EventStore) -> None:
    page = audit.timeline_html(sample, "r1")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 3  # time axis, Gantt, graph
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<script" not in page and "<link" not in page
    for step in ("build", "lint", "test", "deploy"):
        assert f">{step}</text>" in page
    assert "deploy: blocked" in page and "test: tripped" in page  # node titles carry each state
    assert page.count('marker-end="url(#arrow)"') == 3  # build→test, test→deploy, lint→deploy


def test_the_memory_store_is_refused_with_a_clear_error() -> None:
    store = open_store("memory://")
    with pytest.raises(audit.NotASqlLog):
        audit.failures(store)
