"""The events of a saga rollback: compensations of completed steps, run when a step failed for good.

They are recorded on the run's own stream (``<run_id>``), not on a stream of their own: a stream
named ``<run_id>/...`` would be folded as a step, and the run stream already orders everything
the orchestrator decides about the run as a whole. The run-state fold ignores these types; the
saga reads them back from the log (which compensations passed, which gave up) to resume a
rollback after a crash without running a passed compensation twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .registry import Event, event_type

RollbackOutcome = Literal["rolled_back", "partially_rolled_back", "failed", "cancelled"]


@event_type("rollback.started")
@dataclass(frozen=True, kw_only=True)
class RollbackStarted(Event):
    """A rollback began: `compensations` lists the steps to undo, in the order they will be undone."""

    failed_steps: list[str]  # the steps that failed for good and caused the rollback
    compensations: list[str]  # completed steps with a compensation, in rollback order
    without_compensation: list[str] = field(default_factory=list)  # completed, nothing to undo them
    order: Literal["reverse", "parallel"] = "reverse"


@event_type("compensation.started")
@dataclass(frozen=True, kw_only=True)
class CompensationStarted(Event):
    """An attempt of a step's compensation was dispatched (attempt numbers count across rollbacks)."""

    step_id: str
    attempt: int
    action: str  # the action with ${step_output.NAME} substituted
    parameters: dict[str, Any] = field(default_factory=dict)
    host: str = ""
    pid: int = 0  # the worker running it


@event_type("compensation.passed")
@dataclass(frozen=True, kw_only=True)
class CompensationPassed(Event):
    """The step's compensation succeeded: the step is undone and is never compensated again."""

    step_id: str
    attempt: int
    started_at: float
    finished_at: float


@event_type("compensation.failed")
@dataclass(frozen=True, kw_only=True)
class CompensationFailed(Event):
    """An attempt of a compensation failed; `final` says its retries are used up."""

    step_id: str
    attempt: int
    reason: str  # exit_code, timeout, interrupted, cancelled, ...
    started_at: float
    finished_at: float
    exit_code: int | None = None
    output_excerpt: str = ""
    final: bool = False


@event_type("rollback.finished")
@dataclass(frozen=True, kw_only=True)
class RollbackFinished(Event):
    """The rollback ended: what was undone, what could not be, and what was not attempted."""

    outcome: RollbackOutcome
    compensated: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    not_attempted: list[str] = field(default_factory=list)  # left after a fail_fast or a timeout
    reason: str = ""
