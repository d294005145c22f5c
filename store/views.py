"""The read-only audit views (attempts, run_summaries, operator_actions): their SQL per dialect.

Migration 0007 re-creates `run_summaries` and `operator_actions` from here (`attempts`, the same
SQL since 0006, stays as 0003 made it), and a brand-new database gets all three from here
(store/migrate.py creates the declared schema and these views at once, then stamps the head
revision). A later change to a view needs a new migration, and 0007 must then keep a copy of this
version of the SQL, as 0003 keeps the one from before drains were listed. A later migration that
rebuilds `events` or `runs` on SQLite (batch mode) must drop these views first and create them
again (0007's `drop_views`, `create_views`).

The views read the `events` table; JSON fields are extracted per dialect (`json_extract` on SQLite,
`->>` with a cast on PostgreSQL), everything else is the same SQL. One exception, for speed: a
run's workstream id is taken from the `runs` projection (written in the same transaction as the
run.started event), read once per query into a MATERIALIZED CTE: the run.started payload and the
`runs` row both hold the whole workstream, and reading it per attempt made a 1,000,000-event log
take minutes.

`attempts` is a UNION ALL of passed, failed and still-running attempts, so a filter on `outcome`
drops whole branches, and a filter on `run_id`, `stream` or `step_id` reaches the indexes. The
worker's host and pid come from the attempt's step.started event through scalar subqueries, which
are only evaluated when those columns are selected.
"""

from __future__ import annotations

from functools import partial

from stepledger.events import (
    RunCancelRequested,
    RunDrainRequested,
    RunFinished,
    RunResumed,
    StepMarkedPassed,
    StepRetryRequested,
    StepSkipped,
)

from .statements import indexed_types

VIEWS = ("attempts", "run_summaries", "operator_actions")
RUN_WORKSTREAMS = "run_workstreams AS MATERIALIZED (SELECT run_id, workstream_id FROM runs)"
CASTS = {"int": "::integer", "float": "::double precision", "text": ""}
# The operator's requests `operator_actions` lists: event type -> the action it is listed as.
ACTIONS = {
    RunCancelRequested.type_name: "cancel",
    RunDrainRequested.type_name: "drain",
    StepSkipped.type_name: "skip",
    StepMarkedPassed.type_name: "mark-passed",
    StepRetryRequested.type_name: "retry",
}


def json_field(dialect: str, alias: str, path: str, kind: str = "text") -> str:
    """The SQL for the JSON field `path` (dotted) of `alias.payload`, typed as `kind`."""
    if dialect == "postgresql":
        *parents, leaf = path.split(".")
        chain = "".join(f" -> '{p}'" for p in parents)
        return f"(({alias}.payload{chain} ->> '{leaf}'){CASTS[kind]})"
    return f"json_extract({alias}.payload, '$.{path}')"


def _step_id(alias: str) -> str:
    # A step stream is "<run_id>/<step_id>" (events.types.step_stream).
    return f"substr({alias}.stream, length({alias}.run_id) + 2)"


def _attempt_columns(dialect: str, outcome: str) -> str:
    """The select list of one branch of `attempts`: `o` is the outcome event (or the start, if running)."""
    j = partial(json_field, dialect)
    running = outcome == "running"
    # Typed NULLs: PostgreSQL settles a UNION column's type from its branches in order.
    null = {
        "text": "CAST(NULL AS TEXT)",
        "int": "CAST(NULL AS INTEGER)",
        "float": "CAST(NULL AS DOUBLE PRECISION)",
    }
    started = "o.recorded_at" if running else j("o", "started_at", "float")
    finished = null["float"] if running else j("o", "finished_at", "float")
    failed = outcome == "failed"
    return f"""
    o.run_id AS run_id,
    r.workstream_id AS workstream_id,
    {_step_id("o")} AS step_id,
    o.stream AS stream,
    {j("o", "attempt", "int")} AS attempt,
    {j("o", "host") if running else null["text"]} AS start_host,
    {j("o", "pid", "int") if running else null["int"]} AS start_pid,
    {started} AS started_at,
    {finished} AS finished_at,
    {null["float"] if running else f"{finished} - {started}"} AS duration_s,
    '{outcome}' AS outcome,
    {j("o", "reason") if failed else null["text"]} AS reason,
    {j("o", "exit_code", "int") if failed else null["int"]} AS exit_code,
    {j("o", "error_signature") if failed else null["text"]} AS error_signature,
    {j("o", "output_excerpt") if failed else null["text"]} AS output_excerpt,
    o.position AS position,
    o.version AS version"""


def attempts_sql(dialect: str) -> str:
    """One row per attempt: passed, failed (from the outcome event) or running (a start with no outcome)."""
    j = partial(json_field, dialect)
    has_outcome = (
        "SELECT 1 FROM events AS x WHERE x.stream = o.stream AND x.version > o.version "
        "AND x.type IN ('step.passed', 'step.failed') "
        f"AND {j('x', 'attempt', 'int')} = {j('o', 'attempt', 'int')}"
    )
    join = "FROM events AS o LEFT JOIN run_workstreams AS r ON r.run_id = o.run_id"

    def from_start(path: str, kind: str = "text") -> str:
        # A finished attempt's worker is in its step.started; written in the outer select (not in
        # each branch), so a query that does not ask for it never looks it up.
        return (
            f"CASE WHEN a.outcome = 'running' THEN a.start_{path} ELSE "
            f"(SELECT {j('s', path, kind)} FROM events AS s WHERE s.stream = a.stream "
            f"AND s.type = 'step.started' AND s.version < a.version "
            f"AND {j('s', 'attempt', 'int')} = a.attempt ORDER BY s.version DESC LIMIT 1) END"
        )

    return f"""CREATE VIEW attempts AS
WITH {RUN_WORKSTREAMS}
SELECT a.run_id, a.workstream_id, a.step_id, a.stream, a.attempt,
    {from_start("host")} AS host,
    {from_start("pid", "int")} AS pid,
    a.started_at, a.finished_at, a.duration_s, a.outcome, a.reason, a.exit_code, a.error_signature,
    a.output_excerpt, a.position
FROM (
SELECT {_attempt_columns(dialect, "passed")}
{join} WHERE o.type = 'step.passed'
UNION ALL
SELECT {_attempt_columns(dialect, "failed")}
{join} WHERE o.type = 'step.failed'
UNION ALL
SELECT {_attempt_columns(dialect, "running")}
{join} WHERE o.type = 'step.started' AND NOT EXISTS ({has_outcome})
) AS a"""


def run_summaries_sql(dialect: str) -> str:
    """One row per run: status, times, the counts its last run.finished recorded, and how many
    resumes, cancel and drain requests its stream holds."""
    j = partial(json_field, dialect)
    # A run is finished when its last run.finished comes after its last run.resumed.
    done = "(f.position IS NOT NULL AND f.position > COALESCE(r.position, 0))"
    # `x.type || ''` keeps SQLite off the type index here: a run's own stream is a handful of events,
    # while the type index would visit every run's run.finished for each run.
    last = "SELECT max(x.position) FROM events AS x WHERE x.stream = st.run_id AND x.type || '' = '{}'"
    count = "SELECT count(*) FROM events AS x WHERE x.stream = st.run_id AND x.type || '' = '{}'"
    return f"""CREATE VIEW run_summaries AS
SELECT
    st.run_id AS run_id,
    w.workstream_id AS workstream_id,
    CASE WHEN {done} THEN {j("f", "outcome")} ELSE 'running' END AS status,
    st.recorded_at AS started_at,
    CASE WHEN {done} THEN f.recorded_at END AS finished_at,
    CASE WHEN {done} THEN f.recorded_at - st.recorded_at END AS elapsed_s,
    CASE WHEN {done} THEN {j("f", "passed", "int")} END AS passed,
    CASE WHEN {done} THEN {j("f", "failed", "int")} END AS failed,
    CASE WHEN {done} THEN {j("f", "blocked", "int")} END AS blocked,
    CASE WHEN {done} THEN {j("f", "skipped", "int")} END AS skipped,
    CASE WHEN {done} THEN {j("f", "sequential_s", "float")} END AS sequential_s,
    ({count.format(RunResumed.type_name)}) AS resumes,
    ({count.format(RunCancelRequested.type_name)}) AS cancel_requests,
    ({count.format(RunDrainRequested.type_name)}) AS drain_requests
FROM events AS st
LEFT JOIN runs AS w ON w.run_id = st.run_id
LEFT JOIN events AS f ON f.position = ({last.format(RunFinished.type_name)})
LEFT JOIN events AS r ON r.position = ({last.format(RunResumed.type_name)})
WHERE st.type = 'run.started' AND {indexed_types("st")}"""


def operator_actions_sql(dialect: str) -> str:
    """One row per operator action: cancel, drain, skip, mark-passed and retry requests."""
    j = partial(json_field, dialect)
    cases = "".join(f"\n        WHEN '{type_name}' THEN '{action}'" for type_name, action in ACTIONS.items())
    types = ", ".join(f"'{type_name}'" for type_name in ACTIONS)
    return f"""CREATE VIEW operator_actions AS
WITH {RUN_WORKSTREAMS}
SELECT
    e.position AS position,
    e.run_id AS run_id,
    w.workstream_id AS workstream_id,
    CASE WHEN e.stream = e.run_id THEN NULL ELSE {_step_id("e")} END AS step_id,
    CASE e.type{cases}
    END AS action,
    {j("e", "by")} AS actor,
    {j("e", "reason")} AS reason,
    e.recorded_at AS at
FROM events AS e
LEFT JOIN run_workstreams AS w ON w.run_id = e.run_id
WHERE e.type IN ({types})
    AND {indexed_types("e")}"""


def view_statements(dialect: str) -> list[str]:
    """The CREATE VIEW statements of every audit view, for `dialect`."""
    return [make(dialect) for make in (attempts_sql, run_summaries_sql, operator_actions_sql)]
