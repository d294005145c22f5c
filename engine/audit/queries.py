"""Audit questions answered in SQL: timeline, failures, retries, actions and run summaries."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import BigInteger, String, cast, desc, func, select

from stepledger.engine.errors import RunNotFound
from stepledger.events import RecordedEvent
from stepledger.store.port import EventStore
from stepledger.store.schema import events

from .filters import AuditFilter
from .sources import attempts_of, finished_attempts
from .views import fetch, fetch_tuples, operator_actions, run_summaries

_CHUNK = 500  # streams or positions per IN list: well under every driver's parameter limit
ATTEMPT_TYPES = ("step.started", "step.passed", "step.failed")
NO_FILTER = AuditFilter()


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _in_window(row: dict[str, Any], flt: AuditFilter) -> bool:
    at = row["started_at"]
    return (flt.since is None or at >= flt.since) and (flt.until is None or at < flt.until)


def run_summaries_rows(store: EventStore, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """One row per run (the run_summaries view), oldest first; the step filter does not apply."""
    query = select(run_summaries).where(*flt.where(run_summaries, "started_at"))
    return fetch(store, query.order_by(run_summaries.c.started_at, run_summaries.c.run_id))


def run_summary(store: EventStore, run_id: str) -> dict[str, Any]:
    """The run_summaries row of `run_id`; RunNotFound if the log has no such run."""
    rows = fetch(store, select(run_summaries).where(run_summaries.c.run_id == run_id))
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
    f = finished_attempts("failed", flt).c
    signature = func.coalesce(f.error_signature, "")
    query = (
        select(
            f.workstream_id,
            f.step_id,
            signature.label("error_signature"),
            func.count().label("count"),
            func.count(f.run_id.distinct()).label("runs"),
            func.min(f.started_at).label("first_seen"),
            func.max(f.started_at).label("last_seen"),
            func.max(f.position).label("last_position"),
        )
        .group_by(f.workstream_id, f.step_id, signature)
        .order_by(desc("count"), f.workstream_id, f.step_id, signature)
    )
    groups = fetch(store, query)
    latest = _events_at(store, [g["last_position"] for g in groups])
    for group in groups:
        last = latest[group.pop("last_position")]
        group["last_run_id"] = last.run_id
        group["reason"] = last.payload.get("reason")
        group["exit_code"] = last.payload.get("exit_code")
        group["output_excerpt"] = last.payload.get("output_excerpt") or ""
    return groups


def _events_at(store: EventStore, positions: Sequence[int]) -> dict[int, RecordedEvent]:
    found: dict[int, RecordedEvent] = {}
    for chunk in _chunks(list(positions)):
        for row in fetch(store, select(events).where(events.c.position.in_(chunk))):
            found[row["position"]] = RecordedEvent(**row)
    return found


def actions(store: EventStore, flt: AuditFilter = NO_FILTER) -> list[dict[str, Any]]:
    """Every operator action (cancel, skip, mark-passed, retry) with who, when and why, oldest first."""
    o = operator_actions.c
    query = select(o.at, o.action, o.actor, o.run_id, o.workstream_id, o.step_id, o.reason)
    query = query.where(*flt.where(operator_actions, "at")).order_by(o.at, o.position)
    return fetch(store, query)


def passed_durations(
    store: EventStore, flt: AuditFilter = NO_FILTER
) -> list[tuple[str | None, str, list[tuple[int, float]]]]:
    """(workstream_id, step_id, [(position, duration_s), ...]) per step, over passed attempts."""
    p = finished_attempts("passed", flt).c
    # One string of "position:microseconds" pairs per step instead of one row per attempt: turning
    # a million-event log's 200,000 passed attempts into Python rows cost more than the query, and
    # integers print far faster than floats. Positions give the time order (commit order).
    micros = cast(cast(p.duration_s * 1_000_000, BigInteger), String)
    pairs = func.aggregate_strings(cast(p.position, String) + ":" + micros, ",")
    query = select(p.workstream_id, p.step_id, pairs).group_by(p.workstream_id, p.step_id)
    result = []
    for workstream_id, step_id, joined in fetch_tuples(store, query):
        numbers = [int(n) for n in joined.replace(":", ",").split(",")] if joined else []
        samples = [
            (position, us / 1_000_000) for position, us in zip(numbers[0::2], numbers[1::2], strict=True)
        ]
        result.append((workstream_id, step_id, samples))
    return result
