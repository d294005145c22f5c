"""A bounded pool of long-lived worker processes that run attempts and report their results.

Each worker runs `stepledger.engine.execution.worker` with two pipes and in its own process group:
forked from the orchestrator at a run's start (forking.py), or spawned as a new interpreter. One
reader thread watches every worker's pipe and puts each AttemptResult on the caller's queue, so the
reactor wakes on completions instead of polling. A worker that dies mid-attempt is replaced; its
attempt's process groups are killed and it is reported as "lost_worker" (or as the timeout/cancel
that made the pool kill it); recovery.py settles that attempt.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import selectors
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stepledger.engine.execution.forking import DB_ENVVAR, WORKER_MODULE, ForkedWorker, can_fork, fork_worker
from stepledger.engine.execution.protocol import HEADER, frame
from stepledger.engine.execution.recovery import recover_attempt, synthesise_result
from stepledger.engine.execution.spec import AttemptResult, AttemptSpec

if TYPE_CHECKING:
    from stepledger.events.types import FailureReason

# A worker's interpreter starts without `site` (-S): its .pth files (an editable install's import
# finder among them) are a fifth of a worker's start-up (docs/performance.md), and a worker starts
# on the critical path of a run. So the worker reaches its package by the orchestrator's paths,
# set here on empty package modules (the packages' __init__ files hold nothing a worker needs); it
# adds `site` itself before a python task imports the user's code (tools.py), or at once when the
# run has python tasks (`python_tasks`), while it waits for its first attempt.
_BOOT = """
import sys, types
for name, path in {packages!r}:
    sys.modules[name] = module = types.ModuleType(name)
    module.__path__ = path
from {module} import main
main(with_site={with_site!r})
"""
STARTUP_FAILURES = 3  # workers dying idle within a second of their start, in a row, before giving up
SHUTDOWN_GRACE = 5.0  # seconds for workers to report cancelled attempts before they are killed


def _worker_env() -> dict[str, str] | None:
    """The workers' environment: ours, less the database URL (and its password), which is not the steps'."""
    if DB_ENVVAR not in os.environ:
        return None  # inherit as it is
    return {k: v for k, v in os.environ.items() if k != DB_ENVVAR}


def _boot_code(with_site: bool) -> str:
    """The `python -S -c` program of a worker (see _BOOT): this module's packages are imported."""
    names = WORKER_MODULE.split(".")[:-1]
    packages = [(".".join(names[:i]), list(sys.modules[".".join(names[:i])].__path__)) for i in (1, 2, 3)]
    return _BOOT.format(packages=packages, module=WORKER_MODULE, with_site=with_site)


@dataclass(frozen=True)
class WorkerHandle:
    """A worker as the reactor sees it: recorded in step.started before the attempt is submitted."""

    pid: int
    pgid: int
    host: str


class _Worker:
    """The pool's private state for one worker process."""

    def __init__(self, proc: subprocess.Popen | ForkedWorker, host: str) -> None:
        self.proc = proc
        self.handle = WorkerHandle(proc.pid, proc.pid, host)
        self.wfd = proc.stdin.fileno()  # type: ignore[union-attr]
        self.rfd = proc.stdout.fileno()  # type: ignore[union-attr]
        self.buf = bytearray()
        self.spawned_at = time.monotonic()
        self.dead = False
        self.current: AttemptSpec | None = None
        self.python_deadline: float | None = None  # only while a python function runs in the worker
        self.in_function = False
        self.kill_reason: FailureReason | None = None
        self.submitted_at = 0.0
        self.deadline: float | None = None  # of the whole attempt, to name a late death "timeout"


class WorkerPool:
    """`size` long-lived workers; results of submitted attempts arrive on the `results` queue."""

    def __init__(
        self,
        size: int,
        results: queue.SimpleQueue[AttemptResult],
        python_tasks: bool = True,
        fork: bool = False,
    ) -> None:
        """`fork`: the caller starts the pool while it is the process's only thread, at the start of
        a command, and its workers may be forked from it (forking.py) rather than spawned."""
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.results = results
        self._boot = _boot_code(python_tasks)
        self._python_tasks = python_tasks
        self._fork = fork
        self.host = os.uname().nodename
        self._lock = threading.Lock()
        self._idle_changed = threading.Condition(self._lock)
        self._workers: list[_Worker] = []
        self._by_pid: dict[int, _Worker] = {}
        self._inflight: dict[tuple[str, str, int], _Worker] = {}
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._closing = False
        self._startup_failures = 0
        self._broken: str | None = None  # why dead workers are no longer replaced
        self._reader: threading.Thread | None = None
        self._recoveries: list[threading.Thread] = []

    # -- life cycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the workers (without waiting for their interpreters) and the reader thread; idempotent."""
        if self._reader is not None:
            return  # started early by the caller, to overlap the workers' start-up with its own
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full wake-up pipe already means "wake up"
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        with self._lock:
            for _ in range(self.size):
                self._spawn()
        self._reader = threading.Thread(target=self._read_loop, name="stepledger-pool-reader", daemon=True)
        self._reader.start()

    def _spawn(self) -> _Worker:
        """Start one worker process (lock held): forked if the caller allows it and `can_fork` says
        this process may now (one thread, small), else spawned."""
        proc: subprocess.Popen | ForkedWorker
        if self._fork and can_fork():
            proc = fork_worker(f"{WORKER_MODULE}:main", self._python_tasks)
        else:
            proc = self._spawn_interpreter()
        worker = _Worker(proc, self.host)
        self._workers.append(worker)
        self._by_pid[proc.pid] = worker
        self._selector.register(worker.rfd, selectors.EVENT_READ, worker)
        return worker

    def _spawn_interpreter(self) -> subprocess.Popen:
        """A worker in an interpreter of its own (see _BOOT)."""
        return subprocess.Popen(
            # -P: the orchestrator's cwd is not put on sys.path, so nothing there can shadow our
            # package; a python task's own workdir is added for its import.
            [sys.executable, "-S", "-P", "-c", self._boot],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            # Its own group: a terminal's Ctrl-C reaches only the orchestrator, which then kills
            # attempts deliberately, and the worker outlives a kill -9 of the orchestrator.
            process_group=0,
            env=_worker_env(),
        )

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"x")

    def shutdown(self, kill_running: bool = False, reason: FailureReason = "interrupted") -> None:
        """Stop the pool: kill running attempts (their `reason` results arrive first) or wait for them."""
        with self._lock:
            if self._closing:
                return  # already shut down (the reactor's `finally` may call it a second time)
            self._closing = True
            running = list(self._inflight)
        if kill_running:
            for key in running:
                self.cancel(*key, reason=reason)
        with self._lock:
            if kill_running and not self._idle_changed.wait_for(lambda: not self._inflight, SHUTDOWN_GRACE):
                # A worker did not answer its cancel in time: kill it; its recovery reports the attempt.
                for worker in self._inflight.values():
                    self._kill_worker(worker)
            while self._inflight:
                self._idle_changed.wait()
            for worker in self._workers:
                if not worker.dead:
                    worker.proc.stdin.close()  # type: ignore[union-attr]  # end-of-file: the worker exits
        # The reader sees each worker's end-of-file as it exits, reaps it, and returns once none is
        # left: waiting on it wakes at the last exit (a timed wait per worker polls and oversleeps).
        self._wake()
        if self._reader is not None:
            self._reader.join(timeout=SHUTDOWN_GRACE)
            if self._reader.is_alive():  # a worker did not leave in time: killed, the reader reaps it
                with self._lock:
                    stuck = list(self._workers)
                for worker in stuck:
                    self._kill_worker(worker)
                self._reader.join(timeout=5)
        for thread in self._recoveries:
            thread.join(timeout=10)
        for worker in self._workers:
            if worker.proc.stdout is not None:
                worker.proc.stdout.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._selector.close()

    # -- the reactor's calls ---------------------------------------------------------------------

    def idle_worker(self, exclude: Collection[int] = ()) -> WorkerHandle | None:
        """A worker with nothing to do whose pid is not in `exclude`, or None if all are busy.

        The reactor picks several workers in one tick before it submits to any of them (the
        starts are committed first), so it passes the pids it has already picked.
        """
        with self._lock:
            for worker in self._workers:
                if worker.current is None and not worker.dead and worker.handle.pid not in exclude:
                    return worker.handle
            if not self._workers and self._broken:
                # Better an error than a reactor waiting forever for a worker.
                raise RuntimeError(f"the worker pool has no workers left: {self._broken}")
        return None

    def busy_count(self) -> int:
        """How many submitted attempts have not reported their result yet."""
        return len(self._inflight)

    def abandon(self) -> None:
        """Nothing: this pool's attempts are stopped by `shutdown` (dispatcher.py)."""

    def enqueue_along(
        self, dispatch: Sequence[tuple[Any, AttemptSpec]], adjust: Callable[[AttemptSpec], AttemptSpec]
    ) -> None:
        """Nothing: a local attempt is sent down its worker's pipe in `submit` (dispatcher.py)."""
        return None

    def submit(self, worker: WorkerHandle, spec: AttemptSpec) -> None:
        """Send `spec` to the idle `worker`; its result arrives on the results queue."""
        key = (spec.run_id, spec.step_id, spec.attempt)
        with self._lock:
            if self._closing:
                raise RuntimeError("the worker pool is shutting down")
            w = self._by_pid.get(worker.pid)
            if w is not None and w.current is not None:
                raise RuntimeError(f"worker {worker.pid} is busy with {w.current.step_id}")
            if key in self._inflight:
                raise RuntimeError(f"attempt {spec.step_id}.{spec.attempt} is already running")
            if w is None or w.dead:
                # It died after idle_worker() returned it: the attempt never started anywhere.
                lost = synthesise_result(spec, "lost_worker", worker.pid, "worker died before the attempt")
                self.results.put(lost)
                return
            w.current = spec
            w.submitted_at = time.time()
            w.deadline = time.monotonic() + spec.timeout if spec.timeout else None
            w.kill_reason = None
            w.in_function = spec.tool == "python"
            w.python_deadline = time.monotonic() + spec.timeout if w.in_function and spec.timeout else None
            self._inflight[key] = w
            # On a broken pipe the reader sees the worker's end-of-file and reports lost_worker.
            with contextlib.suppress(OSError):
                os.write(w.wfd, frame(("run", spec.to_dict())))
        if w.python_deadline is not None:
            self._wake()  # the reader's select timeout must now cover this deadline

    def cancel(self, run_id: str, step_id: str, attempt: int, reason: FailureReason = "cancelled") -> None:
        """Kill the attempt's process groups; its result arrives as failed with `reason`."""
        with self._lock:
            w = self._inflight.get((run_id, step_id, attempt))
            if w is None:
                return  # finished already (its real result is on the queue) or never submitted
            if w.kill_reason is None:
                w.kill_reason = reason
            if w.dead:
                return  # its recovery thread reports it, with this reason if nothing came first
            if w.in_function:
                # A python function cannot be stopped in place: kill the worker and replace it.
                self._kill_worker(w)
                return
            try:
                os.write(w.wfd, frame(("cancel", (run_id, step_id, attempt), reason)))
            except OSError:
                self._kill_worker(w)

    def _kill_worker(self, w: _Worker) -> None:
        with contextlib.suppress(OSError):
            os.killpg(w.handle.pgid, signal.SIGKILL)

    # -- the reader thread ------------------------------------------------------------------------

    def _read_loop(self) -> None:
        """Read every worker's messages; handle deaths and python deadlines."""
        selector = self._selector
        while True:
            with self._lock:
                if self._closing and all(w.dead for w in self._workers):
                    return
                deadlines = [w.python_deadline for w in self._workers if w.python_deadline is not None]
            timeout = None
            if deadlines:
                timeout = max(0.0, min(deadlines) - time.monotonic())
            for key, _mask in selector.select(timeout):
                worker = key.data
                if worker is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                try:
                    data = os.read(worker.rfd, 1 << 18)
                    if data:
                        worker.buf += data
                        self._parse(worker)
                    else:
                        self._on_exit(worker)
                except Exception:
                    # This thread must not die (the reactor would wait forever): a worker that
                    # sent something unreadable is killed, and its end-of-file recovers the attempt.
                    traceback.print_exc()
                    self._kill_worker(worker)
            if deadlines:
                now = time.monotonic()
                with self._lock:
                    for w in self._workers:
                        if w.python_deadline is not None and w.python_deadline <= now and not w.dead:
                            w.python_deadline = None
                            w.kill_reason = w.kill_reason or "timeout"
                            self._kill_worker(w)

    def _parse(self, worker: _Worker) -> None:
        """Handle every complete message in the worker's buffer."""
        buf = worker.buf
        offset = 0
        size = HEADER.size
        while len(buf) - offset >= size:
            (length,) = HEADER.unpack_from(buf, offset)
            end = offset + size + length
            if len(buf) < end:
                break
            msg = pickle.loads(bytes(buf[offset + size : end]))
            offset = end
            if msg[0] == "result":
                self._deliver(worker, AttemptResult(**msg[1]))
            elif msg[0] == "spawned":
                with self._lock:
                    # The python function has returned; the worker itself enforces the deadline now.
                    worker.in_function = False
                    worker.python_deadline = None
        del buf[:offset]

    def _deliver(self, worker: _Worker | None, result: AttemptResult) -> None:
        """Mark the attempt finished, then hand its result over (so its worker is idle by then)."""
        with self._lock:
            self._inflight.pop((result.run_id, result.step_id, result.attempt), None)
            if worker is not None:
                worker.current = None
                worker.python_deadline = None
                worker.in_function = False
            self._idle_changed.notify_all()
        self.results.put(result)

    def _on_exit(self, worker: _Worker) -> None:
        """The worker's pipe closed: it died (or was told to stop). Replace it; recover its attempt."""
        self._selector.unregister(worker.rfd)
        with self._lock:
            worker.dead = True
            worker.proc.stdin.close()  # type: ignore[union-attr]
            self._by_pid.pop(worker.handle.pid, None)
            self._workers.remove(worker)
            spec = worker.current
            quick_death = spec is None and time.monotonic() - worker.spawned_at < 1.0
            self._startup_failures = self._startup_failures + 1 if quick_death else 0
            # The replacement joins in the same step as the dead worker leaves: the pool never
            # looks empty, so a reactor never waits for a worker that nothing would announce.
            if not self._closing:
                if self._startup_failures >= STARTUP_FAILURES:
                    self._broken = "workers keep dying at start-up (their errors are on stderr)"
                else:
                    try:
                        self._spawn()
                    except OSError as exc:
                        self._broken = f"cannot start a worker: {exc}"
                if self._broken:
                    print(f"stepledger: {self._broken}", file=sys.stderr)
        if spec is None:
            worker.proc.wait()
            worker.proc.stdout.close()  # type: ignore[union-attr]
        else:
            thread = threading.Thread(target=self._recover, args=(worker, spec), name="stepledger-recover")
            self._recoveries.append(thread)
            thread.start()

    def _recover(self, worker: _Worker, spec: AttemptSpec) -> None:
        """Settle a dead worker's attempt (this may take seconds), then report it."""
        self._deliver(worker, recover_attempt(worker, spec))
