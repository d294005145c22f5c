"""The store's PostgreSQL connections through psycopg itself (see dbapi.py), without SQLAlchemy.

Imported by dbapi.py for every URL; psycopg is imported only once a `postgresql+psycopg://` URL is
opened.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

import orjson

from .errors import DatabaseUnavailable
from .sqlerrors import first_line, safe_url

PSYCOPG_PREFIX = "postgresql+psycopg://"
# A plain PostgreSQL URL names no driver; stepledger's is psycopg (3), which it installs, whatever
# SQLAlchemy's default would be (psycopg2 before SQLAlchemy 2.1).
PLAIN_PREFIX = "postgresql://"
CONNECT_TIMEOUT_S = 5  # an unreachable server fails fast, not after minutes


def psycopg_url(url: str) -> str:
    """`url` with psycopg named as its driver if it is a plain `postgresql://` URL, and any `@` in
    its password encoded (`_encoded_userinfo`)."""
    url = PSYCOPG_PREFIX + url[len(PLAIN_PREFIX) :] if url.startswith(PLAIN_PREFIX) else url
    if url.startswith(PSYCOPG_PREFIX):
        return PSYCOPG_PREFIX + _encoded_userinfo(url[len(PSYCOPG_PREFIX) :])
    return url


def conninfo(url: str) -> dict[str, Any] | None:
    """psycopg's connection parameters for a `postgresql+psycopg://` (or plain `postgresql://`)
    URL, None for any other.

    Past the scheme, SQLAlchemy's URL for psycopg is a libpq connection URI (user, password, host,
    port, database, and libpq parameters as the query), so libpq itself parses it.
    """
    url = psycopg_url(url)
    if not url.startswith(PSYCOPG_PREFIX):
        return None
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(PLAIN_PREFIX + url[len(PSYCOPG_PREFIX) :])
    except psycopg.Error as error:
        raise DatabaseUnavailable(f"invalid database URL {safe_url(url)!r}: {first_line(error)}") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT_S)
    return params


def _encoded_userinfo(rest: str) -> str:
    """`user:pass@host...` with any `@` of the user information percent-encoded.

    libpq ends the user information at the first `@`, so a password holding one (unencoded) was
    cut there and its tail taken for the host name, which the error message then showed. The
    user information runs to the last `@` before the path, as SQLAlchemy reads it too.
    """
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    userinfo, at, host = rest[:end].rpartition("@")
    if not at or "@" not in userinfo:
        return rest
    return f"{userinfo.replace('@', '%40')}@{host}{rest[end:]}"


_PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?s(::jsonb)?")  # named or positional
_INSERT = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES \((.*)\)")


@cache
def _many_rows(statement: str) -> tuple[str, tuple[tuple[str, bool], ...]] | None:
    """A one-row INSERT (psycopg's form) as one statement for any number of rows, and its
    parameters as (name, is JSON text); None for any other statement.

    The rows travel as one JSON array, which `json_populate_recordset` turns into rows of the
    table's own column types: the statement stays short and fixed, so psycopg parses it once (a
    multi-row VALUES list is parsed again for every size, and its parameters one by one).
    """
    body, conflict, action = statement.partition(" ON CONFLICT ")
    match = _INSERT.fullmatch(body)
    if match is None:
        return None
    table, columns, row = match.groups()
    placeholders = _PLACEHOLDER.findall(row)
    names = columns.split(", ")
    given = [name for name, _ in placeholders]
    # Each column's own placeholder, in order: all named (rows are dicts) or all positional (tuples).
    if len(placeholders) != len(names) or (any(given) and given != names):
        return None
    rows = f"json_populate_recordset(NULL::{table}, %s::json)"
    query = f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {rows}{conflict}{action}"
    return query, tuple((name, bool(cast)) for name, (_, cast) in zip(names, placeholders, strict=True))


def _rows_json(parameters: tuple[tuple[str, bool], ...], rows: Sequence[Any]) -> bytes:
    """The JSON array of `rows` (tuples in the columns' order, or dicts); JSON columns, already JSON
    text, go in as they are."""
    if rows and isinstance(rows[0], dict):  # named rows (a run's row): in the columns' order first
        rows = [[row[name] for name, _ in parameters] for row in rows]
    fragment = orjson.Fragment
    return orjson.dumps(
        [
            {name: (fragment(value) if is_json and value is not None else value)
             for (name, is_json), value in zip(parameters, row, strict=True)}
            for row in rows
        ]
    )  # fmt: skip


@cache
def _quiet_psycopg_logger() -> None:
    """Give psycopg's logger a handler that drops records, unless the application set logging up.

    When a connection dies inside a pipeline, psycopg logs "error ignored terminating <Pipeline>"
    on its way out and then raises the real error; with no handler anywhere, Python's last-resort
    handler prints that warning to stderr beside our one-line message. An application that
    configured logging still sees it (the record propagates to its handlers as before).
    """
    import logging  # here: a log on SQLite never needs it, and every command imports this module

    logging.getLogger("psycopg").addHandler(logging.NullHandler())


def connect(params: dict[str, Any]) -> Any:
    import psycopg
    from psycopg.types.json import set_json_loads

    from stepledger.events import loads

    _quiet_psycopg_logger()
    conn = psycopg.connect(**params)
    set_json_loads(loads, conn)  # json/jsonb columns decoded as every other reader of the log does
    return conn


ROWS_PER_INSERT = 1_000  # a rebuild inserts every run's row, each with its whole workstream


def execute_many(cursor: Any, statement: str, rows: Sequence[Any]) -> None:
    """Run `statement` (psycopg's form) for every row: an INSERT once per ROWS_PER_INSERT rows."""
    shape = _many_rows(statement)
    if shape is None:
        for row in rows:
            cursor.execute(statement, row)
        return
    query, parameters = shape
    for start in range(0, len(rows), ROWS_PER_INSERT):
        part = rows[start : start + ROWS_PER_INSERT]
        cursor.execute(query, [_rows_json(parameters, part).decode()])
