"""The statements the store runs, as SQL text both dialects accept, and the rows they read.

Placeholders are `:name`, and `:name!j` for a JSON column (dbapi.py turns them into the driver's
form, with the `::jsonb` cast on PostgreSQL). Column lists come from the tables' declarations in
schema.py, mirrored here so that the store need not import SQLAlchemy (a test checks they agree).
Upserts use `INSERT ... ON CONFLICT (key) DO UPDATE`, which SQLite (3.24+) and PostgreSQL share.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from stepledger.events import (
    AcceptanceTestsRecorded,
    RecordedEvent,
    RetryScheduled,
    StepFailed,
    StepPassed,
    StepReady,
    StepStarted,
    dumps,
    loads,
)

EVENT_COLUMNS = (
    "position", "event_id", "run_id", "stream", "version", "type", "schema_version", "payload", "recorded_at",
)  # fmt: skip
RUN_COLUMNS = (
    "run_id", "workstream_id", "workstream", "workstream_hash", "source_path", "workdir", "options",
    "status", "version", "started_at", "finished_at", "cancel_requested", "cancel_reason",
)  # fmt: skip
STEP_COLUMNS = (
    "run_id", "step_id", "state", "version", "attempt", "counted_failures", "repeated_signature", "repeats",
    "started_at", "finished_at", "first_started_at", "total_duration_s", "host", "pid", "pgid",
    "lease_expires_at", "trial", "not_before", "cooldown_until", "last_reason", "last_exit_code",
    "last_error", "blocked_by", "outputs", "last_position", "last_event_at",
)  # fmt: skip
LEASE_COLUMNS = ("run_id", "owner", "host", "pid", "expires_at")
OUTCOME_COLUMNS = (
    "position", "run_id", "step_id", "outcome", "attempt", "started_at", "finished_at", "reason",
    "error_signature",
)  # fmt: skip
JSON_COLUMNS = frozenset({"payload", "workstream", "options", "outputs"})
BOOLEAN_COLUMNS = frozenset({"cancel_requested", "trial"})
# A run row as the store reads it back: the workstream (megabytes for a big one) left out.
RUN_COLUMNS_LIGHT = tuple(c for c in RUN_COLUMNS if c != "workstream")


def _value(column: str) -> str:
    return f":{column}!j" if column in JSON_COLUMNS else f":{column}"


def insert(table: str, columns: Sequence[str]) -> str:
    """INSERT of one row of `columns` (named placeholders)."""
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(map(_value, columns))})"


def upsert(table: str, columns: Sequence[str], keys: Sequence[str], update: Iterable[str]) -> str:
    """INSERT ... ON CONFLICT (keys) DO UPDATE of `update` (DO NOTHING when it is empty)."""
    sets = ", ".join(f"{c} = excluded.{c}" for c in update)
    action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
    return f"{insert(table, columns)} ON CONFLICT ({', '.join(keys)}) {action}"


def select(table: str, columns: Sequence[str], where: str = "", tail: str = "") -> str:
    """SELECT `columns` FROM `table` [WHERE where] [tail]."""
    return " ".join(
        filter(None, [f"SELECT {', '.join(columns)} FROM {table}", where and f"WHERE {where}", tail])
    )


IN_LIST_SIZE = 500  # values per IN list: well under every driver's parameter limit


def in_list(column: str, values: Sequence[Any], params: dict[str, Any], prefix: str = "v") -> str:
    """`column IN (:v0, :v1, ...)` with the values put in `params` ("1 = 0" for no values)."""
    names = [f"{prefix}{i}" for i in range(len(values))]
    params.update(zip(names, values, strict=True))
    return f"{column} IN ({', '.join(':' + n for n in names)})" if names else "1 = 0"


def chunks(values: Sequence[Any], size: int = IN_LIST_SIZE) -> Iterator[Sequence[Any]]:
    """`values` in pieces of at most `size` (one IN list each)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


# The event types every attempt of a step writes: the bulk of a log. The type index leaves them out
# (schema.py, migration 0006): a lookup of one of them returns a good part of the log, which a scan
# in position order reads about as fast, while every append paid for their entries (measurably:
# docs/performance.md).
PER_ATTEMPT_TYPES = (
    StepReady.type_name, StepStarted.type_name, StepPassed.type_name, StepFailed.type_name,
    AcceptanceTestsRecorded.type_name, RetryScheduled.type_name,
)  # fmt: skip


def indexed_types(table: str = "") -> str:
    """The type index's condition. SQLite uses a partial index only for a query that states its
    condition word for word, so a lookup by an indexed type adds it (`table` qualifies the column)."""
    column = f"{table}.type" if table else "type"
    return " AND ".join(f"{column} <> '{name}'" for name in PER_ATTEMPT_TYPES)


INSERT_EVENT = insert("events", EVENT_COLUMNS)
SELECT_EVENTS = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"
LAST_POSITION = "SELECT COALESCE(MAX(position), 0) FROM events"


class Rows:
    """Turns rows read from one dialect into Python values, and values into statement parameters."""

    def __init__(self, decodes_json: bool) -> None:
        self._decodes_json = decodes_json  # psycopg hands JSON back decoded, sqlite3 as text

    def json(self, value: Any) -> Any:
        """A JSON column's value as Python data."""
        return value if self._decodes_json or value is None else loads(value)

    def event(self, row: Sequence[Any]) -> RecordedEvent:
        """A RecordedEvent from a row of EVENT_COLUMNS."""
        position, event_id, run_id, stream, version, type_, schema_version, payload, recorded_at = row
        return RecordedEvent(
            position,
            event_id,
            run_id,
            stream,
            version,
            type_,
            schema_version,
            self.json(payload),
            recorded_at,
        )

    def mapping(self, columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
        """A row of `columns` as a dict, JSON decoded and booleans made bool."""
        values = dict(zip(columns, row, strict=True))
        for name in JSON_COLUMNS.intersection(values):
            values[name] = self.json(values[name])
        for name in BOOLEAN_COLUMNS.intersection(values):
            values[name] = bool(values[name])
        return values


def params(row: dict[str, Any]) -> dict[str, Any]:
    """Statement parameters of a row: JSON columns encoded as text (the `!j` placeholders)."""
    encoded = [name for name in JSON_COLUMNS if name in row]
    if not encoded:
        return row
    return {**row, **{name: dumps(row[name]) for name in encoded}}
