"""The roster of workers: which queues each live worker serves, so that a step whose queue nobody
serves is shown waiting for a worker instead of merely queued.

Procrastinate keeps one row per worker with its heartbeat (`procrastinate_workers`), but not the
queues it serves; a worker adds its own row here, keyed by that worker id, once Procrastinate has
registered it. A worker is live while its heartbeat is younger than the stall timeout — the same
rule by which the driver takes a worker for dead and its attempts for interrupted.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from .settings import stall_seconds


def enrol(
    conn: psycopg.Connection, worker_id: int, name: str, host: str, queues: Sequence[str], workdir: str
) -> None:
    """Record the queues worker `worker_id` serves; forget the rows of workers Procrastinate has
    unregistered or pruned."""
    with conn.transaction():
        conn.execute(
            "DELETE FROM stepledger_fleet_workers w"
            " WHERE NOT EXISTS (SELECT 1 FROM procrastinate_workers p WHERE p.id = w.worker_id)"
        )
        conn.execute(
            "INSERT INTO stepledger_fleet_workers (worker_id, name, host, queues, workdir)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (worker_id) DO UPDATE"
            " SET name = EXCLUDED.name, host = EXCLUDED.host, queues = EXCLUDED.queues,"
            " workdir = EXCLUDED.workdir",
            (worker_id, name, host, list(queues), workdir),
        )


def served_queues(conn: psycopg.Connection) -> set[str]:
    """The queues some live worker serves."""
    rows = conn.execute(
        "SELECT DISTINCT unnest(w.queues) FROM stepledger_fleet_workers w"
        " JOIN procrastinate_workers p ON p.id = w.worker_id"
        " WHERE p.last_heartbeat > now() - make_interval(secs => %s)",
        (stall_seconds(),),
    ).fetchall()
    return {row[0] for row in rows}
