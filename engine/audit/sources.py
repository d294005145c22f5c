"""The scans behind the cross-run audit questions: SQL over the outcome events' audit indexes.

`durations`, `failures` and `retries` read the step.passed and step.failed events of the whole log.
Each query here states its index's condition (`type = 'step.passed'`, ...) and names only what that
index holds (store/audit_indexes.py, migration 0005), spelled exactly as the index spells it, so
SQLite answers from the index alone, in its key order (step id, then run): no event row, no JSON
parsing, no sort. The run's workstream is not in `events`; it comes from the `runs` projection in a
second small query (one row per run) and is joined in Python, where it costs a dict lookup per
outcome instead of a join per event in SQL. Big answers come back as one row per step holding arrays
(`json_group_array` on SQLite, `array_agg` on PostgreSQL): building a Python row per outcome cost
more than the query.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from stepledger.events import RecordedEvent
from stepledger.store.audit_indexes import payload_field, step_id, where_sql

from .filters import AuditFilter, where
from .reader import Reader

PASSED, FAILED = "ix_events_passed_attempts", "ix_events_failed_attempts"
STEP = step_id()


def _field(reader: Reader, path: str, kind: str = "text", table: str = "") -> str:
    return payload_field(reader.dialect, path, kind, table)


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
    started, finished = _field(reader, "started_at", "float"), _field(reader, "finished_at", "float")
    params: dict[str, Any] = {}
    conditions = [where_sql(PASSED), *flt.conditions(params, step=STEP, time=started, workstream=None)]
    # Integers: SQLite prints a float into the array at a third of the speed (0.1 s for 200,000).
    micros = f"CAST(({finished} - {started}) * 1000000 AS BIGINT)"
    runs = "NULL" if flt.workstream_id is not None else _array(reader, "run_id")
    # min() of the step id: as a bare output column SQLite would read it from the event row.
    query = (
        f"SELECT min({STEP}), {runs}, {_array(reader, 'position')}, "
        f"{_array(reader, micros)} FROM events {where(conditions)} GROUP BY {STEP}"
    )
    return [(step, as_list(r), as_list(p), as_list(d)) for step, r, p, d in reader.rows(query, params)]


def failed_by_step(
    reader: Reader, flt: AuditFilter
) -> list[tuple[str, list[Any], list[Any], list[Any], list[Any]]]:
    """Per step id: the runs, error signatures, start times (float, or its exact text) and positions
    of its failed attempts."""
    started = _field(reader, "started_at", "float")
    params: dict[str, Any] = {}
    conditions = [where_sql(FAILED), *flt.conditions(params, step=STEP, time=started, workstream=None)]
    arrays = ", ".join(
        _array(reader, sql)
        for sql in (
            "run_id",
            f"coalesce({_field(reader, 'error_signature')}, '')",
            _exact(reader, started),
            "position",
        )
    )
    query = f"SELECT min({STEP}), {arrays} FROM events {where(conditions)} GROUP BY {STEP}"
    return [
        (step, as_list(r), as_list(s), as_list(t), as_list(p))
        for step, r, s, t, p in reader.rows(query, params)
    ]


SEPARATOR = "\x1f"  # between the parts of `last_failure` as retried_steps returns it


def _last_failure(reader: Reader) -> str:
    """The latest failure of a group as one string: its attempt (zero-padded, so the strings' max()
    is the last attempt's), reason and error signature, each after a SEPARATOR. Reading the latest
    failed event back instead (a join on its attempt) cost SQLite a read of its row per step."""
    attempt, reason, signature = (
        payload_field(reader.dialect, path, kind) for path, kind in (("attempt", "int"), ("reason", "text"),
                                                                     ("error_signature", "text"))
    )  # fmt: skip
    if reader.dialect == "sqlite":
        return (f"max(printf('%010d', {attempt}) || char(31) || coalesce({reason}, '') || char(31) "
                f"|| coalesce({signature}, ''))")  # fmt: skip
    return (f"max((lpad({attempt}::text, 10, '0') || chr(31) || coalesce({reason}, '') || chr(31) "
            f"|| coalesce({signature}, '')) COLLATE \"C\")")  # fmt: skip


def _passed_of_g(reader: Reader) -> str:
    """The join of each group `g` to its stream's step.passed event, `p`."""
    if reader.dialect == "sqlite":  # a seek into the passes' index, which holds all that is read
        return (
            f"LEFT JOIN events AS p ON p.{where_sql(PASSED)} AND {step_id('p')} = g.step_id "
            "AND p.run_id = g.run_id"
        )
    # PostgreSQL reads the event's row either way (no index-only scan on expressions): through the
    # stream's key it is a seek per group, where its planner chose to sort every pass of the log.
    return (
        "LEFT JOIN LATERAL (SELECT position, payload FROM events AS p WHERE p.stream = g.run_id || '/' || "
        "g.step_id AND p.type || '' = 'step.passed' LIMIT 1) AS p ON true"
    )


def retried_steps(
    reader: Reader, flt: AuditFilter, newest: int | None = None
) -> tuple[list[tuple[Any, ...]], int]:
    """Per step stream with a failed attempt in `flt` and more than one attempt, in the order of their
    first attempt: (run_id, step_id, attempts, failures, passed_on, last_attempt, last_outcome,
    first_started_at, last_finished_at, last_failure), `last_failure` being "attempt SEPARATOR
    reason SEPARATOR signature" (Python splits it faster than SQLite does); only the `newest` of
    them if given; and how many there are in all.

    The failed attempts are grouped per stream in the failures' index order; each group then finds
    its pass, if any, by a seek into the passes' index. A passed step never runs again, so a stream
    with a pass has an outcome for every attempt (failures + 1 attempts); one without may have an
    attempt running (a start with no outcome yet): only those streams are looked up in their
    step.started events, through the (stream, version) key (`type || ''` keeps SQLite off the type
    index, which would visit every start of the log for each stream).
    """

    def field(path: str, kind: str = "text", table: str = "") -> str:
        return _field(reader, path, kind, table)

    least, greatest = ("min", "max") if reader.dialect == "sqlite" else ("LEAST", "GREATEST")
    params: dict[str, Any] = {}
    conditions = [where_sql(FAILED), *flt.conditions(params, step=STEP, workstream=None)]
    window = flt.window(params, field("started_at", "float"))
    having = f"HAVING max(CASE WHEN {' AND '.join(window)} THEN 1 ELSE 0 END) = 1" if window else ""
    starts = (
        "FROM events AS s WHERE s.stream = g.run_id || '/' || g.step_id AND s.type || '' = 'step.started'"
    )
    passed = "o.passed_on IS NOT NULL"
    query = f"""WITH g AS (
SELECT min({STEP}) AS step_id, min(run_id) AS run_id, count(*) AS failures,
    max({field("attempt", "int")}) AS last_failed, min({field("started_at", "float")}) AS first_started,
    max({field("finished_at", "float")}) AS last_finished, {_last_failure(reader)} AS last_failure
FROM events {where(conditions)}
GROUP BY {STEP}, run_id {having}),
o AS (
SELECT g.*, {field("attempt", "int", "p")} AS passed_on,
    coalesce({field("started_at", "float", "p")}, g.first_started) AS passed_started,
    coalesce({field("finished_at", "float", "p")}, g.last_finished) AS passed_finished,
    CASE WHEN p.position IS NULL THEN (SELECT count(*) {starts}) END AS starts,
    CASE WHEN p.position IS NULL THEN (SELECT max({field("attempt", "int", "s")}) {starts}) END
        AS last_started
FROM g
{_passed_of_g(reader)}),
r AS (
SELECT o.run_id, o.step_id,
    CASE WHEN {passed} THEN o.failures + 1 ELSE {greatest}(o.starts, o.failures) END AS attempts,
    o.failures, o.passed_on,
    CASE WHEN {passed} THEN o.passed_on ELSE {greatest}(coalesce(o.last_started, 0), o.last_failed) END
        AS last_attempt,
    CASE WHEN {passed} THEN 'passed' WHEN coalesce(o.last_started, 0) > o.last_failed THEN 'running'
        ELSE 'failed' END AS last_outcome,
    {least}(o.first_started, o.passed_started) AS first_started_at,
    {greatest}(o.last_finished, o.passed_finished) AS last_finished_at,
    o.last_failure
FROM o)
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
