"""What a run on the fleet asks of its workstream: which queue each step goes to, what is refused."""

from __future__ import annotations

from ..errors import UserInputError
from ..workstream.model import Workstream
from .settings import DEFAULT_QUEUE


def step_queues(workstream: Workstream) -> dict[str, str]:
    """Each step's queue: its own `queue`, else the default queue."""
    return {step.id: step.queue or DEFAULT_QUEUE for step in workstream.steps}


def check_fleet_run(workstream: Workstream, merge_into: str | None) -> None:
    """Refuse (one line) what a run on workers cannot do yet."""
    if workstream.execution.isolation != "none" or merge_into:
        raise UserInputError(
            "execution.isolation (git worktrees) cannot be used with --on-workers yet: "
            "set it to none, or run without --on-workers (docs/workers.md)"
        )


def recorded_step_queues(recorded: dict) -> dict[str, str]:
    """Each step's queue, from the workstream as the log recorded it (for a resume)."""
    return {step["id"]: step.get("queue") or DEFAULT_QUEUE for step in recorded.get("steps", [])}
