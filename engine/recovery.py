"""What a new reactor does with steps the log says are running, though their reactor is gone.

For each such attempt, the attempt's own files say what became of it:
- its lock is still held: it is alive (it outlived its reactor). It is never started a second
  time; a thread waits on the lock (an event, not a poll) and feeds its result to the reactor;
- its result file exists: it finished after its reactor died; the result is recorded, so no work
  is thrown away and the step does not run again;
- neither: it died with its reactor; it is recorded as failed (*interrupted*) and the retry policy
  starts it again — an interruption never counts against the step's circuit breaker.
A result of an attempt that is no longer current is refused by the store: the step's stream has
moved past the version that attempt could append at.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from . import faults
from .execution.recovery import probe_attempt, read_result, wait_for_attempt
from .execution.spec import AttemptResult

if TYPE_CHECKING:
    from .reactor import Reactor


def interrupted_result(run_id: str, step_id: str, attempt: int, started_at: float) -> AttemptResult:
    """The result recorded for an attempt that died with its reactor."""
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


def recover_running_steps(reactor: Reactor, known: set[tuple[str, int]] | None = None) -> None:
    """Resolve every step recorded as running whose attempt is not one of `known` (ours).

    At start, nothing is ours; after the log was re-read (another writer appended first), the
    attempts this reactor dispatched or already recovers are known and left alone.
    """
    run = reactor.run
    run_dir = str(reactor.run_dir)
    if known is None and any(lifecycle.state == "running" for lifecycle in reactor.life.values()):
        faults.reached("in_resume")
    for sid, lifecycle in reactor.life.items():
        if lifecycle.state != "running":
            continue
        state = run.steps[sid]
        attempt = state.attempt
        if known is not None and (sid, attempt) in known:
            continue
        status = probe_attempt(run_dir, sid, attempt)
        reactor.recovered.add((sid, attempt))
        if status == "finished":
            result = read_result(run_dir, sid, attempt)
            if result is not None:
                reactor.results.put(result)
                continue
            status = "gone"
        if status == "running":
            reactor.reporter.note(
                f"[{sid}] attempt {attempt} is still running after a restart: waiting for it"
            )
            threading.Thread(
                target=_await_orphan,
                args=(reactor, sid, attempt, state.started_at or time.time()),
                name=f"await-{sid}",
                daemon=True,
            ).start()
            continue
        reactor.results.put(interrupted_result(run.run_id, sid, attempt, state.started_at or time.time()))


def _await_orphan(reactor: Reactor, sid: str, attempt: int, started_at: float) -> None:
    run_dir = str(reactor.run_dir)
    wait_for_attempt(run_dir, sid, attempt, timeout=None)
    result = read_result(run_dir, sid, attempt)
    reactor.results.put(result or interrupted_result(reactor.run.run_id, sid, attempt, started_at))
