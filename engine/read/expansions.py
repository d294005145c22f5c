"""A run's steps as the readers show them: the recorded workstream plus its for_each expansions.

The run's recorded workstream (`run.started`) holds a for_each step as one step; the steps it
became are in its `step.expanded` event (engine/run/expanding.py). `status`, `replay`, the web
view's graph and the timeline read both through here, so they list an expansion right after its
for_each step and draw the for_each step's dependents waiting for every expansion, as the
reactor that ran them did.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stepledger.events import RecordedEvent
from stepledger.events.types import StepExpanded
from stepledger.store.port import EventStore

EXPANDED = StepExpanded.type_name


def expansions_in(events: Iterable[RecordedEvent]) -> dict[str, list[str]]:
    """for_each step -> the ids of its expansions, from the run's `step.expanded` events."""
    return {e.step_id: list(e.payload["ids"]) for e in events if e.type == EXPANDED and e.step_id}


def recorded_expansions(store: EventStore, run_id: str) -> dict[str, list[str]]:
    """The expansions of a run's for_each steps, asked of the log (an indexed type: cheap)."""
    return expansions_in(store.find_events(run_id=run_id, types=[EXPANDED]))


def steps_and_requirements(
    workstream: dict[str, Any], expansions: dict[str, list[str]]
) -> tuple[list[str], dict[str, list[str]]]:
    """The run's step ids in order (each expansion after its for_each step) and what each waits for."""
    order: list[str] = []
    requires: dict[str, list[str]] = {}
    for step in workstream.get("steps", []):
        if not (isinstance(step, dict) and "id" in step):
            continue
        sid = step["id"]
        needs = list(step.get("requires") or step.get("depends_on") or [])
        requires[sid] = needs + [e for dep in needs for e in expansions.get(dep, ())]
        order.append(sid)
        for expansion in expansions.get(sid, ()):
            order.append(expansion)
            requires[expansion] = list(needs)
    return order, requires


def expansion_note(ids: list[str]) -> str:
    """`into 3 steps: process[0] … process[2]`: what `status` says of an expanded step."""
    shown = ids[0] if len(ids) == 1 else f"{ids[0]} … {ids[-1]}"
    return f"into {len(ids)} step{'s' if len(ids) != 1 else ''}: {shown}"
