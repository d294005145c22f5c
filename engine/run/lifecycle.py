"""The step lifecycle: one transition table shared by every step of a run.

The table only decides. A transition is fired with the event that records it, which is collected
on the step (no I/O); the reactor appends what was collected. A trigger the table does not allow
in the step's state raises `IllegalTransition`. Replay restores states with `restore` (plain
assignment, nothing collected), and `replay --verify` drives recorded events through
`EVENT_TRIGGERS` to prove every recorded transition was legal.

    pending ─ready─▶ ready ─start─▶ running ─pass_─▶ passed
                       ▲               │
                       └─ready─ retrying ◀─schedule_retry/open_breaker─ failed ◀─fail─┘
                                                                          └─trip─▶ tripped
    (any waiting state) ─block─▶ blocked        operators: skip, mark_passed, request_retry
    pending ─expand─▶ expanded                   a for_each step: one step per item instead

The table is read directly rather than through the `transitions` library: its machine, and the
`logging` it imports, were a visible part of every run's start-up, and each trigger cost ~10 µs
through it (docs/performance.md). The machine had no guards or callbacks besides collecting the
event, so the table decides exactly as it did.
"""

from __future__ import annotations

from typing import Any

from stepledger.events import (
    AcceptanceTestsRecorded,
    BreakerOpened,
    Event,
    RetryScheduled,
    StepBlocked,
    StepFailed,
    StepMarkedPassed,
    StepPassed,
    StepReady,
    StepRetryRequested,
    StepSkipped,
    StepStarted,
    StepTripped,
)
from stepledger.events.state import STEP_STATES, WAITING_STATES
from stepledger.events.types import StepExpanded

STATES = list(STEP_STATES)  # the fold's vocabulary is the table's: one list of states
_WAITING = list(WAITING_STATES)

TRANSITIONS: list[dict[str, Any]] = [
    {"trigger": "ready", "source": ["pending", "retrying"], "dest": "ready"},
    {"trigger": "start", "source": "ready", "dest": "running"},
    {"trigger": "pass_", "source": "running", "dest": "passed"},
    {"trigger": "fail", "source": "running", "dest": "failed"},
    {"trigger": "schedule_retry", "source": "failed", "dest": "retrying"},
    {"trigger": "open_breaker", "source": "failed", "dest": "retrying"},
    {"trigger": "trip", "source": "failed", "dest": "tripped"},
    {"trigger": "block", "source": _WAITING, "dest": "blocked"},
    # A for_each step whose list was read becomes its expansions (engine/run/expanding.py).
    {"trigger": "expand", "source": "pending", "dest": "expanded"},
    # Acceptance results are recorded while the attempt is still the running one.
    {"trigger": "record_acceptance", "source": "running", "dest": None},
    # Operator actions.
    {"trigger": "skip", "source": [*_WAITING, "tripped", "blocked"], "dest": "skipped"},
    {"trigger": "mark_passed", "source": [*_WAITING, "tripped", "blocked", "skipped"], "dest": "passed"},
    {"trigger": "request_retry", "source": ["failed", "tripped", "blocked", "skipped"], "dest": "pending"},
]
TRIGGERS = sorted({t["trigger"] for t in TRANSITIONS})

# The trigger each recorded step event corresponds to.
EVENT_TRIGGERS = {
    StepReady.type_name: "ready",
    StepStarted.type_name: "start",
    StepPassed.type_name: "pass_",
    StepFailed.type_name: "fail",
    RetryScheduled.type_name: "schedule_retry",
    BreakerOpened.type_name: "open_breaker",
    StepTripped.type_name: "trip",
    StepBlocked.type_name: "block",
    AcceptanceTestsRecorded.type_name: "record_acceptance",
    StepSkipped.type_name: "skip",
    StepMarkedPassed.type_name: "mark_passed",
    StepRetryRequested.type_name: "request_retry",
    StepExpanded.type_name: "expand",
}


class IllegalTransition(Exception):
    """A step was asked to make a transition its lifecycle does not allow from its state."""

    def __init__(self, step_id: str, trigger: str, state: str) -> None:
        super().__init__(f"step {step_id!r} cannot {trigger.rstrip('_')} while {state}")
        self.step_id, self.trigger, self.state = step_id, trigger, state


class StepLifecycle:
    """The lifecycle of one step: its state and the events its transitions collected."""

    __slots__ = ("collected", "state", "step_id")

    def __init__(self, step_id: str, state: str = "pending") -> None:
        self.step_id = step_id
        self.state = state  # restoring a state is plain assignment: nothing is collected
        self.collected: list[Event] = []

    def fire(self, trigger: str, event: Event | None = None) -> None:
        """Make the transition `trigger`, recording `event`; raise IllegalTransition if not allowed."""
        dest = _MOVES[trigger].get(self.state)
        if dest is None:
            raise IllegalTransition(self.step_id, trigger, self.state)
        self.state = dest
        if event is not None:
            self.collected.append(event)

    def can(self, trigger: str) -> bool:
        """Whether `trigger` is allowed in the current state."""
        return self.state in _MOVES.get(trigger, ())

    def take_collected(self) -> list[Event]:
        """The events collected since the last call."""
        events, self.collected = self.collected, []
        return events


def _moves() -> dict[str, dict[str, str]]:
    """trigger -> {state it is allowed in: the state it leads to}; `dest: None` stays in the state."""
    moves: dict[str, dict[str, str]] = {}
    for transition in TRANSITIONS:
        trigger, source, dest = transition["trigger"], transition["source"], transition["dest"]
        for state in [source] if isinstance(source, str) else source:
            if state not in STATES or (dest is not None and dest not in STATES):
                raise ValueError(f"transition {trigger!r}: {state!r} -> {dest!r} names an unknown state")
            if state in moves.setdefault(trigger, {}):
                raise ValueError(f"transition {trigger!r} from {state!r} is declared twice")
            moves[trigger][state] = dest or state
    return moves


_MOVES = _moves()
