"""The `step_outcomes` projection replaces the audit's partial indexes; a leaner events table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

Every index on `events` is paid for by every append: each commit rewrites the index pages it
touched. The two partial indexes of 0005 were keyed by step, so a batch touching ten steps wrote
ten pages of each, and SQLite parsed each outcome's JSON payload once per indexed field: together a
fifth of the rate of batched appends. Their fields now live in `step_outcomes`, a projection
written with the events (one row per step.passed / step.failed event, keyed by its position, so
rows are added at the end of the table) and filled here from the log; the audit queries sort what
they group. `ix_events_recorded_at` served no query (times are read from events found by run,
stream or position), so it goes too. `ix_events_type` now leaves out the types every attempt writes
(most of a log, for which a scan is about as fast: stepledger/store/statements.py), and the views
that look up run-level events state its condition, as SQLite needs to use a partial index; they
return the same rows as before.
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# Alembic loads each script on its own; the package path reaches the SQL of 0003 and 0005 (a module
# name cannot start with a digit in an import statement).
_0003 = importlib.import_module("stepledger.store.migrations.versions.0003_audit_views")
_0005 = importlib.import_module("stepledger.store.migrations.versions.0005_audit_outcome_indexes")
# This revision's copy of statements.PER_ATTEMPT_TYPES: the types its type index leaves out.
PER_ATTEMPT_TYPES = (
    "step.ready", "step.started", "step.passed", "step.failed", "step.acceptance_tests_recorded",
    "step.retry_scheduled",
)  # fmt: skip
TYPE_INDEX = "CREATE INDEX ix_events_type ON events (type) WHERE " + " AND ".join(
    f"type <> '{name}'" for name in PER_ATTEMPT_TYPES
)


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # the rowid on SQLite
    op.create_table(
        "step_outcomes",
        sa.Column("position", position, autoincrement=False, nullable=False),
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("step_id", sa.String(length=200), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("error_signature", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("position", name=op.f("pk_step_outcomes")),
    )

    def field(path: str, kind: str = "text") -> str:
        return str(_0005.column_sql(dialect, (path, kind)))

    failed = "type = 'step.failed'"
    op.execute(
        "INSERT INTO step_outcomes (position, run_id, step_id, outcome, attempt, started_at, finished_at, "
        "reason, error_signature) "
        f"SELECT position, run_id, {_0005.STEP_ID}, "
        f"CASE WHEN {failed} THEN 'failed' ELSE 'passed' END, "
        f"{field('attempt', 'int')}, {field('started_at', 'float')}, {field('finished_at', 'float')}, "
        f"CASE WHEN {failed} THEN {field('reason')} END, "
        f"CASE WHEN {failed} THEN {field('error_signature')} END "
        "FROM events WHERE type IN ('step.passed', 'step.failed') ORDER BY position"
    )
    for name in _0005.INDEXES:
        op.execute(f"DROP INDEX {name}")
    op.drop_index("ix_events_recorded_at", table_name="events")
    _0003.drop_views()
    op.drop_index("ix_events_type", table_name="events")
    op.execute(TYPE_INDEX)
    _0003.create_views()


def downgrade() -> None:
    _0003.drop_views()
    op.drop_index("ix_events_type", table_name="events")
    op.create_index("ix_events_type", "events", ["type"], unique=False)
    _0003.create_views()
    op.create_index("ix_events_recorded_at", "events", ["recorded_at"], unique=False)
    for statement in _0005.index_statements(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("step_outcomes")
