"""An in-process pool for reactor tests: threads play the steps' behaviours, described by their tasks.

It implements the same interface as `engine.execution.pool.WorkerPool` (start, idle_worker,
submit, cancel, shutdown), so the reactor under test is the real one; only the processes are not.
A task is `pass`, `fail`, `fail:<signature>`, `sleep:<seconds>` or `fail-times:<n>` (fail the
first n attempts, then pass).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stepledger.engine.execution.spec import AttemptResult, AttemptSpec

if TYPE_CHECKING:
    from stepledger.engine.run.context import ReactorOptions
    from stepledger.engine.run.reactor import Reactor
    from stepledger.engine.run.reporting import Reporter
    from stepledger.engine.workstream.model import Workstream
    from stepledger.events import FailureReason
    from stepledger.events.state import RunState
    from stepledger.store.port import EventStore


@dataclass(frozen=True)
class FakeWorker:
    pid: int
    pgid: int


class ThreadPool:
    """Runs each attempt in a thread; `cancel` ends a sleeping attempt early."""

    def __init__(self, size: int, results: queue.SimpleQueue[AttemptResult]) -> None:
        self.size = size
        self.results = results
        self.idle = [FakeWorker(100000 + i, 100000 + i) for i in range(size)]
        self.busy: dict[tuple[str, int], tuple[FakeWorker, threading.Event, list[FailureReason]]] = {}
        self.lock = threading.Lock()
        self.submitted: list[AttemptSpec] = []
        self.max_busy = 0
        self.shut = False

    def start(self) -> None:
        pass

    def idle_worker(self, exclude: Collection[int] = ()) -> FakeWorker | None:
        with self.lock:
            free = [w for w in self.idle if w.pid not in exclude]
            if not free:
                return None
            self.idle.remove(free[0])
            return free[0]

    def enqueue_along(self, dispatch: object, adjust: object) -> None:
        return None

    def abandon(self) -> None:
        pass

    def submit(self, worker: FakeWorker, spec: AttemptSpec) -> None:
        if self.shut:  # as the real pool does
            raise RuntimeError("the worker pool is shutting down")
        cancel = threading.Event()
        reason: list[FailureReason] = []
        with self.lock:
            self.busy[(spec.step_id, spec.attempt)] = (worker, cancel, reason)
            self.max_busy = max(self.max_busy, len(self.busy))
            self.submitted.append(spec)
        threading.Thread(target=self._run, args=(worker, spec, cancel, reason), daemon=True).start()

    def cancel(self, run_id: str, step_id: str, attempt: int, reason: FailureReason = "cancelled") -> None:
        with self.lock:
            entry = self.busy.get((step_id, attempt))
        if entry:
            entry[2].append(reason)
            entry[1].set()

    def busy_count(self) -> int:
        with self.lock:
            return len(self.busy)

    def shutdown(self, kill_running: bool = False, reason: FailureReason = "interrupted") -> None:
        self.shut = True
        with self.lock:
            keys = list(self.busy)
        for step_id, attempt in keys:
            if kill_running:
                self.cancel("", step_id, attempt, reason)
        deadline = time.time() + 5
        while self.busy_count() and time.time() < deadline:
            time.sleep(0.001)

    def _run(
        self, worker: FakeWorker, spec: AttemptSpec, cancel: threading.Event, why: list[FailureReason]
    ) -> None:
        started = time.time()
        reason: FailureReason | None = None
        passed, signature = True, ""
        for task in spec.tasks:
            kind, _, arg = task.partition(":")
            if kind == "sleep" and cancel.wait(float(arg)):
                passed, reason = False, why[0]
                break
            if kind == "fail":
                passed, reason, signature = False, "exit_code", arg or "boom"
                break
            if kind == "fail-times" and spec.attempt <= int(arg):
                passed, reason, signature = False, "exit_code", "flaky"
                break
        result = AttemptResult(
            run_id=spec.run_id,
            step_id=spec.step_id,
            attempt=spec.attempt,
            passed=passed,
            reason=reason,
            exit_code=None if passed or reason != "exit_code" else 1,
            error_signature=signature,
            output_excerpt=signature,
            started_at=started,
            finished_at=time.time(),
            worker_pid=worker.pid,
        )
        with self.lock:
            del self.busy[(spec.step_id, spec.attempt)]
            self.idle.append(worker)
        self.results.put(result)


def threaded_reactor(
    store: EventStore,
    ws: Workstream,
    run: RunState,
    tmp_path: Path,
    max_workers: int | None = None,
    *,
    reporter: Reporter | None = None,
    options: ReactorOptions | None = None,
) -> Reactor:
    """A real Reactor on a ThreadPool sized as the session sizes a run's pool."""
    from stepledger.engine.run.reactor import Reactor
    from stepledger.engine.workstream.model import worker_limit

    workers = worker_limit(ws, max_workers)
    return Reactor(store, ws, run, pool=ThreadPool(workers, queue.SimpleQueue()), workers=workers,
                   run_dir=tmp_path, profiles={}, reporter=reporter, options=options)  # fmt: skip
