"""`stepledger worker`: a long-lived process that takes attempts from the fleet's queues and runs them.

Procrastinate fetches the jobs (row locks: one worker per job), sends the heartbeats and handles
SIGTERM (no new jobs; running ones finish). Each job's attempt runs on a local WorkerPool
(engine/execution/pool.py) of `concurrency` processes, exactly as a local run's attempts do: the
same tools, acceptance tests, log files and claim rule, in this worker's own work directory.
Before it starts anything the job claims its attempt in the attempt ledger (ledger.py); after the
attempt it records the outcome there, which is how the driving process hears of it.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import psycopg
from procrastinate import JobContext
from psycopg_pool import ConnectionPool

from ..execution.pool import WorkerPool
from ..execution.spec import AttemptResult, AttemptSpec
from ..paths import hostname
from . import jobs, ledger, schema
from .settings import DEFAULT_QUEUE, TASK_NAME, conninfo, heartbeat_seconds, stall_seconds

ABORT_CHECK = 1.0  # seconds between looks at whether the driver asked to stop a running attempt


class FleetWorker:
    """One `stepledger worker` process: its Procrastinate worker, its local pool, its database pool."""

    def __init__(self, db_url: str, workdir: str | Path, concurrency: int, queues: Sequence[str]) -> None:
        if concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        self.conninfo = conninfo(db_url)
        self.workdir = str(Path(workdir).resolve())
        self.concurrency = concurrency
        self.queues = list(queues) or [DEFAULT_QUEUE]
        self.host = hostname()
        self.name = f"{self.host}:{os.getpid()}"
        self.app = jobs.make_app(self.conninfo)
        self.app.task(name=TASK_NAME, pass_context=True)(self._run_job)
        self.pool = WorkerPool(concurrency, queue.SimpleQueue())
        self._waiting: dict[tuple[str, str, int], Future[AttemptResult]] = {}
        self._lock = threading.Lock()
        self.db: ConnectionPool | None = None

    def serve(self) -> None:
        """Run jobs until SIGTERM or SIGINT (running attempts are let finish)."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            schema.install(conn)
        self.pool.start()
        router = threading.Thread(target=self._route, name="stepledger-fleet-router", daemon=True)
        router.start()
        self.db = ConnectionPool(self.conninfo, min_size=1, max_size=self.concurrency + 1,
                                 kwargs={"autocommit": True}, open=True)  # fmt: skip
        # One line for the operator (and the service manager's log): who serves what, from where.
        print(f"stepledger worker {self.name}: serving {', '.join(self.queues)} with {self.concurrency}"
              f" slot(s) in {self.workdir}", file=sys.stderr, flush=True)  # fmt: skip
        try:
            self.app.run_worker(
                queues=self.queues,
                concurrency=self.concurrency,
                name=self.name,
                update_heartbeat_interval=heartbeat_seconds(),
                stalled_worker_timeout=stall_seconds(),
                # A job's arguments hold the step's environment: gone once the attempt has ended
                # (the attempt ledger is the record of what ran).
                delete_jobs="always",
            )
        finally:
            self.pool.shutdown(kill_running=True, reason="interrupted")
            self.pool.results.put(None)
            router.join(timeout=5)
            self.db.close()

    def _route(self) -> None:
        """Hand each result of the local pool to the job waiting for it."""
        while True:
            result = self.pool.results.get()
            if result is None:
                return
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
        with self.db.connection() as conn:
            if not ledger.claim(conn, key, self.host, self.name, job_id):
                return  # settled already (a fence, or this job delivered twice): run nothing
        future: Future[AttemptResult] = Future()
        with self._lock:
            self._waiting[key] = future
        slot = self.pool.idle_worker()
        if slot is None:  # not possible: Procrastinate runs at most `concurrency` jobs at once
            raise RuntimeError("no idle process in the worker's pool")
        self.pool.submit(slot, attempt)
        asked = False
        while True:
            try:
                result = future.result(timeout=ABORT_CHECK)
                break
            except TimeoutError:
                if not asked and context.should_abort():
                    asked = True
                    with self.db.connection() as conn:
                        reason = ledger.cancel_reason(conn, key) or "cancelled"
                    self.pool.cancel(*key, reason=reason)
        self._record(key, result)

    def _record(self, key: tuple[str, str, int], result: AttemptResult) -> None:
        """Record the outcome, waiting out a database outage: the driver waits for it."""
        assert self.db is not None
        pause = 0.1
        while True:
            try:
                with self.db.connection() as conn:
                    ledger.record(conn, key, self.name, result.to_dict())  # False: fenced, refused
                return
            except psycopg.OperationalError as error:
                print(f"stepledger worker {self.name}: cannot record {key[1]}.{key[2]} yet: {error}",
                      file=sys.stderr, flush=True)  # fmt: skip
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _relocated(self, spec: AttemptSpec) -> AttemptSpec:
        """The spec with the driver's paths moved under this worker's work directory."""
        from dataclasses import replace

        origin = spec.run_dir.rsplit("/.stepledger/runs/", 1)[0] if spec.run_dir else ""
        workdir = self.workdir
        if origin and spec.workdir.startswith(origin + "/"):
            workdir = os.path.join(self.workdir, os.path.relpath(spec.workdir, origin))
        run_dir = os.path.join(self.workdir, ".stepledger", "runs", spec.run_id)
        return replace(spec, workdir=workdir, run_dir=run_dir)
