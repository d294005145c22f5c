"""Drains in the audit views: listed by operator_actions, counted by run_summaries.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

A first Ctrl-C is recorded as run.drain_requested (who asked, and how), an operator's request like
a cancel, but the views of 0003 did not know the type. Now `operator_actions` lists it (action
`drain`) and `run_summaries` counts a run's drains (`drain_requests`, its last column). The two
views are dropped and created again (not CREATE OR REPLACE: PostgreSQL's cannot drop the column a
downgrade removes, and SQLite has none); no table changes, so no row is touched, and a drain
recorded before this migration is listed after it. A view of the user's own built on one of these
makes PostgreSQL refuse the drop (no CASCADE: the migration stops rather than drop the user's
view). `attempts` is unchanged. The SQL is store/views.py's; downgrade restores 0003's copy of the
old views. `create_views` and `drop_views` are for a later migration that rebuilds a table the
views read (store/views.py).
"""

from __future__ import annotations

import importlib

from alembic import op

from stepledger.store.views import VIEWS, operator_actions_sql, run_summaries_sql, view_statements

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Alembic loads each script on its own; the package path reaches 0003's SQL (a module name cannot
# start with a digit in an import statement).
_0003 = importlib.import_module("stepledger.store.migrations.versions.0003_audit_views")
CHANGED = ("run_summaries", "operator_actions")


def create_views() -> None:
    """Create the audit views, as of this revision, for the connection's dialect."""
    for statement in view_statements(op.get_bind().dialect.name):
        op.execute(statement)


def drop_views() -> None:
    """Drop the audit views (before rebuilding a table they read)."""
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in CHANGED:
        op.execute(f"DROP VIEW {name}")
    op.execute(run_summaries_sql(dialect))
    op.execute(operator_actions_sql(dialect))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for name in CHANGED:
        op.execute(f"DROP VIEW {name}")
    op.execute(_0003.run_summaries_sql(dialect))
    op.execute(_0003.operator_actions_sql(dialect))
