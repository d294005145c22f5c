"""Hot statements compiled once by SQLAlchemy and executed on the driver's cursor.

An append runs the same two or three statements over and over; SQLAlchemy's per-execution work
(parameter processing, event dispatch, result setup) cost more than SQLite itself. The statements
are still SQLAlchemy Core, compiled for the engine's dialect (its paramstyle and casts, e.g.
`::JSONB` on PostgreSQL); only their execution skips the machinery. JSON columns are serialised
here with the engine's serialiser, and driver errors are turned back into SQLAlchemy's (then the
store's, by `sqlerrors.translating`) so callers see no difference.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.expression import ClauseElement

from stepledger.events import dumps


class DriverStatement:
    """One DML statement, compiled for a dialect and executed many rows at a time."""

    def __init__(self, statement: ClauseElement, dialect: Dialect, json_columns: Iterable[str] = ()) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self._names: Sequence[str] | None = getattr(compiled, "positiontup", None)  # None if named
        self._json = frozenset(json_columns)
        if self._names is not None:
            # One C call per row for the positional values; JSON columns are swapped in by index.
            getter = operator.itemgetter(*self._names)
            self._values = getter if len(self._names) > 1 else (lambda row: (getter(row),))
            self._json_at = [i for i, name in enumerate(self._names) if name in self._json]
        self._dbapi: Any = dialect.loaded_dbapi

    def _params(self, row: dict[str, Any]) -> Any:
        if self._names is None:  # named paramstyle (psycopg): the row itself, JSON as text
            return {**row, **{k: dumps(row[k]) for k in self._json}} if self._json else row
        values = self._values(row)
        if not self._json_at:
            return values
        listed = list(values)
        for i in self._json_at:
            listed[i] = dumps(listed[i])
        return listed

    def execute(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Run the statement for every row, inside `conn`'s current transaction."""
        params = [self._params(r) for r in rows]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if len(params) == 1:
                cursor.execute(self.sql, params[0])
            else:
                cursor.executemany(self.sql, params)
        except self._dbapi.Error as error:
            raise exc.DBAPIError.instance(self.sql, None, error, self._dbapi.Error) from error
        finally:
            cursor.close()
