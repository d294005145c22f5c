"""Reading the fleet for front ends: where each attempt of a run ran, and which still wait for a worker."""

from __future__ import annotations

from typing import Any

import psycopg

from . import ledger
from .settings import conninfo


def fleet_attempts(db_url: str, run_id: str) -> list[dict[str, Any]]:
    """The run's attempts on the fleet, as plain rows: run or settled ones from the attempt ledger,
    then those still queued for a worker (state `queued`); none if the run never used a fleet."""
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('stepledger_fleet_attempts') IS NOT NULL").fetchone()
        if not (found and found[0]):
            return []
        rows = [
            {
                "step_id": row.step_id,
                "attempt": row.attempt,
                "state": row.state,
                "queue": None,
                "host": row.host,
                "worker": row.worker,
                "passed": bool(row.result and row.result.get("passed")) if row.state == "done" else None,
                "reason": (row.result or {}).get("reason"),
            }
            for row in ledger.attempts_of(conn, run_id)
        ]
        known = {(row["step_id"], row["attempt"]) for row in rows}
        queued = conn.execute(
            "SELECT args->'spec'->>'step_id', (args->'spec'->>'attempt')::int, queue_name"
            " FROM procrastinate_jobs WHERE status = 'todo' AND args->'spec'->>'run_id' = %s ORDER BY id",
            (run_id,),
        ).fetchall()
    for step_id, attempt, queue in queued:
        if (step_id, attempt) not in known:  # a job whose attempt was fenced waits only to be dropped
            rows.append({"step_id": step_id, "attempt": attempt, "state": "queued", "queue": queue,
                         "host": "", "worker": "", "passed": None, "reason": None})  # fmt: skip
    return rows


def fleet_log(db_url: str, run_id: str, step_id: str, attempt: int | None) -> tuple[int, bytes] | None:
    """(attempt, its log's tail) of a step of a run on workers: the given attempt or the latest."""
    with psycopg.connect(conninfo(db_url), autocommit=True) as conn:
        found = conn.execute("SELECT to_regclass('stepledger_fleet_attempts') IS NOT NULL").fetchone()
        if not (found and found[0]):
            return None
        return ledger.log_of(conn, run_id, step_id, attempt)
