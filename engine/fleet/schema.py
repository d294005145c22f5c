"""The fleet's tables, installed once per database: Procrastinate's own, the attempt ledger, the
attempts' streamed logs and the roster of workers.

They live beside the event log in the same PostgreSQL database but outside its migrations: a SQLite
log never has a fleet, and Procrastinate versions its schema itself. Installing takes a
transaction-level advisory lock, so workers and drivers starting together install it once.
"""

from __future__ import annotations

import psycopg
from procrastinate.schema import SchemaManager

_INSTALL_LOCK = 0x5713_F1EE  # pg_advisory_xact_lock key: "stepledger fleet schema"

ATTEMPTS_TABLE = """
CREATE TABLE IF NOT EXISTS stepledger_fleet_attempts (
    run_id text NOT NULL,
    step_id text NOT NULL,
    attempt integer NOT NULL,
    -- claimed: a worker runs it; done: its outcome is in `result` (a worker's, or a fence's)
    state text NOT NULL CHECK (state IN ('claimed', 'done')),
    host text NOT NULL DEFAULT '',
    worker text NOT NULL DEFAULT '',
    job_id bigint,
    cancel_reason text,
    result jsonb,
    claimed_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (run_id, step_id, attempt)
)
"""

# An attempt's output as its worker streams it (log_stream.py): chunks in order, only the last
# STEPLEDGER_FLEET_LOG_BYTES of it kept. `start` is where the chunk's first byte is in the whole
# output, so a reader knows how much was dropped before (or between) the chunks it reads.
LOG_TABLE = """
CREATE TABLE IF NOT EXISTS stepledger_fleet_log (
    run_id text NOT NULL,
    step_id text NOT NULL,
    attempt integer NOT NULL,
    seq integer NOT NULL,
    start bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (run_id, step_id, attempt, seq)
)
"""

# Which queues each worker serves (Procrastinate's own worker rows have only a heartbeat): a
# worker is live while its procrastinate_workers row has a recent heartbeat (roster.py).
WORKERS_TABLE = """
CREATE TABLE IF NOT EXISTS stepledger_fleet_workers (
    worker_id bigint PRIMARY KEY,
    name text NOT NULL,
    host text NOT NULL,
    queues text[] NOT NULL,
    workdir text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL DEFAULT now()
)
"""


# Whether everything `install` creates is there already: one read, no lock. Installing again each
# time would take the advisory lock, and its ALTER TABLE an exclusive lock on the attempt ledger
# even when the column exists, on every driver's start and takeover. It reads the catalog as a
# table, not by name lookups (to_regclass): those would leave this session's catalog cache saying
# "no such table", which the install below, once another session's install committed while it
# waited for the lock, would still believe.
_INSTALLED = """
SELECT count(DISTINCT c.relname) = 4 AND bool_or(a.attname IS NOT NULL)
  FROM pg_class c
  LEFT JOIN pg_attribute a
    ON a.attrelid = c.oid AND c.relname = 'stepledger_fleet_attempts' AND a.attname = 'log'
   AND NOT a.attisdropped
 WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
   AND c.relname IN ('procrastinate_jobs', 'stepledger_fleet_attempts', 'stepledger_fleet_log',
                     'stepledger_fleet_workers')
"""


def install(conn: psycopg.Connection) -> None:
    """Create the fleet's tables if they are missing (idempotent, safe to race)."""
    found = conn.execute(_INSTALLED).fetchone()
    if found and found[0]:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK,))
        found = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if not (found and found[0]):
            conn.execute(SchemaManager.get_schema())
        conn.execute(ATTEMPTS_TABLE)
        # The end of the log as workers before the streamed log recorded it with the outcome.
        conn.execute("ALTER TABLE stepledger_fleet_attempts ADD COLUMN IF NOT EXISTS log bytea")
        conn.execute(LOG_TABLE)
        conn.execute(WORKERS_TABLE)


def has_table(conn: psycopg.Connection, name: str) -> bool:
    """Whether the fleet's table `name` exists: a reader creates nothing (a log never used by a
    fleet has none, one used by an older stepledger may lack the newer tables)."""
    found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(found and found[0])
