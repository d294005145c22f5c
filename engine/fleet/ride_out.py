"""A worker rides a database outage out: its attempts keep running, its heartbeat comes back first.

Left to itself, Procrastinate's worker stops when one of its connections breaks (a PostgreSQL
restart): its heartbeat task or its listener fails, or a fetch does, and it then waits for its
running jobs *without heartbeats*. The driver, once the database is back, takes a worker whose
heartbeat is older than the stall timeout for dead and fences its attempts *interrupted*: an
attempt that had ended, whose outcome the worker was still trying to record, ran again; an attempt
still running was started again elsewhere while it ran here (two attempts of one step at once).

So a worker does not stop on an outage:

- `Heartbeat`, a thread of the worker's own, writes its heartbeat for as long as the process lives
  (through a graceful stop's grace period too), and through an outage tries again every
  `RETRY` seconds, so it is written again right after the database is back: a restart shorter
  than the stall timeout less one heartbeat interval never makes the worker look dead.
  Procrastinate's own heartbeat task is left with nothing to do (`ride_out_outages`). The same
  thread writes the row of the worker's second Procrastinate worker, its drives' (drive.py), in
  the same statement: a worker is alive or dead as a whole.
- `ride_out_outages` makes the calls of Procrastinate's worker loop patient with a lost
  connection: the listener listens again, a fetch finds no job (and is tried again when the
  database is back), a job's end is recorded once it can be. Any other error still stops the
  worker. A fetch whose answer was lost may have committed: its job is `doing`, this worker's,
  and run by nobody — and, the heartbeat going on, never found stalled (the run would wait for it
  forever). So the first fetch after a lost one hands such jobs back (`hand_back_unheld`).
  It wraps methods of Procrastinate's job manager and reads some of its worker's internals;
  `check_internals` fails loudly if an upgrade renames them (tests/fleet/test_fleet_outage_unit.py).
- `steady_reconnects` has the connection pools try a lost connection again every second, not
  after a back-off that doubles without a cap, so a long outage ends for the worker when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from procrastinate import exceptions as pq_exceptions
from procrastinate.manager import JobManager
from procrastinate.worker import Worker as ProcrastinateWorker
from psycopg_pool.base import AttemptWithBackoff

RETRY = 0.25  # seconds between tries to reach the database while it is away
RECONNECT_EVERY = 1.0  # seconds between a pool's tries to open a lost connection again (about)


def _database_error(error: BaseException) -> BaseException | None:
    """psycopg's error behind `error` (Procrastinate wraps it in a ConnectorException)."""
    return error.__cause__ if isinstance(error, pq_exceptions.ConnectorException) else error


def connection_lost(error: BaseException) -> bool:
    """Whether `error` (Procrastinate's, or psycopg's) says the database could not be reached."""
    return isinstance(_database_error(error), (psycopg.OperationalError, psycopg.InterfaceError))


def ended_already(error: BaseException) -> bool:
    """Whether `error` is Procrastinate's refusal to end a job that is no longer waiting or running."""
    cause = _database_error(error)
    return isinstance(cause, psycopg.errors.RaiseException) and 'not in "doing"' in str(cause)


def first_line(error: BaseException) -> str:
    said = str(error.__cause__ or error).strip().splitlines()
    return said[0] if said else type(error).__name__


def steady_reconnects() -> None:
    """Have psycopg_pool's pools (Procrastinate's and the worker's own) try a lost connection again
    about every RECONNECT_EVERY seconds for as long as their reconnect timeout lasts, instead of
    after 1, 2, 4, 8, 16 s…: after a long outage a worker took jobs again up to as long after the
    database was back as the outage had lasted (40 s away: 25 s). A try that a server which is
    down refuses costs it nothing. Process-wide: psycopg_pool has no per-pool setting for it."""
    for name in ("INITIAL_DELAY", "DELAY_BACKOFF"):
        if not hasattr(AttemptWithBackoff, name):
            raise RuntimeError(f"psycopg_pool's AttemptWithBackoff lacks {name} (see ride_out.py)")
    AttemptWithBackoff.INITIAL_DELAY = RECONNECT_EVERY
    AttemptWithBackoff.DELAY_BACKOFF = 1.0


def check_internals(worker: ProcrastinateWorker) -> None:
    """Raise if this Procrastinate lacks what `ride_out_outages` wraps."""
    manager = worker.app.job_manager
    wrapped = ("listen_for_jobs", "fetch_job", "finish_job_by_id_async", "update_heartbeat")
    for name in (*wrapped, "retry_job_by_id_async"):
        if not hasattr(manager, name):
            raise RuntimeError(f"procrastinate's JobManager has no {name}: see engine/fleet/ride_out.py")
    for name in ("_new_job_event", "_running_jobs", "worker_id"):
        if not hasattr(worker, name):
            raise RuntimeError(f"procrastinate.worker.Worker has no {name}: see engine/fleet/ride_out.py")


# The jobs a worker has taken (`doing`, its worker id on them).
_TAKEN = "SELECT id FROM procrastinate_jobs WHERE worker_id = %(worker_id)s AND status = 'doing'"


async def hand_back_unheld(worker: ProcrastinateWorker) -> list[int]:
    """Put back to wait the jobs the database says `worker` took and that it does not run: taken
    by a fetch that committed but whose answer was lost with the connection. Their ids.

    Called from the worker's fetch loop, where every job a fetch returned is in `_running_jobs`
    before the next fetch: a job taken and not there was never received. Handed back through
    Procrastinate's retry (its lock kept, its abort request honoured), it is fetched again by any
    worker; its attempt was never claimed, so it runs once (a claim fences any other delivery)."""
    manager = worker.app.job_manager
    if worker.worker_id is None:
        return []
    held = {context.job.id for context in worker._running_jobs.values()}
    rows = await manager.connector.execute_query_all_async(_TAKEN, worker_id=worker.worker_id)
    lost = [row["id"] for row in rows if row["id"] not in held]
    now = datetime.datetime.now(datetime.UTC)
    for job_id in lost:
        try:
            await manager.retry_job_by_id_async(job_id=job_id, retry_at=now)
        except pq_exceptions.ConnectorException as error:
            if connection_lost(error):
                raise  # away again: handed back by the next fetch
            # else no longer `doing` (the driver failed it meanwhile): nothing to hand back
    return lost


def ride_out_outages(worker: ProcrastinateWorker, say: Callable[[str], None]) -> None:
    """Have `worker` (whose app's job manager serves it alone) carry on through database outages;
    its heartbeat is sent by a `Heartbeat` instead."""
    check_internals(worker)
    manager = worker.app.job_manager
    listen, fetch, finish = manager.listen_for_jobs, manager.fetch_job, manager.finish_job_by_id_async
    said: dict[str, str] = {}  # what was said of each call during the current outage

    def once(what: str, error: BaseException) -> None:
        line = f"cannot {what} yet: {first_line(error)}"
        if said.get(what) != line:  # once per outage, not every try
            said[what] = line
            say(line)

    async def listen_again(**kwargs: Any) -> None:
        while True:
            try:
                return await listen(**kwargs)  # returns only when it cannot listen at all
            except (pq_exceptions.ConnectorException, psycopg.Error) as error:
                if not connection_lost(error):
                    raise
                once("listen for jobs", error)
            await asyncio.sleep(RETRY)
            # Jobs enqueued while nobody listened were notified to nobody: look for them.
            worker._new_job_event.set()

    lost_fetch = False  # a fetch failed: it may have taken a job whose answer never came

    async def fetch_or_none(*args: Any, **kwargs: Any) -> Any:
        nonlocal lost_fetch
        try:
            if lost_fetch:
                handed = await hand_back_unheld(worker)
                lost_fetch = False
                if handed:
                    say(f"handed back {len(handed)} job(s) taken by a fetch whose answer was lost")
            job = await fetch(*args, **kwargs)
        except (pq_exceptions.ConnectorException, psycopg.Error) as error:
            if not connection_lost(error):
                raise
            lost_fetch = True
            once("look for jobs", error)
            return None  # the loop looks again when woken (the listener, the heartbeat) or polls
        said.clear()  # the database is back: the next outage is said again
        return job

    async def finish_patiently(*args: Any, **kwargs: Any) -> None:
        # A job not ended in the database keeps its step's lock: its retry could never start.
        while True:
            try:
                await finish(*args, **kwargs)
                said.pop("end a job", None)
                return
            except (pq_exceptions.ConnectorException, psycopg.Error) as error:
                if ended_already(error):
                    # Ended already: failed by the driver, which fenced the attempt while this
                    # worker was cut off (dispatcher.fail_job), or by a try whose answer was lost.
                    # Raised, it ended Procrastinate's job task in a traceback (an unretrieved
                    # exception, through this function): seen in tests/fleet/test_fleet_cut_off.py.
                    said.pop("end a job", None)
                    return
                if not connection_lost(error):
                    raise
                once("end a job", error)
            await asyncio.sleep(RETRY)

    async def no_heartbeat(worker_id: int) -> None:
        return None  # Heartbeat writes it, from a thread that outlives this loop's tasks

    manager.listen_for_jobs = listen_again  # type: ignore[method-assign]
    manager.fetch_job = fetch_or_none  # type: ignore[method-assign]
    manager.finish_job_by_id_async = finish_patiently  # type: ignore[method-assign]
    manager.update_heartbeat = no_heartbeat  # type: ignore[method-assign]


def around_registration(
    manager: JobManager,
    registered: Callable[[int], Awaitable[None]],
    unregistering: Callable[[int], Awaitable[None]],
) -> None:
    """Await `registered(worker_id)` once Procrastinate has registered its worker through `manager`,
    and `unregistering(worker_id)` just before it unregisters it: where a Heartbeat starts writing
    the worker's row and stops (Procrastinate offers no hook; its two calls are wrapped)."""
    register, unregister = manager.register_worker, manager.unregister_worker

    async def register_then() -> int:
        worker_id = await register()
        await registered(worker_id)
        return worker_id

    async def then_unregister(worker_id: int) -> None:
        await unregistering(worker_id)
        await unregister(worker_id)

    manager.register_worker = register_then  # type: ignore[method-assign]
    manager.unregister_worker = then_unregister  # type: ignore[method-assign]


class Heartbeat:
    """A worker's heartbeat (`procrastinate_workers.last_heartbeat`), from a thread of its own: the
    row given to `start`, and those given to `add` until they are `drop`ped.

    `on_back(conn)` is called after the first heartbeat that follows a failed one (the database is
    back); `on_forgotten()` when one of its rows is gone (another worker's start pruned it after
    it was silent longer than the stall timeout: its jobs were freed, its attempts are fenced),
    after which no heartbeat is sent.
    """

    def __init__(
        self,
        conninfo: str,
        interval: float,
        say: Callable[[str], None],
        on_back: Callable[[psycopg.Connection], None],
        on_forgotten: Callable[[], None],
    ) -> None:
        self.conninfo = conninfo
        self.interval = interval
        self.say = say
        self.on_back = on_back
        self.on_forgotten = on_forgotten
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rows: set[int] = set()
        self._rows_lock = threading.Lock()

    def start(self, worker_id: int) -> None:
        self.add(worker_id)
        self._thread = threading.Thread(target=self._run, name="stepledger-fleet-heartbeat", daemon=True)
        self._thread.start()

    def add(self, worker_id: int) -> None:
        """Write the heartbeat of the worker row `worker_id` too, from the next one on."""
        with self._rows_lock:
            self._rows.add(worker_id)

    def drop(self, worker_id: int) -> None:
        """Write `worker_id`'s heartbeat no more: before its worker unregisters, so that its row's
        end is not taken for a pruned row."""
        with self._rows_lock:
            self._rows.discard(worker_id)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _safely(self, call: Callable[..., None], *args: Any) -> None:
        """`call(*args)`, its failure (stderr gone, say) not the heartbeat's end."""
        with contextlib.suppress(Exception):
            call(*args)

    def _run(self) -> None:
        conn: psycopg.Connection | None = None
        said = ""
        while True:
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                with self._rows_lock:
                    rows = sorted(self._rows)
                written = conn.execute(
                    "UPDATE procrastinate_workers SET last_heartbeat = now() WHERE id = ANY(%s) RETURNING id",
                    (rows,),
                ).fetchall()
                with self._rows_lock:
                    # A row dropped meanwhile may be gone by its worker's own unregistering.
                    gone = self._rows.intersection(rows).difference(row for (row,) in written)
                if gone:
                    if not self._stop.is_set():  # not the worker's own unregistering
                        self._safely(self.on_forgotten)
                    break
                if said:
                    # A database error in it: called again after the next heartbeat.
                    self.on_back(conn)
                    said = ""
                wait = self.interval
            except psycopg.Error as error:
                if conn is not None:
                    conn.close()
                    conn = None
                line = f"cannot send heartbeats yet: {first_line(error)}"
                if line != said:
                    said = line
                    self._safely(self.say, line)
                wait = RETRY
            except Exception as error:
                # Whatever else `on_back` raises must not end the heartbeat: a worker that stops
                # beating while its attempts run is taken for dead and they are started again.
                self._safely(self.say, f"after the database came back: {type(error).__name__}: {error}")
                said = ""
                wait = self.interval
            if self._stop.wait(wait):
                break
        if conn is not None:
            conn.close()
