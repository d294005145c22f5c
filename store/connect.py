"""Opening a store from a URL: the default SQLite file, `STEPLEDGER_DB`, or a SQLite or PostgreSQL
(psycopg) URL given; any other kind is refused (`dbapi.check_url`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dbapi import check_url
from .engines import LOCK_OPTION, MIGRATE, WRITE, make_engine
from .errors import DatabaseUnavailable
from .port import EventStore
from .sqlerrors import first_line, safe_url, translating, unavailable

if TYPE_CHECKING:
    from sqlalchemy import Engine

# The store's entry point for the engine: opening a store or an engine, and what a URL is.
__all__ = [
    "ENV_VAR", "LOCK_OPTION", "MEMORY_URL", "MIGRATE", "WRITE",
    "check_integrity", "check_url", "default_url", "engine_for", "make_engine", "open_store", "resolve_url",
    "safe_url", "unavailable",
]  # fmt: skip

ENV_VAR = "STEPLEDGER_DB"
MEMORY_URL = "memory://"  # an in-memory store (dry runs, tests); gone when the process ends


def default_url(workdir: str | os.PathLike[str] = ".") -> str:
    """The default database: `.stepledger/ledger.db` under `workdir`."""
    return f"sqlite:///{Path(workdir).resolve() / '.stepledger' / 'ledger.db'}"


def resolve_url(url: str | None = None, workdir: str | os.PathLike[str] = ".") -> str:
    """The URL to use: the one given, else `STEPLEDGER_DB`, else the default SQLite file."""
    return url or os.environ.get(ENV_VAR) or default_url(workdir)


def open_store(
    url: str | None = None,
    workdir: str | os.PathLike[str] = ".",
    migrate: bool = True,
    create: bool = True,
) -> EventStore:
    """Open the event store at `url` (see `resolve_url`), migrating a new or older database first.

    With `create=False` (the commands that only read) nothing is created: a SQLite file that does
    not exist, or a database without stepledger's schema, is `NoLog`, one line.
    """
    url = resolve_url(url, workdir)
    if url == MEMORY_URL:
        from .memory import InMemoryEventStore

        return InMemoryEventStore()
    from .dbapi import Database
    from .migrate import ensure_schema
    from .sql import SqlEventStore

    with translating(url):
        db = Database(url)
    try:
        if create:
            db.check_folder(create=url == default_url(workdir))  # the default lives in a folder we own
        else:
            db.check_exists()
        ensure_schema(db, migrate=migrate, create=create)
    except BaseException:
        db.close()
        raise
    return SqlEventStore(db)


def engine_for(url: str | None = None, workdir: str | os.PathLike[str] = ".", create: bool = True) -> Engine:
    """The engine of the database at `url` (resolved as `open_store` does), not migrated.

    With `create=False`, a SQLite file that does not exist is `NoLog` rather than created.
    """
    from .dbapi import create_private_file, make_private_folder, no_log
    from .urls import sqlite_file

    url = resolve_url(url, workdir)
    check_url(url)
    _parse(url)
    path = sqlite_file(url)
    if path is not None:
        folder = Path(path).parent
        default = url == default_url(workdir)
        if create and default:
            make_private_folder(folder)  # the default lives in a folder we own
        elif not folder.is_dir() and not default:
            raise unavailable(url, f"folder {folder} does not exist")
        if create:
            create_private_file(path)
        elif not Path(path).is_file():
            raise no_log(url, "the file does not exist")
    return make_engine(url)


def libpq_conninfo(url: str) -> str | None:
    """The libpq connection string of a PostgreSQL URL, read as the store reads it (libpq's own
    parser, psycopg_driver.py), for what connects beside the store (the fleet); None for another URL."""
    from . import psycopg_driver

    params = psycopg_driver.conninfo(url)
    if params is None:
        return None
    from psycopg.conninfo import make_conninfo

    return make_conninfo(**params)


def check_integrity(store: EventStore) -> None:
    """Raise DatabaseDamaged (one line saying how to recover) if the store's SQLite file is damaged."""
    database = getattr(store, "db", None)  # the SQL store's database; the in-memory one has none
    if database is not None:
        database.check_integrity()


def _parse(url: str) -> Any:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url)
    except Exception as error:
        raise DatabaseUnavailable(f"invalid database URL {safe_url(url)!r}: {first_line(error)}") from None
