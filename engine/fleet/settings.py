"""The fleet's settings: the database to reach, the queue names, heartbeats and the stall timeout.

Defaults are chosen so a dead worker's attempt is recorded interrupted within about ten seconds
(docs/workers.md, "Settings"); the environment overrides them, the same on every machine.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from stepledger.store.connect import libpq_conninfo, unavailable

from ..errors import UserInputError

if TYPE_CHECKING:
    import psycopg

TASK_NAME = "stepledger_attempt"  # the one Procrastinate task: run one attempt
DEFAULT_QUEUE = "default"  # the queue of a step that names none
RESULTS_CHANNEL = "stepledger_fleet_results"  # NOTIFY channel: an attempt's outcome was recorded
LOG_CHANNEL = "stepledger_fleet_log"  # NOTIFY channel: an attempt's log grew (payload: the run id)


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UserInputError(f"{name}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise UserInputError(f"{name}={raw!r} must be more than 0 seconds")
    return value


def heartbeat_seconds() -> float:
    """How often a worker tells the database it is alive (STEPLEDGER_FLEET_HEARTBEAT)."""
    return _seconds("STEPLEDGER_FLEET_HEARTBEAT", 2.0)


def stall_seconds() -> float:
    """A worker silent this long is dead and its attempts interrupted (STEPLEDGER_FLEET_STALL_TIMEOUT)."""
    return _seconds("STEPLEDGER_FLEET_STALL_TIMEOUT", 6.0)


def check_seconds() -> float:
    """How often the driving process looks for stalled attempts (a fraction of the stall timeout)."""
    return min(1.0, stall_seconds() / 4)


def log_cap_bytes() -> int:
    """How much of an attempt's log (its end) is kept in the database (STEPLEDGER_FLEET_LOG_BYTES)."""
    raw = os.environ.get("STEPLEDGER_FLEET_LOG_BYTES")
    try:
        return max(0, int(raw)) if raw else 1 << 20
    except ValueError:
        raise UserInputError(f"STEPLEDGER_FLEET_LOG_BYTES={raw!r} is not a number of bytes") from None


def check_settings() -> None:
    """Refuse (UserInputError, one line) a setting in the environment that is not a valid value."""
    heartbeat_seconds()
    stall_seconds()
    log_cap_bytes()


def is_postgres(db_url: str) -> bool:
    """Whether `db_url` names a PostgreSQL database (the only kind a fleet can share)."""
    return db_url.startswith(("postgresql:", "postgresql+", "postgres:"))


def conninfo(db_url: str) -> str:
    """The libpq connection string of a PostgreSQL URL (`postgresql+psycopg://…`), read as the
    event store reads it (store/psycopg_driver.py: by libpq itself, with its connect timeout), so
    the fleet's connections and the log's go to the same place; SQLAlchemy is not imported."""
    info = libpq_conninfo(db_url)
    if info is None:
        raise UserInputError(
            f"the fleet needs a PostgreSQL database (postgresql+psycopg://…), not {db_url.split(':', 1)[0]}:"
        )
    return info


def connect(db_url: str) -> psycopg.Connection:
    """A first connection to the fleet's database, in autocommit: one that cannot be made is the
    store's one-line DatabaseUnavailable (the URL without its password), as every other command
    says it, not psycopg's traceback."""
    import psycopg

    try:
        return psycopg.connect(conninfo(db_url), autocommit=True)
    except psycopg.OperationalError as error:
        # `unavailable` masks a password the driver's message might repeat.
        raise unavailable(db_url, " ".join(str(error).split())) from None
