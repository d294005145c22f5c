"""`retries`: which steps needed more than one attempt, how many, and what made them pass."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from stepledger.store.port import EventStore
from stepledger.store.schema import events

from .filters import AuditFilter
from .queries import NO_FILTER, actions
from .sources import finished_attempts
from .views import fetch


def _failed_steps(store: EventStore, flt: AuditFilter) -> list[dict[str, Any]]:
    """One row per step stream with a failed attempt in `flt`: count, first start, and its last failure."""
    f = finished_attempts("failed", flt).c
    query = select(f.stream, f.run_id, f.workstream_id, f.step_id, f.started_at, f.position, f.reason,
                   f.error_signature)  # fmt: skip
    # Grouped here rather than with window functions: the sort they need costs more than this pass.
    steps: dict[str, dict[str, Any]] = {}
    for row in fetch(store, query):
        step = steps.get(row["stream"])
        if step is None:
            steps[row["stream"]] = {**row, "failures": 1, "first_started_at": row["started_at"]}
            continue
        step["failures"] += 1
        step["first_started_at"] = min(step["first_started_at"], row["started_at"])
        if row["position"] > step["position"]:
            step.update(
                position=row["position"], reason=row["reason"], error_signature=row["error_signature"]
            )
    return list(steps.values())


def _attempt_counts(store: EventStore, flt: AuditFilter) -> dict[str, dict[str, Any]]:
    """Per stream with a failure in `flt`: attempts started, the attempt that passed, the last finish."""
    f = finished_attempts("failed", flt).c
    attempt = events.c.payload["attempt"].as_integer()
    finished = events.c.payload["finished_at"].as_float()
    # `type || ''` keeps SQLite on the (stream, version) index: a failed step's stream is a handful
    # of events, while the type index would visit every start and pass of the log.
    kind = events.c.type.concat("")
    query = (
        select(
            events.c.stream,
            func.sum(case((kind == "step.started", 1), else_=0)).label("attempts"),
            func.max(case((kind == "step.passed", attempt))).label("passed_on"),
            func.max(case((kind == "step.started", attempt))).label("last_attempt"),
            func.max(case((kind != "step.started", attempt))).label("last_finished_attempt"),
            func.max(case((kind != "step.started", finished))).label("last_finished_at"),
        )
        .where(
            events.c.stream.in_(select(f.stream).distinct()),
            kind.in_(["step.started", "step.passed", "step.failed"]),
        )
        .group_by(events.c.stream)
    )
    return {row.pop("stream"): row for row in fetch(store, query)}


def retries(store: EventStore, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Steps of runs that took more than one attempt: how many, and what made them pass in the end."""
    # Every attempt but the last of a step failed (a failure is what leads to another attempt), so
    # the steps that needed retries are among those with a failed attempt in the window.
    counts = _attempt_counts(store, flt)
    rows = []
    for failed in _failed_steps(store, flt):
        count = counts.get(failed["stream"])
        if count is None or (count["attempts"] or 0) < 2:
            continue
        running = (count["last_attempt"] or 0) > (count["last_finished_attempt"] or 0)
        if running:
            last_outcome = "running"
        else:
            last_outcome = "passed" if count["passed_on"] == count["last_attempt"] else "failed"
        rows.append({
            "run_id": failed["run_id"],
            "workstream_id": failed["workstream_id"],
            "step_id": failed["step_id"],
            "attempts": count["attempts"],
            "failures": failed["failures"],
            "passed_on": count["passed_on"],
            "last_attempt": count["last_attempt"],
            "last_outcome": last_outcome,
            "first_started_at": failed["first_started_at"],
            "last_finished_at": count["last_finished_at"],
            "last_failure": _failure_text(failed),
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


def _failure_text(failure: dict[str, Any]) -> str:
    detail = failure.get("error_signature") or ""
    reason = failure.get("reason") or "failed"
    return f"{reason}: {detail}" if detail else reason


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
