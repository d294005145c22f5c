"""Read-only audit views over the event log: attempts, run_summaries, operator_actions.

Revision ID: 0003_audit_views
Revises: 0002
Create Date: 2026-11-28

The views read the `events` table; JSON fields are extracted per dialect (`json_extract` on SQLite,
`->>` with a cast on PostgreSQL), everything else is the same SQL. One exception, for speed: a
run's workstream id is taken from the `runs` projection (written in the same transaction as the
run.started event), read once per query into a MATERIALIZED CTE: the run.started payload and the
`runs` row both hold the whole workstream, and reading it per attempt made a 1,000,000-event log
take minutes. A later migration that rebuilds `events` or `runs` on SQLite (batch mode) must drop
these views first and create them again (`drop_views`, `create_views`).

`attempts` is a UNION ALL of passed, failed and still-running attempts, so a filter on `outcome`
drops whole branches, and a filter on `run_id`, `stream` or `step_id` reaches the indexes. The
worker's host and pid come from the attempt's step.started event through scalar subqueries, which
are only evaluated when those columns are selected.
"""

from __future__ import annotations

from alembic import op

from stepledger.store.views import VIEWS, view_statements

revision = "0003_audit_views"
down_revision = "0002"
branch_labels = None
depends_on = None


def create_views() -> None:
    """Create the audit views for the connection's dialect."""
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
