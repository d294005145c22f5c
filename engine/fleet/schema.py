"""The fleet's tables, installed once per database: Procrastinate's own and the attempt ledger.

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


def install(conn: psycopg.Connection) -> None:
    """Create the fleet's tables if they are missing (idempotent, safe to race)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_INSTALL_LOCK,))
        found = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if not (found and found[0]):
            conn.execute(SchemaManager.get_schema())
        conn.execute(ATTEMPTS_TABLE)
        # The tail of the attempt's log (settings.log_cap_bytes), readable from any machine.
        conn.execute("ALTER TABLE stepledger_fleet_attempts ADD COLUMN IF NOT EXISTS log bytea")
