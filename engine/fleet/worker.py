"""`stepledger worker`: a long-lived process that takes attempts from the fleet's queues and runs them.

Procrastinate fetches the jobs (row locks: one worker per job) and sends the heartbeats; a stop
(SIGTERM, SIGINT) takes no new job and gives running attempts a grace period (`_serve`). Each
job's attempt runs on a local WorkerPool (engine/execution/pool.py) of `concurrency` processes,
exactly as a local run's attempts do: the same tools, acceptance tests, log files and claim rule,
in this worker's own work directory.
Before it starts anything the job claims its attempt in the attempt ledger (ledger.py) and resolves
the step's `${env.NAME}` values in this worker's environment (attempt_env.py); after the attempt it
records the outcome there, which is how the driving process hears of it.

A database outage (a PostgreSQL restart) does not stop the worker (ride_out.py): its attempts keep
running, its drives' Procrastinate worker (drive.py) goes on taking drive jobs, its heartbeat is
written again as soon as the database is back, and an outcome that could not be recorded meanwhile
is recorded then. A database it cannot reach at its start is the one line of every command (exit
2). Once serving, a worker stops with `DatabaseGone` (exit 1, for its service manager to start it
again) when the database went away as it registered or unregisters, when the Procrastinate worker
of its drives stopped on an error other than a lost connection (it first stops as on SIGTERM), or
when it was taken for dead after all (silent longer than the stall timeout, its row pruned by
another worker's start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

import psycopg
from procrastinate import JobContext
from procrastinate import exceptions as pq_exceptions
from procrastinate.worker import Worker as ProcrastinateWorker
from psycopg_pool import ConnectionPool

from ..errors import StepledgerError
from ..execution import files
from ..execution.pool import WorkerPool
from ..execution.spec import AttemptResult, AttemptSpec
from ..paths import hostname
from ..worktrees.isolation import filled_spec, unisolated_values
from . import jobs, ledger, roster, schema
from .attempt_env import with_worker_env
from .drive import RunDrives
from .log_stream import LogStreamer
from .ride_out import Heartbeat, around_registration, first_line, ride_out_outages, steady_reconnects
from .settings import (
    DEFAULT_QUEUE,
    TASK_NAME,
    check_settings,
    connect,
    conninfo,
    heartbeat_seconds,
    log_cap_bytes,
    stall_seconds,
)
from .wakeups import wake_after_missed_notifications

T = TypeVar("T")
ABORT_CHECK = 1.0  # seconds between looks at whether the driver asked to stop a running attempt


class DatabaseGone(StepledgerError):
    """The worker stopped because its connections to the database broke; start it again."""

    exit_code = 1


class FleetWorker:
    """One `stepledger worker` process: its Procrastinate worker, its local pool, its database pool."""

    def __init__(
        self,
        db_url: str,
        workdir: str | Path,
        concurrency: int,
        queues: Sequence[str],
        grace: float | None,
        drive: int = 0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        check_settings()  # a bad value is said now, not when the first attempt ends
        self.grace = grace  # seconds running attempts may take to finish after a stop; None: no limit
        self.db_url = db_url
        self.conninfo = conninfo(db_url)
        self.workdir = str(Path(workdir).resolve())
        self.concurrency = concurrency
        self.queues = list(queues) or [DEFAULT_QUEUE]
        self.host = hostname()
        self.name = f"{self.host}:{os.getpid()}"
        # A connection for each running job's end, one for the fetch loop, one to spare (the
        # heartbeat has a connection of its own: ride_out.py).
        self.app = jobs.make_serving_app(self.conninfo, connections=concurrency + 2)
        self.app.task(name=TASK_NAME, pass_context=True)(self._run_job)
        # Written from registration to the process's very end: through outages, and through a
        # stop's grace period (ride_out.py); the drives' worker row too.
        self.heartbeat = Heartbeat(
            self.conninfo, heartbeat_seconds(), self._say, self._database_back, self._forgotten
        )
        # Runs submitted to the fleet, `drive` at once, from the same queues (drive.py).
        self.drives = RunDrives(db_url, self.conninfo, self.workdir, self.name, self.queues, drive, self._say,
                                self.heartbeat)  # fmt: skip
        self._waiting: dict[tuple[str, str, int], Future[AttemptResult]] = {}
        self._lock = threading.Lock()
        # Typed as the pool expects a result queue: it only ever puts into it.
        self.pool = WorkerPool(concurrency, cast("queue.SimpleQueue[AttemptResult]", _ToWaitingJob(self)))
        self._starting = threading.Lock()  # held while a job picks a process of the pool and submits
        self.db: ConnectionPool | None = None
        # Each running attempt's log, streamed into the database as it grows (log_stream.py).
        self.logs = LogStreamer(self.conninfo, log_cap_bytes(), self._say)
        self._procrastinate: ProcrastinateWorker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._taken_for_dead = False

    def serve(self) -> None:
        """Run jobs until SIGTERM or SIGINT; see `_serve` for what a stop does."""
        hide_job_arguments()
        steady_reconnects()
        with connect(self.db_url) as conn:  # unreachable at the start: one line, exit 2
            schema.install(conn)
        self.pool.start()
        self.db = ConnectionPool(self.conninfo, min_size=1, max_size=self.concurrency + 1,
                                 kwargs={"autocommit": True}, open=True)  # fmt: skip
        self.logs.start()
        try:
            asyncio.run(self._serve())
        except (pq_exceptions.ConnectorException, psycopg.OperationalError) as error:
            # An outage is ridden out (ride_out.py); this is the database gone as the worker
            # registered or unregisters, or its drives' worker stopped on an error it does not
            # ride out: one line, for its service manager to start it again.
            raise DatabaseGone(
                f"stepledger worker {self.name} stopped: the database went away ({first_line(error)});"
                " start it again once the database is back (a service manager with Restart=always does)"
            ) from None
        finally:
            self.drives.close()
            self.logs.stop()
            self.pool.shutdown(kill_running=True, reason="interrupted")
            self.db.close()
            # Stopped when Procrastinate unregisters the worker, once every job has ended; here,
            # in case it did not. Either way only once the attempts' processes are gone: until
            # then this worker is alive to the driver, which starts no attempt of theirs elsewhere.
            self.heartbeat.stop()
        if self._taken_for_dead:
            raise DatabaseGone(
                f"stepledger worker {self.name} stopped: it was cut off from the database longer than the"
                " stall timeout and taken for dead (its attempts were handed back interrupted);"
                " start it again (a service manager with Restart=always does)"
            )

    async def _serve(self) -> None:
        """The Procrastinate worker, with our signal handling.

        The first SIGTERM or SIGINT stops taking jobs and lets running attempts finish for up to
        the grace period; then Procrastinate asks their jobs to abort, and each hands its attempt
        back *interrupted* (killed here, retried by its run elsewhere). A second signal does that
        at once.
        """
        worker = ProcrastinateWorker(
            self.app,
            queues=self.queues,
            concurrency=self.concurrency,
            name=self.name,
            update_heartbeat_interval=heartbeat_seconds(),
            stalled_worker_timeout=stall_seconds(),
            shutdown_graceful_timeout=self.grace,
            install_signal_handlers=False,
            # An ended job's row is of no further use (the attempt ledger is the record of what
            # ran): deleted, the table stays as small as the work waiting and running.
            delete_jobs="always",
        )
        wake_after_missed_notifications(worker)
        ride_out_outages(worker, self._say)
        self._procrastinate = worker
        self._loop = asyncio.get_running_loop()
        signals = 0
        running = False

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if not running:
                return  # acted on once the worker runs: its start would forget a stop given before
            if signals == 1:
                limit = "however long they take" if self.grace is None else f"up to {self.grace:g} s"
                self._say(
                    f"stopping: no new attempts; running ones may finish ({limit}); signal again to stop them"
                )
                worker.stop()
                # Its runs go to other workers at once, not after the grace period: their
                # attempts elsewhere need a driver.
                self.drives.stop()
            else:
                self._say("stopping now: running attempts are handed back interrupted")
                self._interrupt_all()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        enrolled = self._enrol_when_registered()
        async with self.app.open_async():
            task = asyncio.create_task(worker.run())
            drives = asyncio.create_task(self.drives.serve())
            await asyncio.sleep(0)  # run() has begun: it resets its stop request before its first await
            running = True
            # Serving once the roster says which queues it serves (or once run() ended early).
            await asyncio.wait(
                [task, asyncio.ensure_future(enrolled.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            # One line for the operator (and the service manager's log): who serves what, from where.
            self._say(f"serving {', '.join(self.queues)} with {self.concurrency} slot(s) in {self.workdir}")
            pending, signals = signals, 0
            for _ in range(pending):  # the signals that came while it was starting
                on_signal()
            await asyncio.wait([task, drives], return_when=asyncio.FIRST_EXCEPTION)
            failed = drives.exception() if drives.done() else None
            if not task.done() and failed is not None:
                # The drives' own Procrastinate worker (drive.py) rides outages out; it stops on
                # any other error: a worker that no longer drives runs stops as on SIGTERM (its
                # attempts may finish, its heartbeat goes on), then exits 1 for its service
                # manager to start it again.
                self._say(f"stopping: cannot drive runs any more ({first_line(failed)})")
                worker.stop()
                self.drives.stop()
            await task
            await drives

    def _enrol_when_registered(self) -> asyncio.Event:
        """Have Procrastinate's registration of this worker also start its heartbeat and enter it in
        the roster (the queues it serves, roster.py); the event is set once it is entered."""
        enrolled = asyncio.Event()

        async def enrol(worker_id: int) -> None:
            self.heartbeat.start(worker_id)
            await asyncio.to_thread(
                self._patiently, "enter the roster", roster.enrol, worker_id, self.name, self.host,
                self.queues, self.workdir,
            )  # fmt: skip
            enrolled.set()

        async def stop_heartbeat(worker_id: int) -> None:
            # Procrastinate unregisters once every job has ended: the heartbeat stops first, or it
            # would find the row gone and take this worker for forgotten.
            await asyncio.to_thread(self.heartbeat.stop)

        around_registration(self.app.job_manager, enrol, stop_heartbeat)
        return enrolled

    def _interrupt_all(self) -> None:
        """Kill every running attempt; each job records it interrupted."""
        with self._lock:
            keys = list(self._waiting)
        for key in keys:
            self.pool.cancel(*key, reason="interrupted")

    def _database_back(self, conn: psycopg.Connection) -> None:
        """After an outage: stop the attempts the driver fenced meanwhile (it took this worker for
        dead: their retries may start elsewhere), and look for jobs (attempts, drives) enqueued
        meanwhile."""
        self._say("the database is back")
        with self._lock:
            keys = list(self._waiting)
        for key in keys:
            row = ledger.attempt(conn, key)
            if row is not None and row.state == "done":
                self._say(f"{key[1]}.{key[2]} was handed back interrupted while cut off: stopped here")
                self.pool.cancel(*key, reason="interrupted")
        self._wake_fetch()

    def _forgotten(self) -> None:
        """This worker's row was pruned (taken for dead): its jobs were freed and its attempts are
        fenced; stop them and stop the worker, to be started again."""
        self._taken_for_dead = True
        self._say("taken for dead while cut off from the database: stopping")
        self._interrupt_all()
        self.drives.stop()
        if self._procrastinate is not None:
            self._on_loop(self._procrastinate.stop)

    def _wake_fetch(self) -> None:
        for worker in (self._procrastinate, self.drives.worker):
            if worker is not None:
                self._on_loop(worker._new_job_event.set)

    def _on_loop(self, call: Callable[[], object]) -> None:
        """`call()` on the serving loop, from another thread; nothing if the loop has ended."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # closed: the worker has stopped already
                self._loop.call_soon_threadsafe(call)

    def _say(self, line: str) -> None:
        print(f"stepledger worker {self.name}: {line}", file=sys.stderr, flush=True)

    def _route(self, result: AttemptResult) -> None:
        """Hand a result of the local pool to the job waiting for it."""
        with self._lock:
            future = self._waiting.pop(result.key, None)
        if future is not None:
            future.set_result(result)

    def _run_job(self, context: JobContext, spec: dict[str, Any]) -> None:
        """One job: claim the attempt, run it on the local pool, record its outcome."""
        assert self.db is not None
        attempt = self._relocated(jobs.spec_from_payload(spec))
        key = (attempt.run_id, attempt.step_id, attempt.attempt)
        job_id = context.job.id or 0
        if not self._patiently(f"claim {key[1]}.{key[2]}", claim, key, self.host, self.name, job_id):
            return  # settled already (a fence, or this job delivered twice): run nothing
        # The step's ${env.NAME} values, from this worker's environment (attempt_env.py).
        attempt, refused = with_worker_env(attempt, os.environ, self.name)
        if refused:
            self._say(refused)
        # `${worktree_path}` is this worker's folder, where the attempt runs (after the env values,
        # as on one machine: a value read from the environment may hold it).
        attempt = filled_spec(attempt, unisolated_values(self.workdir))
        future: Future[AttemptResult] = Future()
        with self._lock:
            self._waiting[key] = future
        self.logs.watch(key, files.log_path(attempt.run_dir, *key[1:]))
        self._start_on_pool(attempt)
        asked = False
        while True:
            try:
                result = future.result(timeout=ABORT_CHECK)
                break
            except TimeoutError:
                if not asked and context.should_abort():
                    asked = True
                    # The driver leaves its reason (cancelled, interrupted…) before it asks; none:
                    # this worker is stopping, and hands the attempt back.
                    reason = (
                        self._patiently("read a stop's reason", ledger.cancel_reason, key) or "interrupted"
                    )
                    self.pool.cancel(*key, reason=reason)
        # The rest of the log with the outcome: whoever sees the attempt settled has all of it.
        # False when a fence got there first: the outcome is refused, as it must be.
        outcome = result.to_dict()
        self._patiently(
            f"record {key[1]}.{key[2]}",
            self.logs.settle,
            key,
            lambda conn: ledger.record(conn, key, self.name, outcome),
            lambda conn, along: ledger.record(conn, key, self.name, outcome, along),
        )

    def _start_on_pool(self, attempt: AttemptSpec) -> None:
        """Send the attempt to an idle process of the local pool.

        Jobs start on threads of their own, several at once: the choice of an idle process and the
        submit are one step, or two jobs starting together pick the same process and the second
        submit is refused ("busy"), failing its job without an outcome (the step failed *error*).
        """
        with self._starting:
            slot = self.pool.idle_worker()
            if slot is None:  # not possible: Procrastinate runs at most `concurrency` jobs at once
                raise RuntimeError("no idle process in the worker's pool")
            self.pool.submit(slot, attempt)

    def _patiently(self, what: str, operation: Callable[..., T], *args: Any) -> T:
        """`operation(conn, *args)`, tried again through a database outage: a claim or an outcome
        lost to one would leave the driver waiting (it settles a dead worker's attempts, not these).

        After a failure each try has a connection of its own, at most a second apart: the pool
        reconnects with a growing back-off, and an outcome must reach the ledger soon after the
        database is back (the worker's heartbeat keeps the driver from fencing it meanwhile)."""
        assert self.db is not None
        pause = 0.1
        said = ""
        failed = False
        while True:
            try:
                if not failed:
                    with self.db.connection() as conn:
                        return operation(conn, *args)
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    return operation(conn, *args)
            except psycopg.OperationalError as error:
                failed = True
                line = f"cannot {what} yet: {first_line(error)}"
                if line != said:  # once per kind of trouble, not every try
                    said = line
                    self._say(line)
                time.sleep(pause)
                pause = min(pause * 2, 1.0)

    def _relocated(self, spec: AttemptSpec) -> AttemptSpec:
        """The spec with the driver's paths moved under this worker's work directory.

        The run's folder becomes this worker's `<workdir>/.stepledger/runs/RUN`; a step folder under
        the driver's work directory (its `cwd`) becomes the same folder under ours, created like
        `mkdir -p` as the driver does for local runs; an absolute `cwd` elsewhere is kept as it is.
        """
        origin = spec.run_dir.rsplit("/.stepledger/runs/", 1)[0] if spec.run_dir else ""
        workdir = spec.workdir
        if not origin or spec.workdir == origin:
            workdir = self.workdir
        elif spec.workdir.startswith(origin + "/"):
            workdir = os.path.join(self.workdir, os.path.relpath(spec.workdir, origin))
            os.makedirs(workdir, exist_ok=True)
        run_dir = os.path.join(self.workdir, ".stepledger", "runs", spec.run_id)
        return replace(spec, workdir=workdir, run_dir=run_dir)


class _ToWaitingJob:
    """The local pool's result queue: each result goes straight to the job waiting for it, on the
    pool's reading thread (no thread of its own in between: one wake-up less per attempt)."""

    def __init__(self, worker: FleetWorker) -> None:
        self.worker = worker

    def put(self, result: AttemptResult, block: bool = True, timeout: float | None = None) -> None:
        self.worker._route(result)

    def put_nowait(self, result: AttemptResult) -> None:
        self.worker._route(result)


def claim(conn: psycopg.Connection, key: tuple[str, str, int], host: str, worker: str, job_id: int) -> bool:
    """`ledger.claim`, which a retry makes again after the database went away: a claim that
    committed but whose answer was lost with the connection is found this worker's, for this job,
    and stands (refused, the job would end without an outcome and the step fail *error*)."""
    if ledger.claim(conn, key, host, worker, job_id):
        return True
    row = ledger.attempt(conn, key)
    return row is not None and row.state == "claimed" and row.worker == worker and row.job_id == job_id


class _HideJobArguments(logging.Filter):
    """Procrastinate names a job in its log lines with its arguments: an attempt's whole spec, its
    commands, the env values written in the file, the parameters and step outputs it reads (its
    `${env.NAME}` values travel as templates: jobs.spec_payload). That is the event log's data, for
    those who may read the log, not for whoever reads the worker's output (a failed job's line
    reaches its stderr, the system journal), and it may be long. Keep the task name and job id;
    drop the arguments, from the line and from the record's `job` data a structured log handler
    would write."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = getattr(record, "job", None)
        if isinstance(job, dict):
            call = job.get("call_string")
            if isinstance(call, str) and "(" in call:
                record.msg = record.getMessage().replace(call, call.split("(", 1)[0] + "(…)")
                record.args = ()
            record.job = {k: v for k, v in job.items() if k not in ("task_kwargs", "call_string")}
        return True


def hide_job_arguments() -> None:
    """Put the filter on every Procrastinate logger (a logger's filters do not reach its children)."""
    import procrastinate  # noqa: F401 - its modules make their loggers on import

    names = [
        n for n in logging.root.manager.loggerDict if n == "procrastinate" or n.startswith("procrastinate.")
    ]
    for name in names:
        found = logging.getLogger(name)
        if not any(isinstance(f, _HideJobArguments) for f in found.filters):
            found.addFilter(_HideJobArguments())
