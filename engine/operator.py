"""Operator actions on a run from another terminal, each recorded as an event with who and why."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from stepledger.events import Event, RunCancelRequested, RunFinished, StreamWrite, run_stream
from stepledger.store.errors import ConcurrencyError
from stepledger.store.port import EventStore
from stepledger.store.runstate import RunState

from .errors import UserInputError
from .runs import _user, load_run, reactor_process


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


def cancel_run(store: EventStore, run_id: str, reason: str = "") -> str:
    """Record a cancel request and wake the run's orchestrator; return what happened, in words."""
    run = load_run(store, run_id)
    if run.status != "running":
        raise UserInputError(f"run {run_id} is {run.status}, not running: there is nothing to cancel")
    append_to_run(store, run_id, lambda _: [RunCancelRequested(by=_user(), reason=reason)])
    pid = reactor_process(store, run_id)
    if pid is not None:
        os.kill(pid, signal.SIGUSR1)  # the reactor reads the log when woken, and stops its steps
        return f"cancel requested: the orchestrator (pid {pid}) is stopping run {run_id}"
    append_to_run(store, run_id, lambda _: [RunFinished(outcome="cancelled")])
    return (
        f"run {run_id} cancelled (no orchestrator was driving it); `stepledger resume {run_id}` continues it"
    )
