"""Opening a store from a URL: the default SQLite file, `STEPLEDGER_DB`, or any SQLAlchemy URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .dbapi import MIGRATION_LOCK_KEY, SQLITE_PRAGMAS, apply_pragmas
from .errors import DatabaseUnavailable
from .port import EventStore
from .psycopg_driver import psycopg_url
from .sqlerrors import first_line, safe_url, translating, unavailable

if TYPE_CHECKING:
    from sqlalchemy import Engine

ENV_VAR = "STEPLEDGER_DB"
MEMORY_URL = "memory://"  # an in-memory store (dry runs, tests); gone when the process ends
# Execution option read by the "begin" hooks: which lock a transaction takes when it starts.
LOCK_OPTION = "stepledger_lock"
WRITE = "write"  # an append or a rebuild: the writer lock
MIGRATE = "migrate"  # a migration: the migration lock (and the writer lock on SQLite)


def default_url(workdir: str | os.PathLike[str] = ".") -> str:
    """The default database: `.stepledger/ledger.db` under `workdir`."""
    return f"sqlite:///{Path(workdir).resolve() / '.stepledger' / 'ledger.db'}"


def resolve_url(url: str | None = None, workdir: str | os.PathLike[str] = ".") -> str:
    """The URL to use: the one given, else `STEPLEDGER_DB`, else the default SQLite file."""
    return url or os.environ.get(ENV_VAR) or default_url(workdir)


def _harden_sqlite(engine: Engine) -> None:
    # The engine's connections get the store's own settings (dbapi.py explains each); these hooks
    # serve what runs through SQLAlchemy: migrations, audits, and URLs the store cannot open itself.
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let the "begin" hook below emit BEGIN itself; pysqlite's implicit one is deferred.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        apply_pragmas(cursor, SQLITE_PRAGMAS)
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        # A writer takes the write lock up front (BEGIN IMMEDIATE; see dbapi.py), readers do not.
        lock = conn.get_execution_options().get(LOCK_OPTION)
        # Straight to the driver: SQLAlchemy's statement machinery would cost more than the BEGIN.
        conn.connection.driver_connection.execute("BEGIN IMMEDIATE" if lock else "BEGIN")


def _serialise_postgres_writers(engine: Engine) -> None:
    from sqlalchemy import event

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        lock = conn.get_execution_options().get(LOCK_OPTION)
        if lock == MIGRATE:
            # Two processes opening a new database at once: one migrates, the other waits and
            # then finds the schema current. (The events table may not exist yet to lock it.)
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        elif lock == WRITE:
            # Positions come from a sequence, and "sequence values are not guaranteed to be
            # committed in order" (https://www.postgresql.org/docs/current/functions-sequence.html):
            # a transaction holding position 7 can commit after one holding 8, and a reader tailing
            # by position would skip 7 for good. EXCLUSIVE mode conflicts with every writer's ROW
            # EXCLUSIVE lock but not with readers' ACCESS SHARE
            # (https://www.postgresql.org/docs/current/explicit-locking.html#LOCKING-TABLES), and is
            # held until commit, so writers take positions one transaction at a time, in commit order.
            conn.connection.driver_connection.execute("LOCK TABLE events IN EXCLUSIVE MODE")


def make_engine(url: str) -> Engine:
    """A SQLAlchemy engine for `url` with stepledger's connection settings installed."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from stepledger.events import dumps, loads

    with translating(url):
        parsed = make_url(psycopg_url(url))  # a plain postgresql:// URL means psycopg here too
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql":
            connect_args["connect_timeout"] = 5  # an unreachable server fails fast, not after minutes
        engine = create_engine(
            parsed,
            json_serializer=dumps,
            json_deserializer=loads,
            connect_args=connect_args,
            # Every transaction of the store ends in commit or rollback before the connection goes
            # back to the pool, so the pool's own rollback-on-return would be a wasted call.
            pool_reset_on_return=None,
        )
    if engine.dialect.name == "sqlite":
        _harden_sqlite(engine)
    elif engine.dialect.name == "postgresql":
        _serialise_postgres_writers(engine)
    return engine


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
    from .dbapi import check_url, create_private_file, make_private_folder, no_log, sqlite_file

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
