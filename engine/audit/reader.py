"""Reading the log for the audit: plain SQL on the store's own DB-API connection, in one transaction.

The audit's queries are SQL text (per dialect where they differ) run on the driver's cursor that
the store itself uses (store/dbapi.py), not SQLAlchemy Core: importing SQLAlchemy and building an
engine cost more than half a second of every `stepledger audit ...` on a slow machine, longer than
most of the questions take to answer. Placeholders are `:name`; the store's `Database.sql` turns
them into the driver's form.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from stepledger.engine.errors import UserInputError
from stepledger.store.port import EventStore
from stepledger.store.sqlerrors import translating
from stepledger.store.statements import chunks, in_list

__all__ = ["NotASqlLog", "Reader", "chunks", "database_of", "in_list", "reading"]

# Audit queries read big parts of the log at random (by index). On SQLite, memory-mapped reads and a
# bigger page cache for the reading connection (the defaults are no mapping and 2 MB) cut their
# system time by more than half; both are per-connection read settings and change nothing on disk.
# On PostgreSQL the grouping of a big answer spilled to disk with the default 4 MB of work_mem, and
# the JIT compiler, which starts on the cost estimates of a whole-log question, took longer to
# compile (about a second) than the query took to run; SET LOCAL ends with the read's transaction.
READ_SETTINGS = {
    "sqlite": ("PRAGMA mmap_size=1073741824", "PRAGMA cache_size=-65536"),
    "postgresql": ("SET LOCAL work_mem = '64MB'", "SET LOCAL jit = off"),
}


class NotASqlLog(UserInputError):
    """The audit reads SQL, so it needs a SQLite or PostgreSQL log, not the in-memory one."""


class Reader:
    """One read transaction: `rows` and `dicts` run SQL with `:name` placeholders."""

    def __init__(self, cursor: Any, dialect: str, to_driver: Any) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self._to_driver = to_driver

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of `sql`, as tuples."""
        self.cursor.execute(self._to_driver(sql), dict(params or {}))
        return list(self.cursor.fetchall())

    def dicts(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """The rows of `sql`, as dicts keyed by the select list's names."""
        rows = self.rows(sql, params)
        names = [d[0] for d in self.cursor.description]
        return [dict(zip(names, row, strict=True)) for row in rows]


def database_of(store: EventStore) -> Any:
    """The store's database (store/dbapi.py `Database`); NotASqlLog for a store without one."""
    db = getattr(store, "db", None)
    if db is None or not hasattr(db, "transaction"):
        raise NotASqlLog("the audit needs a SQL log (SQLite or PostgreSQL); this store has none")
    return db


@contextmanager
def reading(store: EventStore) -> Iterator[Reader]:
    """A read transaction on `store`'s database (one snapshot), with driver errors translated."""
    db = database_of(store)
    with translating(db.safe_url), db.transaction() as cursor:
        for setting in READ_SETTINGS.get(db.dialect, ()):
            cursor.execute(setting)
        yield Reader(cursor, db.dialect, db.sql)
