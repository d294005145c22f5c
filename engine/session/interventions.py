"""Operator actions on a run from another terminal, each recorded as an event with who and why."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from stepledger.events import (
    Event,
    RecordedEvent,
    RunCancelRequested,
    RunFinished,
    StepFailed,
    StepMarkedPassed,
    StepPassed,
    StepRetryRequested,
    StepSkipped,
    StreamWrite,
    run_stream,
    step_stream,
)
from stepledger.events.state import RunState
from stepledger.store.errors import ConcurrencyError
from stepledger.store.port import EventStore

from ..errors import UserInputError
from ..execution.spec import AttemptResult
from ..run.lifecycle import STATES, StepLifecycle
from ..saga.log import read_rollback
from .liveness import live_lease, reactor_process
from .runs import load_run, user_name

KILL_WAIT_S = 10.0  # how long a killed attempt's processes may take to be gone

_VERBS = {"request_retry": "retry", "skip": "skip", "mark_passed": "mark passed"}
_DONE = {"request_retry": "will be retried", "skip": "skipped", "mark_passed": "marked passed"}


class IllegalStepAction(UserInputError):
    """The step's state does not allow this operator action; `stepledger status RUN` shows its state."""


@dataclass(frozen=True)
class OperatorAction:
    """What an operator action recorded, and whether a live orchestrator was woken to act on it."""

    run_id: str
    step_id: str
    message: str
    unblocked: tuple[str, ...] = ()  # steps that were blocked by this one and may run again
    woke_pid: int | None = None  # the live orchestrator told to re-read the log, if any


def append_to_run(store: EventStore, run_id: str, make: Callable[[RunState], list[Event]]) -> RunState:
    """Append the events `make` builds from the run's state, re-reading it if another writer was first."""
    for _ in range(20):
        run = load_run(store, run_id)
        events = make(run)
        try:
            store.append([StreamWrite(run_id, run_stream(run_id), run.version, events)])
            return run
        except ConcurrencyError:
            continue
    raise UserInputError(f"run {run_id} is too busy to take the action; try again")


def cancel_run(
    store: EventStore, run_id: str, reason: str = "", by: str | None = None, fleet_db: str | None = None
) -> str:
    """Record a cancel request and wake the run's orchestrator; return what happened, in words.

    `fleet_db`: the log's PostgreSQL URL, through which the attempts of a run on workers that
    nobody drives are stopped (on this machine there is nothing of theirs to kill)."""
    run = load_run(store, run_id)
    if run.status != "running":
        raise UserInputError(f"run {run_id} is {run.status}, not running: there is nothing to cancel")
    append_to_run(store, run_id, lambda _: [RunCancelRequested(by=by or user_name(), reason=reason)])
    pid = reactor_process(store, run_id)
    if pid is not None:
        os.kill(pid, signal.SIGUSR1)  # the reactor reads the log when woken, and stops its steps
        return f"cancel requested: the orchestrator (pid {pid}) is stopping run {run_id}"
    held = live_lease(store, run_id)
    if held is not None:
        # A live reactor elsewhere: its lease heartbeat sees the request in the log and stops the run.
        return f"cancel requested: the orchestrator (pid {held.pid} on {held.host}) is stopping run {run_id}"
    left = load_run(store, run_id)
    if left.options.get("worker_driven") and any(s.state == "running" for s in left.steps.values()):
        # Its attempts run on workers, out of this machine's reach: the worker that takes the run
        # over next asks them to stop, and ends the run cancelled (engine/fleet/driver.py).
        return f"cancel requested: the worker that drives run {run_id} next stops it"
    if left.options.get("on_workers") and fleet_db is not None:
        stopped = _stop_left_on_workers(store, left, fleet_db)
    else:
        stopped = _stop_left_running(store, left)

    def finish(now: RunState) -> list[Event]:
        # A worker may take a run driven by workers over at any moment: once one holds the lease
        # (its run.resumed makes the append above it retry), the run is its to end, and the
        # cancel recorded above stands for it (engine/fleet/driver.py).
        if now.options.get("worker_driven") and (held := live_lease(store, run_id)) is not None:
            raise _TakenOver(held.pid, held.host)
        return [RunFinished(outcome="cancelled")]

    try:
        append_to_run(store, run_id, finish)
    except _TakenOver as taken:
        return (
            f"cancel requested: the orchestrator (pid {taken.pid} on {taken.host}) is stopping run {run_id}"
        )
    what = f"; stopped what it left running: {', '.join(stopped)}" if stopped else ""
    return (
        f"run {run_id} cancelled (no orchestrator was driving it{what}); "
        f"`stepledger resume {run_id}` continues it"
    )


class _TakenOver(Exception):
    """A worker took the run over while `cancel` was about to end it."""

    def __init__(self, pid: int, host: str) -> None:
        super().__init__(pid, host)
        self.pid, self.host = pid, host


def _stop_left_running(store: EventStore, run: RunState) -> list[str]:
    """Kill the attempts a dead orchestrator left running and record how each ended.

    An attempt that finished meanwhile keeps its verdict (its result file); the others are failed
    *cancelled*, as a live orchestrator records the attempts a cancel kills. No step is left
    `running` with nobody to record its end.
    """
    import time

    from ..execution.recovery import kill_attempt, settle, wait_for_attempt
    from ..paths import run_dir_of

    folder = str(run_dir_of(run.workdir, run.run_id))
    writes, stopped = [], []
    for sid, step in sorted(run.steps.items()):
        if step.state != "running":
            continue
        try:
            kill_attempt(folder, sid, step.attempt)
        except RuntimeError as error:  # it runs on another host
            raise UserInputError(f"cannot stop step {sid} of run {run.run_id}: {error}") from None
        wait_for_attempt(folder, sid, step.attempt, timeout=KILL_WAIT_S)
        started = step.started_at or time.time()
        result = settle(folder, run.run_id, sid, step.attempt, started)
        writes.append(_ended(run, sid, result))
        stopped.append(sid)
    if writes:
        store.append(writes)
    return stopped


def _stop_left_on_workers(store: EventStore, run: RunState, fleet_db: str) -> list[str]:
    """Ask the workers to stop the attempts a run on workers left running with nobody driving it,
    wait for how each ended (the ledger: engine/fleet/takeover.py), and record it."""
    from ..fleet.takeover import left_verdicts, stop_left_attempts

    stop_left_attempts(fleet_db, run, "cancelled", lambda _: None)
    verdicts = left_verdicts(fleet_db, run, lambda _: None)
    if verdicts:
        store.append([_ended(run, sid, result) for sid, result in verdicts.items()])
    return sorted(verdicts)


def _ended(run: RunState, sid: str, result: AttemptResult | None) -> StreamWrite:
    """The event that ends a step a cancel stopped while its orchestrator was gone: passed if its
    attempt had passed meanwhile, else failed *cancelled*."""
    import time

    step = run.steps[sid]
    started = step.started_at or time.time()
    event: Event
    if result is not None and result.passed:
        event = StepPassed(attempt=step.attempt, started_at=result.started_at,
                           finished_at=result.finished_at, outputs=dict(result.outputs),
                           recovered=True)  # fmt: skip
    else:
        event = StepFailed(attempt=step.attempt, reason="cancelled", started_at=started,
                           finished_at=max(started, time.time()), recovered=True,
                           output_excerpt="cancelled while its orchestrator was gone")  # fmt: skip
    return StreamWrite(run.run_id, step_stream(run.run_id, sid), step.version, [event])


def retry_step(
    store: EventStore, run_id: str, step_id: str, reason: str = "", by: str | None = None
) -> OperatorAction:
    """Give a failed, tripped, blocked or skipped step a fresh start (its breaker forgotten)."""
    return _step_action(
        store, run_id, step_id, "request_retry", StepRetryRequested(by=by or user_name(), reason=reason)
    )


def skip_step(
    store: EventStore, run_id: str, step_id: str, reason: str = "", by: str | None = None
) -> OperatorAction:
    """Record the step as skipped by an operator: its dependents may run."""
    return _step_action(store, run_id, step_id, "skip", StepSkipped(by=by or user_name(), reason=reason))


def mark_step_passed(
    store: EventStore, run_id: str, step_id: str, reason: str = "", by: str | None = None
) -> OperatorAction:
    """Record the step as passed by an operator without running it: its dependents may run."""
    return _step_action(
        store, run_id, step_id, "mark_passed", StepMarkedPassed(by=by or user_name(), reason=reason)
    )


def _step_action(store: EventStore, run_id: str, step_id: str, trigger: str, event: Event) -> OperatorAction:
    """Append `event` to the step's stream if its state allows `trigger`; unblock dependents; wake the run."""
    verb = _VERBS[trigger]
    for _ in range(20):
        run = load_run(store, run_id)
        known = [s.get("id") for s in run.workstream.get("steps", [])]
        if step_id not in known:
            raise UserInputError(
                f"run {run_id} has no step {step_id!r}; its steps: {', '.join(map(str, known))}"
            )
        if read_rollback(store.read_run(run_id)).started_at is not None:
            # Its completed steps are (being) undone: going on would build on work that is gone.
            raise IllegalStepAction(
                f"run {run_id} is rolled back (saga): its completed steps were undone, so it cannot "
                f"go on; start a new run"
            )
        state = run.step(step_id)
        if not StepLifecycle(step_id, state.state).can(trigger):
            raise IllegalStepAction(
                f"cannot {verb} step {step_id} of run {run_id}: it is {state.state} "
                f"({verb} needs a step that is {_states_allowing(trigger)})"
            )
        # Steps blocked because of this one get a fresh start too, so they run once it is done;
        # the reactor blocks them again if another of their dependencies failed for good.
        unblocked = [
            s.step_id for s in run.steps.values() if s.state == "blocked" and s.blocked_by == step_id
        ]
        why = f"{step_id} {_DONE[trigger].replace('will be retried', 'was retried')}"
        writes = [StreamWrite(run_id, step_stream(run_id, step_id), state.version, [event])]
        writes += [
            StreamWrite(run_id, step_stream(run_id, sid), run.steps[sid].version,
                        [StepRetryRequested(by=getattr(event, "by", user_name()), reason=why)])
            for sid in unblocked
        ]  # fmt: skip
        try:
            recorded = store.append(writes)
        except ConcurrencyError:
            continue  # the orchestrator (or another operator) moved the run on: look again
        break
    else:
        raise UserInputError(f"run {run_id} is too busy to take the action; try again")
    pid = reactor_process(store, run_id)
    if pid is not None and pid != os.getpid():
        os.kill(pid, signal.SIGUSR1)  # the reactor re-reads the log when woken, and writes its lines
    else:
        pid = None
        _write_run_log(run, recorded)
    message = f"step {step_id} of run {run_id} {_DONE[trigger]}"
    if unblocked:
        message += f"; unblocked: {', '.join(sorted(unblocked))}"
    if pid is not None:
        message += f" (the orchestrator, pid {pid}, is taking it up)"
    return OperatorAction(run_id, step_id, message, tuple(sorted(unblocked)), pid)


def _write_run_log(run: RunState, recorded: list[RecordedEvent]) -> None:
    """Add the decision to the run's orchestrator.log, which no live orchestrator will write it to."""
    from ..run.reporting import RunLogReporter
    from .runs import run_dir_of

    try:
        log = RunLogReporter(run_dir_of(run.workdir, run.run_id) / "orchestrator.log")
    except OSError:
        return  # the run's folder is on another machine: the event log still has it
    try:
        log.events(run, recorded)
    finally:
        log.close()


def _states_allowing(trigger: str) -> str:
    """The step states the lifecycle allows `trigger` from, in words."""
    states = [state for state in STATES if StepLifecycle("", state).can(trigger)]
    return ", ".join(states[:-1]) + " or " + states[-1]
