"""step_states without the foreign key to runs.

Revision ID: 0004
Revises: 0003_audit_views
Create Date: 2026-11-28

Checking that key read the parent `runs` row for every step row written, and that row holds the
whole resolved workstream (a megabyte for a 6,000-step workstream, clustered in the key on
SQLite): a 10,000-step run spent most of its time there, and the cost per step grew with the
workstream. The projections are derived data written by one piece of code in the same
transaction as the events (and rebuilt from them by `db rebuild`), so the key protected nothing
the log does not. The audit views do not read step_states, so they stay as they are.
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003_audit_views"
branch_labels = None
depends_on = None

FK = "fk_step_states_run_id_runs"


def upgrade() -> None:
    # Batch mode: SQLite cannot drop a constraint in place, so the table is copied (PostgreSQL
    # gets a plain ALTER TABLE ... DROP CONSTRAINT).
    with op.batch_alter_table("step_states") as batch:
        batch.drop_constraint(FK, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("step_states") as batch:
        batch.create_foreign_key(FK, "runs", ["run_id"], ["run_id"], ondelete="CASCADE")
