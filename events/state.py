"""The fold of a run's events into its current state: one pure function used everywhere.

The projections tables, `status`, `replay` and the reactor's recovery all derive state from this
fold, so they cannot disagree. It applies events without judging them (the engine's state
machines decide what is legal; `replay --verify` checks a log against them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .envelope import RecordedEvent

# A step's states. `failed` means the last attempt failed and nothing has been decided yet;
# `retrying` waits for `not_before`; `tripped`, `blocked` and `passed`/`skipped` are terminal.
# `expanded` is a `for_each` step that became one step per item (`step.expanded`): it runs nothing
# itself, and its dependents wait for those steps instead.
STEP_STATES = (
    "pending",
    "ready",
    "running",
    "failed",
    "retrying",
    "passed",
    "skipped",
    "tripped",
    "blocked",
    "expanded",
)
WAITING_STATES = ("pending", "ready", "failed", "retrying")  # not running, not ended: may be blocked
DONE_STATES = frozenset({"passed", "skipped", "expanded"})  # a dependency in one of these lets dependents run
TERMINAL_STATES = frozenset({"passed", "skipped", "tripped", "blocked", "expanded"})
# Failures caused by the orchestrator or an operator, not by the step: they never count against
# the step's circuit breaker.
UNCOUNTED_REASONS = frozenset({"interrupted", "cancelled", "lost_worker"})


@dataclass
class StepState:
    """Where one step of a run stands, as the log says."""

    step_id: str
    state: str = "pending"
    version: int = 0  # version of the step's stream: the expected version of its next append
    attempt: int = 0  # the last attempt started (the fencing token)
    counted_failures: int = 0  # failures that count against the breaker
    repeated_signature: str = ""  # error signature of the last counted failure
    repeats: int = 0  # how many counted failures in a row had that signature
    started_at: float | None = None  # start of the current/last attempt
    finished_at: float | None = None
    first_started_at: float | None = None
    total_duration_s: float = 0.0  # sum over attempts
    host: str = ""
    pid: int = 0
    pgid: int = 0
    lease_expires_at: float = 0.0
    trial: bool = False
    not_before: float = 0.0  # earliest start of the next attempt (retry backoff / cool-down)
    cooldown_until: float = 0.0
    last_reason: str = ""
    last_exit_code: int | None = None
    last_error: str = ""  # a short excerpt of the last failure's output
    blocked_by: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    last_position: int = 0
    last_event_at: float = 0.0


@dataclass
class RunState:
    """Where a run stands, as the log says."""

    run_id: str
    workstream_id: str = ""
    workstream: dict[str, Any] = field(default_factory=dict)
    workstream_hash: str = ""
    source_path: str = ""
    workdir: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    status: str = "running"  # running, passed, failed, cancelled, rolled_back, ...
    version: int = 0  # version of the run's own stream
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    cancel_reason: str = ""
    steps: dict[str, StepState] = field(default_factory=dict)
    last_position: int = 0

    def step(self, step_id: str) -> StepState:
        """The state of `step_id`, created pending if the log has not mentioned it yet."""
        state = self.steps.get(step_id)
        if state is None:
            state = self.steps[step_id] = StepState(step_id)
        return state


def _started(s: StepState, p: dict[str, Any], at: float) -> None:
    s.state = "running"
    s.attempt = p["attempt"]
    s.host, s.pid, s.pgid = p["host"], p["pid"], p["pgid"]
    s.lease_expires_at = p.get("lease_expires_at", 0.0)
    s.trial = p.get("trial", False)
    s.started_at, s.finished_at = at, None
    if s.first_started_at is None:
        s.first_started_at = at


def _ended(s: StepState, p: dict[str, Any]) -> None:
    s.started_at, s.finished_at = p["started_at"], p["finished_at"]
    s.total_duration_s += max(0.0, p["finished_at"] - p["started_at"])


def _passed(s: StepState, p: dict[str, Any], at: float) -> None:
    _ended(s, p)
    s.state = "passed"
    s.outputs = p.get("outputs", {})


def _failed(s: StepState, p: dict[str, Any], at: float) -> None:
    _ended(s, p)
    s.state = "failed"
    s.last_reason = p["reason"]
    s.last_exit_code = p.get("exit_code")
    s.last_error = p.get("output_excerpt", "")
    if p["reason"] in UNCOUNTED_REASONS:
        return
    s.counted_failures += 1
    signature = p.get("error_signature", "")
    if signature and signature == s.repeated_signature:
        s.repeats += 1
    else:
        s.repeated_signature, s.repeats = signature, 1


def _set(state: str, **fields_from_payload: str) -> Any:
    def apply(s: StepState, p: dict[str, Any], at: float) -> None:
        s.state = state
        for attr, key in fields_from_payload.items():
            setattr(s, attr, p[key])

    return apply


def _retry_requested(s: StepState, p: dict[str, Any], at: float) -> None:
    # An operator's fresh start: the breaker's memory of this step is cleared.
    s.state = "pending"
    s.counted_failures = s.repeats = 0
    s.repeated_signature = s.blocked_by = ""
    s.not_before = s.cooldown_until = 0.0


def _breaker_opened(s: StepState, p: dict[str, Any], at: float) -> None:
    s.state = "retrying"
    s.cooldown_until = s.not_before = p["cooldown_until"]


def _noop(s: StepState, p: dict[str, Any], at: float) -> None:
    return None


STEP_APPLIERS = {
    "step.ready": _set("ready"),
    "step.started": _started,
    "step.passed": _passed,
    "step.failed": _failed,
    "step.acceptance_tests_recorded": _noop,
    "step.retry_scheduled": _set("retrying", not_before="not_before"),
    "step.breaker_opened": _breaker_opened,
    "step.tripped": _set("tripped"),
    "step.blocked": _set("blocked", blocked_by="blocked_by"),
    "step.skipped": _set("skipped"),
    "step.marked_passed": _set("passed"),
    "step.retry_requested": _retry_requested,
    "step.expanded": _set("expanded"),
}


def _run_started(r: RunState, p: dict[str, Any], at: float) -> None:
    r.workstream_id = p["workstream_id"]
    r.workstream = p["workstream"]
    r.workstream_hash = p["workstream_hash"]
    r.source_path = p["source_path"]
    r.workdir = p["workdir"]
    r.options = p.get("options", {})
    r.started_at = at
    r.status = "running"


def _run_resumed(r: RunState, p: dict[str, Any], at: float) -> None:
    r.status = "running"
    r.finished_at = None
    r.cancel_requested = False
    if p.get("workstream") is not None:
        r.workstream = p["workstream"]
        r.workstream_hash = p.get("workstream_hash") or r.workstream_hash


def _cancel_requested(r: RunState, p: dict[str, Any], at: float) -> None:
    r.cancel_requested = True
    r.cancel_reason = p.get("reason", "")


def _run_finished(r: RunState, p: dict[str, Any], at: float) -> None:
    r.status = p["outcome"]
    r.finished_at = at


RUN_APPLIERS = {
    "run.started": _run_started,
    "run.resumed": _run_resumed,
    "run.cancel_requested": _cancel_requested,
    "run.finished": _run_finished,
}


def apply(run: RunState, event: RecordedEvent) -> None:
    """Fold one event of `run` into it (events of unknown types are ignored, not misread)."""
    step_id = event.step_id
    if step_id is None:
        run.version = event.version
        applier = RUN_APPLIERS.get(event.type)
        if applier is not None:
            applier(run, event.payload, event.recorded_at)
    else:
        step = run.step(step_id)
        step.version = event.version
        step.last_position = event.position
        step.last_event_at = event.recorded_at
        step_applier = STEP_APPLIERS.get(event.type)
        if step_applier is not None:
            step_applier(step, event.payload, event.recorded_at)
        if event.type == "step.expanded":
            # The one event of a stream that makes other steps: each expansion exists (pending)
            # from here, before an event of its own, so status and the projections list it.
            for expansion in event.payload["ids"]:
                run.step(expansion)
    run.last_position = event.position


def fold(run_id: str, events: Iterable[RecordedEvent], run: RunState | None = None) -> RunState:
    """The state of `run_id` after `events` (continuing from `run` when given)."""
    run = run or RunState(run_id)
    for event in events:
        apply(run, event)
    return run
