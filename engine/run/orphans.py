"""What a new reactor does with attempts the log says are running, though their reactor is gone.

Each such attempt is settled under its lock, by the claim rule (execution/claim.py):
- its lock is held: something of it is alive (it outlived its reactor). It is never started a
  second time; a thread waits on the lock (an event, not a poll) and feeds its result on;
- its result file exists: it finished after its reactor died; the result is recorded, so no work
  is thrown away and the step does not run again (strays still holding the lock are killed);
- neither: it died with its reactor, or its job was never claimed (still unread in a worker's
  pipe, perhaps). Its verdict *interrupted* is written as its result file — from then on no worker
  can claim it — and recorded; the retry policy starts it again, and an interruption never counts
  against the step's circuit breaker.
A result of an attempt that is no longer current is refused by the store: the step's stream has
moved past the version that attempt could append at.

The reactor (steps) and the saga (compensations) settle their orphans with the same function.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..execution import files
from ..execution.dispatcher import Dispatcher
from ..execution.recovery import interrupted_result, kill_attempt, settle, wait_for_attempt
from ..execution.spec import AttemptResult
from . import kill_points

if TYPE_CHECKING:
    from stepledger.events.types import FailureReason

    from .context import RunContext

__all__ = ["interrupted_result", "recover_running_steps", "settle_orphan"]

STRAY_CHECK = 1.0  # seconds between looks for a result file while strays of a finished attempt hold its lock


def stop_attempt(
    pool: Dispatcher,
    run_dir: str,
    run_id: str,
    sid: str,
    attempt: int,
    *,
    orphan: bool,
    reason: FailureReason,
) -> None:
    """Stop one running attempt: through the pool, or by its lock file when it is an orphan.

    An orphan outlived the orchestrator that started it and is in no pool of ours; its result
    arrives through `settle_orphan`'s waiting thread. The reactor and the rollback both stop
    attempts this way.
    """
    if orphan:
        kill_attempt(run_dir, sid, attempt)
    else:
        pool.cancel(run_id, sid, attempt, reason=reason)


def settle_orphan(
    run_dir: str,
    run_id: str,
    sid: str,
    attempt: int,
    started_at: float,
    deliver: Callable[[AttemptResult], None],
) -> bool:
    """Deliver the verdict on an orphaned attempt now, or once it ends; False if it is still alive."""
    result = settle(run_dir, run_id, sid, attempt, started_at)
    if result is not None:
        deliver(result)
        return True
    threading.Thread(
        target=_await_orphan,
        args=(run_dir, run_id, sid, attempt, started_at, deliver),
        name=f"await-{sid}.{attempt}",
        daemon=True,
    ).start()
    return False


def _await_orphan(
    run_dir: str,
    run_id: str,
    sid: str,
    attempt: int,
    started_at: float,
    deliver: Callable[[AttemptResult], None],
) -> None:
    result_file = files.result_path(run_dir, sid, attempt)
    while True:
        released = threading.Event()
        threading.Thread(
            target=_set_when_free,
            args=(run_dir, sid, attempt, released),
            name=f"lock-{sid}.{attempt}",
            daemon=True,
        ).start()
        # The lock's release is the event; the result file is looked for too, because processes
        # that escaped a dead worker may hold the lock long after the attempt finished.
        while not released.wait(STRAY_CHECK) and not os.path.exists(result_file):
            pass
        result = settle(run_dir, run_id, sid, attempt, started_at)
        if result is not None:
            deliver(result)
            return


def _set_when_free(run_dir: str, sid: str, attempt: int, released: threading.Event) -> None:
    wait_for_attempt(run_dir, sid, attempt, timeout=None)
    released.set()


def recover_running_steps(reactor: RunContext, known: set[tuple[str, int]] | None = None) -> None:
    """Resolve every step recorded as running whose attempt is not one of `known` (ours).

    At start, nothing is ours; after the log was re-read (another writer appended first), the
    attempts this reactor dispatched or already recovers are known and left alone.
    """
    run = reactor.run
    run_dir = str(reactor.run_dir)
    if known is None and any(lifecycle.state == "running" for lifecycle in reactor.life.values()):
        kill_points.reached("in_resume")
    for sid, lifecycle in reactor.life.items():
        if lifecycle.state != "running":
            continue
        state = run.steps[sid]
        attempt = state.attempt
        if known is not None and (sid, attempt) in known:
            continue
        reactor.recovered.add((sid, attempt))
        started_at = state.started_at or time.time()
        if not settle_orphan(run_dir, run.run_id, sid, attempt, started_at, reactor.results.put):
            reactor.reporter.note(
                f"[{sid}] attempt {attempt} is still running after a restart: waiting for it"
            )
