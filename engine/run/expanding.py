"""The reactor's side of `for_each`: read the list once, record it as one event, then run its steps.

When a for_each step's dependencies are done (and its `when` holds), the reactor reads the list
from the outputs its source step recorded and, instead of making the step ready:

- a list of n items (n ≤ `max_fan_out`): records `step.expanded {source, items, ids}` on the step's
  stream, which makes the step `expanded` and `ID[0]`…`ID[n-1]` pending; the reactor grafts them
  into its graph (engine/workstream/for_each.py: `graft`), so the step's dependents wait for every
  one of them. The expansions become ready in the same tick, so the event is in the same commit
  as their first starts — nothing of them can be dispatched before it is recorded;
- an empty list (or a source that was skipped): the step is skipped with reason `empty: …`, and
  its dependents do what its `on_skip` says;
- no list (not JSON, not a list, an output a passed step did not record) or more than
  `max_fan_out` items: the step fails for good with that line as its error (an attempt that never
  ran, as when a worktree cannot be made), and `on_failure` decides what that does to the run.
  Reading the recorded output again would give the same answer, so it is not retried.

The list is read from the log, never from the source step again, and once `step.expanded` is
recorded a resumed run takes the expansions from it (`grafted`): after a kill -9 before the event,
the next reactor reads the same recorded outputs and makes the same steps; after it, the same
steps are in the log.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from stepledger.events import RecordedEvent, StepFailed, StepReady, StepSkipped, StepStarted, StepTripped
from stepledger.events.types import StepExpanded

from ..workstream.for_each import expansion_ids, graft, read_items, source
from ..workstream.model import Workstream
from . import kill_points
from .failures import ENGINE, failed_for_good

if TYPE_CHECKING:
    from .context import RunContext

Graft = Callable[[str, list[Any], list[str]], None]


def fan_out(reactor: RunContext, sid: str, add: Graft) -> None:
    """Expand, skip or fail the for_each step `sid`, whose dependencies are done; `add` grafts."""
    kill_points.reached("fan_out")  # the crash suite's: deciding, nothing of it recorded yet
    step = reactor.steps[sid]
    assert step.for_each is not None
    where = source(step.for_each)
    assert where is not None  # validate refused anything else
    dependency, name = where
    state = reactor.run.step(dependency)
    reading = read_items(step, state.state, state.outputs)
    if reading.verdict == "skip":
        reactor.fire(sid, "skip", StepSkipped(by=ENGINE, reason=reading.why))
        reactor.release_dependents(sid)
    elif reading.verdict == "refuse":
        _fail_for_good(reactor, sid, reading.why)
    else:
        items = list(reading.items)
        ids = expansion_ids(sid, len(items))
        reactor.fire(sid, "expand", StepExpanded(source=f"{dependency}.outputs.{name}", items=items, ids=ids))
        add(sid, items, ids)
        reactor.release_dependents(sid)


def _fail_for_good(reactor: RunContext, sid: str, why: str) -> None:
    """Record an attempt that failed before anything ran, trip the step, apply on_failure."""
    now = time.time()
    attempt = reactor.run.step(sid).attempt + 1
    reactor.fire(sid, "ready", StepReady())
    reactor.fire(sid, "start", StepStarted(attempt=attempt, host=reactor.host, pid=0, pgid=0,
                                           reactor_pid=os.getpid(), lease_expires_at=now))  # fmt: skip
    reactor.fire(sid, "fail", StepFailed(attempt=attempt, reason="error", started_at=now, finished_at=now,
                                         error_signature=why, output_excerpt=why))  # fmt: skip
    reactor.fire(sid, "trip", StepTripped(attempt=attempt, reason="not_retryable", error_signature=why))
    failed_for_good(reactor, sid)


def grafted(workstream: Workstream, recorded: Iterable[RecordedEvent]) -> Workstream:
    """`workstream` with the expansions the log recorded (a resumed run's, or after a re-fold)."""
    ids = {s.id for s in workstream.steps}
    for event in recorded:
        template = event.step_id
        # A run resumed with --use-current-file may no longer have the step, or have it without
        # for_each: its expansions stay in the log as they are, and are not driven.
        p = event.payload
        if template in ids and workstream.step(template).for_each is not None and p["ids"][0] not in ids:
            workstream = graft(workstream, template, list(p["items"]), list(p["ids"]))
            ids.update(p["ids"])
    return workstream
