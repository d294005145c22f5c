"""Partial indexes on the outcome events for the audit's cross-run questions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

`ix_events_passed_attempts` and `ix_events_failed_attempts` held each step.passed / step.failed
event's step id, run, attempt, start and end (and a failure's signature and reason), as expressions
over the JSON payload, so `audit durations|failures|retries` read a few megabytes of index instead
of every outcome's row and payload. Migration 0006 replaced them with the `step_outcomes`
projection (they cost appends a fifth of their rate); their SQL is kept here, as this revision made
it, for this migration and for 0006's downgrade.
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# A step stream is "<run_id>/<step_id>" (events.types.step_stream).
STEP_ID = "substr(stream, length(run_id) + 2)"
CASTS = {"int": "::integer", "float": "::double precision", "text": ""}
_TIMES = (("attempt", "int"), ("started_at", "float"), ("finished_at", "float"))
# name: (the event type it holds, its columns after `type`: "step_id", a column, or a payload field)
INDEXES: dict[str, tuple[str, tuple[str | tuple[str, str], ...]]] = {
    "ix_events_passed_attempts": ("step.passed", ("step_id", "run_id", *_TIMES)),
    "ix_events_failed_attempts": (
        "step.failed",
        ("step_id", "run_id", *_TIMES, ("error_signature", "text"), ("reason", "text")),
    ),
}


def column_sql(dialect: str, column: str | tuple[str, str]) -> str:
    """The SQL of an index column: `step_id`, a column of `events`, or a (payload field, type) pair."""
    if isinstance(column, tuple):
        path, kind = column
        if dialect == "postgresql":
            return f"((payload ->> '{path}'){CASTS[kind]})"
        return f"json_extract(payload, '$.{path}')"
    return STEP_ID if column == "step_id" else column


def index_statements(dialect: str) -> list[str]:
    """CREATE INDEX statements of the audit indexes, for `dialect`."""
    statements = []
    for name, (event_type, columns) in INDEXES.items():
        listed = ", ".join(["type", *(column_sql(dialect, c) for c in columns)])
        statements.append(f"CREATE INDEX {name} ON events ({listed}) WHERE type = '{event_type}'")
    return statements


def upgrade() -> None:
    for statement in index_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
