"""The result of an attempt whose worker died or was killed before it could report one.

The pool's reader thread only notices that a worker's pipe closed; what happened to the attempt
is settled here, on a thread of its own, because it may wait seconds for the attempt's children
to exit. It lives apart from pool.py so that the pool reads as the life of its workers and its
messages, while this module holds the slow, file-based clean-up after a death: kill what is left,
wait until the attempt's lock is free, then keep the result the worker wrote or make a failed one.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import TYPE_CHECKING

from stepledger.engine.execution import files, recovery
from stepledger.engine.execution.spec import AttemptResult, AttemptSpec

if TYPE_CHECKING:
    import subprocess
    from typing import Protocol

    class _Handle(Protocol):
        pid: int

    class _Worker(Protocol):
        """What the settling of a dead worker's attempt reads of the pool's record of it (pool.py)."""

        proc: subprocess.Popen
        handle: _Handle
        kill_reason: str | None
        deadline: float | None
        submitted_at: float


LOST_WORKER_LOCK_WAIT = 5.0  # seconds to wait for killed children to exit before looking harder


def _run_dir(spec: AttemptSpec) -> str:
    return spec.run_dir or os.path.join(spec.workdir, ".stepledger", "runs", spec.run_id)


def recover_attempt(worker: _Worker, spec: AttemptSpec) -> AttemptResult:
    """Kill what is left of a dead worker's attempt, wait until it is gone, and return its result."""
    worker.proc.wait()
    worker.proc.stdout.close()  # type: ignore[union-attr]
    run_dir = _run_dir(spec)
    step, attempt = spec.step_id, spec.attempt
    # The lock file lists every group the worker started (it is written before the pool hears
    # of a child), with start times that guard against pids reused since the worker died.
    recovery.kill_attempt(run_dir, step, attempt)
    # Two attempts of a step must never overlap: the result is reported only once every
    # process that inherited the attempt's lock has exited.
    if not recovery.wait_for_attempt(run_dir, step, attempt, LOST_WORKER_LOCK_WAIT):
        recovery.kill_lock_holders(run_dir, step, attempt)
        recovery.wait_for_attempt(run_dir, step, attempt, LOST_WORKER_LOCK_WAIT)
    # The worker may have written its result and died before reporting it: that result stands.
    result = recovery.read_result(run_dir, step, attempt)
    if result is None:
        reason = worker.kill_reason or "lost_worker"
        if reason == "lost_worker" and worker.deadline is not None and time.monotonic() >= worker.deadline:
            reason = "timeout"  # the worker's own backstop alarm ended an overrunning function
        detail = {
            "lost_worker": f"worker {worker.handle.pid} died (exit status {worker.proc.returncode})",
            "timeout": f"timed out after {spec.timeout}s: worker {worker.handle.pid} killed and replaced",
        }.get(reason, f"{reason}: worker {worker.handle.pid} killed and replaced")
        result = synthesise_result(spec, reason, worker.handle.pid, detail, worker.submitted_at)
    return result


def synthesise_result(
    spec: AttemptSpec, reason: str, worker_pid: int, detail: str, started_at: float | None = None
) -> AttemptResult:
    """A failed result for an attempt whose worker could not report; also written to its files."""
    run_dir = _run_dir(spec)
    now = time.time()
    base = files.attempt_base(run_dir, spec.step_id, spec.attempt)
    line = f"stepledger: {detail}\n"
    try:
        os.makedirs(run_dir, mode=0o700, exist_ok=True)
        with open(base + ".log", "a", encoding="utf-8") as log:
            log.write(line)
        with open(base + ".log", "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 2048))
            tail = log.read().decode("utf-8", "replace")
    except OSError:
        tail = line
    result = AttemptResult(
        run_id=spec.run_id,
        step_id=spec.step_id,
        attempt=spec.attempt,
        passed=False,
        reason=reason,
        exit_code=None,
        error_signature=files.error_signature(reason, None, line),
        output_excerpt=tail,
        started_at=started_at or now,
        finished_at=now,
        acceptance=[],
        outputs={},
        worker_pid=worker_pid,
    )
    with contextlib.suppress(OSError):
        files.write_atomic(base + ".result.json", json.dumps(result.to_dict()).encode())
    return result
