"""Translation of driver and SQLAlchemy errors into the store's exception family, at the adapter."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import DatabaseDamaged, DatabaseUnavailable, StoreError
from .redact import mask, remember, safe_url
from .urls import sqlite_file

__all__ = ["damaged", "first_line", "safe_url", "translating", "unavailable"]

# Fragments of driver messages that mean "you cannot get in", as opposed to a failing statement.
_UNAVAILABLE = (
    "connection refused",
    "could not connect",
    "connection to server",
    "password authentication failed",
    "authentication failed",
    "does not exist",
    "unable to open database file",
    "no password supplied",
    "timeout expired",
    "could not translate host name",
    "name or service not known",
    "server closed the connection",
    "terminating connection",
    "the connection is lost",  # psycopg, on a connection that broke in an earlier statement
    "the connection is closed",
    "the database system is",  # PostgreSQL starting up, shutting down or in recovery
)


def first_line(error: BaseException) -> str:
    """The driver's own message, on one line, with any password it repeats masked."""
    original = getattr(error, "orig", None) or error
    text = " ".join(str(original).split())
    return mask(text) or type(original).__name__


@contextmanager
def translating(url: str) -> Iterator[None]:
    """Re-raise SQLAlchemy and driver errors as StoreError / DatabaseUnavailable, one line each."""
    remember(url)
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        problem = _sqlalchemy_problem(error, url) if "sqlalchemy" in sys.modules else None
        if problem is None:
            # The store runs its statements on the driver (dbapi.py): its errors are the driver's.
            if not _is_driver_error(error):
                raise
            problem = _driver_problem(first_line(error), url)
        raise problem from None


def unavailable(url: str, detail: str) -> DatabaseUnavailable:
    """The one-line error for a database that cannot be used (its URL shown without a password)."""
    return DatabaseUnavailable(f"cannot use the database {safe_url(url)}: {mask(detail)}")


# SQLite's words for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB).
_DAMAGED = ("database disk image is malformed", "file is not a database")


def damaged(url: str, detail: str) -> DatabaseDamaged:
    """The one-line error for a damaged SQLite file: which file, and how to recover the log."""

    path = sqlite_file(url) or safe_url(url)
    return DatabaseDamaged(
        f"the database file {path} is damaged ({mask(detail)}): stop stepledger, recover it with "
        f"`sqlite3 {path} .recover | sqlite3 {path}.recovered`, move {path}.recovered to {path} "
        "(removing its old -wal and -shm files), "
        "then run `stepledger db rebuild` on it"
    )


def _driver_problem(message: str, url: str) -> StoreError:
    if any(fragment in message.lower() for fragment in _DAMAGED):
        return damaged(url, message)
    if any(fragment in message.lower() for fragment in _UNAVAILABLE):
        return unavailable(url, message)
    return StoreError(f"database error on {safe_url(url)}: {message}")


def _sqlalchemy_problem(error: Exception, url: str) -> StoreError | None:
    """The store's error for a SQLAlchemy error (None if `error` is not one); SQLAlchemy is only
    imported once something used it, so only then can its errors occur."""
    from sqlalchemy import exc

    if isinstance(error, exc.ArgumentError):
        return DatabaseUnavailable(f"invalid database URL {safe_url(url)!r}: {first_line(error)}")
    if isinstance(error, exc.NoSuchModuleError):
        return DatabaseUnavailable(f"unsupported database URL {safe_url(url)!r}: {first_line(error)}")
    if isinstance(error, exc.OperationalError | exc.InterfaceError):
        return _driver_problem(first_line(error), url)
    if isinstance(error, exc.SQLAlchemyError):
        return StoreError(f"database error on {safe_url(url)}: {first_line(error)}")
    return None


def _is_driver_error(error: BaseException) -> bool:
    import sqlite3

    if isinstance(error, sqlite3.Error):
        return True
    psycopg = sys.modules.get("psycopg")  # only loaded when a PostgreSQL URL is in use
    return psycopg is not None and isinstance(error, psycopg.Error)
