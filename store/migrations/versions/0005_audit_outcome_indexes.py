"""Partial indexes on the outcome events for the audit's cross-run questions.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28

`ix_events_passed_attempts` and `ix_events_failed_attempts` hold each step.passed / step.failed
event's step id, run, attempt, start and end (and a failure's signature and reason), so
`audit durations|failures|retries` read a few megabytes of index instead of every outcome's row and
JSON payload. Their SQL, and why it is shaped as it is, lives in stepledger/store/audit_indexes.py
(a brand-new database is created from it too); a later change to them needs a new migration, and
this one must then keep a copy of this version. Only outcome events get an entry, one each, so
other appends do not pay for them. Building them reads every outcome event once (a few seconds on
a 1,000,000-event log).
"""

from __future__ import annotations

from alembic import op

from stepledger.store.audit_indexes import INDEXES, index_statements

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for statement in index_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
