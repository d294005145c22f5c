"""The claim rule: an attempt is executed only after a worker has claimed it, and a claim is
possible only while the attempt is undecided and the pool that sent it is still there.

Both sides of the rule meet under one exclusive flock, the attempt's lock file:

- **the worker** (attempt.py), before it starts anything of the attempt, takes the lock and, under
  it, refuses the job if the attempt already has a verdict (its result file exists) or if the pool
  that sent it has hung up. Otherwise it writes its claim (who runs the attempt) into the lock
  and keeps the lock until the attempt's last process has exited and its result file is written;
- **recovery** (`recovery.settle`, in a reactor that took over the run after its first reactor
  died) takes the same lock without waiting. Held: the attempt was claimed and something of it is
  alive, so it is waited for. Free: the result file, if there is one, is the verdict; if there is
  none, recovery writes the verdict *interrupted* as the attempt's result file — the fence —
  before it lets go of the lock, and only then records it.

Whichever of the two gets the lock first, the other sees what it did: a claim holds the lock for
as long as any process of the attempt lives, so recovery cannot decide while it runs; a fence is
on disk before the lock is released, so a worker that reads a stale job later drops it. The
fence lives in the run directory, not in the lock folder (on tmpfs, removed at the end of the
run), so it outlasts the run and the lock file's own deletion.

Imported by the worker process: standard library only, and nothing that is slow to import.
"""

from __future__ import annotations

import fcntl
import os
import time

from stepledger.engine.execution import files

# Fault injection for the crash suite: seconds a worker waits between reading a job and claiming
# it — a worker that starts slowly or a loaded machine, with the job still unread when the
# reactor dies. Unset in production.
FAULT_CLAIM_DELAY = float(os.environ.get("STEPLEDGER_FAULT_CLAIM_DELAY") or 0)

# TEST ONLY: "1" switches the claim rule off (a worker runs whatever job it reads), so that the
# chaos command's tests can show it finds the duplicate execution this lets through. Never set it
# outside tests/chaos.
CLAIM_RULE_OFF_FOR_TESTS = os.environ.get("STEPLEDGER_TEST_ONLY_CLAIM_RULE_OFF") == "1"

LOCK_WAIT = 2.0  # seconds a claim waits for the lock: a recovery's fence or a prober holds it briefly


def take(path: str, wait: float = LOCK_WAIT) -> int | None:
    """Open the lock file at `path` and take its exclusive flock; the fd, or None if it stays held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    pause = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def refusal(run_dir: str, step_id: str, attempt: int, pool_gone: bool) -> str | None:
    """Why a worker holding the attempt's lock must not run it, or None if it may claim it."""
    if CLAIM_RULE_OFF_FOR_TESTS:
        return None
    if os.path.exists(files.result_path(run_dir, step_id, attempt)):
        return "the attempt was already settled (a recovery recorded it, or it ran before)"
    if pool_gone:
        return "the orchestrator that sent it is gone"
    return None
