"""The audit's partial indexes on `events` (migration 0005): outcome fields readable without the payload.

The cross-run audit questions (durations, failures, retries) read the step.passed and step.failed
events of the whole log: ~260,000 of a 1,000,000-event log. Reading each from the table and taking
its fields out of the JSON payload cost most of a second on SQLite; these two indexes hold those
fields (as expressions over the payload), one entry per outcome event and none for any other event,
so a question reads a few megabytes of index in key order instead:

- `ix_events_passed_attempts`: the step.passed events, by step id, then run.
- `ix_events_failed_attempts`: the step.failed events, by step id, then run, with the failure's
  error signature and reason.

The key starts with `type`, so SQLite's planner picks these over the plain `type` index for
`WHERE type = 'step.passed'` on its own (both match the equality; only these cover the query);
then comes the step id, so a scan meets each step's outcomes together (durations and failures
group by step without sorting), then the run (each step stream's outcomes are together: retries).

The expressions are written here once, and the audit queries spell them the same way (SQLite only
uses an index on an expression for the identical expression; PostgreSQL compares the parsed
trees). SQLite 3.40 reads an indexed expression's value from the index as long as the query only
uses it in WHERE, in a plain select list or in an aggregate's argument (not as a bare GROUP BY
output column: take `min()` of it); PostgreSQL uses the indexes to find the rows and computes the
expressions from them (it has no index-only scan on expressions).

A change to these definitions needs a new migration; 0005 must then keep a copy of these.
"""

from __future__ import annotations

# A step stream is "<run_id>/<step_id>" (events.types.step_stream).
STEP_ID = "substr({t}stream, length({t}run_id) + 2)"
CASTS = {"int": "::integer", "float": "::double precision", "text": ""}

# An index column: a plain column of `events`, "step_id", or a (payload field, type) pair.
Column = str | tuple[str, str]
_TIMES: tuple[Column, ...] = (("attempt", "int"), ("started_at", "float"), ("finished_at", "float"))
INDEXES: dict[str, tuple[str, tuple[Column, ...]]] = {
    # name: (the event type it holds, its columns after `type`)
    "ix_events_passed_attempts": ("step.passed", ("step_id", "run_id", *_TIMES)),
    "ix_events_failed_attempts": (
        "step.failed",
        ("step_id", "run_id", *_TIMES, ("error_signature", "text"), ("reason", "text")),
    ),
}


def payload_field(dialect: str, path: str, kind: str = "text", table: str = "") -> str:
    """The SQL of the payload field `path` (top level), typed as `kind` (int, float or text)."""
    column = f"{table}.payload" if table else "payload"
    if dialect == "postgresql":
        return f"(({column} ->> '{path}'){CASTS[kind]})"
    return f"json_extract({column}, '$.{path}')"


def step_id(table: str = "") -> str:
    """The SQL of an event's step id (the part of its stream after the run id)."""
    return STEP_ID.format(t=f"{table}." if table else "")


def column_sql(dialect: str, column: Column, table: str = "") -> str:
    """The SQL of one index column, as the index declares it (qualified by `table` in queries)."""
    if isinstance(column, tuple):
        return payload_field(dialect, *column, table=table)
    if column == "step_id":
        return step_id(table)
    return f"{table}.{column}" if table else column


def where_sql(name: str) -> str:
    """The partial index's condition (a query must state it to use the index)."""
    return f"type = '{INDEXES[name][0]}'"


def index_statements(dialect: str) -> list[str]:
    """CREATE INDEX statements of the audit indexes, for `dialect`."""
    statements = []
    for name, (_, columns) in INDEXES.items():
        listed = ", ".join(["type", *(column_sql(dialect, c) for c in columns)])
        statements.append(f"CREATE INDEX {name} ON events ({listed}) WHERE {where_sql(name)}")
    return statements
