"""The Procrastinate side of the fleet: the app, and how an attempt becomes a job.

An attempt's job carries its spec. Two Procrastinate locks make it safe to enqueue:
- the queueing lock `run/step/attempt`: a second enqueue of the same attempt while the first is
  still waiting is refused (AlreadyEnqueued), so a repeated `submit` cannot queue it twice;
- the lock `run/step`: jobs sharing it run one at a time, on whatever machines, so a retry cannot
  start before the job of the attempt it replaces has ended (or was failed as stalled).
"""

from __future__ import annotations

from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector

from ..execution.spec import AttemptSpec
from .settings import TASK_NAME


def make_app(conninfo: str) -> App:
    """A Procrastinate app on the database at `conninfo` (opened by the caller)."""
    return App(connector=PsycopgConnector(conninfo=conninfo))


def queueing_lock(spec: AttemptSpec) -> str:
    """The identity of the attempt: at most one waiting job per attempt."""
    return f"{spec.run_id}/{spec.step_id}/{spec.attempt}"


def step_lock(run_id: str, step_id: str) -> str:
    """The lock one step's jobs share: its attempts never overlap."""
    return f"{run_id}/{step_id}"


def defer(app: App, spec: AttemptSpec, queue: str) -> int:
    """Enqueue the attempt on `queue`; the job's id."""
    deferrer = app.configure_task(
        TASK_NAME, queue=queue, lock=step_lock(spec.run_id, spec.step_id), queueing_lock=queueing_lock(spec)
    )
    return int(deferrer.defer(spec=spec_payload(spec)))


def waiting_job(conn: psycopg.Connection, spec: AttemptSpec) -> int:
    """The id of the job waiting for the attempt (0 if it has just been taken or has ended)."""
    row = conn.execute(
        "SELECT id FROM procrastinate_jobs WHERE queueing_lock = %s AND status = 'todo'",
        (queueing_lock(spec),),
    ).fetchone()
    return int(row[0]) if row else 0


def spec_payload(spec: AttemptSpec) -> dict[str, Any]:
    """The spec as the job's JSON arguments (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in spec.to_dict().items()}


def spec_from_payload(payload: dict[str, Any]) -> AttemptSpec:
    """The spec a job carries, with its tuples back."""
    data = dict(payload)
    for name in ("tasks", "acceptance_tests", "files_scope"):
        data[name] = tuple(data.get(name) or ())
    if data.get("profile_command") is not None:
        data["profile_command"] = tuple(data["profile_command"])
    return AttemptSpec(**data)
