"""The Procrastinate side of the fleet: the app, and how an attempt becomes a job.

An attempt's job carries its spec, its `${env...}` values as their templates (`spec_payload`).
Two Procrastinate locks make it safe to enqueue:
- the queueing lock `run/step/attempt`: a second enqueue of the same attempt while the first is
  still waiting is refused (AlreadyEnqueued), so a repeated `submit` cannot queue it twice;
- the lock `run/step`: jobs sharing it run one at a time, on whatever machines, so a retry cannot
  start before the job of the attempt it replaces has ended (or was failed as stalled).
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from procrastinate import App, PsycopgConnector
from procrastinate.jobs import JobDeferrer
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from ..execution.spec import AttemptSpec
from .settings import TASK_NAME


def make_app(conninfo: str, connections: int = 2) -> App:
    """A Procrastinate app on the database at `conninfo` (opened by the caller), with a pool of
    one connection growing to `connections`: a pool's default (four, opened at once) in each of
    a fleet's processes would use up a server's `max_connections` with a few dozen workers."""
    return App(connector=PsycopgConnector(conninfo=conninfo, min_size=1, max_size=connections))


def make_serving_app(conninfo: str, connections: int) -> App:
    """`make_app` for a Procrastinate worker (opened with `open_async`), whose pool checks a
    connection it lends only when the server may have closed it, and lends it in autocommit.

    Procrastinate's pool checks every connection it lends with a round trip: two per job (its
    fetch, its end), each waking the server, at every attempt a worker runs. A connection the
    server closed (a restart, an idle timeout, a killed backend) has something to read on its
    socket, the end of the stream or the server's goodbye; one with nothing to read is lent as
    it is. Whatever the check cannot see (a network cut) fails the query itself, as a checked
    connection that breaks just after its check does, and ride_out.py retries those."""
    return App(connector=PsycopgConnector(conninfo=conninfo, min_size=1, max_size=connections,
                                          pool_factory=_pool_checking_closed))  # fmt: skip


def _pool_checking_closed(**kwargs: Any) -> AsyncConnectionPool:
    kwargs["check"] = check_if_closed
    # Every query of a Procrastinate worker is one statement (a call of one of its functions): in
    # autocommit it is its own transaction, without a BEGIN and a COMMIT round trip around it. Set
    # on each new connection, not in the pool's `kwargs`: Procrastinate opens its LISTEN
    # connection with those and `autocommit=True` besides (a repeated keyword).
    kwargs["configure"] = _autocommit
    return AsyncConnectionPool(**kwargs)


async def _autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)


async def check_if_closed(conn: psycopg.AsyncConnection[Any]) -> None:
    """The pool's check of a connection it lends: the full check (a round trip) only when its
    socket has something to read, which an idle connection has only once the server closed it
    (or sent it a notification)."""
    poller = select.poll()  # not select.select: it refuses descriptors past 1023
    poller.register(conn.pgconn.socket, select.POLLIN)
    if poller.poll(0):
        await AsyncConnectionPool.check_connection(conn)


WAITING_BY_LOCK = (
    "SELECT queueing_lock, id FROM procrastinate_jobs WHERE queueing_lock = ANY(%s) AND status = 'todo'"
)


def queueing_lock(spec: AttemptSpec) -> str:
    """The identity of the attempt: at most one waiting job per attempt."""
    return f"{spec.run_id}/{spec.step_id}/{spec.attempt}"


def step_lock(run_id: str, step_id: str) -> str:
    """The lock one step's jobs share: its attempts never overlap."""
    return f"{run_id}/{step_id}"


def deferrer(app: App, spec: AttemptSpec, queue: str) -> JobDeferrer:
    """Procrastinate's deferrer of the attempt's job on `queue`, with its two locks."""
    lock = step_lock(spec.run_id, spec.step_id)
    return app.configure_task(TASK_NAME, queue=queue, lock=lock, queueing_lock=queueing_lock(spec))


def defer(app: App, spec: AttemptSpec, queue: str) -> int:
    """Enqueue the attempt on `queue`; the job's id."""
    return int(deferrer(app, spec, queue).defer(spec=spec_payload(spec)))


def defer_in(conn: psycopg.Connection, specs: list[tuple[AttemptSpec, str]]) -> list[int]:
    """Enqueue each (attempt, queue) on the connection `conn`, in its open transaction; the jobs'
    ids, in order. Jobs committed by that transaction and no other: see `FleetDispatcher.enqueue_along`.

    An attempt that already has a waiting job (its queueing lock taken) would abort the whole
    transaction with a unique violation, so it is left out: its id is the waiting job's. A step's
    start is recorded once, so this happens only to an attempt a previous driver enqueued itself.
    """
    locks = [queueing_lock(spec) for spec, _ in specs]
    waiting: dict[str, int] = dict(conn.execute(WAITING_BY_LOCK, (locks,)).fetchall())
    fresh = [(spec, queue) for spec, queue in specs if queueing_lock(spec) not in waiting]
    if fresh:
        fresh_locks = [queueing_lock(spec) for spec, _ in fresh]
        rows = conn.execute(
            DEFER_BY_COLUMNS,
            (
                [queue for _, queue in fresh],
                [TASK_NAME] * len(fresh),
                [step_lock(spec.run_id, spec.step_id) for spec, _ in fresh],
                fresh_locks,
                [Jsonb({"spec": spec_payload(spec)}) for spec, _ in fresh],
            ),
        ).fetchall()
        waiting.update(zip(fresh_locks, (int(row[0]) for row in rows), strict=True))
    return [waiting[queueing_lock(spec)] for spec, _ in specs]


# Procrastinate's own batch enqueue (its SQL function `procrastinate_defer_jobs_v1`, which its
# `batch_defer_jobs` calls), given one array per column: Procrastinate passes an array of its
# composite type, which psycopg dumps element by element in Python, and that was the largest part
# of a driver's CPU per attempt on a busy fleet. The function returns the ids in the order given.
# Each job is what `deferrer(...).make_new_job(spec=...)` makes: priority 0, not scheduled.
DEFER_BY_COLUMNS = (
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY("
    "SELECT ROW(queue, task, 0, lock, queueing_lock, args, NULL)::procrastinate_job_to_defer_v1"
    " FROM unnest(%s::varchar[], %s::varchar[], %s::text[], %s::text[], %s::jsonb[])"
    " WITH ORDINALITY AS job(queue, task, lock, queueing_lock, args, n) ORDER BY n)))"
)


def waiting_job(conn: psycopg.Connection, spec: AttemptSpec) -> int:
    """The id of the job waiting for the attempt (0 if it has just been taken or has ended)."""
    row = conn.execute(
        "SELECT id FROM procrastinate_jobs WHERE queueing_lock = %s AND status = 'todo'",
        (queueing_lock(spec),),
    ).fetchone()
    return int(row[0]) if row else 0


def spec_payload(spec: AttemptSpec) -> dict[str, Any]:
    """The spec as the job's JSON arguments (tuples become lists).

    An env value written with `${env...}` travels as its template (`env_templates`), never as the
    value the driver may have resolved: the worker that claims the job resolves it in its own
    environment (attempt_env.py), so no value from an environment waits in `procrastinate_jobs`."""
    payload = {k: list(v) if isinstance(v, tuple) else v for k, v in spec.to_dict().items()}
    if spec.env_templates:
        payload["env"] = {k: v for k, v in spec.env.items() if k not in spec.env_templates}
    return payload


def spec_from_payload(payload: dict[str, Any]) -> AttemptSpec:
    """The spec a job carries, with its tuples back."""
    data = dict(payload)
    for name in ("tasks", "acceptance_tests", "files_scope"):
        data[name] = tuple(data.get(name) or ())
    if data.get("profile_command") is not None:
        data["profile_command"] = tuple(data["profile_command"])
    return AttemptSpec(**data)
