"""The kill points a chaos run may aim at, and which of them a given workstream can reach.

Some are the engine's own fault points (`STEPLEDGER_KILL_AT`, engine/run/kill_points.py): the
orchestrator kills itself at the n-th pass. The others are moments no fault point names; the chaos
driver watches for them from outside (an attempt's log shows an acceptance test starting, the log
records a retry's wait) or picks an instant, and sends SIGKILL itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from graphlib import TopologicalSorter
from typing import Literal

from stepledger.engine.workstream.model import Workstream

How = Literal["fault", "watch_acceptance", "watch_retry", "instant"]


@dataclass(frozen=True)
class KillPoint:
    """A moment at which an iteration's orchestrator is killed."""

    name: str
    where: str  # in words, for the plan and the docs
    how: How
    fault: str = ""  # the engine's fault point, for how == "fault"


KILL_POINTS: tuple[KillPoint, ...] = (  # in the order the default plan takes them
    KillPoint("after_dispatch", "attempts dispatched, outcome not yet recorded", "fault", "after_dispatch"),
    KillPoint("random", "a seeded random instant of the run", "instant"),
    KillPoint("retry_wait", "while a failed step waits for its retry", "watch_retry"),
    KillPoint("rollback", "mid-rollback, a compensation's start committed", "fault", "rollback_after_append"),
    KillPoint("acceptance", "while a step's acceptance tests run", "watch_acceptance"),
    KillPoint(
        "slow_workers",
        "right after dispatch, while slow-starting workers have not read their jobs",
        "fault",
        "after_dispatch",
    ),
    KillPoint("after_append", "a tick's events committed, not yet dispatched", "fault", "after_append"),
    KillPoint("on_result", "a result arrived, not yet recorded", "fault", "on_result"),
    KillPoint(
        "in_resume", "a resume, before it recovers the attempts the first kill left", "fault", "in_resume"
    ),
    KillPoint("before_append", "a tick's events decided, not yet committed", "fault", "before_append"),
)
BY_NAME = {point.name: point for point in KILL_POINTS}

# What a slow-starting worker waits between reading a job and claiming it. Long enough that the
# resume (a fresh interpreter) settles the orphaned jobs before their workers wake.
SLOW_WORKER_DELAY = 2.0


def passes(point: KillPoint, workstream: Workstream) -> int:
    """How many passes through `point` every run of `workstream` surely makes (at least 1)."""
    if point.fault == "on_result":
        return max(1, len(workstream.steps))  # one result per step at least
    if point.fault == "rollback_after_append":
        return 1
    requires = {step.id: step.requires for step in workstream.steps}
    depth: dict[str, int] = {}
    for step_id in TopologicalSorter(requires).static_order():  # the rules made sure it is a DAG
        depth[step_id] = 1 + max((depth[r] for r in requires.get(step_id, ())), default=0)
    return max(depth.values(), default=1)  # a dispatch (and its appends) per level of the graph


def unreachable(point: KillPoint, workstream: Workstream, shell_stub: bool = False) -> str | None:
    """Why `workstream` (its stubs, with `shell_stub`) can never reach `point`, or None if it can."""
    steps = workstream.steps
    if shell_stub and point.name in ("retry_wait", "rollback"):
        return "with --shell-stub every step passes at its first attempt"
    if point.name == "acceptance" and not any(s.acceptance_tests for s in steps):
        return "no step has acceptance tests"
    if point.name == "retry_wait" and not any(s.circuit_breaker.max_attempts > 1 for s in steps):
        return "no step may be retried (circuit_breaker.max_attempts is 1 everywhere)"
    if point.name == "rollback" and not (workstream.saga.enabled and any(s.compensation for s in steps)):
        return "the workstream has no saga with compensations"
    return None
