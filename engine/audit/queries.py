"""Audit questions answered in SQL: timeline, failures, actions and run summaries."""

from __future__ import annotations

from typing import Any

from stepledger.engine.errors import RunNotFound
from stepledger.events import loads
from stepledger.store.port import EventStore

from .filters import AuditFilter, where
from .reader import Reader, chunks, in_list, reading
from .sources import attempts_of, failed_by_step, run_workstreams

ATTEMPT_TYPES = ("step.started", "step.passed", "step.failed")
NO_FILTER = AuditFilter()
RUN_SUMMARY_COLUMNS = (
    "run_id, workstream_id, status, started_at, finished_at, elapsed_s, passed, failed, blocked, skipped, "
    "sequential_s, resumes, cancel_requests"
)


def _in_window(row: dict[str, Any], flt: AuditFilter) -> bool:
    at = row["started_at"]
    return (flt.since is None or at >= flt.since) and (flt.until is None or at < flt.until)


def run_summaries_rows(store: EventStore, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """One row per run (the run_summaries view), oldest first; the step filter does not apply."""
    params: dict[str, Any] = {}
    conditions = flt.conditions(params, step=None, time="started_at")
    query = f"SELECT {RUN_SUMMARY_COLUMNS} FROM run_summaries {where(conditions)} ORDER BY started_at, run_id"
    with reading(store) as reader:
        return reader.dicts(query, params)


def run_summary(store: EventStore, run_id: str) -> dict[str, Any]:
    """The run_summaries row of `run_id`; RunNotFound if the log has no such run."""
    with reading(store) as reader:
        rows = reader.dicts(
            f"SELECT {RUN_SUMMARY_COLUMNS} FROM run_summaries WHERE run_id = :r", {"r": run_id}
        )
    if not rows:
        raise RunNotFound(f"no run {run_id!r} in this log; `stepledger runs` lists the runs")
    return rows[0]


def timeline(store: EventStore, run_id: str, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Every attempt of every step of `run_id` in start order, with its offset from the run's start."""
    summary = run_summary(store, run_id)
    # One run's attempt events come through the run_id index; pairing starts with outcomes is
    # cheaper in Python than the view's per-attempt join.
    recorded = store.find_events(run_id=run_id, step_id=flt.step_id, types=ATTEMPT_TYPES)
    rows = [r for r in attempts_of(recorded, summary["workstream_id"]) if _in_window(r, flt)]
    rows.sort(key=lambda r: (r["started_at"], r["step_id"], r["attempt"]))
    origin = min([summary["started_at"], *(r["started_at"] for r in rows)])
    for row in rows:
        row["offset_s"] = row["started_at"] - origin
    return rows


def failures(store: EventStore, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Failed attempts grouped by workstream, step and error signature: counts, first/last seen, excerpt."""
    with reading(store) as reader:
        workstream_of = run_workstreams(reader)
        groups: dict[tuple[Any, str, str], dict[str, Any]] = {}
        for step, runs, signatures, starts, positions in failed_by_step(reader, flt):
            for run_id, signature, start, position in zip(runs, signatures, starts, positions, strict=True):
                started = float(start)
                key = (workstream_of.get(run_id), step, signature or "")
                group = groups.get(key)
                if group is None:
                    groups[key] = {"runs": {run_id}, "count": 1, "first_seen": started,
                                   "last_seen": started, "last_position": position}  # fmt: skip
                    continue
                group["runs"].add(run_id)
                group["count"] += 1
                group["first_seen"] = min(group["first_seen"], started)
                group["last_seen"] = max(group["last_seen"], started)
                group["last_position"] = max(group["last_position"], position)
        latest = _latest_failures(reader, [g["last_position"] for g in groups.values()])
    rows = []
    for (workstream_id, step, signature), group in groups.items():
        last_run_id, payload = latest[group["last_position"]]
        rows.append({
            "workstream_id": workstream_id, "step_id": step, "error_signature": signature,
            "count": group["count"], "runs": len(group["runs"]), "first_seen": group["first_seen"],
            "last_seen": group["last_seen"], "last_run_id": last_run_id, "reason": payload.get("reason"),
            "exit_code": payload.get("exit_code"), "output_excerpt": payload.get("output_excerpt") or "",
        })  # fmt: skip
    rows.sort(key=lambda r: (-r["count"], r["workstream_id"] or "", r["step_id"], r["error_signature"]))
    return rows


def _latest_failures(reader: Reader, positions: list[int]) -> dict[int, tuple[str, dict[str, Any]]]:
    """(run id, payload) of the events at `positions` (each group's latest failure)."""
    found: dict[int, tuple[str, dict[str, Any]]] = {}
    for chunk in chunks(sorted(positions)):
        params: dict[str, Any] = {}
        query = f"SELECT position, run_id, payload FROM events WHERE {in_list('position', chunk, params)}"
        for position, run_id, payload in reader.rows(query, params):
            found[position] = (run_id, loads(payload) if isinstance(payload, str) else payload)
    return found


def actions(store: EventStore, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Every operator action (cancel, skip, mark-passed, retry) with who, when and why, oldest first."""
    with reading(store) as reader:
        return actions_in(reader, flt)


def actions_in(reader: Reader, flt: AuditFilter) -> list[dict[str, Any]]:
    """`actions`, inside a read already open."""
    params: dict[str, Any] = {}
    conditions = flt.conditions(params, time="at")
    query = (
        "SELECT at, action, actor, run_id, workstream_id, step_id, reason FROM operator_actions "
        f"{where(conditions)} ORDER BY at, position"
    )
    return reader.dicts(query, params)
