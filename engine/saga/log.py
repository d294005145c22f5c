"""What the log says about a run's saga rollback: which steps to undo, in what order, and how far it got.

Pure functions over recorded events, so a resumed orchestrator reaches the same plan the first one
recorded, and a compensation the log shows as passed is never run again.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stepledger.events import (
    CompensationFailed,
    CompensationPassed,
    CompensationStarted,
    RecordedEvent,
    RollbackFinished,
    RollbackOutcome,
    RollbackStarted,
    StepMarkedPassed,
    StepPassed,
)
from stepledger.events.state import UNCOUNTED_REASONS, RunState

from ..workstream.model import Compensation, Workstream

_PASS_TYPES = (StepPassed.type_name, StepMarkedPassed.type_name)
_OUTPUT_REF = re.compile(r"\$\{\s*step_output\.([A-Za-z0-9_.-]+)\s*\}")
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
OUTPUT_ENV_PREFIX = "STEPLEDGER_OUTPUT_"


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
    finished_outcome: RollbackOutcome | None = None  # set when the latest rollback already ended
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
        elif event.type == CompensationStarted.type_name:
            attempts[p["step_id"]] = max(attempts.get(p["step_id"], 0), p["attempt"])
        if event.step_id is not None:
            continue
        if event.type == RollbackStarted.type_name:
            log = RollbackLog(
                started_at=event.recorded_at,
                position=event.position,
                order=p["order"],
                plan=list(p["compensations"]),
                failed_steps=list(p["failed_steps"]),
            )
            log.progress = {sid: CompensationProgress(sid) for sid in log.plan}
        elif event.type == RollbackFinished.type_name and log.started_at is not None:
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
    if event.type == CompensationStarted.type_name:
        progress.in_flight, progress.in_flight_started_at = p["attempt"], event.recorded_at
        return
    if progress.in_flight == p["attempt"]:
        progress.in_flight = None
    if event.type == CompensationPassed.type_name:
        progress.passed = True
    elif event.type == CompensationFailed.type_name:
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
        elif event.type == CompensationPassed.type_name:
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


def output_env_names(names: Iterable[str]) -> dict[str, str]:
    """Each output name's environment variable, STEPLEDGER_OUTPUT_<NAME>, distinct for distinct names.

    Names differing only in characters a variable name cannot hold (`user-id`, `user_id`) would
    share a variable; the later one, in sorted order, takes a numbered suffix.
    """
    taken: set[str] = set()
    names_to_env: dict[str, str] = {}
    for name in sorted(set(names)):
        base = OUTPUT_ENV_PREFIX + _ENV_UNSAFE.sub("_", name).upper()
        key, n = base, 1
        while key in taken:
            n += 1
            key = f"{base}_{n}"
        taken.add(key)
        names_to_env[name] = key
    return names_to_env


def as_text(value: Any) -> str:
    """An output as the text a command receives: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _quote_states(text: str, pattern: re.Pattern[str] = _OUTPUT_REF) -> list[str]:
    """For each reference (`pattern`, `${step_output.NAME}` by default) in `text`, the shell quoting
    it sits in: "", "'" or '"'."""
    states: list[str] = []
    state, i = "", 0
    for match in pattern.finditer(text):
        while i < match.start():
            char = text[i]
            if state != "'" and char == "\\":
                i += 2  # an escaped character changes no quoting
                continue
            if state == "" and char in "'\"":
                state = char
            elif state == char:
                state = ""
            i += 1
        states.append(state)
        i = match.end()
    return states


def substitute_words(
    text: str, word_for: Callable[[str, str], str], pattern: re.Pattern[str] = _OUTPUT_REF
) -> str:
    """`text` with each reference replaced by `word_for(its first group, quoting it sits in)`.

    Also used for `${steps.ID.outputs.NAME}` in a step's tasks (engine/workstream/step_outputs.py).
    """
    states = iter(_quote_states(text, pattern))
    return pattern.sub(lambda m: word_for(m.group(1), next(states)), text)


def shell_action(action: str, env_names: dict[str, str]) -> str:
    """A shell command where each reference reads its output's variable, as one quoted word.

    The value never becomes part of the command text: the shell expands the variable, and an
    expansion is not parsed again as code, so `"; rm -rf ~; "` or `$(...)` in an output stays text.
    Whatever the quoting the reference was written in (none, '...', "..."), it reads the variable
    as exactly one word: `"${V}"`, `'"${V}"'` (closing and reopening the single quotes), `${V}`.
    """

    def word(name: str, state: str) -> str:
        ref = "${" + env_names[name] + "}"
        return {"": f'"{ref}"', "'": f"'\"{ref}\"'", '"': ref}[state]

    return substitute_words(action, word)


def python_action(action: str, outputs: dict[str, Any]) -> str:
    """A python task (`module:function args`, split like a shell line) with each value one quoted argument."""

    def word(name: str, state: str) -> str:
        quoted = shlex.quote(as_text(outputs.get(name, "")))
        return f"{state}{quoted}{state}"  # close the quoting it sits in, the quoted word, reopen it

    return substitute_words(action, word)


def substitute_outputs(value: Any, outputs: dict[str, Any], missing: set[str]) -> Any:
    """`value` with each `${step_output.NAME}` set to the step output (unknown: empty, into `missing`).

    For data (parameters, or an argument of a program run without a shell), never shell text.
    """
    if isinstance(value, str):

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in outputs:
                missing.add(name)
                return ""
            return as_text(outputs[name])

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
        env[key] = as_text(value)
    return env


@dataclass(frozen=True)
class ResolvedCompensation:
    """A compensation ready to run: its task, its parameters, and the environment it needs."""

    action: str
    parameters: dict[str, Any]
    env: dict[str, str]  # STEPLEDGER_OUTPUT_<NAME> for each output, and the parameters' variables
    missing: set[str]  # referenced outputs the step did not record (they read as empty)


def resolve(compensation: Compensation, outputs: dict[str, Any]) -> ResolvedCompensation:
    """Fill `${step_output.NAME}` in the compensation's action and parameters.

    Step outputs are data from outside the workstream (an API's answer, a user name): in a shell
    action each reference becomes a quoted read of the variable STEPLEDGER_OUTPUT_<NAME>, in a
    python action a shell-quoted argument, and for any other tool (a profile or a program, run
    without a shell) the value itself, inside the one argument it is part of.
    """
    missing: set[str] = set()
    parameters = substitute_outputs(dict(compensation.parameters), outputs, missing)
    referenced = {m.group(1) for m in _OUTPUT_REF.finditer(compensation.action)}
    missing |= referenced - set(outputs)
    env_names = output_env_names([*outputs, *referenced])
    env = {env_names[name]: as_text(outputs.get(name, "")) for name in env_names}
    if compensation.tool == "shell":
        action = shell_action(compensation.action, env_names)
    elif compensation.tool == "python":
        action = python_action(compensation.action, outputs)
    else:
        action = substitute_outputs(compensation.action, outputs, set())
    return ResolvedCompensation(action, parameters, {**env, **parameter_env(parameters)}, missing)
