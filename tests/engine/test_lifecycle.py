"""The step lifecycle allows exactly the transitions of the design, and records an event for each."""

from __future__ import annotations

import pytest

from stepledger.engine.run.lifecycle import (
    EVENT_TRIGGERS,
    STATES,
    TRANSITIONS,
    TRIGGERS,
    IllegalTransition,
    StepLifecycle,
)
from stepledger.events import StepReady

ALLOWED = {
    ("pending", "ready"): "ready",
    ("retrying", "ready"): "ready",
    ("ready", "start"): "running",
    ("running", "pass_"): "passed",
    ("running", "fail"): "failed",
    ("running", "record_acceptance"): "running",
    ("failed", "schedule_retry"): "retrying",
    ("failed", "open_breaker"): "retrying",
    ("failed", "trip"): "tripped",
    ("pending", "expand"): "expanded",  # a for_each step becomes its expansions
    **{(s, "block"): "blocked" for s in ("pending", "ready", "failed", "retrying")},
    **{(s, "skip"): "skipped" for s in ("pending", "ready", "failed", "retrying", "tripped", "blocked")},
    **{
        (s, "mark_passed"): "passed"
        for s in ("pending", "ready", "failed", "retrying", "tripped", "blocked", "skipped")
    },
    **{(s, "request_retry"): "pending" for s in ("failed", "tripped", "blocked", "skipped")},
}


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_every_state_and_trigger(state: str, trigger: str) -> None:
    step = StepLifecycle("s", state)
    event = StepReady()
    expected = ALLOWED.get((state, trigger))
    assert step.can(trigger) == (expected is not None)
    if expected is None:
        with pytest.raises(IllegalTransition, match="cannot"):
            step.fire(trigger, event)
        assert step.state == state
        assert step.collected == []
    else:
        step.fire(trigger, event)
        assert step.state == expected
        assert step.take_collected() == [event]


def test_table_matches_machine() -> None:
    assert {t["trigger"] for t in TRANSITIONS} == set(TRIGGERS)
    assert set(EVENT_TRIGGERS.values()) == set(TRIGGERS)


def test_restoring_a_state_fires_nothing() -> None:
    step = StepLifecycle("s", "running")
    assert step.collected == []
    step.fire("pass_")
    assert step.state == "passed"
    assert step.collected == []  # no event given, none collected
