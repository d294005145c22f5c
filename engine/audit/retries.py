"""`retries`: which steps needed more than one attempt, how many, and what made them pass."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stepledger.store.port import AuditQueries
from stepledger.store.port import AuditReader as Reader

from .filters import AuditFilter
from .queries import NO_FILTER, actions_in
from .signatures import failure_words, signature_text
from .sources import SEPARATOR, WorkstreamCodes, retried_steps


def retries(store: AuditQueries, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Steps of runs that took more than one attempt: how many, and what made them pass in the end."""
    return newest_retries(store, flt)[0]


def newest_retries(
    store: AuditQueries, flt: AuditFilter = NO_FILTER, newest: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The newest `newest` rows of `retries` (all of them if None), oldest first, and how many there
    are in all."""
    # Every attempt but the last of a step failed (a failure is what leads to another attempt), so
    # the steps that needed retries are among those with a failure in the window; their counts
    # cover all of the step's attempts in that run.
    with store.audit_reading() as reader:
        steps, total = retried_steps(reader, flt, newest)
        rows = _rows(steps, WorkstreamCodes(reader))
        by_step = _actions_by_step(reader, flt, {r["run_id"] for r in rows})
    if by_step:
        for row in rows:
            step_actions = by_step.get((row["run_id"], row["step_id"]))
            if step_actions:
                row["resolution"] = _resolution(row, step_actions)
    return rows, total


def _rows(steps: list[tuple[Any, ...]], codes: WorkstreamCodes) -> list[dict[str, Any]]:
    """The answer's rows, with the resolution each has when no operator acted on its step.

    One pass with a dict display per row: tens of thousands of rows, and building them with
    dict(zip()) and then setting keys took two thirds longer.
    """
    rows = []
    names = codes.names
    for step in steps:
        run_id, step_id, attempts, failures, passed_on, last_attempt, outcome, first, last, packed = step
        _, reason, signature = packed.split(SEPARATOR, 2)
        error = signature_text(signature)
        ended = failure_words(reason or None, _exit_code(signature))
        rows.append({
            "run_id": run_id, "workstream_id": names[codes[run_id]], "step_id": step_id,
            "attempts": attempts, "failures": failures, "passed_on": passed_on, "last_attempt": last_attempt,
            "last_outcome": outcome, "first_started_at": first, "last_finished_at": last,
            "last_failure": f"{ended}: {error}" if error else ended,
            "resolution": _unattended(outcome, passed_on, last_attempt, failures),
        })  # fmt: skip
    return rows


def _exit_code(signature: str) -> int | None:
    """The exit code a signature (`reason:code:lines`) holds, if any."""
    code = signature.split(":", 2)[1] if signature.count(":") >= 2 else ""
    return int(code) if code.lstrip("-").isdigit() else None


def _unattended(outcome: str, passed_on: int | None, last_attempt: int, failures: int) -> str:
    if outcome == "passed":
        return f"passed on attempt {passed_on} (automatic retry)"
    if outcome == "running":
        return f"attempt {last_attempt} still running"
    return f"never passed ({failures} failed attempts)"


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


def _resolution(row: dict[str, Any], step_actions: Sequence[dict[str, Any]]) -> str:
    """What made a retried step pass (or that it did not), given the operator actions on it."""
    by_kind = {a["action"]: a for a in step_actions}  # the latest of each kind
    retry = by_kind.get("retry")
    if row["last_outcome"] == "passed" and retry is not None:
        return _with_reason(f"passed on attempt {row['passed_on']} after a retry by {retry['actor']}", retry)
    if row["last_outcome"] != "passed":
        for kind, verb in (("mark-passed", "marked passed"), ("skip", "skipped")):
            if kind in by_kind:
                return _with_reason(f"{verb} by {by_kind[kind]['actor']}", by_kind[kind])
    return _unattended(row["last_outcome"], row["passed_on"], row["last_attempt"], row["failures"])
