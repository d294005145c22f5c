"""The store's connections: DB-API transactions, without SQLAlchemy on the path of a run.

Importing SQLAlchemy and building its engine was a large part of every `stepledger run`'s
start-up (docs/performance.md), while the store only ever runs a dozen fixed statements. So the
store talks to the driver directly:

- a plain SQLite file URL (the default) is opened with `sqlite3` itself, with the settings below;
- a `postgresql+psycopg://` URL (the documented PostgreSQL form), or a plain `postgresql://` one,
  is opened with psycopg itself: libpq reads the URL, and the store keeps the idle connections;
- any other URL (another PostgreSQL driver, SQLite with URL options) gets its connections from a
  SQLAlchemy engine (`engines.make_engine`), which parses the URL and pools the connections; the
  statements still run on the driver's cursor.

Either way a transaction is `BEGIN ... COMMIT` on one DB-API connection, with the writer lock
taken first (`Mode`). SQLAlchemy stays the schema's definition (schema.py), the migrations' engine
and the audit queries' builder: `Database.engine` creates the engine when one of those needs it.
"""

from __future__ import annotations

import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from enum import Enum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from . import psycopg_driver
from .checkpoint import Checkpointer
from .connection_settings import (
    BUSY_TIMEOUT_MS,
    MIGRATION_LOCK_KEY,
    STORE_PRAGMAS,
    apply_pragmas,
)
from .errors import DatabaseUnavailable, NoLog
from .sqlerrors import damaged, first_line, safe_url, translating, unavailable
from .urls import sqlite_file

if TYPE_CHECKING:
    from sqlalchemy import Engine


class Mode(Enum):
    """What a transaction is for, which decides the lock it takes when it starts."""

    READ = "read"  # a snapshot: a deferred BEGIN on SQLite
    WRITE = "write"  # a write that needs no ordering (leases): the writer lock on SQLite
    APPEND = "append"  # appends and rebuilds: positions are handed out in commit order
    MIGRATE = "migrate"  # creating or migrating the schema: one process at a time


def _begin_sqlite(mode: Mode) -> str:
    # A writer takes the write lock when its transaction starts (BEGIN IMMEDIATE), so it waits for
    # the busy timeout up front instead of failing to upgrade a read lock mid-transaction
    # (SQLITE_BUSY with no retry); readers use a deferred BEGIN and see a snapshot.
    return "BEGIN" if mode is Mode.READ else "BEGIN IMMEDIATE"


def _begin_postgres(mode: Mode) -> str | None:
    if mode is Mode.APPEND:
        # Positions are max + 1 under this lock, never a sequence, whose values "are not guaranteed
        # to be committed in order" (https://www.postgresql.org/docs/current/functions-sequence.html):
        # a reader tailing by position would skip a late commit for good. EXCLUSIVE mode conflicts
        # with every writer's ROW EXCLUSIVE lock but not with readers' ACCESS SHARE
        # (https://www.postgresql.org/docs/current/explicit-locking.html#LOCKING-TABLES) and is
        # held until commit, so writers take positions one transaction at a time, in commit order.
        return "LOCK TABLE events IN EXCLUSIVE MODE"
    if mode is Mode.MIGRATE:
        # Two processes opening a new database at once: one migrates, the other waits and then
        # finds the schema current (the events table may not exist yet to lock it).
        return f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
    return None


_NAMED = re.compile(r"(?<![:\w]):(\w+)(!j)?")


def _postgres(sql: str, named: bool) -> str:
    # `:name` -> `%(name)s` (or `%s`); `:name!j` (a JSON column) -> `%(name)s::jsonb`, as
    # SQLAlchemy's JSONB type renders it. psycopg reads `%` as a placeholder: a literal one is doubled.
    def placeholder(match: re.Match[str]) -> str:
        return (f"%({match.group(1)})s" if named else "%s") + ("::jsonb" if match.group(2) else "")

    return _NAMED.sub(placeholder, sql.replace("%", "%%"))


@cache
def _postgres_sql(sql: str) -> str:
    return _postgres(sql, named=True)


@cache
def _sqlite_sql(sql: str) -> str:
    return sql.replace("!j", "")  # sqlite3 takes `:name` itself; JSON is text


@cache
def _postgres_positional(sql: str) -> str:
    return _postgres(sql, named=False)


@cache
def _sqlite_positional(sql: str) -> str:
    return _NAMED.sub("?", sql)


SUPPORTED = "sqlite:///PATH or postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DBNAME"
_SCHEMES = frozenset({"sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg"})


def check_url(url: str) -> None:
    """Refuse a URL the store cannot keep a crash-safe log in, with one line saying what to use.

    Only the drivers stepledger installs and tests are accepted (sqlite3, psycopg 3): another
    driver (psycopg2, MySQL, Oracle...) would fail later, or worse, half work. An in-memory SQLite
    database is gone when the process ends, and every connection gets its own: a run in it could
    neither be resumed after a crash nor seen by `status`.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in _SCHEMES:
        raise DatabaseUnavailable(
            f"unsupported database URL {safe_url(url)!r}: stepledger keeps its log in SQLite or "
            f"PostgreSQL (driver psycopg); use {SUPPORTED}"
        )
    if scheme.lower().startswith("sqlite") and _sqlite_in_memory(rest):
        raise DatabaseUnavailable(
            f"refusing the in-memory database {safe_url(url)!r}: it is lost when the process ends, so "
            "a crashed run could not be resumed; use a file, sqlite:///PATH (or leave --db out for "
            ".stepledger/ledger.db)"
        )


def _sqlite_in_memory(rest: str) -> bool:
    # SQLAlchemy reads `sqlite://` (and `sqlite://anything`, a "host") as an in-memory database;
    # `:memory:`, `file::memory:` and `mode=memory` are SQLite's own spellings of one.
    path, _, query = rest.partition("?")
    if not path.startswith("/"):
        return True
    path = unquote(path[1:])
    return path in ("", ":memory:") or path.startswith("file::memory:") or "mode=memory" in query + path


def create_private_file(path: str) -> None:
    """Create the SQLite file `path`, empty and readable by its owner only, if it does not exist.

    SQLite creates its -wal and -shm files with the database file's permissions, so the log and
    its WAL are never readable by other users, whatever the umask.
    """
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


class Database:
    """One database: its dialect, a pool of DB-API connections, and transactions on them."""

    def __init__(self, url: str) -> None:
        check_url(url)
        self.url = url
        self.safe_url = safe_url(url)
        self._file = sqlite_file(url)
        self._engine: Engine | None = None
        # Idle connections of our own (sqlite3 with check_same_thread=False, or psycopg); None when
        # a SQLAlchemy engine pools them.
        self._idle: list[Any] | None = []
        self._lock = threading.Lock()
        self._checkpointer: Checkpointer | None = None
        self._psycopg: dict[str, Any] | None = None
        if self._file is not None:
            self.dialect = "sqlite"
            self.errors: Any = sqlite3
            self._checkpointer = Checkpointer(self._connect)
        elif (psycopg_params := psycopg_driver.conninfo(url)) is not None:
            import psycopg

            self.dialect = "postgresql"
            self.errors = psycopg
            self._psycopg = psycopg_params
        else:
            self._idle = None
            self.dialect = self.engine.dialect.name
            if self.dialect not in ("sqlite", "postgresql"):
                raise DatabaseUnavailable(
                    f"unsupported database {self.safe_url}: stepledger keeps its log in SQLite or PostgreSQL"
                )
            self.errors = self.engine.dialect.loaded_dbapi
        self.sql = _sqlite_sql if self.dialect == "sqlite" else _postgres_sql
        # The same with positional placeholders, for rows given as tuples in the statement's order:
        # sqlite3 binds a named parameter by building its name and looking it up in the row's dict,
        # for every column of every row: a noticeable share of a batched append.
        self.positional_sql = _sqlite_positional if self.dialect == "sqlite" else _postgres_positional
        self._begin = _begin_sqlite if self.dialect == "sqlite" else _begin_postgres
        # SQLite hands JSON columns back as text and booleans as 0/1; psycopg decodes both.
        self.decodes_json = self.dialect == "postgresql"

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the same database (created, and SQLAlchemy imported, on first use)."""
        if self._engine is None:
            from .engines import make_engine

            self._engine = make_engine(self.url)
        return self._engine

    def check_folder(self, create: bool) -> None:
        """Refuse a SQLite file whose folder does not exist (or create it, for the default file).

        A folder created here is the owner's alone (0700), and so is a new file (0600).
        """
        if self._file is None:
            return
        folder = Path(self._file).parent
        if create:
            make_private_folder(folder)
        elif not folder.is_dir():
            raise unavailable(self.url, f"folder {folder} does not exist")
        create_private_file(self._file)

    def check_exists(self) -> None:
        """Refuse a SQLite file that does not exist, creating nothing (the commands that only read)."""
        if self._file is not None and not Path(self._file).is_file():
            raise no_log(self.url, "the file does not exist")

    def integrity_problems(self) -> list[str]:
        """What SQLite's `PRAGMA quick_check` finds wrong with the file (none on PostgreSQL).

        quick_check reads every page and checks the b-trees and records, but not that indexes
        match their tables (integrity_check's much slower part): a damaged page is what a crash,
        a full disk or a bad copy leaves, and a damaged page is what it finds.
        """
        if self.dialect != "sqlite":
            return []
        with self.transaction() as cursor:
            cursor.execute("PRAGMA quick_check")
            rows = [str(row[0]) for row in cursor.fetchall()]
        return [] if rows == ["ok"] else rows

    def check_integrity(self) -> None:
        """Raise DatabaseDamaged, saying how to recover, if `integrity_problems` finds any."""
        with translating(self.url):
            problems = self.integrity_problems()
        if problems:
            raise damaged(self.url, f"{len(problems)} problem(s), the first: {problems[0]}")

    # --- connections -----------------------------------------------------------------------------

    def _connect(self) -> Any:
        if self._psycopg is not None:
            return psycopg_driver.connect(self._psycopg)
        if self._file is None:
            return self.engine.raw_connection()  # returns to SQLAlchemy's pool when closed
        conn = sqlite3.connect(
            self._file, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        apply_pragmas(conn, STORE_PRAGMAS)
        return conn

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A DB-API connection from the pool, put back afterwards (dropped if it broke)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None  # None: none idle, or the engine pools
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        except BaseException as error:
            if isinstance(error, self.errors.Error) and _unusable(conn):
                _discard(conn)
                if isinstance(error, self.errors.OperationalError):
                    # The connection died under the statement (the server restarted or cut it):
                    # a new connection is the remedy, so it is said as "unavailable", which the
                    # reactor waits out. psycopg may name only its own state ("cannot exit
                    # pipeline mode while busy") when the loss struck as it left a pipeline.
                    raise unavailable(self.url, f"the connection was lost ({first_line(error)})") from None
                raise
            self._release(conn)
            raise
        self._release(conn)

    def _release(self, conn: Any) -> None:
        if self._idle is None:
            conn.close()  # back to the engine's pool
            return
        with self._lock:
            self._idle.append(conn)

    @contextmanager
    def transaction(self, mode: Mode = Mode.READ) -> Iterator[Any]:
        """A cursor inside one transaction: committed at the end, rolled back on an error."""
        with self.connection() as conn:
            cursor = conn.cursor()
            sqlite = self.dialect == "sqlite"
            begin = self._begin(mode)
            try:
                # The rollback below comes after the pipeline is left: inside an aborted pipeline
                # the server would discard it, and the connection would stay in the failed
                # transaction.
                with self._batching(conn, mode):
                    if begin:
                        cursor.execute(begin)
                    yield cursor
                    if sqlite:
                        cursor.execute("COMMIT")
                        if mode is not Mode.READ and self._checkpointer is not None:
                            self._checkpointer.committed(conn)
                    else:
                        conn.commit()
            except BaseException:
                _rollback(conn, sqlite)
                raise
            finally:
                cursor.close()

    def execute_many(self, cursor: Any, statement: str, rows: Sequence[Any]) -> None:
        """Run `statement` once per row of parameters, in the cursor's transaction.

        On PostgreSQL an INSERT runs once for all the rows (`psycopg_driver.execute_many`): one
        execution on the server instead of one per row, and no answer to wait for (psycopg's
        `executemany` leaves a pipeline of its own, which inside an append's pipeline,
        `_batching`, is a round trip per call); any other statement is queued row by row.
        """
        if len(rows) == 1:
            cursor.execute(statement, rows[0])  # one row: a plain execution is the cheapest
        elif self._psycopg is None:
            cursor.executemany(statement, rows)
        else:
            psycopg_driver.execute_many(cursor, statement, rows)

    def _batching(self, conn: Any, mode: Mode) -> AbstractContextManager[Any]:
        """psycopg's pipeline mode for an append: its statements go out together, not one by one.

        An append needs no answer from the server until its commit (its reads happen only when the
        store's cache misses, and a read makes psycopg send what is queued first), so BEGIN, the
        writer lock, the inserts, the projection upserts and COMMIT travel in one round trip
        instead of five; a failing statement raises its own error (an IntegrityError for a
        conflict) at the latest at the commit, and the rest of the batch is discarded with it.
        """
        if self._psycopg is None or mode is not Mode.APPEND:
            return nullcontext()
        return conn.pipeline()

    def close(self) -> None:
        """Close the pooled connections (and the engine, if one was made)."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        with self._lock:
            idle = self._idle or []
            if self._idle is not None:
                self._idle = []
        for conn in idle:
            conn.close()
        if self._engine is not None:
            self._engine.dispose()


def make_private_folder(folder: Path) -> None:
    """Create `folder` (and its parents) if missing; the folder itself readable by its owner only."""
    if folder.is_dir():
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        folder.mkdir(mode=0o700)
        folder.chmod(0o700)  # whatever the umask


def no_log(url: str, why: str = "it has no stepledger tables") -> NoLog:
    """The one-line error of a command that only reads, for a database holding no stepledger log."""
    return NoLog(
        f"no stepledger log at {safe_url(url)} ({why}): run a workstream first, or check --db / STEPLEDGER_DB"
    )


def _rollback(conn: Any, sqlite: bool) -> None:
    with suppress(Exception):  # the connection is gone: the original error is what matters
        if not sqlite:
            conn.rollback()
        elif conn.in_transaction:
            conn.execute("ROLLBACK")


def _unusable(conn: Any) -> bool:
    """Whether `conn` must not be handed out again: closed or broken, or (psycopg) left outside an
    idle state — in pipeline mode or mid-transaction — by an error that struck as it left them."""
    driver = getattr(conn, "driver_connection", conn)
    if getattr(driver, "closed", False) or getattr(driver, "broken", False):
        return True
    pgconn = getattr(driver, "pgconn", None)
    if pgconn is None:  # sqlite3, or another driver: closed is all it tells
        return False
    from psycopg import pq

    return bool(
        pgconn.status != pq.ConnStatus.OK
        or pgconn.pipeline_status != pq.PipelineStatus.OFF
        or pgconn.transaction_status != pq.TransactionStatus.IDLE
    )


def _discard(conn: Any) -> None:
    invalidate = getattr(conn, "invalidate", None)  # a SQLAlchemy pooled connection
    with suppress(Exception):  # already unusable
        invalidate() if invalidate else conn.close()
