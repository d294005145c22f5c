"""The database schema as SQLAlchemy Core tables: the event log and its projections.

One set of tables serves SQLite and PostgreSQL; the dialect differences live in the column types
(`with_variant`), never in a second code path. The Alembic migrations under `migrations/` build
exactly these tables (tests/store/test_migrations.py compares them).
"""

from __future__ import annotations

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

from .statements import indexed_types

# The newest Alembic revision this code knows; `open_store` compares it with the database's
# revision without importing Alembic (a test checks it equals the migration scripts' one head).
HEAD_REVISION = "0007"

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
    # `events --type`, and the views' run-level events and operator actions: every type but the
    # ones each attempt writes (statements.PER_ATTEMPT_TYPES says why).
    Index(
        "ix_events_type",
        "type",
        sqlite_where=text(indexed_types()),
        postgresql_where=text(indexed_types()),
    ),
    # Every index is paid for by every append (a few pages written per commit each), so there are
    # no others: times are read from the events found, never searched (migration 0006 dropped an
    # unused index on recorded_at), and the audit reads the outcomes from `step_outcomes`.
)

# One row per run: the run-level part of `events.state.RunState` (steps live in step_states).
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

# One row per step of a run: every field of `events.state.StepState`.
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

# One row per step.passed and step.failed event: the outcome fields the cross-run audit questions
# (durations, failures, retries) read, as plain columns. Keyed by the event's position, so an
# append adds its rows at the end of the table (a page or two per commit); the audit queries sort
# what they group. Partial indexes on the events' JSON, keyed by step (migration 0005), gave the
# same answers in their key order but cost each append a page write per step it touched plus the
# JSON parsing: a fifth of the rate of batched appends (migration 0006 replaced them).
step_outcomes = Table(
    "step_outcomes",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=False),  # the outcome event's
    Column("run_id", String(200), nullable=False),
    Column("step_id", String(200), nullable=False),
    Column("outcome", String(10), nullable=False),  # 'passed' or 'failed'
    Column("attempt", Integer, nullable=False),
    Column("started_at", Double, nullable=True),
    Column("finished_at", Double, nullable=True),
    Column("reason", String(40), nullable=True),  # a failure's; NULL for a pass
    Column("error_signature", Text, nullable=True),  # a failure's; NULL for a pass
)

PROJECTION_TABLES = (step_states, runs, step_outcomes)  # children first: the order to empty them in
