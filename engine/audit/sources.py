"""The scans behind the cross-run audit questions: SQL over the `step_outcomes` projection.

`durations`, `failures` and `retries` read the step.passed and step.failed events of the whole log,
whose fields `step_outcomes` holds as plain columns (one narrow row per outcome, written with the
event, in log order): no event row, no JSON parsing. The queries group what they read (SQLite sorts
it, a few hundred thousand short rows). The run's workstream is not in `events`; it comes from the
`runs` projection in a second small query (one row per run) and is joined in Python, where it costs
a dict lookup per outcome instead of a join per event in SQL. Big answers come back as one row per
step holding arrays (`json_group_array` on SQLite, `array_agg` on PostgreSQL): building a Python row
per outcome cost more than the query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from stepledger.events import RecordedEvent, StepFailed, StepPassed, StepStarted
from stepledger.store.port import AuditReader as Reader

from .filters import AuditFilter, where

PASSED, FAILED = "outcome = 'passed'", "outcome = 'failed'"


def _array(reader: Reader, sql: str) -> str:
    return f"json_group_array({sql})" if reader.dialect == "sqlite" else f"array_agg({sql})"


def _exact(reader: Reader, sql: str) -> str:
    # SQLite writes a float into a JSON array with 15 significant digits, which loses the last
    # digits of an epoch time; 17 give it back exactly (as text, which float() reads).
    return f"printf('%!.17g', {sql})" if reader.dialect == "sqlite" else sql


def as_list(value: Any) -> list[Any]:
    """An aggregated array as a list: SQLite gives JSON text, psycopg a list already."""
    # orjson: half the time of the standard decoder for the 650 arrays of a whole-log `durations`.
    return orjson.loads(value) if isinstance(value, str) else list(value or ())


def run_workstreams(reader: Reader) -> dict[str, str]:
    """The workstream id of every run, from the `runs` projection."""
    rows = reader.rows("SELECT run_id, workstream_id FROM runs")
    return {run_id: workstream_id for run_id, workstream_id in rows}


class WorkstreamCodes(dict[str, int]):
    """Run id -> a small number per workstream, so that thousands of outcomes are grouped by
    workstream in C loops (map, sorted, groupby) rather than a Python statement each; `names[n]` is
    the workstream id of number n (0: None, for a run missing from the `runs` projection)."""

    def __init__(self, reader: Reader) -> None:
        workstream_of = run_workstreams(reader)
        self.names: list[str | None] = [None, *sorted(set(workstream_of.values()))]
        number = {name: i for i, name in enumerate(self.names)}
        super().__init__((run, number[name]) for run, name in workstream_of.items())

    def __missing__(self, run_id: str) -> int:
        return 0


def passed_by_step(reader: Reader, flt: AuditFilter) -> list[tuple[str, list[Any], list[Any], list[Any]]]:
    """Per step id: the runs, positions and durations (whole microseconds) of its passed attempts;
    no runs (an empty list) when `flt` names the workstream, which is then theirs."""
    params: dict[str, Any] = {}
    conditions = [PASSED, *flt.conditions(params, time="started_at", workstream=None)]
    # Integers: SQLite prints a float into the array much more slowly.
    micros = "CAST((finished_at - started_at) * 1000000 AS BIGINT)"
    runs = "NULL" if flt.workstream_id is not None else _array(reader, "run_id")
    query = (
        f"SELECT step_id, {runs}, {_array(reader, 'position')}, {_array(reader, micros)} "
        f"FROM step_outcomes {where(conditions)} GROUP BY step_id ORDER BY step_id"
    )
    return [(step, as_list(r), as_list(p), as_list(d)) for step, r, p, d in reader.rows(query, params)]


def failed_by_step(
    reader: Reader, flt: AuditFilter
) -> list[tuple[str, list[Any], list[Any], list[Any], list[Any]]]:
    """Per step id: the runs, error signatures, start times (float, or its exact text) and positions
    of its failed attempts."""
    params: dict[str, Any] = {}
    conditions = [FAILED, *flt.conditions(params, time="started_at", workstream=None)]
    arrays = ", ".join(
        _array(reader, sql)
        for sql in ("run_id", "coalesce(error_signature, '')", _exact(reader, "started_at"), "position")
    )
    query = (
        f"SELECT step_id, {arrays} FROM step_outcomes {where(conditions)} GROUP BY step_id ORDER BY step_id"
    )
    return [
        (step, as_list(r), as_list(s), as_list(t), as_list(p))
        for step, r, s, t, p in reader.rows(query, params)
    ]


SEPARATOR = "\x1f"  # between the parts of `last_failure` as retried_steps returns it


def _last_failure(reader: Reader) -> str:
    """The latest failure of a group as one string: its attempt (zero-padded, so the strings' max()
    is the last attempt's), reason and error signature, each after a SEPARATOR. Reading the latest
    failed row back instead (a join on its attempt) cost a second read per step."""
    if reader.dialect == "sqlite":
        return (f"max(CASE WHEN {FAILED} THEN printf('%010d', attempt) || char(31) || coalesce(reason, '') "
                "|| char(31) || coalesce(error_signature, '') END)")  # fmt: skip
    return (f"max((CASE WHEN {FAILED} THEN lpad(attempt::text, 10, '0') || chr(31) || coalesce(reason, '') "
            "|| chr(31) || coalesce(error_signature, '') END) COLLATE \"C\")")  # fmt: skip


def _of(outcome: str, aggregate: str, column: str) -> str:
    """`aggregate` of `column` over the group's rows of one outcome (NULL if it has none)."""
    return f"{aggregate}(CASE WHEN {outcome} THEN {column} END)"


def retried_steps(
    reader: Reader, flt: AuditFilter, newest: int | None = None
) -> tuple[list[tuple[Any, ...]], int]:
    """Per step stream with a failed attempt in `flt` and more than one attempt, in the order of their
    first attempt: (run_id, step_id, attempts, failures, passed_on, last_attempt, last_outcome,
    first_started_at, last_finished_at, last_failure), `last_failure` being "attempt SEPARATOR
    reason SEPARATOR signature" (Python splits it faster than SQLite does); only the `newest` of
    them if given; and how many there are in all.

    One pass over the outcomes of the streams with a failure in the window groups each stream's
    failures and its pass, if any. A passed step never runs again, so a stream with a pass has an
    outcome for every attempt (failures + 1 attempts); one without may have an attempt running (a
    start with no outcome yet): only those streams are looked up in their step.started events,
    through the (stream, version) key.
    """
    least, greatest = ("min", "max") if reader.dialect == "sqlite" else ("LEAST", "GREATEST")
    started_attempt = reader.json_field("s", "attempt", "int")
    params: dict[str, Any] = {}
    conditions = flt.conditions(params, workstream=None)
    window = flt.window(params, "started_at")
    in_window = " AND ".join([FAILED, *window])
    # Only the streams with a failure in the window are grouped: a fifth of the outcomes to sort.
    retried = f"(run_id, step_id) IN (SELECT run_id, step_id FROM step_outcomes WHERE {in_window})"
    failures = _of(FAILED, "sum", "1")
    starts = "FROM events AS s WHERE s.stream = g.run_id || '/' || g.step_id AND s.type = 'step.started'"
    passed = "g.passed_on IS NOT NULL"
    query = f"""WITH g AS (
SELECT run_id, step_id, {failures} AS failures, {_of(FAILED, "max", "attempt")} AS last_failed,
    {_of(FAILED, "min", "started_at")} AS first_started, {_of(FAILED, "max", "finished_at")} AS last_finished,
    {_last_failure(reader)} AS last_failure, {_of(PASSED, "max", "attempt")} AS passed_on,
    {_of(PASSED, "min", "started_at")} AS passed_started,
    {_of(PASSED, "max", "finished_at")} AS passed_finished
FROM step_outcomes {where([*conditions, retried])}
GROUP BY run_id, step_id),
o AS (
SELECT g.*,
    CASE WHEN g.passed_on IS NULL THEN (SELECT count(*) {starts}) END AS starts,
    CASE WHEN g.passed_on IS NULL THEN (SELECT max({started_attempt}) {starts})
        END AS last_started
FROM g),
r AS (
SELECT g.run_id, g.step_id,
    CASE WHEN {passed} THEN g.failures + 1 ELSE {greatest}(g.starts, g.failures) END AS attempts,
    g.failures, g.passed_on,
    CASE WHEN {passed} THEN g.passed_on ELSE {greatest}(coalesce(g.last_started, 0), g.last_failed) END
        AS last_attempt,
    CASE WHEN {passed} THEN 'passed' WHEN coalesce(g.last_started, 0) > g.last_failed THEN 'running'
        ELSE 'failed' END AS last_outcome,
    {least}(g.first_started, coalesce(g.passed_started, g.first_started)) AS first_started_at,
    {greatest}(g.last_finished, coalesce(g.passed_finished, g.last_finished)) AS last_finished_at,
    g.last_failure
FROM o AS g)
SELECT * FROM r WHERE attempts > 1 ORDER BY first_started_at, run_id, step_id"""
    if newest is None:
        rows = reader.rows(query, params)
        return rows, len(rows)
    # Only the newest rows leave the database, with the count of all of them: a table shows no more,
    # and bringing tens of thousands of rows into Python cost more than the query.
    params["newest"] = newest
    order = "first_started_at, run_id, step_id"
    query = query.replace(
        f"SELECT * FROM r WHERE attempts > 1 ORDER BY {order}",
        f"SELECT * FROM (SELECT r.*, count(*) OVER () AS total FROM r WHERE attempts > 1 "
        f"ORDER BY {order.replace(',', ' DESC,')} DESC LIMIT :newest) AS n ORDER BY {order}",
    )
    rows = reader.rows(query, params)
    return [row[:-1] for row in rows], (rows[0][-1] if rows else 0)


def attempts_of(recorded: Iterable[RecordedEvent], workstream_id: str | None) -> list[dict[str, Any]]:
    """The attempt rows (the `attempts` view's columns) of a run's or a stream's events, in log order."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for event in recorded:
        p = event.payload
        if event.type == StepStarted.type_name:
            rows[(event.stream, p["attempt"])] = {
                "run_id": event.run_id, "workstream_id": workstream_id, "step_id": event.step_id,
                "stream": event.stream, "attempt": p["attempt"], "host": p.get("host"), "pid": p.get("pid"),
                "started_at": event.recorded_at, "finished_at": None, "duration_s": None,
                "outcome": "running", "reason": None, "exit_code": None, "error_signature": None,
                "output_excerpt": None, "position": event.position,
            }  # fmt: skip
        elif event.type in (StepPassed.type_name, StepFailed.type_name):
            row = rows.get((event.stream, p["attempt"]))
            if row is None:  # an outcome whose start is not in the events given: keep what it says
                row = rows[(event.stream, p["attempt"])] = {"run_id": event.run_id,
                    "workstream_id": workstream_id, "step_id": event.step_id, "stream": event.stream,
                    "attempt": p["attempt"], "host": None, "pid": None}  # fmt: skip
            failed = event.type == StepFailed.type_name
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
