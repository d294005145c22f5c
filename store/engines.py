"""SQLAlchemy engines on the log's database, with stepledger's connection settings installed.

The store itself talks to the drivers directly (dbapi.py); an engine serves what runs through
SQLAlchemy: migrations, audits, and URLs the store cannot open itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .connection_settings import MIGRATION_LOCK_KEY, SQLITE_PRAGMAS, apply_pragmas
from .psycopg_driver import psycopg_url
from .sqlerrors import translating

if TYPE_CHECKING:
    from sqlalchemy import Engine

# Execution option read by the "begin" hooks: which lock a transaction takes when it starts.
LOCK_OPTION = "stepledger_lock"
WRITE = "write"  # an append or a rebuild: the writer lock
MIGRATE = "migrate"  # a migration: the migration lock (and the writer lock on SQLite)


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
