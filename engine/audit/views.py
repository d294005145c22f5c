"""The audit views (created by migration 0003_audit_views) as SQLAlchemy selectables, and how to query them.

They are declared with `table()`/`column()`, not on the schema's MetaData: they are not tables, and
the migration test compares the declared tables with the migrated database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, column, table

from stepledger.engine.errors import UserInputError
from stepledger.store.port import EventStore
from stepledger.store.sqlerrors import translating

attempts = table(
    "attempts",
    *(column(name) for name in (
        "run_id", "workstream_id", "step_id", "attempt", "host", "pid", "started_at", "finished_at",
        "duration_s", "outcome", "reason", "exit_code", "error_signature", "output_excerpt", "position",
        "stream",
    )),
)  # fmt: skip

run_summaries = table(
    "run_summaries",
    *(column(name) for name in (
        "run_id", "workstream_id", "status", "started_at", "finished_at", "elapsed_s", "passed", "failed",
        "blocked", "skipped", "sequential_s", "resumes", "cancel_requests",
    )),
)  # fmt: skip

operator_actions = table(
    "operator_actions",
    *(column(name) for name in (
        "position", "run_id", "workstream_id", "step_id", "action", "actor", "reason", "at",
    )),
)  # fmt: skip


class NotASqlLog(UserInputError):
    """The audit reads SQL views, so it needs a SQLite or PostgreSQL log, not the in-memory one."""


def engine_of(store: EventStore) -> Engine:
    """The SQLAlchemy engine behind `store` (NotASqlLog for a store without one)."""
    engine = getattr(store, "engine", None)
    if not isinstance(engine, Engine):
        raise NotASqlLog("the audit needs a SQL log (SQLite or PostgreSQL); this store has none")
    return engine


# Audit queries read big parts of the log at random (by index). On SQLite, memory-mapped reads and a
# bigger page cache for the reading connection (the defaults are no mapping and 2 MB) cut their
# system time by more than half; both are per-connection read settings and change nothing on disk.
SQLITE_READ_PRAGMAS = ("PRAGMA mmap_size=1073741824", "PRAGMA cache_size=-65536")
# On PostgreSQL the grouping of a big answer (retries, durations) spilled to disk with the default
# 4 MB; SET LOCAL ends with the read's transaction.
POSTGRES_READ_SETTINGS = ("SET LOCAL work_mem = '64MB'",)


@contextmanager
def reading(store: EventStore) -> Iterator[Connection]:
    """A connection to `store`'s database for audit reads, with driver errors translated."""
    engine = engine_of(store)
    with translating(engine.url.render_as_string(hide_password=True)), engine.connect() as conn:
        settings = {"sqlite": SQLITE_READ_PRAGMAS, "postgresql": POSTGRES_READ_SETTINGS}
        for setting in settings.get(engine.dialect.name, ()):
            conn.exec_driver_sql(setting)
        yield conn


def fetch(store: EventStore, query: Any) -> list[dict[str, Any]]:
    """The rows of `query` on `store`'s database, as plain dicts."""
    with reading(store) as conn:
        return [dict(row) for row in conn.execute(query).mappings()]


def fetch_tuples(store: EventStore, query: Any) -> list[tuple[Any, ...]]:
    """The rows of `query` as tuples (for the big answers that are aggregated in Python)."""
    with reading(store) as conn:
        return [tuple(row) for row in conn.execute(query)]
