"""The database schema as SQLAlchemy Core tables: the event log and its projections.

One set of tables serves SQLite and PostgreSQL; the dialect differences live in the column types
(`with_variant`), never in a second code path. The Alembic migrations under `migrations/` build
exactly these tables (tests/store/test_migrations.py compares them).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.elements import ColumnElement

from .audit_indexes import INDEXES, column_sql, where_sql

# The newest Alembic revision this code knows; `open_store` compares it with the database's
# revision without importing Alembic (a test checks it equals the migration scripts' one head).
HEAD_REVISION = "0005"

# Named constraints, so migrations can refer to them by name on both dialects.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# JSONB on PostgreSQL: binary, indexable and compact; plain JSON (text) on SQLite.
Payload = JSON().with_variant(JSONB(), "postgresql")
# SQLite only makes an INTEGER PRIMARY KEY an alias of the rowid (the table's own key, no extra
# index); BIGINT there would be a separate indexed column.
Position = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    # Given by the store under the writer lock (max + 1), never by a sequence: see sql.py.
    Column("position", Position, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False),
    Column("run_id", String(200), nullable=False),
    Column("stream", String(400), nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String(100), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("payload", Payload, nullable=False),
    Column("recorded_at", Double, nullable=False),  # seconds since the epoch, stamped by the store
    # The optimistic-concurrency check *is* this key: two writers cannot both record version n.
    UniqueConstraint("stream", "version"),
    # A retried append (same event ids) is recognised instead of recorded twice.
    UniqueConstraint("event_id"),
    Index(None, "run_id", "position"),  # read_run and `events RUN`
    Index(None, "type"),  # `events --type`
    Index(None, "recorded_at"),  # audits by time
)


class AuditIndexColumn(ColumnElement[Any]):
    """A column of an audit index (audit_indexes.py), rendered for each dialect exactly as there."""

    inherit_cache = False  # only ever compiled as DDL

    def __init__(self, column: Any) -> None:
        self.column = column


@compiles(AuditIndexColumn)
def _render_audit_column(element: AuditIndexColumn, compiler: Any, **_: Any) -> str:
    return column_sql(compiler.dialect.name, element.column)


def _declare_audit_indexes() -> None:
    # Partial indexes on the outcome events for the cross-run audit questions (migration 0005).
    for name, (_, columns) in INDEXES.items():
        where = text(where_sql(name))
        Index(
            name, events.c.type, *map(AuditIndexColumn, columns), sqlite_where=where, postgresql_where=where
        )


_declare_audit_indexes()

# One row per run: the run-level part of `runstate.RunState` (steps live in step_states).
# No secondary indexes on the projections: each would cost a page write per append, and status
# queries go by run id.
runs = Table(
    "runs",
    metadata,
    Column("run_id", String(200), primary_key=True),
    Column("workstream_id", String(200), nullable=False, default=""),
    Column("workstream", Payload, nullable=False, default=dict),
    Column("workstream_hash", String(100), nullable=False, default=""),
    Column("source_path", Text, nullable=False, default=""),
    Column("workdir", Text, nullable=False, default=""),
    Column("options", Payload, nullable=False, default=dict),
    Column("status", String(40), nullable=False, default="running"),
    Column("version", Integer, nullable=False, default=0),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("cancel_reason", Text, nullable=False, default=""),
    # No last_position here: it changes with every append, and readers get it from the events
    # index (max position of the run) for free. Rows are clustered on their key (no rowid).
    sqlite_with_rowid=False,
)

# One row per step of a run: every field of `runstate.StepState`.
step_states = Table(
    "step_states",
    metadata,
    # No foreign key to runs (migration 0004): checking it read the parent row, which holds the
    # whole workstream, for every step row written.
    Column("run_id", String(200), primary_key=True),
    Column("step_id", String(200), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("version", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("counted_failures", Integer, nullable=False),
    Column("repeated_signature", Text, nullable=False),
    Column("repeats", Integer, nullable=False),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("first_started_at", Double, nullable=True),
    Column("total_duration_s", Double, nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("pgid", Integer, nullable=False),
    Column("lease_expires_at", Double, nullable=False),
    Column("trial", Boolean, nullable=False),
    Column("not_before", Double, nullable=False),
    Column("cooldown_until", Double, nullable=False),
    Column("last_reason", String(40), nullable=False),
    Column("last_exit_code", Integer, nullable=True),
    Column("last_error", Text, nullable=False),
    Column("blocked_by", String(200), nullable=False),
    Column("outputs", Payload, nullable=False),
    Column("last_position", BigInteger, nullable=False),
    Column("last_event_at", Double, nullable=False),
    sqlite_with_rowid=False,
)

# Who drives each run: one row per run, renewed by the live reactor's heartbeat. Not part of the
# log (a lease is a fact about now, not history) and not a projection (it cannot be rebuilt).
run_leases = Table(
    "run_leases",
    metadata,
    Column("run_id", String(200), primary_key=True),
    Column("owner", String(200), nullable=False),  # a token unique to one reactor process
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("expires_at", Double, nullable=False),  # seconds since the epoch, by the holder's clock
)

PROJECTION_TABLES = (step_states, runs)  # children first: the order to empty them in
