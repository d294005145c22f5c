"""Runs driven by workers: the drive job, its driver process, and the watch that hands a run
nobody drives to the fleet.

A run is *worker_driven* (its run.started options) when `stepledger submit` recorded it, or
`stepledger run --on-workers` without `--no-takeover` (session/runs.py): the `run` process drives it
while it lives, and the fleet takes it over, as below, if it dies. A run stopped on purpose (Ctrl-C:
interrupted; cancel) is no longer running, and so never taken over; one whose process died while
draining it after a first Ctrl-C is, and its new driver finishes the drain (driver.py).

Such a run is driven by a *drive job*, one Procrastinate job on the queue `stepledger-drive:Q`
(Q is submit's `--queue`; `default` for `run --on-workers`), served by a worker's second
Procrastinate worker, apart from its attempts so a long drive never takes an attempt's slot. The
job's queueing lock is `drive/RUN`: at most one drive of a run waits at a time. Taking the job
does not make its worker the driver; the run's lease does (engine/session/leases.py), as for any
driver:

- the job takes the lease first, in the worker's own process, so a driver is fenced from the
  moment its job is taken, not only once its process has started; if a live driver holds the
  lease, the job ends there;
- it then starts the driver process (driver.py) with the lease's token, which drives the run as
  `resume` does, on the fleet; the job renews the lease too while that process lives;
- the driver process is a child that dies with its worker (the parent-death signal): a worker
  killed with SIGKILL takes its drives with it, as a machine that dies does, and their leases run
  out;
- a worker that stops (SIGTERM) hands its runs over at once: it kills its driver processes and
  gives their leases back, so another worker takes each run over within a watch, not a lease.

The reactor must not run in Procrastinate's job thread: the session installs signal handlers,
which only a main thread may, and a run's reactor is its process's main loop. Hence a process.

The watch: every worker looks, once per check interval, for runs driven by workers that are
running with no live lease and no drive job waiting, and enqueues one (the queueing lock makes
two watchers' enqueues one job). Lost drives are so found by whoever is alive: a dead driver's
run is taken over once its lease has run out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from procrastinate import App, JobContext
from procrastinate import exceptions as pq_exceptions
from procrastinate import sql as pq_sql
from procrastinate.worker import Worker as ProcrastinateWorker

from ..session.leases import RunLease
from . import jobs
from .dispatcher import fail_job
from .ride_out import Heartbeat, around_registration, ride_out_outages
from .settings import check_seconds, heartbeat_seconds, stall_seconds

DRIVE_TASK = "stepledger_drive"  # the Procrastinate task: drive one run
DRIVE_QUEUE_PREFIX = "stepledger-drive:"  # + the run's queue: where its drive jobs wait
DRIVER_MODULE = "stepledger.engine.fleet.driver"
OWNER_ENV = "STEPLEDGER_DRIVE_OWNER"  # the lease token the driver process drives under
PARENT_ENV = "STEPLEDGER_DRIVE_PARENT"  # the worker's pid: the driver exits if it is not its parent
WORKER_ENV = "STEPLEDGER_DRIVE_WORKER"  # the worker's name, for the driver's lines
POLL = 0.2  # seconds between looks at a driver process (its end, a hand-over)

# Runs driven by workers that nobody drives: running, no live lease, no drive job waiting. The
# lease's expiry is the writer's clock, compared with the database's: the hosts' clocks are
# assumed to agree to well within a lease, as everywhere leases are read (NTP).
ORPHANED_RUNS = """
SELECT r.run_id, coalesce(r.options->>'drive_queue', 'default')
  FROM runs r LEFT JOIN run_leases l ON l.run_id = r.run_id
 WHERE r.status = 'running' AND r.options @> '{"worker_driven": true}'
   AND (l.run_id IS NULL OR l.expires_at <= extract(epoch FROM clock_timestamp()))
   AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                    WHERE j.queueing_lock = 'drive/' || r.run_id AND j.status = 'todo')
 ORDER BY r.started_at
"""


def drive_queue(queue: str) -> str:
    """The Procrastinate queue of the drive jobs of runs submitted with `--queue queue`."""
    return DRIVE_QUEUE_PREFIX + queue


def defer_drive(app: App, run_id: str, queue: str) -> bool:
    """Enqueue a drive of `run_id`; False if one waits already (the queueing lock refused it)."""
    deferrer = app.configure_task(DRIVE_TASK, queue=drive_queue(queue), queueing_lock=f"drive/{run_id}")
    try:
        deferrer.defer(run_id=run_id)
    except pq_exceptions.AlreadyEnqueued:
        return False
    return True


def orphaned_runs(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """(run id, queue) of the runs driven by workers that nobody drives and no drive job waits for."""
    try:
        return [(str(run_id), str(queue)) for run_id, queue in conn.execute(ORPHANED_RUNS).fetchall()]
    except psycopg.errors.UndefinedTable:  # no run was ever recorded in this database
        return []


def stalled_drives(conn: psycopg.Connection) -> list[int]:
    """Drive jobs whose worker stopped sending heartbeats (its driver died with it)."""
    rows = conn.execute(
        pq_sql.queries["select_stalled_jobs_by_heartbeat"],
        {"seconds_since_heartbeat": stall_seconds(), "queue": None, "task_name": DRIVE_TASK},
    ).fetchall()
    return [row[0] for row in rows]


class RunDrives:
    """The driving side of one `stepledger worker`: its drive jobs, their driver processes, the watch."""

    def __init__(
        self,
        db_url: str,
        conninfo: str,
        workdir: str,
        name: str,
        queues: Sequence[str],
        slots: int,
        say: Callable[[str], None],
        heartbeat: Heartbeat,
    ) -> None:
        self.db_url = db_url
        self.conninfo = conninfo
        self.workdir = workdir
        self.name = name
        self.queues = [drive_queue(q) for q in queues]
        self.slots = slots
        self.say = say
        self.heartbeat = heartbeat  # the worker's: it writes this side's worker row too
        self.handing_over = threading.Event()
        self._lock = threading.Lock()
        self._drivers: dict[str, subprocess.Popen[bytes]] = {}
        # The parent-death signal follows the thread that started the child, not the process:
        # every driver is started from this one thread, which lives as long as the worker.
        self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stepledger-drive-spawn")
        self._watcher: threading.Thread | None = None
        self._worker: ProcrastinateWorker | None = None
        self.app = jobs.make_serving_app(conninfo, max(2, slots + 1))
        self.app.task(name=DRIVE_TASK, pass_context=True)(self._run_job)

    async def serve(self) -> None:
        """Take drive jobs (with drive slots) and watch for runs nobody drives, until `stop`."""
        self.start_watching()
        if self.slots < 1:
            return
        # An app of its own: its connections and its worker's registration are apart from the
        # attempts' (their hooks, their pool's size), and a drive job never waits for either.
        async with self.app.open_async():
            self._worker = ProcrastinateWorker(
                self.app,
                queues=self.queues,
                concurrency=self.slots,
                name=f"{self.name}/drive",
                update_heartbeat_interval=heartbeat_seconds(),
                stalled_worker_timeout=stall_seconds(),
                install_signal_handlers=False,
                delete_jobs="always",
            )
            # Through a database outage as the attempts' worker does (ride_out.py). Left to itself
            # it loses its listener with the connection, unnoticed (its side tasks are watched
            # only until the periodic deferrer, with nothing to defer, returns), and takes drive
            # jobs only at its five-second poll from then on; its heartbeat comes back through the
            # pool's reconnection back-off, late enough for a watch to fail the drives running
            # here as stalled; and a fetch that outlasts the pool's timeout (30 s) stops it, and
            # the whole worker with it (worker.py).
            ride_out_outages(self._worker, lambda line: self.say(f"drive jobs: {line}"))
            self._beat_from_registration()
            task = asyncio.create_task(self._worker.run())
            await asyncio.sleep(0)  # run() has begun: it forgets a stop given before it started
            if self.handing_over.is_set():
                self._worker.stop()
            await task

    def stop(self) -> None:
        """Take no drive job any more and hand the runs driven here over (a worker that stops)."""
        self.hand_over()
        if self._worker is not None:
            self._worker.stop()

    @property
    def worker(self) -> ProcrastinateWorker | None:
        """The Procrastinate worker that takes drive jobs, once `serve` has made it."""
        return self._worker

    def _beat_from_registration(self) -> None:
        """Have the worker's heartbeat write this Procrastinate worker's row from its registration
        until just before its unregistering (a row gone while written means taken for dead)."""

        async def beat(worker_id: int) -> None:
            self.heartbeat.add(worker_id)

        async def unbeat(worker_id: int) -> None:
            self.heartbeat.drop(worker_id)

        around_registration(self.app.job_manager, beat, unbeat)

    # -- the watch ---------------------------------------------------------------------------

    def start_watching(self) -> None:
        self._watcher = threading.Thread(target=self._watch, name="stepledger-drive-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        app = jobs.make_app(self.conninfo)
        app.open()
        # One connection for every look (each worker looks every check interval: a new connection
        # each time would be a new server process each time), opened again after an error.
        conn: psycopg.Connection | None = None
        said = ""
        try:
            while not self.handing_over.wait(check_seconds()):
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)
                    self._look(conn, app)
                except (psycopg.Error, pq_exceptions.ConnectorException):
                    # The database is away (a restart): asked again at the next look, anew.
                    if conn is not None:
                        conn.close()
                        conn = None
                except Exception as error:  # the watch must outlive a bad look
                    line = f"cannot look for runs nobody drives: {type(error).__name__}: {error}"
                    if line != said:  # once, not every second
                        self.say(line)
                        said = line
        finally:
            if conn is not None:
                conn.close()
            app.close()

    def _look(self, conn: psycopg.Connection, app: App) -> None:
        for job_id in stalled_drives(conn):
            fail_job(conn, job_id)  # tidy: its driver died with its worker, its lease says the rest
        for run_id, queue in orphaned_runs(conn):
            if defer_drive(app, run_id, queue):
                self.say(f"run {run_id} has no driver: handed to the fleet")

    # -- hand-over ---------------------------------------------------------------------------

    def hand_over(self) -> None:
        """Stop driving (a worker that stops): kill every driver process; each job gives its lease back."""
        self.handing_over.set()
        with self._lock:
            drivers = list(self._drivers.values())
        for proc in drivers:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)

    def close(self) -> None:
        self.hand_over()
        if self._watcher is not None:
            self._watcher.join(timeout=check_seconds() + 6)
        self._spawner.shutdown(wait=True)

    # -- the drive job -----------------------------------------------------------------------

    def _run_job(self, context: JobContext, run_id: str) -> None:
        """Drive `run_id`: take its lease, start its driver process, keep the lease while it lives."""
        from stepledger.store.connect import open_store

        if self.handing_over.is_set():
            return  # taken while stopping: the watch of a live worker enqueues the run again
        store = open_store(self.db_url, workdir=self.workdir, create=False)
        try:
            state = store.run_state(run_id)
            if state is None or state.status != "running":
                return  # ended meanwhile (or cancelled before anyone drove it)
            lease = RunLease(store, run_id)
            if not lease.acquire():
                return  # a live driver has it
            self._supervise(run_id, lease)
        finally:
            store.close()

    def _supervise(self, run_id: str, lease: RunLease) -> None:
        self.say(f"driving run {run_id}")
        try:
            proc = self._spawner.submit(self._start_driver, run_id, lease.owner).result()
        except OSError as error:
            lease.release()
            self.say(f"cannot start the driver of run {run_id}: {error}")
            return
        with self._lock:
            self._drivers[run_id] = proc
        if self.handing_over.is_set():  # the stop came while it was starting
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        renew_every = lease.ttl / 3
        waited = 0.0
        try:
            while True:
                try:
                    code = proc.wait(timeout=POLL)
                    break
                except subprocess.TimeoutExpired:
                    waited += POLL
                if waited >= renew_every:
                    waited = 0.0
                    # Lost (another took the run over): the driver finds out by its own renewals.
                    lease.renew()
        finally:
            with self._lock:
                self._drivers.pop(run_id, None)
        if self.handing_over.is_set():
            # Killed here, so nothing of it can write any more: the lease is free at once.
            lease.release()
            self.say(f"handed run {run_id} back to the fleet")
        elif code != 0:
            # Its lease is left to run out: a driver that keeps failing is started again once a
            # lease, not in a tight loop.
            self.say(f"the driver of run {run_id} ended with exit {code}")

    def _start_driver(self, run_id: str, owner: str) -> subprocess.Popen[bytes]:
        env: dict[str, Any] = {
            **os.environ,
            # By the environment, not the command line: a password stays out of `ps`.
            "STEPLEDGER_DB": self.db_url,
            OWNER_ENV: owner,
            PARENT_ENV: str(os.getpid()),
            WORKER_ENV: self.name,
        }
        return subprocess.Popen(
            [sys.executable, "-m", DRIVER_MODULE, run_id],
            cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
            process_group=0,  # a terminal's Ctrl-C is the worker's to act on, not the driver's
        )  # fmt: skip
