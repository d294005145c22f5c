"""The audit's reads: plain SQL on the store's own DB-API connection, in one read transaction.

The audit's queries are SQL text (per dialect where they differ) run on the driver's cursor that
the store itself uses (dbapi.py), not SQLAlchemy Core: importing SQLAlchemy and building an engine
cost more than half a second of every `stepledger audit ...` on a slow machine, longer than most
of the questions take to answer. Placeholders are `:name`; `Database.sql` turns them into the
driver's form. The engine reaches this through `EventStore.audit_reading()` (port.py), never
through the store's database object.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from .sqlerrors import translating
from .statements import chunks, in_list
from .views import json_field

# Audit queries read big parts of the log at random (by index). On SQLite, memory-mapped reads and a
# bigger page cache for the reading connection (the defaults are no mapping and 2 MB) cut their
# system time by more than half; both are per-connection read settings and change nothing on disk.
# On PostgreSQL the grouping of a big answer spilled to disk with the default 4 MB of work_mem, and
# the JIT compiler, which starts on the cost estimates of a whole-log question, took longer to
# compile than the query took to run; SET LOCAL ends with the read's transaction.
READ_SETTINGS = {
    "sqlite": ("PRAGMA mmap_size=1073741824", "PRAGMA cache_size=-65536"),
    "postgresql": ("SET LOCAL work_mem = '64MB'", "SET LOCAL jit = off"),
}


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

    def json_field(self, alias: str, path: str, kind: str = "text") -> str:
        """The SQL for the JSON field `path` of `alias.payload` in this dialect, typed as `kind`."""
        return json_field(self.dialect, alias, path, kind)

    @staticmethod
    def in_list(column: str, values: Sequence[Any], params: dict[str, Any], prefix: str = "v") -> str:
        """`column IN (:v0, :v1, ...)` with the values put in `params`."""
        return in_list(column, values, params, prefix)

    @staticmethod
    def chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """`values` in pieces small enough for one IN list each."""
        return chunks(values)


@contextmanager
def reading(db: Any) -> Iterator[Reader]:
    """A read transaction on the store's database `db` (one snapshot), driver errors translated."""
    with translating(db.safe_url), db.transaction() as cursor:
        for setting in READ_SETTINGS.get(db.dialect, ()):
            cursor.execute(setting)
        yield Reader(cursor, db.dialect, db.sql)
