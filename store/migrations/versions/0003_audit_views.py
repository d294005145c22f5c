"""Read-only audit views over the event log: attempts, run_summaries, operator_actions.

Revision ID: 0003_audit_views
Revises: 0002
Create Date: 2026-11-28

The views' SQL is kept here as this revision (and 0006, which re-creates them) made it, so that
upgrading through 0003..0006, and 0007's downgrade, give these views whatever store/views.py says
today. Why the SQL is shaped as it is: store/views.py, where the current form lives. (0006 made the
views state the type index's condition, which changes no row they return, so this copy creates
that form too.) Migration 0007 added drains to `operator_actions` and `drain_requests` to
`run_summaries`; a later migration that rebuilds `events` or `runs` on SQLite (batch mode) must
drop the views first and create them again with 0007's `drop_views` and `create_views` (these ones
would bring back the views without drains).
"""

from __future__ import annotations

from functools import partial

from alembic import op

revision = "0003_audit_views"
down_revision = "0002"
branch_labels = None
depends_on = None

VIEWS = ("attempts", "run_summaries", "operator_actions")
RUN_WORKSTREAMS = "run_workstreams AS MATERIALIZED (SELECT run_id, workstream_id FROM runs)"
CASTS = {"int": "::integer", "float": "::double precision", "text": ""}
# This revision's copy of statements.PER_ATTEMPT_TYPES (as 0006's type index leaves them out).
PER_ATTEMPT_TYPES = (
    "step.ready", "step.started", "step.passed", "step.failed", "step.acceptance_tests_recorded",
    "step.retry_scheduled",
)  # fmt: skip


def indexed_types(table: str) -> str:
    """The type index's condition (as of 0006), on `table`'s type column."""
    return " AND ".join(f"{table}.type <> '{name}'" for name in PER_ATTEMPT_TYPES)


def json_field(dialect: str, alias: str, path: str, kind: str = "text") -> str:
    """The SQL for the JSON field `path` (dotted) of `alias.payload`, typed as `kind`."""
    if dialect == "postgresql":
        *parents, leaf = path.split(".")
        chain = "".join(f" -> '{p}'" for p in parents)
        return f"(({alias}.payload{chain} ->> '{leaf}'){CASTS[kind]})"
    return f"json_extract({alias}.payload, '$.{path}')"


def _step_id(alias: str) -> str:
    return f"substr({alias}.stream, length({alias}.run_id) + 2)"


def _attempt_columns(dialect: str, outcome: str) -> str:
    j = partial(json_field, dialect)
    running = outcome == "running"
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
    """CREATE VIEW attempts, as of this revision."""
    j = partial(json_field, dialect)
    has_outcome = (
        "SELECT 1 FROM events AS x WHERE x.stream = o.stream AND x.version > o.version "
        "AND x.type IN ('step.passed', 'step.failed') "
        f"AND {j('x', 'attempt', 'int')} = {j('o', 'attempt', 'int')}"
    )
    join = "FROM events AS o LEFT JOIN run_workstreams AS r ON r.run_id = o.run_id"

    def from_start(path: str, kind: str = "text") -> str:
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
    """CREATE VIEW run_summaries, as of this revision: no drain_requests column."""
    j = partial(json_field, dialect)
    done = "(f.position IS NOT NULL AND f.position > COALESCE(r.position, 0))"
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
    ({count.format("run.resumed")}) AS resumes,
    ({count.format("run.cancel_requested")}) AS cancel_requests
FROM events AS st
LEFT JOIN runs AS w ON w.run_id = st.run_id
LEFT JOIN events AS f ON f.position = ({last.format("run.finished")})
LEFT JOIN events AS r ON r.position = ({last.format("run.resumed")})
WHERE st.type = 'run.started' AND {indexed_types("st")}"""


def operator_actions_sql(dialect: str) -> str:
    """CREATE VIEW operator_actions, as of this revision: cancel, skip, mark-passed, retry (no drain)."""
    j = partial(json_field, dialect)
    return f"""CREATE VIEW operator_actions AS
WITH {RUN_WORKSTREAMS}
SELECT
    e.position AS position,
    e.run_id AS run_id,
    w.workstream_id AS workstream_id,
    CASE WHEN e.stream = e.run_id THEN NULL ELSE {_step_id("e")} END AS step_id,
    CASE e.type
        WHEN 'run.cancel_requested' THEN 'cancel'
        WHEN 'step.skipped' THEN 'skip'
        WHEN 'step.marked_passed' THEN 'mark-passed'
        WHEN 'step.retry_requested' THEN 'retry'
    END AS action,
    {j("e", "by")} AS actor,
    {j("e", "reason")} AS reason,
    e.recorded_at AS at
FROM events AS e
LEFT JOIN run_workstreams AS w ON w.run_id = e.run_id
WHERE e.type IN ('run.cancel_requested', 'step.skipped', 'step.marked_passed', 'step.retry_requested')
    AND {indexed_types("e")}"""


def view_statements(dialect: str) -> list[str]:
    """The CREATE VIEW statements of every audit view as of this revision, for `dialect`."""
    return [make(dialect) for make in (attempts_sql, run_summaries_sql, operator_actions_sql)]


def create_views() -> None:
    """Create the audit views, as of this revision, for the connection's dialect."""
    for statement in view_statements(op.get_bind().dialect.name):
        op.execute(statement)


def drop_views() -> None:
    """Drop the audit views (before rebuilding a table they read)."""
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def upgrade() -> None:
    create_views()


def downgrade() -> None:
    drop_views()
