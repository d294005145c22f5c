"""Read-only audit views over the event log: attempts, run_summaries, operator_actions.

Revision ID: 0003_audit_views
Revises: 0002
Create Date: 2026-11-28

The views' SQL, and why it is shaped as it is, lives in stepledger/store/views.py (a brand-new
database is created from it too). A later migration that rebuilds `events` or `runs` on SQLite
(batch mode) must drop these views first and create them again (`drop_views`, `create_views`).
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
