"""Replay: rebuild a run from its log alone, as it was at any point, and check the log's invariants.

`replay_run` folds the run's events up to a position or an instant (the same fold as everywhere
else, so replay cannot disagree with status). `verify_run` walks the whole log once and reports
every event that breaks a rule the engine promises: each step transition legal for the lifecycle
machine, stream versions contiguous, dependencies done before a dependent starts, no step passed
twice without an operator retry between, no two attempts of a step overlapping in time, and the
projections equal to a fresh fold.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import time
from dataclasses import dataclass
from typing import Any

from stepledger.events import (
    RecordedEvent,
    RunResumed,
    RunStarted,
    StepFailed,
    StepMarkedPassed,
    StepPassed,
    StepRetryRequested,
    StepStarted,
)
from stepledger.events.state import DONE_STATES, RunState, apply, fold
from stepledger.store.port import EventStore

from ..errors import RunNotFound, UserInputError
from ..run.lifecycle import EVENT_TRIGGERS, StepLifecycle
from .expansions import EXPANDED, expansions_in, steps_and_requirements

# Worker clocks and the store's clock are both this host's; a millisecond absorbs float rounding.
OVERLAP_TOLERANCE_S = 1e-3


@dataclass(frozen=True)
class Violation:
    """An event that breaks an invariant of the log, and which one."""

    position: int
    stream: str
    version: int
    type: str
    rule: str
    message: str

    def describe(self) -> str:
        """One line naming the event and what is wrong with it."""
        return f"#{self.position} {self.stream} v{self.version} {self.type}: [{self.rule}] {self.message}"


def parse_at(text: str | None) -> int | float | None:
    """`--at`: an integer is a log position; anything else an ISO time (local if no zone) as epoch seconds."""
    if text is None or text == "":
        return None
    if text.isdigit():
        return int(text)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserInputError(
            f"--at {text!r} is neither a log position (an integer) nor a time like 2026-11-28T14:05:00"
        ) from None
    return when.timestamp()


def run_events(store: EventStore, run_id: str) -> list[RecordedEvent]:
    """Every event of `run_id` in position order; RunNotFound if there are none."""
    events = list(store.read_run(run_id))
    if not events:
        raise RunNotFound(f"no run {run_id!r} in this log; `stepledger runs` lists the runs")
    return events


def replay_run(store: EventStore, run_id: str, at: int | float | None = None) -> dict[str, Any]:
    """The run rebuilt from its log up to position `at` (int) or epoch time `at` (float)."""
    events = run_events(store, run_id)
    if isinstance(at, int):
        events = [e for e in events if e.position <= at]
    elif isinstance(at, float):
        events = [e for e in events if e.recorded_at <= at]
    run = fold(run_id, events)
    # A running attempt's time so far: up to the instant asked for, or now.
    cutoff = (
        at
        if isinstance(at, float)
        else (events[-1].recorded_at if at is not None and events else time.time())
    )
    declared, _ = steps_and_requirements(run.workstream, expansions_in(events))
    known = set(declared)
    order = declared + [sid for sid in run.steps if sid not in known]
    steps = []
    for sid in order:
        s = run.steps.get(sid)
        current = None
        if s is not None and s.started_at is not None:
            end = s.finished_at if s.finished_at is not None else cutoff
            current = max(0.0, end - s.started_at)
        steps.append({
            "step_id": sid,
            "state": s.state if s else "pending",
            "attempt": s.attempt if s else 0,
            "attempt_duration_s": None if current is None else round(current, 3),
            "total_duration_s": round(s.total_duration_s, 3) if s else 0.0,
            "last_reason": s.last_reason if s else "",
            "blocked_by": s.blocked_by if s else "",
        })  # fmt: skip
    last = events[-1] if events else None
    return {
        "run_id": run_id,
        "status": run.status,
        "position": last.position if last else 0,
        "recorded_at": last.recorded_at if last else None,
        "events": len(events),
        "cancel_requested": run.cancel_requested,
        "steps": steps,
    }


def _requires(workstream: dict[str, Any]) -> dict[str, list[str]]:
    return {
        s["id"]: list(s.get("requires") or s.get("depends_on") or ())
        for s in workstream.get("steps", [])
        if isinstance(s, dict) and "id" in s
    }


class _Checker:
    """Walks a run's events in position order, folding them and noting every broken rule."""

    def __init__(self, run_id: str) -> None:
        self.run = RunState(run_id)
        self.violations: list[Violation] = []
        self.versions: dict[str, int] = {}
        self.life: dict[str, StepLifecycle] = {}
        self.passed: set[str] = set()  # passed since the last operator retry
        self.requires: dict[str, list[str]] = {}
        self.expanded: dict[str, list[str]] = {}  # for_each step -> its expansions (step.expanded)
        # (step, attempt) -> (started_at, finished_at, event) of its recorded outcome
        self.attempts: dict[tuple[str, int], tuple[float, float, RecordedEvent]] = {}

    def flag(self, event: RecordedEvent, rule: str, message: str) -> None:
        self.violations.append(
            Violation(event.position, event.stream, event.version, event.type, rule, message)
        )

    def check(self, event: RecordedEvent) -> None:
        expected = self.versions.get(event.stream, 0) + 1
        if event.version != expected:
            self.flag(event, "versions", f"version {event.version} where {expected} was next")
        self.versions[event.stream] = event.version
        sid = event.step_id
        if sid is not None:
            self._check_step(sid, event)
        apply(self.run, event)
        if sid is None and event.type in (RunStarted.type_name, RunResumed.type_name):
            if event.payload.get("workstream"):
                self.requires = _requires(event.payload["workstream"])
                for template, ids in self.expanded.items():  # a resume that took the current file
                    self._expand(template, ids)
        elif sid is not None:
            self.life[sid].state = self.run.steps[sid].state  # replay sets states: no callback fires
            if event.type == EXPANDED:
                self.expanded[sid] = list(event.payload["ids"])
                self._expand(sid, self.expanded[sid])

    def _expand(self, template: str, ids: list[str]) -> None:
        """The for_each step's dependents wait for each of its expansions from now on."""
        for needs in self.requires.values():
            if template in needs:
                needs.extend(ids)
        self.requires.update((e, list(self.requires.get(template, []))) for e in ids)

    def _check_step(self, sid: str, event: RecordedEvent) -> None:
        life = self.life.setdefault(sid, StepLifecycle(sid))
        trigger = EVENT_TRIGGERS.get(event.type)
        if trigger is None:
            return  # a type this version does not judge
        if not life.can(trigger):
            self.flag(event, "transition", f"{trigger.rstrip('_')} is not allowed while {life.state}")
        payload = event.payload
        if event.type == StepStarted.type_name:
            undone = [d for d in self.requires.get(sid, ()) if self.run.step(d).state not in DONE_STATES]
            if undone:
                states = ", ".join(f"{d} {self.run.step(d).state}" for d in undone)
                self.flag(event, "dependencies", f"started before its dependencies were done ({states})")
        elif event.type in (StepPassed.type_name, StepMarkedPassed.type_name):
            if sid in self.passed:
                self.flag(event, "passed-twice", "passed again without an operator retry in between")
            self.passed.add(sid)
        elif event.type == StepRetryRequested.type_name:
            self.passed.discard(sid)
        if event.type in (StepPassed.type_name, StepFailed.type_name):
            key = (sid, int(payload.get("attempt", 0)))
            if key in self.attempts:
                self.flag(event, "fencing", f"attempt {key[1]} has a second outcome")
            else:
                self.attempts[key] = (float(payload["started_at"]), float(payload["finished_at"]), event)

    def check_overlaps(self) -> None:
        by_step: dict[str, list[tuple[int, float, float, RecordedEvent]]] = {}
        for (sid, attempt), (start, end, event) in self.attempts.items():
            by_step.setdefault(sid, []).append((attempt, start, end, event))
        for spans in by_step.values():
            spans.sort(key=lambda span: span[0])
            for (a1, _, end1, _), (a2, start2, _, event) in itertools.pairwise(spans):
                if end1 > start2 + OVERLAP_TOLERANCE_S:
                    self.flag(event, "overlap", f"attempt {a2} started {end1 - start2:.3f}s before attempt "
                              f"{a1} finished")  # fmt: skip


def verify_run(store: EventStore, run_id: str, events: list[RecordedEvent] | None = None) -> list[Violation]:
    """Every event of the run's log that breaks one of the engine's invariants (empty if none)."""
    events = events if events is not None else run_events(store, run_id)
    checker = _Checker(run_id)
    for event in events:
        checker.check(event)
    checker.check_overlaps()
    _check_projections(store, checker, events)
    return sorted(checker.violations, key=lambda v: v.position)


def _check_projections(store: EventStore, checker: _Checker, events: list[RecordedEvent]) -> None:
    """The stored projections must equal the fold of the log (which the checker just made)."""
    projected = store.run_state(checker.run.run_id)
    folded = checker.run
    last = events[-1]
    if projected is None:
        checker.flag(last, "projections", "the run has no projection row")
        return
    run_diff = [
        f.name
        for f in dataclasses.fields(RunState)
        if f.name != "steps" and getattr(projected, f.name) != getattr(folded, f.name)
    ]
    if run_diff:
        checker.flag(last, "projections", f"run projection differs from the fold in {', '.join(run_diff)}")
    by_position = {e.position: e for e in events}
    for sid in sorted(set(projected.steps) | set(folded.steps)):
        mine, theirs = folded.steps.get(sid), projected.steps.get(sid)
        if mine == theirs:
            continue
        anchor = by_position.get(mine.last_position if mine else 0, last)
        if mine is None or theirs is None:
            checker.flag(anchor, "projections", f"step {sid} is missing from the projection or the log")
            continue
        fields = [
            f.name for f in dataclasses.fields(mine) if getattr(mine, f.name) != getattr(theirs, f.name)
        ]
        checker.flag(anchor, "projections", f"step {sid} projection differs in {', '.join(fields)}")
    stored = store.outcome_rows(checker.run.run_id)
    if stored is not None:  # one row per outcome event, the same as the event says
        have = {row[0]: row for row in stored}
        want = {row[0]: row for row in store.expected_outcome_rows(events)}
        for position in sorted(have.keys() | want.keys()):
            if have.get(position) != want.get(position):
                message = f"the step_outcomes row of position {position} differs from the log"
                checker.flag(by_position.get(position, last), "projections", message)
