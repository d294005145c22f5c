"""Translation of driver and SQLAlchemy errors into the store's exception family, at the adapter."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc
from sqlalchemy.engine import make_url

from .errors import DatabaseUnavailable, StoreError

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
)


def safe_url(url: str) -> str:
    """The URL with its password hidden, fit for an error message."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return url


def first_line(error: BaseException) -> str:
    """The driver's own message, on one line."""
    original = getattr(error, "orig", None) or error
    text = " ".join(str(original).split())
    return text or type(original).__name__


@contextmanager
def translating(url: str) -> Iterator[None]:
    """Re-raise SQLAlchemy and driver errors as StoreError / DatabaseUnavailable, one line each."""
    try:
        yield
    except StoreError:
        raise
    except exc.ArgumentError as error:
        raise DatabaseUnavailable(f"invalid database URL {safe_url(url)!r}: {first_line(error)}") from None
    except exc.NoSuchModuleError as error:
        raise DatabaseUnavailable(
            f"unsupported database URL {safe_url(url)!r}: {first_line(error)}"
        ) from None
    except (exc.OperationalError, exc.InterfaceError) as error:
        message = first_line(error)
        if any(fragment in message.lower() for fragment in _UNAVAILABLE):
            raise DatabaseUnavailable(f"cannot use the database {safe_url(url)}: {message}") from None
        raise StoreError(f"database error on {safe_url(url)}: {message}") from None
    except exc.SQLAlchemyError as error:
        raise StoreError(f"database error on {safe_url(url)}: {first_line(error)}") from None
    except Exception as error:
        # A statement sent straight to the driver (the writer lock in a `begin` hook) raises the
        # driver's own exception, not SQLAlchemy's: e.g. the server shutting down mid-run.
        if not _is_driver_error(error):
            raise
        message = first_line(error)
        if any(fragment in message.lower() for fragment in _UNAVAILABLE):
            raise DatabaseUnavailable(f"cannot use the database {safe_url(url)}: {message}") from None
        raise StoreError(f"database error on {safe_url(url)}: {message}") from None


def _is_driver_error(error: BaseException) -> bool:
    import sqlite3

    if isinstance(error, sqlite3.Error):
        return True
    psycopg = sys.modules.get("psycopg")  # only loaded when a PostgreSQL URL is in use
    return psycopg is not None and isinstance(error, psycopg.Error)
