"""`retries`: which steps needed more than one attempt, how many, and what made them pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepledger.store.port import EventStore

from .filters import AuditFilter
from .queries import NO_FILTER, actions_in
from .reader import Reader, reading
from .sources import RETRY_COLUMNS, SEPARATOR, WorkstreamCodes, retried_steps


def retries(store: EventStore, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Steps of runs that took more than one attempt: how many, and what made them pass in the end."""
    # Every attempt but the last of a step failed (a failure is what leads to another attempt), so
    # the steps that needed retries are among those with a failure in the window; their counts
    # cover all of the step's attempts in that run.
    with reading(store) as reader:
        codes = WorkstreamCodes(reader)
        rows = [dict(zip(RETRY_COLUMNS, step, strict=True)) for step in retried_steps(reader, flt)]
        by_step = _actions_by_step(reader, flt, {r["run_id"] for r in rows})
    names = codes.names
    for row in rows:
        row["workstream_id"] = names[codes[row["run_id"]]]
        _, reason, signature = row["last_failure"].split(SEPARATOR, 2)
        reason = reason or "failed"
        row["last_failure"] = f"{reason}: {signature}" if signature else reason
        row["resolution"] = _resolution(
            row, by_step.get((row["run_id"], row["step_id"])) if by_step else None
        )
    return rows


def _actions_by_step(
    reader: Reader, flt: AuditFilter, run_ids: set[str]
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    # Operator actions are few. The time window does not apply: a retry requested after the window
    # can still be what made a step of the window pass.
    if not run_ids:
        return {}
    scope = AuditFilter(workstream_id=flt.workstream_id, run_id=flt.run_id, step_id=flt.step_id)
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in actions_in(reader, scope):
        if row["run_id"] in run_ids and row["step_id"]:
            found.setdefault((row["run_id"], row["step_id"]), []).append(row)
    return found


def _with_reason(text: str, action: dict[str, Any]) -> str:
    return f"{text} ({action['reason']})" if action.get("reason") else text


def _resolution(row: dict[str, Any], step_actions: Sequence[dict[str, Any]] | None) -> str:
    """What made a retried step pass (or that it did not): an automatic retry, an operator, nothing yet."""
    outcome = row["last_outcome"]
    if not step_actions:  # most steps: no operator touched them
        if outcome == "passed":
            return f"passed on attempt {row['passed_on']} (automatic retry)"
        if outcome == "running":
            return f"attempt {row['last_attempt']} still running"
        return f"never passed ({row['failures']} failed attempts)"
    by_kind = {a["action"]: a for a in step_actions}  # the latest of each kind
    if outcome == "passed":
        retry = by_kind.get("retry")
        if retry is not None:
            return _with_reason(
                f"passed on attempt {row['passed_on']} after a retry by {retry['actor']}", retry
            )
        return f"passed on attempt {row['passed_on']} (automatic retry)"
    for kind, verb in (("mark-passed", "marked passed"), ("skip", "skipped")):
        if kind in by_kind:
            return _with_reason(f"{verb} by {by_kind[kind]['actor']}", by_kind[kind])
    if outcome == "running":
        return f"attempt {row['last_attempt']} still running"
    return f"never passed ({row['failures']} failed attempts)"
