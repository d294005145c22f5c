"""The attempt rows the audit aggregates, as SQLAlchemy selects over the `events` table.

They compute what the `attempts` view computes, but one outcome at a time: a question about
failures reads only step.failed events (through the type index), with no join back to the
step.started event and no per-row subquery, which is what keeps a million-event log under a
second. JSON fields go through SQLAlchemy's JSON operators, which render `json_extract` on SQLite
and `->>` on PostgreSQL. The run's workstream id comes from the `runs` projection, read once per
query into a materialized CTE (`run_workstreams`) and joined from there: a per-row lookup in `runs`
or in the run.started payload reads the whole recorded workstream each time. Tests check these rows
equal the view's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import CTE, Subquery, and_, func, literal, select

from stepledger.events import RecordedEvent
from stepledger.store.schema import events, runs

from .filters import AuditFilter

_p = events.c.payload
# A step stream is "<run_id>/<step_id>" (events.types.step_stream).
STEP_ID = func.substr(events.c.stream, func.length(events.c.run_id) + 2)


# (run_id, workstream_id) of every run, computed once per query. One object shared by every query,
# so a query that uses it twice (retries) renders it once.
RUN_WORKSTREAMS: CTE = (
    select(runs.c.run_id, runs.c.workstream_id).cte("run_workstreams").prefix_with("MATERIALIZED")
)


def finished_attempts(outcome: str, flt: AuditFilter) -> Subquery:
    """Passed or failed attempts (one row per outcome event) matching `flt`, as a subquery."""
    started = _p["started_at"].as_float()
    finished = _p["finished_at"].as_float()
    rw = RUN_WORKSTREAMS
    columns: list[Any] = [
        events.c.run_id,
        rw.c.workstream_id,
        STEP_ID.label("step_id"),
        events.c.stream,
        _p["attempt"].as_integer().label("attempt"),
        started.label("started_at"),
        finished.label("finished_at"),
        (finished - started).label("duration_s"),
        literal(outcome).label("outcome"),
        events.c.position,
    ]
    if outcome == "failed":
        columns += [
            _p["reason"].as_string().label("reason"),
            _p["exit_code"].as_integer().label("exit_code"),
            _p["error_signature"].as_string().label("error_signature"),
        ]
    conditions: list[Any] = [events.c.type == f"step.{outcome}"]
    if flt.workstream_id is not None:
        conditions.append(rw.c.workstream_id == flt.workstream_id)
    if flt.run_id is not None:
        conditions.append(events.c.run_id == flt.run_id)
    if flt.step_id is not None:
        conditions.append(flt.step_id == STEP_ID)
    if flt.since is not None:
        conditions.append(started >= flt.since)
    if flt.until is not None:
        conditions.append(started < flt.until)
    joined = events.outerjoin(rw, rw.c.run_id == events.c.run_id)
    return select(*columns).select_from(joined).where(and_(*conditions)).subquery(f"{outcome}_attempts")


def attempts_of(recorded: Iterable[RecordedEvent], workstream_id: str | None) -> list[dict[str, Any]]:
    """The attempt rows (the `attempts` view's columns) of a run's or a stream's events, in log order."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for event in recorded:
        p = event.payload
        if event.type == "step.started":
            rows[(event.stream, p["attempt"])] = {
                "run_id": event.run_id, "workstream_id": workstream_id, "step_id": event.step_id,
                "stream": event.stream, "attempt": p["attempt"], "host": p.get("host"), "pid": p.get("pid"),
                "started_at": event.recorded_at, "finished_at": None, "duration_s": None,
                "outcome": "running", "reason": None, "exit_code": None, "error_signature": None,
                "output_excerpt": None, "position": event.position,
            }  # fmt: skip
        elif event.type in ("step.passed", "step.failed"):
            row = rows.get((event.stream, p["attempt"]))
            if row is None:  # an outcome whose start is not in the events given: keep what it says
                row = rows[(event.stream, p["attempt"])] = {"run_id": event.run_id,
                    "workstream_id": workstream_id, "step_id": event.step_id, "stream": event.stream,
                    "attempt": p["attempt"], "host": None, "pid": None}  # fmt: skip
            failed = event.type == "step.failed"
            row.update({
                "started_at": p["started_at"], "finished_at": p["finished_at"],
                "duration_s": p["finished_at"] - p["started_at"], "outcome": "failed" if failed else "passed",
                "reason": p.get("reason") if failed else None,
                "exit_code": p.get("exit_code") if failed else None,
                "error_signature": p.get("error_signature") if failed else None,
                "output_excerpt": p.get("output_excerpt") if failed else None,
                "position": event.position,
            })  # fmt: skip
    return list(rows.values())
