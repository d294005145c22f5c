"""Fault injection for the crash test suite: kill this process at a named point of the reactor.

`STEPLEDGER_KILL_AT=after_append:3` makes the 3rd pass through the `after_append` point send
SIGKILL to the orchestrator itself — the same death as `kill -9`, at an exact boundary. Unset (as
in production), `reached` is one dictionary lookup.
Points: `before_append`, `after_append` (committed, not yet dispatched), `after_dispatch`
(dispatched, outcome not yet recorded), `on_result` (a result arrived, not yet recorded),
`in_resume` (a resuming reactor, before it recovers orphaned attempts), `rollback_after_append`
(a saga event committed, not yet acted on: engine/saga/rollback.py), `fan_out` (a for_each step's
list about to be read, nothing of its expansion recorded) and `after_fan_out_append` (the batch
holding `step.expanded` committed, none of its expansions dispatched: engine/run/expanding.py).
Git isolation (engine/worktrees/operations.py): `worktree_add` and `after_worktree_add` (around
`git worktree add`: the run's worktree, then each attempt's), `before_commit` and `after_commit`
(committing a passed attempt's work), `in_merge` (the merge into the integration branch made, not
yet committed), `after_merge` (committed, its event not yet appended), `after_merge_into`
(the end-of-run merge into --merge-into's branch, when git merges rather than moves the branch).
"""

from __future__ import annotations

import os
import signal

_plan: dict[str, int] = {}
for _item in filter(None, os.environ.get("STEPLEDGER_KILL_AT", "").split(",")):
    _name, _, _count = _item.partition(":")
    _plan[_name] = int(_count or 1)


def reached(point: str) -> None:
    """Count a pass through `point`; die by SIGKILL if the plan says this is the one."""
    if point not in _plan:
        return
    _plan[point] -= 1
    if _plan[point] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
