"""The events of a run's life. Each is a frozen dataclass with a stable type name.

Streams: a run has one stream named by its run id (run-level events) and one stream per step,
``<run_id>/<step_id>`` (that step's lifecycle). Versions inside a stream are contiguous from 1,
and the expected-version check on append is what makes claiming a step and fencing a stale
attempt safe. Field values are plain JSON types so the payload is the dataclass itself.
Times are seconds since the epoch (float) as measured where the thing happened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .registry import Event, event_type

FailureReason = Literal[
    "exit_code",
    "timeout",
    "acceptance",
    "interrupted",
    "cancelled",
    "error",
    "lost_worker",
    "merge_conflict",
    "scope_violation",
]
RunOutcome = Literal["passed", "failed", "cancelled", "interrupted", "rolled_back", "partially_rolled_back"]


def run_stream(run_id: str) -> str:
    """The stream of a run's own events."""
    return run_id


def step_stream(run_id: str, step_id: str) -> str:
    """The stream of one step of a run."""
    return f"{run_id}/{step_id}"


def split_stream(stream: str) -> tuple[str, str | None]:
    """(run id, step id or None) of a stream name."""
    run_id, _, step_id = stream.partition("/")
    return run_id, (step_id or None)


# --- run stream -------------------------------------------------------------------------------


@event_type("run.started")
@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """A run began. Carries the resolved workstream so resume and replay never need the file."""

    workstream_id: str
    workstream: dict[str, Any]  # the resolved workstream, as `workstream_to_dict()` gives it
    workstream_hash: str  # sha256 of the source file's bytes
    source_path: str
    workdir: str
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {"max_workers": 3}
    host: str = ""
    pid: int = 0
    user: str = ""
    # The run parameters (`--param`), checked; also in `workstream`, which resume rebuilds from.
    params: dict[str, Any] = field(default_factory=dict)


@event_type("run.resumed")
@dataclass(frozen=True, kw_only=True)
class RunResumed(Event):
    """A new reactor took over a run (after a crash, Ctrl-C, or on another host)."""

    host: str
    pid: int
    user: str = ""
    workstream: dict[str, Any] | None = None  # set when resumed with --use-current-file
    workstream_hash: str | None = None
    # `resume --submit`: the run was handed to the fleet (pid 0, nobody drives it yet); the worker
    # that takes its drive job records a run.resumed of its own (docs/workers.md).
    to_fleet: bool = False


@event_type("run.cancel_requested")
@dataclass(frozen=True, kw_only=True)
class RunCancelRequested(Event):
    """An operator asked for the run to stop: running steps are killed, nothing new starts."""

    by: str
    reason: str = ""


@event_type("run.drain_requested")
@dataclass(frozen=True, kw_only=True)
class RunDrainRequested(Event):
    """Someone asked the run's driver to drain it (the first Ctrl-C): nothing new starts, the
    running steps finish, then the run ends interrupted. A driver that takes the run over finishes
    the drain; a typed resume (run.resumed) ends it."""

    by: str
    reason: str = ""  # how it was asked: "Ctrl-C"


@event_type("run.finished")
@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """The run ended; `outcome` says how. A resumed run may finish again later."""

    outcome: RunOutcome
    passed: int = 0
    failed: int = 0
    blocked: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0  # wall time of the run (first start to last outcome)
    sequential_s: float = 0.0  # sum of every attempt's duration: the one-after-another time


# --- step streams -----------------------------------------------------------------------------


@event_type("step.ready")
@dataclass(frozen=True, kw_only=True)
class StepReady(Event):
    """Every dependency of the step passed (or was skipped): it may start."""


@event_type("step.started")
@dataclass(frozen=True, kw_only=True)
class StepStarted(Event):
    """An attempt was claimed and dispatched. The attempt number is the fencing token."""

    attempt: int
    host: str
    pid: int  # the process running the attempt (the pool worker)
    pgid: int  # its process group
    reactor_pid: int = 0
    lease_expires_at: float = 0.0
    trial: bool = False  # a half-open breaker's single trial


@event_type("step.passed")
@dataclass(frozen=True, kw_only=True)
class StepPassed(Event):
    """The attempt's tool and every acceptance test passed."""

    attempt: int
    started_at: float
    finished_at: float
    outputs: dict[str, Any] = field(default_factory=dict)
    recovered: bool = False  # recorded by resume from an attempt that outlived its reactor
    # Where a fleet worker ran the attempt (its machine, its name); "" for the run's own pool,
    # whose process step.started names.
    worker_host: str = ""
    worker: str = ""


@event_type("step.failed")
@dataclass(frozen=True, kw_only=True)
class StepFailed(Event):
    """The attempt failed; `reason` says how. Retry, trip or block decisions follow as events."""

    attempt: int
    reason: FailureReason
    started_at: float
    finished_at: float
    exit_code: int | None = None
    error_signature: str = ""  # the normalised failure output, compared across attempts
    output_excerpt: str = ""
    recovered: bool = False
    worker_host: str = ""  # as in StepPassed
    worker: str = ""


@event_type("step.acceptance_tests_recorded")
@dataclass(frozen=True, kw_only=True)
class AcceptanceTestsRecorded(Event):
    """The results of an attempt's acceptance tests: [{command, exit_code, passed, duration_s}]."""

    attempt: int
    results: list[dict[str, Any]]


@event_type("step.retry_scheduled")
@dataclass(frozen=True, kw_only=True)
class RetryScheduled(Event):
    """A failed step will get attempt `next_attempt` no earlier than `not_before`."""

    attempt: int
    next_attempt: int
    not_before: float
    delay_s: float


@event_type("step.breaker_opened")
@dataclass(frozen=True, kw_only=True)
class BreakerOpened(Event):
    """The step's circuit breaker opened; one trial is allowed after `cooldown_until`."""

    attempt: int
    reason: str
    cooldown_until: float


@event_type("step.tripped")
@dataclass(frozen=True, kw_only=True)
class StepTripped(Event):
    """The step's circuit breaker opened for good: the step is terminal and failed."""

    attempt: int
    reason: str  # "max_attempts", "error_repeats", "not_retryable", "trial_failed"
    error_signature: str = ""


@event_type("step.blocked")
@dataclass(frozen=True, kw_only=True)
class StepBlocked(Event):
    """A dependency can no longer pass, so this step never will: it is terminal."""

    blocked_by: str  # the step that failed for good
    reason: str = ""


@event_type("step.skipped")
@dataclass(frozen=True, kw_only=True)
class StepSkipped(Event):
    """The step counts as skipped; its dependents may run. `by` is an operator or the engine."""

    by: str
    reason: str = ""


@event_type("step.marked_passed")
@dataclass(frozen=True, kw_only=True)
class StepMarkedPassed(Event):
    """An operator declared the step passed without running it again."""

    by: str
    reason: str = ""


@event_type("step.retry_requested")
@dataclass(frozen=True, kw_only=True)
class StepRetryRequested(Event):
    """An operator gave a failed, tripped or blocked step a new attempt."""

    by: str
    reason: str = ""


@event_type("step.expanded")
@dataclass(frozen=True, kw_only=True)
class StepExpanded(Event):
    """A `for_each` step read its list: one step per item, `ids[i]` made for `items[i]`.

    Recorded once, on the for_each step's own stream, in the commit that first makes any of the
    expansions ready (or before it): a resumed or replayed run takes the steps from here and never
    reads the list again. `source` is the reference the list was read from (`list.outputs.files`).
    """

    source: str
    items: list[Any]
    ids: list[str]
