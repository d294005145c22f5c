"""What the signals a terminal sends do to a run being driven.

- The first Ctrl-C (SIGINT) drains: no new attempt starts, the running ones finish and are recorded
  as they end; then the run stops *interrupted*, for `resume` to go on with what was not started.
- A second Ctrl-C (or SIGTERM, which a service manager sends) stops now: the running attempts are
  killed and recorded interrupted (resume runs them again). A third is Python's KeyboardInterrupt.
- SIGHUP (the terminal or the ssh session closed) changes nothing for the run: it carries on, its
  lines go on in orchestrator.log (the front end drops what it can no longer print).
- SIGUSR1 says "look at the log" (a cancel or an operator's decision).

The drain needs nothing of the reactor but its pool and its ledger: `DrainingDispatcher` lends no
idle worker while draining, and once nothing is running it hands the reactor, waiting for a result,
a stop. The drain is a fact of the log too (`run.drain_requested`: who, and when), queued in the
reactor's ledger at its next wait — on its thread, never in the signal handler, which could
interrupt a write — and committed by the tick that wait ends. A driver that takes a run over
(a fleet's worker, after its `run` process died) finds a drain still pending there (`pending_drain`)
and drives the run already draining; a typed `resume`, someone's decision to go on, ends it.
"""

from __future__ import annotations

import queue
import signal
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from stepledger.events import (
    FailureReason,
    RecordedEvent,
    RunDrainRequested,
    RunFinished,
    RunResumed,
    RunStarted,
    run_stream,
)

from ..run.reactor import WAKE

if TYPE_CHECKING:
    from ..execution.dispatcher import Dispatcher, WorkerSlot
    from ..execution.spec import AttemptSpec
    from ..run.reactor import Reactor

CTRL_C = "Ctrl-C"  # the reason a drain asked by SIGINT is recorded with
# Run events after which an earlier drain is no longer pending: the run was (re)started by someone,
# or it ended.
_DRAIN_ENDS = frozenset({RunStarted.type_name, RunResumed.type_name, RunFinished.type_name})


def pending_drain(run_events: Iterable[RecordedEvent]) -> RecordedEvent | None:
    """The `run.drain_requested` still pending among a run's own events (its stream, in order):
    one recorded after the run's last start, resume or end; None if there is none."""
    pending = None
    for event in run_events:
        if event.type == RunDrainRequested.type_name:
            pending = event
        elif event.type in _DRAIN_ENDS:
            pending = None
    return pending


class DrainingDispatcher:
    """A dispatcher that can be told to start nothing new while its running attempts finish."""

    def __init__(self, pool: Dispatcher, note: Callable[[str], None], by: str = "") -> None:
        self.pool = pool
        self.note = note
        self.draining = False
        self.by = by  # who a drain asked here is recorded as (the user this process runs as)
        self.drain_recorded = False  # the log holds the drain (this driver's, or one it took over)
        self._drain_event: RunDrainRequested | None = None  # queued in the reactor's ledger
        # Notes from signal handlers, said on the reactor's thread: a handler that wrote to a file
        # the interrupted code was writing to would fail (a reentrant call into the same buffer).
        self.notes: list[str] = []
        self.reactor: Reactor | None = None  # set once the reactor exists (it is built on this pool)
        # Typed as what the reactor expects: it calls get, get_nowait and put, which this offers.
        self.results = cast("queue.SimpleQueue[Any]", _DrainingQueue(pool.results, self))

    def start(self) -> None:
        self.pool.start()

    def shutdown(self, kill_running: bool = False, reason: FailureReason = "interrupted") -> None:
        self.pool.shutdown(kill_running=kill_running, reason=reason)

    def idle_worker(self, exclude: Collection[int] = ()) -> WorkerSlot | None:
        return None if self.draining else self.pool.idle_worker(exclude)

    def enqueue_along(
        self, dispatch: Sequence[tuple[Any, AttemptSpec]], adjust: Callable[[AttemptSpec], AttemptSpec]
    ) -> Callable[[Any], None] | None:
        return self.pool.enqueue_along(dispatch, adjust)

    def submit(self, worker: Any, spec: AttemptSpec) -> None:
        self.pool.submit(worker, spec)

    def abandon(self) -> None:
        self.pool.abandon()

    def cancel(self, run_id: str, step_id: str, attempt: int, reason: FailureReason = "cancelled") -> None:
        self.pool.cancel(run_id, step_id, attempt, reason=reason)

    def say(self, text: str) -> None:
        """Say `text` through the run's reporter, from the reactor's thread, at its next wait."""
        self.notes.append(text)

    def say_pending(self) -> None:
        while self.notes:
            self.note(self.notes.pop(0))

    def running(self) -> int:
        """How many attempts the reactor has running now."""
        return len(self.reactor.capacity.running) if self.reactor is not None else 0

    def drain_unrecorded(self) -> bool:
        """Whether a drain's event still waits for a commit; queued in the reactor's ledger if it is
        not there (again, if the batch that held it lost a race to another writer and was dropped).
        Called on the reactor's thread."""
        reactor = self.reactor
        if not self.draining or self.drain_recorded or reactor is None:
            return False
        queued = self._drain_event
        if queued is not None:
            if any(event is queued for _, event in reactor.ledger.batch):
                return True
            # Out of the batch: committed, or dropped with it. The run's own stream says which.
            run_events = reactor.ledger.store.read_stream(run_stream(reactor.run.run_id))
            if pending_drain(run_events) is not None:
                self.drain_recorded = True
                return False
        self._drain_event = RunDrainRequested(by=self.by, reason=CTRL_C)
        reactor.ledger.record(None, self._drain_event)
        return True

    def drained(self) -> bool:
        """Whether a drain is on and nothing is left running: time to stop."""
        return self.draining and self.reactor is not None and not self.reactor.capacity.running

    def __getattr__(self, name: str) -> Any:  # what else a pool offers (busy_count, ...)
        return getattr(self.pool, name)


class _DrainingQueue:
    """The pool's result queue, as the reactor waits on it: a drain not yet in the log ends the wait
    (the tick that follows commits it), and a finished drain ends it with a stop."""

    def __init__(self, inner: queue.SimpleQueue[Any], owner: DrainingDispatcher) -> None:
        self.inner = inner
        self.owner = owner

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        self.owner.say_pending()
        if self.owner.drain_unrecorded():
            return WAKE
        reactor = self.owner.reactor
        if block and reactor is not None and self.owner.drained():
            # Only the reactor waits here, on its own thread: it reads the flag right after.
            reactor.stop_requested = True
            return WAKE
        return self.inner.get(block, timeout)

    def get_nowait(self) -> Any:
        return self.inner.get_nowait()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.inner.put(item, block, timeout)

    def put_nowait(self, item: Any) -> None:
        self.inner.put_nowait(item)

    def empty(self) -> bool:
        return self.inner.empty()

    def qsize(self) -> int:
        return self.inner.qsize()


class Stopping:
    """The run's answer to Ctrl-C, SIGTERM and SIGHUP (see the module's words)."""

    def __init__(self, reactor: Reactor, pool: DrainingDispatcher) -> None:
        self.reactor = reactor
        self.pool = pool
        self.rolling_back = False  # a rollback is not drained: Ctrl-C stops it as SIGTERM does

    def interrupt(self, signum: int, frame: object) -> None:
        """Ctrl-C: drain the first time, stop the second, and let a third raise KeyboardInterrupt."""
        if self.pool.draining or self.rolling_back or self.reactor.stop_requested:
            self.stop(signum, frame)
            return
        self.pool.draining = True
        running = self.pool.running()
        steps = "step" if running == 1 else "steps"
        if running:
            self.pool.say(
                f"Ctrl-C: starting no new step; waiting for {running} running {steps} to finish "
                f"(Ctrl-C again stops {'it' if running == 1 else 'them'} now, to be rerun by resume)"
            )
        else:
            self.pool.say("Ctrl-C: starting no new step; nothing is running, so the run stops now")
        self.reactor.results.put(WAKE)

    def stop(self, signum: int, frame: object) -> None:
        """Stop now: running attempts are killed and recorded interrupted."""
        if signum == signal.SIGINT:
            running = self.pool.running()
            if running:
                steps = "step" if running == 1 else "steps"
                they = "it is" if running == 1 else "they are"
                self.pool.say(f"stopping {running} running {steps} now; {they} recorded interrupted")
            # Insisting once more falls back to Python's behaviour (KeyboardInterrupt).
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.reactor.stop_requested = True
        self.reactor.results.put(WAKE)

    def hang_up(self, signum: int, frame: object) -> None:
        """The terminal went away: the run carries on; its log keeps every line."""
        self.pool.say("the terminal was closed; the run carries on (its lines go on in orchestrator.log)")

    def wake(self, signum: int, frame: object) -> None:
        self.reactor.results.put(WAKE)

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The handlers, for as long as the run is driven (the previous ones restored after)."""
        handlers = {
            signal.SIGINT: self.interrupt,
            signal.SIGTERM: self.stop,
            signal.SIGHUP: self.hang_up,
            signal.SIGUSR1: self.wake,
        }
        previous = {s: signal.getsignal(s) for s in handlers}
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        try:
            yield
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)
