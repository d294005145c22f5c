"""The store's exception family: adapters translate driver errors into these, callers see no other."""

from __future__ import annotations


class StoreError(Exception):
    """Root of every error raised by an event store."""


class ConcurrencyError(StoreError):
    """A stream was not at the expected version: someone else appended first. Reload and decide again."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream!r} is at version {actual}, not the expected {expected}: "
            "another writer appended first"
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class DatabaseUnavailable(StoreError):
    """The database cannot be reached or refused the login; check the URL given by --db / STEPLEDGER_DB."""


class SchemaTooNew(StoreError):
    """The database was migrated by a newer stepledger than this one; upgrade stepledger."""


class NotASqlLog(StoreError):
    """The audit reads SQL, so it needs a SQLite or PostgreSQL log, not the in-memory one."""


class NoLog(StoreError):
    """A command that only reads was pointed at a database (or SQLite file) holding no stepledger log."""


class DatabaseDamaged(StoreError):
    """The SQLite file is damaged: SQLite's own checks failed. Recover the file, then rebuild."""

    exit_code = 1  # not the user's input: the log itself needs mending
