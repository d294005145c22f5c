"""`retries`: which steps needed more than one attempt, how many, and what made them pass."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from stepledger.store.port import EventStore
from stepledger.store.schema import events

from .filters import AuditFilter
from .queries import NO_FILTER, actions
from .sources import RUN_WORKSTREAMS, finished_attempts
from .views import engine_of, fetch_tuples


def _retried_steps(store: EventStore, flt: AuditFilter) -> list[tuple[Any, ...]]:
    """Per step stream with a failure in `flt` and more than one attempt: counts and its last failure."""
    f = finished_attempts("failed", flt).c
    p = events.c.payload
    attempt = p["attempt"].as_integer()
    # `type || ''` keeps SQLite (which has no statistics) on the (stream, version) index: a failed
    # step's stream is a handful of events, while the type index would visit every start and pass
    # of the log. PostgreSQL's planner, which has statistics, must keep the type index in its choice.
    sqlite = engine_of(store).dialect.name == "sqlite"
    kind = events.c.type.concat("") if sqlite else events.c.type
    started, failed, settled = kind == "step.started", kind == "step.failed", kind != "step.started"
    steps = (
        select(
            events.c.stream,
            events.c.run_id,
            func.sum(case((started, 1), else_=0)).label("attempts"),
            func.sum(case((failed, 1), else_=0)).label("failures"),
            func.max(case((kind == "step.passed", attempt))).label("passed_on"),
            func.max(case((started, attempt))).label("last_attempt"),
            func.max(case((settled, attempt))).label("last_finished_attempt"),
            func.min(case((settled, p["started_at"].as_float()))).label("first_started_at"),
            func.max(case((settled, p["finished_at"].as_float()))).label("last_finished_at"),
            func.max(case((failed, events.c.position))).label("last_failure_position"),
        )
        .where(
            events.c.stream.in_(select(f.stream).distinct()),
            kind.in_(["step.started", "step.passed", "step.failed"]),
        )
        .group_by(events.c.stream, events.c.run_id)
        .having(func.sum(case((started, 1), else_=0)) > 1)
        .subquery("steps")
    )
    last = events.alias("last_failure")
    rw = RUN_WORKSTREAMS
    s = steps.c
    query = select(
        s.stream,
        s.run_id,
        s.attempts,
        s.failures,
        s.passed_on,
        s.last_attempt,
        s.last_finished_attempt,
        s.first_started_at,
        s.last_finished_at,
        rw.c.workstream_id,
        last.c.payload["reason"].as_string().label("reason"),
        last.c.payload["error_signature"].as_string().label("error_signature"),
    ).select_from(
        steps.join(last, last.c.position == steps.c.last_failure_position).outerjoin(
            rw, rw.c.run_id == steps.c.run_id
        )
    )
    return fetch_tuples(store, query)


def retries(store: EventStore, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Steps of runs that took more than one attempt: how many, and what made them pass in the end."""
    # Every attempt but the last of a step failed (a failure is what leads to another attempt), so
    # the steps that needed retries are among those with a failed attempt in the window; their
    # counts cover all of the step's attempts in that run.
    rows = []
    for (stream, run_id, attempts, failures, passed_on, last_attempt, last_finished, first_started_at,
         last_finished_at, workstream_id, reason, signature) in _retried_steps(store, flt):  # fmt: skip
        if last_attempt > (last_finished or 0):
            last_outcome = "running"
        else:
            last_outcome = "passed" if passed_on == last_attempt else "failed"
        rows.append({
            "run_id": run_id, "workstream_id": workstream_id, "step_id": stream[len(run_id) + 1 :],
            "attempts": attempts, "failures": failures, "passed_on": passed_on, "last_attempt": last_attempt,
            "last_outcome": last_outcome, "first_started_at": first_started_at,
            "last_finished_at": last_finished_at,
            "last_failure": f"{reason or 'failed'}: {signature}" if signature else (reason or "failed"),
        })  # fmt: skip
    by_step = _actions_by_step(store, flt, {r["run_id"] for r in rows})
    for row in rows:
        row["resolution"] = _resolution(row, by_step.get((row["run_id"], row["step_id"]), []))
    rows.sort(key=lambda r: (r["first_started_at"], r["run_id"], r["step_id"]))
    return rows


def _actions_by_step(
    store: EventStore, flt: AuditFilter, run_ids: set[str]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    # Operator actions are few. The time window does not apply: a retry requested after the window
    # can still be what made a step of the window pass.
    if not run_ids:
        return {}
    scope = AuditFilter(workstream_id=flt.workstream_id, run_id=flt.run_id, step_id=flt.step_id)
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in actions(store, scope):
        if row["run_id"] in run_ids and row["step_id"]:
            found.setdefault((row["run_id"], row["step_id"]), []).append(row)
    return found


def _with_reason(text: str, action: dict[str, Any]) -> str:
    return f"{text} ({action['reason']})" if action.get("reason") else text


def _resolution(row: dict[str, Any], step_actions: list[dict[str, Any]]) -> str:
    """What made a retried step pass (or that it did not): an automatic retry, an operator, nothing yet."""
    by_kind = {a["action"]: a for a in step_actions}  # the latest of each kind
    if row["last_outcome"] == "passed":
        retry = by_kind.get("retry")
        if retry is not None:
            return _with_reason(
                f"passed on attempt {row['passed_on']} after a retry by {retry['actor']}", retry
            )
        return f"passed on attempt {row['passed_on']} (automatic retry)"
    for kind, verb in (("mark-passed", "marked passed"), ("skip", "skipped")):
        if kind in by_kind:
            return _with_reason(f"{verb} by {by_kind[kind]['actor']}", by_kind[kind])
    if row["last_outcome"] == "running":
        return f"attempt {row['last_attempt']} still running"
    return f"never passed ({row['failures']} failed attempts)"
