"""A step's `when`, decided once its dependencies are done: false skips it, recorded with reason `condition`.

The condition reads the run's parameters (recorded in `run.started`), the environment of the
orchestrator deciding it, the step's matrix values and its dependencies' recorded outputs. It is
decided when the step would become ready, and the skip is recorded like any transition: a resumed
run does not decide it again. A step skipped for any cause whose `on_skip` is `skip` has its
dependents skipped too (reason `condition: <step> was skipped`), and so on down; with `on_skip: run`
(the default) they run if their other dependencies passed, as after any skip.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from stepledger.events import StepSkipped

from ..workstream.expressions import parse
from ..workstream.step_outputs import split_key
from .failures import ENGINE

if TYPE_CHECKING:
    from ..workstream.model import Step
    from .context import RunContext

REASON = "condition"


def _lookup(reactor: RunContext, step: Step) -> Any:
    def lookup(namespace: str, name: str) -> Any:
        if namespace == "params":
            return reactor.ws.params.get(name)
        if namespace == "env":
            return os.environ.get(name)
        if namespace == "matrix":
            return step.matrix.get(name)
        dependency, output = split_key(name)
        return reactor.run.step(dependency).outputs.get(output)

    return lookup


def skip_reason(reactor: RunContext, sid: str) -> str | None:
    """Why the step `sid`, whose dependencies are done, is skipped instead of made ready (None: it runs)."""
    step = reactor.steps[sid]
    for dependency in step.requires:
        if reactor.run.step(dependency).state == "skipped" and reactor.steps[dependency].on_skip == "skip":
            return f"{REASON}: {dependency} was skipped"
    if step.when is not None and not parse(step.when).holds(_lookup(reactor, step)):
        return REASON
    return None


def skipped_by_condition(reactor: RunContext, sid: str) -> bool:
    """Skip `sid` if its condition (or a skipped dependency's on_skip) says so; whether it was."""
    reason = skip_reason(reactor, sid)
    if reason is None:
        return False
    reactor.fire(sid, "skip", StepSkipped(by=ENGINE, reason=reason))
    reactor.release_dependents(sid)
    return True
