"""Reading the attempt ledger for front ends: which host and worker ran each attempt of a run."""

from __future__ import annotations

from typing import Any

import psycopg

from . import ledger
from .settings import conninfo


def fleet_attempts(db_url: str, run_id: str) -> list[dict[str, Any]]:
    """The run's attempts on the fleet, as plain rows (an empty list if it never used one)."""
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('stepledger_fleet_attempts') IS NOT NULL").fetchone()
        if not (found and found[0]):
            return []
        rows = ledger.attempts_of(conn, run_id)
    return [
        {
            "run_id": row.run_id,
            "step_id": row.step_id,
            "attempt": row.attempt,
            "host": row.host,
            "worker": row.worker,
            "state": row.state,
            "passed": bool(row.result and row.result.get("passed")),
            "reason": (row.result or {}).get("reason"),
        }
        for row in rows
    ]
