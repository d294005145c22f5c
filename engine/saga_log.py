"""What the log says about a run's saga rollback: which steps to undo, in what order, and how far it got.

Pure functions over recorded events, so a resumed orchestrator reaches the same plan the first one
recorded, and a compensation the log shows as passed is never run again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from stepledger.events import RecordedEvent
from stepledger.store.runstate import UNCOUNTED_REASONS, RunState

from .model import Compensation, Workstream

_PASS_TYPES = ("step.passed", "step.marked_passed")
_OUTPUT_REF = re.compile(r"\$\{\s*step_output\.([A-Za-z0-9_.-]+)\s*\}")
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


@dataclass
class CompensationProgress:
    """One step's compensation within the current rollback, as the log says."""

    step_id: str
    last_attempt: int = 0  # the highest attempt number ever started for it (across rollbacks)
    counted_failures: int = 0  # failures in this rollback that use up its retries
    passed: bool = False
    gave_up: bool = False  # failed with `final` in this rollback
    in_flight: int | None = None  # an attempt started in this rollback with no outcome recorded
    in_flight_started_at: float = 0.0


@dataclass
class RollbackLog:
    """The state of the run's latest rollback, read back from the log."""

    started_at: float | None = None  # None: no rollback is open
    position: int = 0
    order: str = "reverse"
    plan: list[str] = field(default_factory=list)
    failed_steps: list[str] = field(default_factory=list)
    finished_outcome: str | None = None  # set when the latest rollback already ended
    progress: dict[str, CompensationProgress] = field(default_factory=dict)

    @property
    def open(self) -> bool:
        """Whether a rollback started and has not finished (a crash interrupted it)."""
        return self.started_at is not None and self.finished_outcome is None


def read_rollback(events: Iterable[RecordedEvent]) -> RollbackLog:
    """Fold the run's events into the state of its latest rollback."""
    log = RollbackLog()
    attempts: dict[str, int] = {}
    last_pass: dict[str, int] = {}
    for event in events:
        p = event.payload
        if event.type in _PASS_TYPES and event.step_id:
            last_pass[event.step_id] = event.position
        elif event.type == "compensation.started":
            attempts[p["step_id"]] = max(attempts.get(p["step_id"], 0), p["attempt"])
        if event.step_id is not None:
            continue
        if event.type == "rollback.started":
            log = RollbackLog(
                started_at=event.recorded_at,
                position=event.position,
                order=p["order"],
                plan=list(p["compensations"]),
                failed_steps=list(p["failed_steps"]),
            )
            log.progress = {sid: CompensationProgress(sid) for sid in log.plan}
        elif event.type == "rollback.finished" and log.started_at is not None:
            log.finished_outcome = p["outcome"]
        elif event.type.startswith("compensation.") and p["step_id"] in log.progress:
            _apply(log.progress[p["step_id"]], event)
    for sid, progress in log.progress.items():
        progress.last_attempt = attempts.get(sid, 0)
    if log.finished_outcome is not None and any(pos > log.position for pos in last_pass.values()):
        # A step passed again after that rollback (an operator retried it): a new rollback is due.
        return RollbackLog(progress={})
    return log


def _apply(progress: CompensationProgress, event: RecordedEvent) -> None:
    p = event.payload
    if event.type == "compensation.started":
        progress.in_flight, progress.in_flight_started_at = p["attempt"], event.recorded_at
        return
    if progress.in_flight == p["attempt"]:
        progress.in_flight = None
    if event.type == "compensation.passed":
        progress.passed = True
    elif event.type == "compensation.failed":
        if p["reason"] not in UNCOUNTED_REASONS:
            progress.counted_failures += 1
        progress.gave_up = progress.gave_up or p.get("final", False)


def plan_rollback(
    run: RunState, workstream: Workstream, events: list[RecordedEvent]
) -> tuple[list[str], list[str]]:
    """(steps to compensate in rollback order, completed steps that have no compensation)."""
    completed_at: dict[str, int] = {}
    undone_at: dict[str, int] = {}
    for event in events:
        if event.type in _PASS_TYPES and event.step_id:
            completed_at[event.step_id] = event.position
        elif event.type == "compensation.passed":
            undone_at[event.payload["step_id"]] = event.position
    by_id = {s.id: s for s in workstream.steps}
    completed = sorted(
        (sid for sid, pos in completed_at.items() if run.step(sid).state == "passed" and sid in by_id),
        key=completed_at.__getitem__,
    )
    # A step undone by an earlier rollback, and not passed again since, has nothing left to undo.
    todo = [sid for sid in completed if undone_at.get(sid, 0) < completed_at[sid]]
    with_comp = [sid for sid in todo if by_id[sid].compensation is not None]
    without = [sid for sid in todo if by_id[sid].compensation is None]
    if workstream.saga.rollback_order == "reverse":
        with_comp.reverse()
    return with_comp, without


def substitute_outputs(value: Any, outputs: dict[str, Any], missing: set[str]) -> Any:
    """`value` with each `${step_output.NAME}` set to the step output (unknown: into `missing`)."""
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in outputs:
                missing.add(name)
                return ""
            found = outputs[name]
            return found if isinstance(found, str) else json.dumps(found)

        return _OUTPUT_REF.sub(one, value)
    if isinstance(value, dict):
        return {k: substitute_outputs(v, outputs, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_outputs(v, outputs, missing) for v in value]
    return value


def parameter_env(parameters: dict[str, Any]) -> dict[str, str]:
    """The environment a compensation receives: STEPLEDGER_PARAMETERS (JSON) and STEPLEDGER_PARAM_<NAME>."""
    env = {"STEPLEDGER_PARAMETERS": json.dumps(parameters, sort_keys=True)}
    for name, value in parameters.items():
        key = "STEPLEDGER_PARAM_" + _ENV_UNSAFE.sub("_", str(name)).upper()
        env[key] = value if isinstance(value, str) else json.dumps(value)
    return env


def resolve(compensation: Compensation, outputs: dict[str, Any]) -> tuple[str, dict[str, Any], set[str]]:
    """(action, parameters, names of outputs that were missing) with step outputs substituted."""
    missing: set[str] = set()
    action = substitute_outputs(compensation.action, outputs, missing)
    parameters = substitute_outputs(dict(compensation.parameters), outputs, missing)
    return action, parameters, missing
