"""What every iteration must show, compared with the uninterrupted run of the same workstream.

- `verify`: `replay --verify` finds nothing wrong with the iteration's log;
- `outcome`: the run ended as the uninterrupted one did, each step in the same state with as many
  recorded passes (and compensations);
- `executed-twice`: no attempt started (or finished) twice in the side-effect log, and no step did
  its work more often than in the uninterrupted run;
- `overlap`: no two attempts of a step overlapped in time (side-effect log);
- `run`: every process ended as a run's processes may (killed, or the run ended), and every
  process of the iteration had exited within a bound after the end.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from stepledger.engine.read.replay import verify_run
from stepledger.store.connect import check_integrity, open_store

from .driver import IterationOutcome
from .side_effects import SideEffects, read_side_effects


@dataclass(frozen=True)
class Finding:
    """One broken promise of one iteration."""

    rule: str
    step: str
    message: str


@dataclass(frozen=True)
class Expected:
    """How the uninterrupted run ended: what every iteration is compared with."""

    status: str
    states: dict[str, str]
    passes: dict[str, int]  # step.passed events per step
    compensations: dict[str, int]  # compensation.passed events per step
    executions: dict[str, int]  # the step's work done, per the side-effect log
    seconds: float


def _recorded(outcome: IterationOutcome) -> tuple[str, dict[str, str], dict[str, int], dict[str, int]]:
    from stepledger.events.state import fold

    store = open_store(outcome.db_url, create=False)
    try:
        events = list(store.read_run(outcome.run_id))
    finally:
        store.close()
    run = fold(outcome.run_id, events)
    passes: dict[str, int] = {}
    compensations: dict[str, int] = {}
    for event in events:
        if event.type == "step.passed" and event.step_id:
            passes[event.step_id] = passes.get(event.step_id, 0) + 1
        elif event.type == "compensation.passed":
            step = str(event.payload.get("step_id", ""))
            compensations[step] = compensations.get(step, 0) + 1
    return run.status, {sid: s.state for sid, s in run.steps.items()}, passes, compensations


def expected_from(baseline: IterationOutcome) -> Expected:
    """The expectation an uninterrupted run sets."""
    status, states, passes, compensations = _recorded(baseline)
    effects = read_side_effects(baseline.side_log)
    executions = {step: effects.executions(step) for step in effects.steps}
    return Expected(status, states, passes, compensations, executions, baseline.seconds)


def check(outcome: IterationOutcome, expected: Expected) -> list[Finding]:
    """Every broken promise of one iteration (empty: it held)."""
    found: list[Finding] = []
    if outcome.stragglers:
        found.append(Finding("run", "", f"processes {outcome.stragglers} still ran long after the run ended"))
    if outcome.error or not outcome.run_id:
        found.append(Finding("run", "", outcome.error or "the run was never recorded"))
        return found
    store = open_store(outcome.db_url, create=False)
    try:
        check_integrity(store)
        found += [Finding("verify", v.stream, v.describe()) for v in verify_run(store, outcome.run_id)]
    finally:
        store.close()
    found += _compare(outcome, expected)
    found += side_effect_findings(read_side_effects(outcome.side_log), expected)
    return found


def _compare(outcome: IterationOutcome, expected: Expected) -> list[Finding]:
    status, states, passes, compensations = _recorded(outcome)
    found = []
    if status != expected.status:
        found.append(
            Finding("outcome", "", f"the run ended {status}; uninterrupted, it ended {expected.status}")
        )
    for step in sorted(set(states) | set(expected.states)):
        state, want = states.get(step, "pending"), expected.states.get(step, "pending")
        if state != want:
            found.append(Finding("outcome", step, f"ended {state}; uninterrupted, it ended {want}"))
        got, want_n = passes.get(step, 0), expected.passes.get(step, 0)
        if got != want_n:
            found.append(Finding("outcome", step, f"recorded {got} passes; uninterrupted, {want_n}"))
        got, want_n = compensations.get(step, 0), expected.compensations.get(step, 0)
        if got != want_n:
            found.append(Finding("outcome", step, f"recorded {got} compensations; uninterrupted, {want_n}"))
    return found


def side_effect_findings(effects: SideEffects, expected: Expected) -> list[Finding]:
    """What the side-effect log says went wrong: an attempt run twice, extra work, overlapping attempts."""
    found = []
    for step, attempts in sorted(effects.steps.items()):
        for attempt, seen in sorted(attempts.items()):
            if len(seen.starts) > 1 or len(seen.ends) > 1:
                found.append(
                    Finding(
                        "executed-twice",
                        step,
                        f"attempt {attempt} started {len(seen.starts)} and ended {len(seen.ends)} times",
                    )
                )
        done, want = effects.executions(step), expected.executions.get(step, 0)
        if done > want:
            found.append(
                Finding("executed-twice", step, f"its work was done {done} times; uninterrupted, {want}")
            )
        spans = sorted(
            (seen.starts[0], seen.ends[0] if seen.ends else None, attempt)
            for attempt, seen in attempts.items()
            if seen.starts
        )
        for (_, end1, a1), (start2, _, a2) in itertools.pairwise(spans):
            if end1 is not None and end1 > start2:
                found.append(
                    Finding("overlap", step, f"attempts {a1} and {a2} overlapped ({end1 - start2:.3f}s)")
                )
    return found
