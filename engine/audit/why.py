"""`why RUN STEP`: the events that put a step in its state, and what a waiting step waits on."""

from __future__ import annotations

from typing import Any

from stepledger.engine.errors import RunNotFound, UserInputError
from stepledger.engine.read.describe import describe, format_duration, format_time
from stepledger.engine.read.expansions import recorded_expansions, steps_and_requirements
from stepledger.events import StepMarkedPassed, StepRetryRequested, StepSkipped, StepTripped
from stepledger.events.state import DONE_STATES, RunState, StepState, fold
from stepledger.events.types import StepExpanded
from stepledger.store.port import EventStore

from .queries import FleetHosts, fleet_hosts


class StepNotFound(UserInputError):
    """The run has no step with that id; the message lists the steps it has."""


def _when(at: float | None) -> str:
    return format_time(at, "?")


def requirements(run: RunState, step_id: str) -> list[str]:
    """The steps `step_id` waits for, from the workstream recorded when the run started."""
    for step in run.workstream.get("steps", []):
        if isinstance(step, dict) and step.get("id") == step_id:
            return list(step.get("requires") or step.get("depends_on") or [])
    return []


def declared_steps(run: RunState) -> list[str]:
    """The step ids of the run's recorded workstream, in file order."""
    return [s["id"] for s in run.workstream.get("steps", []) if isinstance(s, dict) and "id" in s]


def _by_whom(events: list[Any], kind: str) -> str:
    for event in reversed(events):
        if event.type == kind:
            p = event.payload
            return f" by {p.get('by', '?')}" + (f" ({p['reason']})" if p.get("reason") else "")
    return ""


def explain(run: RunState, step: StepState, events: list[Any], on_fleet: FleetHosts | None = None) -> str:
    """One sentence on why the step is in its state; `on_fleet`: for a run on workers, the host
    and worker of each attempt a worker took (audit/queries.py's `fleet_hosts`)."""
    n = step.attempt
    match step.state:
        case "passed" if events and events[-1].type == StepMarkedPassed.type_name:
            return "marked passed" + _by_whom(events, StepMarkedPassed.type_name)
        case "passed":
            took = format_duration((step.finished_at or 0) - (step.started_at or 0))
            return f"attempt {n} passed at {_when(step.finished_at)} after {took}"
        case "skipped":
            return "skipped" + _by_whom(events, StepSkipped.type_name)
        case "running" if on_fleet is not None:  # step.started names the driving machine
            taken = on_fleet.get((step.step_id, n))
            if taken is None:
                return f"attempt {n} waits for a worker to take it (queued since {_when(step.started_at)})"
            return f"attempt {n} running on {taken[0]} (worker {taken[1]}) since {_when(step.started_at)}"
        case "running":
            return f"attempt {n} running on {step.host} (pid {step.pid}) since {_when(step.started_at)}"
        case "retrying":
            return (f"attempt {n} failed ({step.last_reason}); the next attempt may start at "
                    f"{_when(step.not_before)}")  # fmt: skip
        case "failed":
            return (f"attempt {n} failed ({step.last_reason}); no retry or trip was recorded after it "
                    "(the orchestrator stopped?)")  # fmt: skip
        case "tripped":
            trip = next((e for e in reversed(events) if e.type == StepTripped.type_name), None)
            reason = trip.payload.get("reason", "") if trip else ""
            return f"circuit breaker tripped ({reason}) after attempt {n}: the step failed for good"
        case "expanded":
            made = next((e for e in reversed(events) if e.type == StepExpanded.type_name), None)
            ids = made.payload["ids"] if made else []
            return f"a for_each step: it became {len(ids)} steps, one per item ({', '.join(ids[:5])}" + (
                " …)" if len(ids) > 5 else ")"
            )
        case "blocked":
            return f"it depends on {step.blocked_by}, which can no longer pass"
        case "ready":
            return "every dependency is done; it waits for a free worker (or its group or rate limit)"
    if step.attempt and events and events[-1].type == StepRetryRequested.type_name:
        return "an operator asked for a new attempt" + _by_whom(events, StepRetryRequested.type_name)
    return "it waits for its dependencies"


def why(store: EventStore, run_id: str, step_id: str) -> dict[str, Any]:
    """The step's state, a sentence on why, what it waits on, and every event of its stream."""
    with store.audit_reading():  # the same "needs a SQL log" answer as the other audit questions
        pass
    run = fold(run_id, store.read_run(run_id))
    if run.started_at is None:
        raise RunNotFound(f"no run {run_id!r} in this log; `stepledger runs` lists the runs")
    known = declared_steps(run)
    if step_id not in run.steps and step_id not in known:
        listed = ", ".join(known[:20]) + (" …" if len(known) > 20 else "")
        raise StepNotFound(f"run {run_id} has no step {step_id!r}; its steps: {listed}")
    step = run.step(step_id)
    events = store.read_stream(f"{run_id}/{step_id}")
    waits_on = []
    # A for_each step's dependents wait for its expansions too (engine/read/expansions.py).
    _, every = steps_and_requirements(run.workstream, recorded_expansions(store, run_id))
    needs = every.get(step_id, requirements(run, step_id))
    if step.state in ("pending", "ready"):
        for dep in needs:
            state = run.steps[dep].state if dep in run.steps else "pending"
            if state not in DONE_STATES:
                waits_on.append({"step_id": dep, "state": state})
    # Only a running attempt's worker is asked of the attempt ledger: an ended one's is in its event.
    running_on_fleet = step.state == "running" and run.options.get("on_workers")
    on_fleet = fleet_hosts(store, run_id, step_id) if running_on_fleet else None
    reason = explain(run, step, events, on_fleet)
    if waits_on:
        reason = "it waits for " + ", ".join(f"{w['step_id']} ({w['state']})" for w in waits_on)
    if run.status != "running" and step.state in ("pending", "ready", "running"):
        reason += f"; the run itself is {run.status}"
    return {
        "run_id": run_id,
        "step_id": step_id,
        "state": step.state,
        "attempt": step.attempt,
        "reason": reason,
        "waits_on": waits_on,
        "requires": needs,
        "events": [
            {
                "position": e.position,
                "version": e.version,
                "at": e.recorded_at,
                "type": e.type,
                "detail": describe(e, run) or "",
                "payload": e.payload,
            }
            for e in events
        ],
    }
