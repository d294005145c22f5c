"""The attempt ledger: who runs an attempt and how it ended, in the database every machine shares.

One row per attempt, keyed by (run, step, attempt number). The row is the claim rule across
machines (engine/execution/claim.py is the same rule on one machine):

- a worker runs an attempt only after inserting its row as `claimed`; a second delivery of the
  job, or a job whose attempt was already fenced, finds the row there and runs nothing;
- the worker records the outcome by turning *its own* claimed row `done`, and notifies the driver;
- the driver fences an attempt whose worker died (or that it cancels before any worker took it)
  by turning the row `done` with the verdict *interrupted* — only if it is not `done` already.
  A worker that comes back late finds its row no longer claimed and its outcome is refused.

Whichever writes first, the other sees it: each statement is one atomic row operation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from .settings import RESULTS_CHANNEL

if TYPE_CHECKING:
    from stepledger.events.types import FailureReason


@dataclass(frozen=True)
class AttemptRow:
    """An attempt as the ledger has it."""

    run_id: str
    step_id: str
    attempt: int
    state: str
    host: str
    worker: str
    result: dict | None
    job_id: int | None = None


def claim(conn: psycopg.Connection, key: tuple[str, str, int], host: str, worker: str, job_id: int) -> bool:
    """Claim the attempt for `worker`; False if it was claimed or settled before."""
    row = conn.execute(
        "INSERT INTO stepledger_fleet_attempts (run_id, step_id, attempt, state, host, worker, job_id)"
        " VALUES (%s, %s, %s, 'claimed', %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
        (*key, host, worker, job_id),
    ).fetchone()
    return row is not None


def record(
    conn: psycopg.Connection,
    key: tuple[str, str, int],
    worker: str,
    result: dict,
    along: tuple[str, Sequence[Any]] | None = None,
) -> bool:
    """Record the outcome of the attempt `worker` claimed; False if a fence got there first.

    One statement, notifying only if it settled the row: it joins a transaction of the caller's
    (the worker's, with the log's end: log_stream.py) without a savepoint of its own. `along`: a
    data-modifying statement (its SQL and parameters) made part of the same statement, so that in
    autocommit the two commit together in one round trip, with no BEGIN and COMMIT around them."""
    prefix, params = (f"WITH along AS ({along[0]} RETURNING 1), ", list(along[1])) if along else ("WITH ", [])
    row = conn.execute(
        f"{prefix}settled AS (UPDATE stepledger_fleet_attempts SET state = 'done', result = %s,"
        " finished_at = clock_timestamp() WHERE run_id = %s AND step_id = %s AND attempt = %s"
        " AND state = 'claimed'"
        " AND worker = %s RETURNING run_id) SELECT pg_notify(%s, run_id) FROM settled",
        (*params, Jsonb(result), *key, worker, RESULTS_CHANNEL),
    ).fetchone()
    return row is not None


def fence(conn: psycopg.Connection, key: tuple[str, str, int], result: dict) -> bool:
    """Settle the attempt with `result` unless it is settled already; False if it was."""
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO stepledger_fleet_attempts (run_id, step_id, attempt, state, result, finished_at)"
            " VALUES (%s, %s, %s, 'done', %s, now())"
            " ON CONFLICT (run_id, step_id, attempt) DO UPDATE"
            " SET state = 'done', result = EXCLUDED.result, finished_at = now()"
            " WHERE stepledger_fleet_attempts.state = 'claimed' RETURNING 1",
            (*key, Jsonb(result)),
        ).fetchone()
        if row is not None:
            conn.execute("SELECT pg_notify(%s, %s)", (RESULTS_CHANNEL, key[0]))
    return row is not None


def ask_cancel(conn: psycopg.Connection, key: tuple[str, str, int], reason: FailureReason) -> None:
    """Leave the reason a running attempt is being stopped, for its worker to report."""
    conn.execute(
        "UPDATE stepledger_fleet_attempts SET cancel_reason = coalesce(cancel_reason, %s)"
        " WHERE run_id = %s AND step_id = %s AND attempt = %s",
        (reason, *key),
    )


def cancel_reason(conn: psycopg.Connection, key: tuple[str, str, int]) -> FailureReason | None:
    """Why the driver asked to stop the attempt, if it did."""
    row = conn.execute(
        "SELECT cancel_reason FROM stepledger_fleet_attempts"
        " WHERE run_id = %s AND step_id = %s AND attempt = %s",
        key,
    ).fetchone()
    return row[0] if row else None


def attempt(conn: psycopg.Connection, key: tuple[str, str, int]) -> AttemptRow | None:
    """The attempt's row, or None if no worker claimed it and nobody fenced it."""
    row = conn.execute(
        "SELECT run_id, step_id, attempt, state, host, worker, result, job_id FROM stepledger_fleet_attempts"
        " WHERE run_id = %s AND step_id = %s AND attempt = %s",
        key,
    ).fetchone()
    return AttemptRow(*row) if row else None


# One primary-key lookup per step (parameters: the step ids, the run id). Written as `step_id =
# ANY(...)`, a table without statistics yet (a new database, a young one) had the planner read every
# row of the run and filter them, in the plan it then kept for the prepared statement: 0.4 ms a
# call at 1,000 attempts against 0.05 ms. OFFSET 0 keeps it from folding the lookups into that scan.
SETTLED = (
    "SELECT a.* FROM unnest(%s::text[]) AS wanted(step_id), LATERAL ("
    "  SELECT run_id, step_id, attempt, state, host, worker, result FROM stepledger_fleet_attempts f"
    "  WHERE f.run_id = %s AND f.step_id = wanted.step_id AND f.state = 'done' OFFSET 0) AS a"
)


def settled(conn: psycopg.Connection, run_id: str, step_ids: list[str]) -> list[AttemptRow]:
    """The settled attempts of `run_id` among `step_ids`."""
    rows = conn.execute(SETTLED, (step_ids, run_id)).fetchall()
    return [AttemptRow(*row) for row in rows]


def attempts_of(conn: psycopg.Connection, run_id: str) -> list[AttemptRow]:
    """Every attempt of `run_id` the fleet ran or settled, in step and attempt order."""
    rows = conn.execute(
        "SELECT run_id, step_id, attempt, state, host, worker, result FROM stepledger_fleet_attempts"
        " WHERE run_id = %s ORDER BY step_id, attempt",
        (run_id,),
    ).fetchall()
    return [AttemptRow(*row) for row in rows]


def legacy_log(conn: psycopg.Connection, key: tuple[str, str, int]) -> bytes | None:
    """The end of the attempt's log as a worker recorded it with the outcome before logs were
    streamed (log_stream.py), or None."""
    row = conn.execute(
        "SELECT log FROM stepledger_fleet_attempts WHERE run_id = %s AND step_id = %s AND attempt = %s",
        key,
    ).fetchone()
    return bytes(row[0]) if row and row[0] is not None else None
