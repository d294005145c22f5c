"""FleetDispatcher: the reactor's attempts run as Procrastinate jobs on `stepledger worker`s.

It implements the dispatcher interface (engine/execution/dispatcher.py). The reactor commits
step.started, then calls `submit`, which enqueues the attempt as a job (jobs.py: the attempt's
identity is its queueing lock). Workers record each outcome in the attempt ledger (ledger.py) and
NOTIFY; a listener thread here wakes on the notification, reads the outcomes of the attempts in
flight and puts them on `results`. The same thread fences the attempts of workers whose heartbeat
stopped: it records them *interrupted* and fails their job, which releases the step's lock for the
retry.

`idle_worker` hands out slots, not processes: the run's worker limit bounds how many of its
attempts are queued or running at once; which machine runs each is the fleet's choice. A slot's
`pid` is negative (-1, -2, …): it is recorded in step.started and names no process.

From `start` on it streams the run's orchestrator.log into the database (log_stream.RunLogStream),
so that `stepledger logs RUN` reads it on any machine.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from procrastinate import exceptions as pq_exceptions
from procrastinate import sql as pq_sql

from ..execution.files import error_signature
from ..execution.spec import AttemptResult, AttemptSpec
from . import jobs, ledger, roster, schema
from .log_stream import RunLogStream
from .settings import (
    DEFAULT_QUEUE,
    RESULTS_CHANNEL,
    TASK_NAME,
    check_seconds,
    check_settings,
    connect,
    conninfo,
    log_cap_bytes,
    stall_seconds,
)

if TYPE_CHECKING:
    from stepledger.events.types import FailureReason

SHUTDOWN_GRACE = 10.0  # seconds for workers to report cancelled attempts on shutdown


@dataclass(frozen=True)
class FleetSlot:
    """One of the run's slots: recorded in step.started as the attempt's worker."""

    pid: int
    pgid: int = 0


def run_log_of(workdir: str | Path, run_id: str) -> tuple[str, Path]:
    """The `run_log` of a FleetDispatcher driving `run_id` from `workdir`: its orchestrator.log."""
    from ..paths import run_dir_of

    return run_id, run_dir_of(workdir, run_id) / "orchestrator.log"


class FleetDispatcher:
    """Runs attempts on the fleet; results arrive on `results`."""

    def __init__(
        self,
        db_url: str,
        size: int,
        results: queue.SimpleQueue[Any],
        queues: Mapping[str, str] | None = None,
        run_log: tuple[str, Path] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a run needs at least one worker slot")
        check_settings()
        self.size = size
        self.results = results
        self._db_url = db_url
        self._conninfo = conninfo(db_url)
        self._queues = dict(queues or {})  # step id -> queue name
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._inflight: dict[tuple[str, str, int], tuple[int, int]] = {}  # key -> (slot pid, job id)
        self._enqueued: dict[tuple[str, str, int], int] = {}  # key -> job id, by the last enqueue_along
        self._closing = threading.Event()
        self._wake_channel = f"stepledger_fleet_wake_{uuid.uuid4().hex}"  # this dispatcher's alone
        self._conn: psycopg.Connection | None = None
        self._app: Any = None
        self._listener: threading.Thread | None = None
        self._gone_before: set[int] = set()  # jobs of attempts in flight found ended at the last check
        self._fence_after = 0.0  # monotonic time before which no worker is taken for dead
        # Told, from the listener thread, each time the attempts waiting for a worker change: step
        # id -> (queue, whether a live worker serves it). A front end's live view sets it.
        self.on_waiting: Callable[[dict[str, tuple[str, bool]]], None] | None = None
        self._waiting_told: dict[str, tuple[str, bool]] = {}
        # (run id, its orchestrator.log) to stream into the database (log_stream.RunLogStream) from
        # `start` to `close_run_log`; None: none.
        self._run_log = run_log
        self._run_log_stream: RunLogStream | None = None

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, install the fleet's tables if needed, start listening for outcomes; idempotent."""
        if self._listener is not None:
            return
        self._conn = connect(self._db_url)  # unreachable: one line, before anything is recorded
        schema.install(self._conn)
        self._app = jobs.make_app(self._conninfo)
        self._app.open()
        ready = threading.Event()
        self._listener = threading.Thread(
            target=self._listen, args=(ready,), name="stepledger-fleet-listener", daemon=True
        )
        self._listener.start()
        ready.wait()  # LISTEN is in place before the first job can finish
        self._stream_run_log()

    def shutdown(self, kill_running: bool = False, reason: FailureReason = "interrupted") -> None:
        """Stop: cancel the attempts in flight (their results arrive first), or wait for them."""
        if self._listener is None or self._closing.is_set():
            return
        with self._lock:
            running = list(self._inflight)
        if kill_running:
            for key in running:
                self.cancel(*key, reason=reason)
        with self._lock:
            # An attempt whose worker does not answer in time is left as it is: the log says it is
            # running, its outcome will be in the attempt ledger, and `resume` settles it from there.
            self._changed.wait_for(lambda: not self._inflight, SHUTDOWN_GRACE if kill_running else None)
        self._closing.set()
        if self._conn is not None:
            # The listener waits on its connection for up to a check interval: wake it now.
            with contextlib.suppress(psycopg.Error):
                self._conn.execute(f"NOTIFY {self._wake_channel}")
        self._listener.join(timeout=5)
        self._app.close()
        if self._conn is not None:
            self._conn.close()

    def close_run_log(self) -> None:
        """The run's orchestrator.log has its last line: copy the rest into the database.

        Not done by `shutdown`: the reactor writes the run's end after the pool stopped. The caller
        that passed `run_log` calls this once the run it drove is over (idempotent)."""
        stream, self._run_log_stream = self._run_log_stream, None
        if stream is not None:
            stream.close()

    def _stream_run_log(self) -> None:
        """Stream the driver's orchestrator.log into the database, so that `stepledger logs RUN`
        reads it on any machine (log_stream.RunLogStream)."""
        from ..paths import hostname

        if self._run_log is None:
            return
        run_id, path = self._run_log
        stream = RunLogStream(self._conninfo, run_id, str(path), hostname(), log_cap_bytes())
        try:
            assert self._conn is not None
            stream.begin(self._conn)
        except psycopg.Error:
            return  # the run goes on without a copy; its file on this machine is whole
        self._run_log_stream = stream

    def abandon(self) -> None:
        """Forget the attempts in flight without stopping them: the run's lease was lost, and the
        driver that took the run over awaits and settles them (takeover.py). `shutdown` then
        cancels nothing and waits for nothing."""
        with self._lock:
            self._inflight.clear()
            self._changed.notify_all()

    # -- the reactor's calls ---------------------------------------------------------------------

    def idle_worker(self, exclude: Collection[int] = ()) -> FleetSlot | None:
        """A free slot whose pid is not in `exclude`, or None when the run's limit is reached."""
        with self._lock:
            taken = {pid for pid, _ in self._inflight.values()} | set(exclude)
        for n in range(1, self.size + 1):
            if -n not in taken:
                return FleetSlot(-n)
        return None

    def enqueue_along(
        self, dispatch: Sequence[tuple[Any, AttemptSpec]], adjust: Callable[[AttemptSpec], AttemptSpec]
    ) -> Callable[[Any], None]:
        """Enqueue the attempts' jobs in the transaction that records their step.started.

        Then a job exists if and only if its attempt's start is in the log: a driver that dies
        after the commit leaves jobs the workers run and the next driver settles; one that dies
        before leaves neither; a batch another writer beat rolls its jobs back with it. It also
        saves the round trip of an enqueue per attempt. The ids are kept for `submit`, which
        follows for each attempt once the transaction has committed; each call replaces the last
        call's ids (those of a batch that did not commit are never asked for).
        """
        specs = [(adjust(spec), self._queues.get(spec.step_id) or DEFAULT_QUEUE) for _, spec in dispatch]
        enqueued: dict[tuple[str, str, int], int] = {}
        self._enqueued = enqueued

        def enqueue(cursor: Any) -> None:
            ids = jobs.defer_in(cursor.connection, specs)
            enqueued.clear()  # a retried transaction's jobs replace the rolled-back ones'
            for (spec, _), job_id in zip(specs, ids, strict=True):
                enqueued[spec.run_id, spec.step_id, spec.attempt] = job_id

        return enqueue

    def submit(self, worker: FleetSlot, spec: AttemptSpec) -> None:
        """Watch the attempt's job, enqueued with its step.started (`enqueue_along`), or enqueue
        it now on its step's queue; its result arrives on `results`."""
        key = (spec.run_id, spec.step_id, spec.attempt)
        queue_name = self._queues.get(spec.step_id) or DEFAULT_QUEUE
        with self._lock:
            if key in self._inflight:
                raise RuntimeError(f"attempt {spec.step_id}.{spec.attempt} is already running")
            job_id = self._enqueued.pop(key, 0)
            self._inflight[key] = (worker.pid, job_id)
        if job_id:
            return
        try:
            job_id = jobs.defer(self._app, spec, queue_name)
        except pq_exceptions.AlreadyEnqueued:
            # This very attempt waits in the queue already: one job is enough; watch that one.
            job_id = jobs.waiting_job(self._conn, spec) if self._conn is not None else 0
        with self._lock:
            if key in self._inflight:
                self._inflight[key] = (worker.pid, job_id)

    def cancel(self, run_id: str, step_id: str, attempt: int, reason: FailureReason = "cancelled") -> None:
        """Stop the attempt: a job no worker took is withdrawn; a running one is asked to abort."""
        key = (run_id, step_id, attempt)
        with self._lock:
            entry = self._inflight.get(key)
            conn = self._conn
        if entry is None or conn is None:
            return
        job_id = entry[1]
        with self._lock:  # the connection is shared with other reactor-thread calls
            ledger.ask_cancel(conn, key, reason)
            withdrawn = bool(job_id) and self._app.job_manager.cancel_job_by_id(job_id, abort=False)
            if withdrawn:
                # Never taken: fence it, so a worker that reads it after all runs nothing.
                ledger.fence(
                    conn, key, failed_result(key, reason, "withdrawn before a worker took it").to_dict()
                )
            elif job_id:
                self._app.job_manager.cancel_job_by_id(job_id, abort=True)

    # -- the listener thread -------------------------------------------------------------------

    def _listen(self, ready: threading.Event) -> None:
        """Wake on outcome notifications; fence stalled attempts; reconnect after a database outage."""
        pause = 0.1
        connected_before = False
        while not self._closing.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {RESULTS_CHANNEL}")
                    conn.execute(f"LISTEN {self._wake_channel}")
                    if connected_before:
                        # Back after an outage, during which no worker could write a heartbeat:
                        # theirs are as old as the outage. They are given a stall timeout to
                        # write one before any is taken for dead (a worker rides an outage out,
                        # ride_out.py); a dead one is found that much later.
                        self._fence_after = time.monotonic() + stall_seconds()
                    connected_before = True
                    ready.set()
                    pause = 0.1
                    self._collect(conn)  # what was recorded while we were not listening
                    self._serve(conn)
            except psycopg.OperationalError:
                # The database went away: the outcomes stay in the ledger; read them once it is back.
                self._closing.wait(pause)
                pause = min(pause * 2, 5.0)
        ready.set()

    def _serve(self, conn: psycopg.Connection) -> None:
        next_check = time.monotonic()
        while not self._closing.is_set():
            timeout = max(0.0, next_check - time.monotonic())
            # Every outcome of the fleet is notified on the one channel, its run id the payload:
            # the ledger is read when one names a run in flight here (or at the check), not on the
            # outcomes of every other run the fleet drives.
            named = {n.payload for n in conn.notifies(timeout=timeout, stop_after=1)}
            due = time.monotonic() >= next_check
            if due:
                self._fence_stalled(conn)
                self._tell_waiting(conn)
                next_check = time.monotonic() + check_seconds()
            with self._lock:
                ours = {key[0] for key in self._inflight}
            if due or named & ours:
                self._collect(conn)

    def _collect(self, conn: psycopg.Connection) -> None:
        """Deliver the recorded outcomes of attempts in flight."""
        with self._lock:
            keys = set(self._inflight)
        if not keys:
            return
        run_ids = {k[0] for k in keys}
        for run_id in run_ids:
            for row in ledger.settled(conn, run_id, sorted({k[1] for k in keys if k[0] == run_id})):
                key = (row.run_id, row.step_id, row.attempt)
                if key in keys and row.result is not None:
                    # Where it ran: the claim's worker ("" for an attempt fenced before any claim).
                    ran_on = {"worker_host": row.host, "worker": row.worker}
                    self._deliver(AttemptResult.from_dict({**row.result, **ran_on}))

    def _fence_stalled(self, conn: psycopg.Connection) -> None:
        """Record the attempts of dead workers interrupted and fail their jobs (freeing the step's lock)."""
        with self._lock:
            by_job = {job_id: key for key, (_, job_id) in self._inflight.items() if job_id}
        if not by_job:
            return
        stalled = stalled_jobs(conn) if time.monotonic() >= self._fence_after else set()
        for job_id in stalled:
            key = by_job.get(job_id)
            if key is None:
                continue
            lost = failed_result(key, "interrupted", "its worker stopped sending heartbeats")
            ledger.fence(conn, key, lost.to_dict())
            fail_job(conn, job_id)
        # A job that ended without recording its attempt's outcome (an error in the worker's job
        # code): a worker records the outcome before its job ends, so a fence here can only win
        # over an outcome that will never come. Seen gone on two checks in a row, so that a job
        # `cancel` withdrew has been fenced with its own reason by then.
        gone = set(by_job) - live_jobs(conn, list(by_job))
        for job_id in gone & self._gone_before:
            detail = "its job ended without an outcome (see the worker's output)"
            ledger.fence(conn, by_job[job_id], failed_result(by_job[job_id], "error", detail).to_dict())
        self._gone_before = gone

    def _tell_waiting(self, conn: psycopg.Connection) -> None:
        """Tell `on_waiting` which attempts in flight no worker has taken yet, if that changed."""
        if self.on_waiting is None:
            return
        with self._lock:
            by_job = {job_id: key for key, (_, job_id) in self._inflight.items() if job_id}
        waiting: dict[str, tuple[str, bool]] = {}
        if by_job:
            rows = conn.execute(
                "SELECT id, queue_name FROM procrastinate_jobs WHERE id = ANY(%s) AND status = 'todo'",
                (list(by_job),),
            ).fetchall()
            served = roster.served_queues(conn) if rows else set()
            waiting = {by_job[job_id][1]: (name, name in served) for job_id, name in rows}
        if waiting != self._waiting_told:
            self._waiting_told = waiting
            with contextlib.suppress(Exception):  # a front end's trouble must not stop the listener
                self.on_waiting(waiting)

    def _deliver(self, result: AttemptResult) -> None:
        with self._lock:
            if self._inflight.pop(result.key, None) is None:
                return  # delivered already
            self._changed.notify_all()
        self.results.put(result)


def stalled_jobs(conn: psycopg.Connection) -> set[int]:
    """Ids of the attempt jobs being run by workers whose heartbeat stopped (Procrastinate's query)."""
    rows = conn.execute(
        pq_sql.queries["select_stalled_jobs_by_heartbeat"],
        {"seconds_since_heartbeat": stall_seconds(), "queue": None, "task_name": TASK_NAME},
    ).fetchall()
    return {row[0] for row in rows}


def live_jobs(conn: psycopg.Connection, job_ids: list[int]) -> set[int]:
    """Those of `job_ids` still waiting or running."""
    rows = conn.execute(
        "SELECT id FROM procrastinate_jobs WHERE id = ANY(%s) AND status IN ('todo', 'doing')", (job_ids,)
    ).fetchall()
    return {row[0] for row in rows}


def fail_job(conn: psycopg.Connection, job_id: int) -> None:
    """Mark a stalled job failed: its step's lock is free for the retry's job."""
    with contextlib.suppress(psycopg.Error):  # finished or failed meanwhile
        conn.execute(
            pq_sql.queries["finish_job"], {"job_id": job_id, "status": "failed", "delete_job": False}
        )


def failed_result(key: tuple[str, str, int], reason: FailureReason, detail: str) -> AttemptResult:
    """The verdict on an attempt no worker reported: failed with `reason`, `detail` as its output."""
    now = time.time()
    line = f"stepledger: {detail}\n"
    return AttemptResult(
        run_id=key[0], step_id=key[1], attempt=key[2], passed=False, reason=reason, exit_code=None,
        error_signature=error_signature(reason, None, line), output_excerpt=line,
        started_at=now, finished_at=now)  # fmt: skip
