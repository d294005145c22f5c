"""The step lifecycle: one `transitions` state machine shared by every step of a run.

The machine only decides. A transition is fired with the event that records it, and the
transition's callback collects that event on the step (no I/O); the reactor appends what was
collected. A trigger the machine does not allow in the step's state raises `IllegalTransition`.
Replay restores states with `restore` (no callback fires), and `replay --verify` drives recorded
events through `EVENT_TRIGGERS` to prove every recorded transition was legal.

    pending ─ready─▶ ready ─start─▶ running ─pass_─▶ passed
                       ▲               │
                       └─ready─ retrying ◀─schedule_retry/open_breaker─ failed ◀─fail─┘
                                                                          └─trip─▶ tripped
    (any waiting state) ─block─▶ blocked        operators: skip, mark_passed, request_retry
    pending ─expand─▶ expanded                   a for_each step: one step per item instead
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from transitions import EventData, Machine, MachineError

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

STATES = list(STEP_STATES)  # the fold's vocabulary is the machine's: one list of states
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
        self.state = state  # restoring a state is plain assignment: no callback fires
        self.collected: list[Event] = []

    def fire(self, trigger: str, event: Event | None = None) -> None:
        """Make the transition `trigger`, recording `event`; raise IllegalTransition if not allowed."""
        _cursor.state = self.state
        _cursor.collected = self.collected
        try:
            _cursor.trigger(trigger, event=event)
        except MachineError:
            raise IllegalTransition(self.step_id, trigger, self.state) from None
        self.state = _cursor.state

    def can(self, trigger: str) -> bool:
        """Whether `trigger` is allowed in the current state."""
        return self.state in _SOURCES.get(trigger, ())

    def take_collected(self) -> list[Event]:
        """The events collected since the last call."""
        events, self.collected = self.collected, []
        return events


class _Cursor:
    """The one model attached to the machine; each step's state is loaded into it to fire a trigger.

    Attaching a model per step is costly (transitions binds every trigger and state check onto
    it), which would dominate a 10,000-step run; one cursor keeps the machine's checks and
    callbacks while a step's lifecycle stays a plain object.
    """

    state: str
    collected: list[Event]
    trigger: Callable[..., bool]  # bound by transitions


def _collect(event_data: EventData) -> None:
    event = event_data.kwargs.get("event")
    if event is not None:
        cast(_Cursor, event_data.model).collected.append(event)


_cursor = _Cursor()
_machine = Machine(
    model=_cursor,
    states=STATES,
    transitions=TRANSITIONS,
    initial="pending",
    auto_transitions=False,
    send_event=True,
    after_state_change=_collect,
)
_SOURCES: dict[str, frozenset[str]] = {
    trigger: frozenset(state for state in STATES if _machine.get_transitions(trigger, source=state))
    for trigger in TRIGGERS
}
