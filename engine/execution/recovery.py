"""What `resume` needs after a crash: is an attempt still running, did it finish, and how to stop it.

`settle` is recovery's side of the claim rule (claim.py): it decides an attempt only under the
attempt's exclusive lock, and fences an unclaimed attempt with its verdict before letting go.

An attempt's lock file (`<step>.<attempt>.lock`) is flock'ed by its worker and inherited by every
process the attempt starts, so "someone holds the lock" means "some process of the attempt lives".
Its JSON content names the host, the worker and each process group with its start time, so a kill
never hits a process that merely reuses a recorded pid.

A worker that dies before it reports leaves its attempt to `recover_attempt`: the pool's reader
thread only notices that the pipe closed, and the slow, file-based clean-up after the death
happens here on a thread of its own: kill what is left, wait until the attempt's lock is free,
then keep the result the worker wrote or make a failed one (`synthesise_result`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Literal

from stepledger.engine.execution import files
from stepledger.engine.execution.spec import AttemptResult, AttemptSpec

Probe = Literal["running", "finished", "gone"]


def lock_is_held(path: str) -> bool | None:
    """True if some process holds the lock at `path`, False if not, None if there is no lock file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our shared lock, if we got it
    return False


def probe_attempt(run_dir: str, step_id: str, attempt: int) -> Probe:
    """ "running" if a process of the attempt holds its lock, else "finished" with a result, else "gone"."""
    if lock_is_held(files.lock_path(run_dir, step_id, attempt)):
        return "running"
    if os.path.exists(files.result_path(run_dir, step_id, attempt)):
        return "finished"
    return "gone"


def read_result(run_dir: str, step_id: str, attempt: int) -> AttemptResult | None:
    """The attempt's recorded result, or None if it has none (or it cannot be parsed)."""
    try:
        with open(files.result_path(run_dir, step_id, attempt), encoding="utf-8") as f:
            return AttemptResult.from_json(f.read())
    except (OSError, ValueError, TypeError):
        return None


def interrupted_result(run_id: str, step_id: str, attempt: int, started_at: float) -> AttemptResult:
    """The verdict on an attempt that died with its reactor, or was never claimed before it died."""
    return AttemptResult(
        run_id=run_id,
        step_id=step_id,
        attempt=attempt,
        passed=False,
        reason="interrupted",
        exit_code=None,
        error_signature="",
        output_excerpt="the orchestrator stopped during this attempt",
        started_at=started_at,
        finished_at=max(started_at, time.time()),
    )


def settle(run_dir: str, run_id: str, step_id: str, attempt: int, started_at: float) -> AttemptResult | None:
    """The verdict on an attempt whose reactor is gone, or None while a process of it is alive.

    Under the attempt's exclusive lock: its result if it has one, else *interrupted*, written as
    its result file first so that no worker can claim it afterwards (the fence of claim.py). A
    lock still held although the result is on file means that only strays of a finished attempt
    are left (its worker died before they did): they are killed and the result stands.
    """
    path = files.lock_path(run_dir, step_id, attempt)
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            result = read_result(run_dir, step_id, attempt)
            if result is not None:
                worker = read_lock(run_dir, step_id, attempt).get("worker_pid")
                for pid in lock_holders(path):
                    if pid != worker:  # the worker itself lets go once its result file is written
                        _signal_group_or_process(pid, signal.SIGKILL)
            return result
        result = read_result(run_dir, step_id, attempt)
        if result is None:
            result = interrupted_result(run_id, step_id, attempt, started_at)
            files.write_atomic(files.result_path(run_dir, step_id, attempt), result.to_json().encode())
        return result
    finally:
        os.close(fd)  # releases the lock


def wait_for_attempt(run_dir: str, step_id: str, attempt: int, timeout: float | None = None) -> bool:
    """Block until no process of the attempt is alive; False if `timeout` seconds passed first."""
    try:
        fd = os.open(files.lock_path(run_dir, step_id, attempt), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    if timeout is None:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)  # blocks until the last holder exits
        finally:
            os.close(fd)
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        if timeout <= 0:
            os.close(fd)
            return False
    else:
        os.close(fd)  # not running: no thread needed
        return True
    # flock has no timeout: a helper thread blocks on it and signals an event the caller waits on.
    # If the caller gives up, the helper stays blocked until the attempt ends, then closes the fd.
    released = threading.Event()

    def block() -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        finally:
            os.close(fd)
            released.set()

    threading.Thread(target=block, name=f"wait-{step_id}.{attempt}", daemon=True).start()
    return released.wait(timeout)


def read_lock(run_dir: str, step_id: str, attempt: int) -> dict:
    """The JSON content of the attempt's lock file ({} if missing or not yet written)."""
    try:
        with open(files.lock_path(run_dir, step_id, attempt), "rb") as f:
            data = json.loads(f.read() or b"{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _same_process(pid: int, start: int | None) -> bool:
    """Whether `pid` is still the process recorded with start time `start` (or has vanished)."""
    now = files.proc_start_time(pid)
    # Gone as a process: the number cannot be reused while its group still has members, so
    # signalling the group reaches only survivors of the recorded group (or nobody).
    return now is None or start is None or now == start


def lock_holders(path: str) -> list[int]:
    """Pids of processes holding the flock of the lock file at `path` (found via /proc/*/fdinfo)."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    inode = f":{st.st_ino} "
    holders = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.stat(f"{fd_dir}/{fd}")
                if target.st_ino != st.st_ino or target.st_dev != st.st_dev:
                    continue
                with open(f"/proc/{entry}/fdinfo/{fd}") as f:
                    info = f.read()
            except OSError:
                continue
            # Only an fd whose open file owns the flock is part of the attempt; a prober's own
            # open of the same file shows no "lock:" line.
            lines = info.splitlines()
            if any(line.startswith("lock:") and "FLOCK" in line and inode in line for line in lines):
                holders.append(int(entry))
                break
    return holders


def kill_attempt(run_dir: str, step_id: str, attempt: int, sig: int = signal.SIGKILL) -> list[int]:
    """Kill an attempt whose pool is gone (its worker first, then its process groups); pids signalled.

    For an attempt of a live pool use WorkerPool.cancel, which reports it with a reason.
    """
    lock = read_lock(run_dir, step_id, attempt)
    if lock.get("host") not in (None, os.uname().nodename):
        raise RuntimeError(f"attempt {step_id}.{attempt} runs on host {lock['host']}: kill it there")
    path = files.lock_path(run_dir, step_id, attempt)
    if not lock and lock_is_held(path):
        # Nothing recorded yet: the attempt runs inside its worker (a python task), the lock's
        # only holder. A worker that has moved on no longer holds this lock: it is never hit.
        return kill_lock_holders(run_dir, step_id, attempt, sig)
    signalled = []
    worker, worker_start = lock.get("worker_pid"), lock.get("worker_start")
    # The worker goes first, so it cannot report its killed child as an ordinary failure; the
    # recorded start time proves the pid was not reused.
    if worker and worker_start and files.proc_start_time(worker) == worker_start and lock_is_held(path):
        signalled += _signal_group_or_process(worker, sig)
    for pgid, start in lock.get("pgids", []):
        if _same_process(pgid, start):
            try:
                os.killpg(pgid, sig)
                signalled.append(pgid)
            except OSError:
                pass
    return signalled


def _signal_group_or_process(pid: int, sig: int) -> list[int]:
    """Signal pid's whole group if it leads one (a worker: its python task's subprocesses too)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except OSError:
        return []
    return [pid]


def kill_lock_holders(run_dir: str, step_id: str, attempt: int, sig: int = signal.SIGKILL) -> list[int]:
    """Last resort: signal every process that still holds the attempt's lock (escaped its group)."""
    signalled = []
    for pid in lock_holders(files.lock_path(run_dir, step_id, attempt)):
        signalled += _signal_group_or_process(pid, sig)
    return signalled


# --- a worker that died before it reported ------------------------------------------------------

if TYPE_CHECKING:
    from typing import IO, Protocol

    from stepledger.events.types import FailureReason

    # Read-only members (properties), so that the pool's record may hold a narrower type: a
    # protocol's plain attribute would have to match exactly.
    class _Process(Protocol):
        """A worker process: a subprocess.Popen or a forked one (forking.ForkedWorker)."""

        @property
        def stdout(self) -> IO[bytes] | None: ...
        @property
        def returncode(self) -> int | None: ...
        def wait(self) -> int: ...

    class _Handle(Protocol):
        @property
        def pid(self) -> int: ...

    class _Worker(Protocol):
        """What the settling of a dead worker's attempt reads of the pool's record of it (pool.py)."""

        @property
        def proc(self) -> _Process: ...
        @property
        def handle(self) -> _Handle: ...
        @property
        def kill_reason(self) -> FailureReason | None: ...
        @property
        def deadline(self) -> float | None: ...
        @property
        def submitted_at(self) -> float: ...


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
    kill_attempt(run_dir, step, attempt)
    # Two attempts of a step must never overlap: the result is reported only once every
    # process that inherited the attempt's lock has exited.
    if not wait_for_attempt(run_dir, step, attempt, LOST_WORKER_LOCK_WAIT):
        kill_lock_holders(run_dir, step, attempt)
        wait_for_attempt(run_dir, step, attempt, LOST_WORKER_LOCK_WAIT)
    # The worker may have written its result and died before reporting it: that result stands.
    result = read_result(run_dir, step, attempt)
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
    spec: AttemptSpec, reason: FailureReason, worker_pid: int, detail: str, started_at: float | None = None
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
