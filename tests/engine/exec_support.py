"""Helpers for the execution-layer tests: specs, a started pool, fifos to await events, process checks."""

from __future__ import annotations

import os
import queue
import select
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from stepledger.engine.execution.pool import WorkerHandle, WorkerPool
from stepledger.engine.execution.spec import AttemptResult, AttemptSpec

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RESULT_TIMEOUT = 10.0  # a generous bound for a result that should arrive at once: failing beats hanging

# A started pool and its results queue, as `started_pool` yields them: `run_one(*pool, spec)`.
StartedPool = tuple[WorkerPool, queue.SimpleQueue[AttemptResult]]


def make_spec(
    workdir: Path, step_id: str = "s", tasks: tuple[str, ...] = ("true",), **kw: object
) -> AttemptSpec:
    """An AttemptSpec with test defaults: shell tool, run dir under workdir."""
    fields: dict = {
        "run_id": "r1",
        "step_id": step_id,
        "attempt": 1,
        "tool": "shell",
        "tasks": tasks,
        "acceptance_tests": (),
        "workdir": str(workdir),
        "env": {},
        "timeout": None,
        "files_scope": (),
        "run_dir": str(workdir / "run"),
    }
    fields.update(kw)
    return AttemptSpec(**fields)


@contextmanager
def started_pool(size: int = 2) -> Iterator[StartedPool]:
    """A started WorkerPool and its results queue; killed and shut down afterwards."""
    results: queue.SimpleQueue[AttemptResult] = queue.SimpleQueue()
    pool = WorkerPool(size, results)
    pool.start()
    try:
        yield pool, results
    finally:
        pool.shutdown(kill_running=True)


def an_idle_worker(pool: WorkerPool, exclude: Collection[int] = ()) -> WorkerHandle:
    """An idle worker of the pool whose pid is not in `exclude`, where the test counts on one."""
    worker = pool.idle_worker(exclude)
    assert worker is not None, "no idle worker"
    return worker


def run_one(pool: WorkerPool, results: queue.SimpleQueue[AttemptResult], spec: AttemptSpec) -> AttemptResult:
    """Submit one attempt to an idle worker and return its result."""
    pool.submit(an_idle_worker(pool), spec)
    return results.get(timeout=RESULT_TIMEOUT)


def make_fifo(path: Path) -> Path:
    """A named pipe: a task writes to it, the test's read returns at that moment (an event, not a poll)."""
    os.mkfifo(path)
    return path


def await_fifo(path: Path) -> str:
    """Block until a writer opened, wrote and closed the fifo; what it wrote."""
    with open(path) as f:
        return f.read()


def alive(pid: int) -> bool:
    """Whether pid is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] != b"Z"


def await_exit(pid: int, timeout: float = RESULT_TIMEOUT) -> bool:
    """Wait (on a pidfd, no polling) until pid exits, even if it is not our child."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready) or not alive(pid)
    finally:
        os.close(fd)
