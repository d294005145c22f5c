"""The reactor's verdicts on failed steps: retry, open the breaker, trip — and what tripping means.

`error_handling.on_failure.action` says what a step that failed for good does to the run:
`log_and_continue` (its dependents are blocked, the rest carry on), `skip_step` (it counts as
skipped and its dependents run), `fail_fast` (nothing new starts; every waiting step is blocked),
`escalate` (fail fast, plus an escalation line). Every effect is an event, so resume carries on.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

from stepledger.events import BreakerOpened, RetryScheduled, StepBlocked, StepSkipped, StepTripped

from .messages import message_line
from .policy import decide_after_failure

if TYPE_CHECKING:
    from .context import RunContext

ENGINE = "stepledger"  # who an automatic action is recorded as


def decide_failure(reactor: RunContext, sid: str, now: float) -> None:
    """Record the verdict on a step in the `failed` state."""
    if reactor.life[sid].state != "failed" or reactor.stopping:
        return  # a stopped run leaves the verdict to whoever resumes it
    if reactor.halted_by is not None:
        reactor.fire(sid, "block", StepBlocked(blocked_by=reactor.halted_by, reason="fail_fast"))
        return
    state = reactor.run.steps[sid]
    step = reactor.steps[sid]
    decision = decide_after_failure(step, state)
    say(reactor, decision.warning)  # an error pattern that ran out of time
    handlers = reactor.ws.error_handling.handlers
    if decision.kind == "retry":
        not_before = now + decision.delay_s
        event = RetryScheduled(attempt=state.attempt, next_attempt=state.attempt + 1, not_before=not_before,
                               delay_s=decision.delay_s)  # fmt: skip
        reactor.fire(sid, "schedule_retry", event)
        heapq.heappush(reactor.timers, (not_before, sid))
        if state.last_reason not in ("interrupted", "cancelled", "lost_worker"):
            say(
                reactor,
                message_line(
                    "on_retry", handlers.get("on_retry"), step, state.attempt + 1, reactor.run.run_id
                ),
            )
    elif decision.kind == "open_breaker":
        until = now + decision.delay_s
        reactor.fire(
            sid,
            "open_breaker",
            BreakerOpened(attempt=state.attempt, reason=decision.reason, cooldown_until=until),
        )
        heapq.heappush(reactor.timers, (until, sid))
        say(
            reactor,
            message_line(
                "on_circuit_open", handlers.get("on_circuit_open"), step, state.attempt, reactor.run.run_id
            ),
        )
    else:
        reactor.fire(sid, "trip", StepTripped(attempt=state.attempt, reason=decision.reason,
                                              error_signature=state.repeated_signature))  # fmt: skip
        if decision.reason in ("max_attempts", "error_repeats"):
            say(
                reactor,
                message_line(
                    "on_circuit_open",
                    handlers.get("on_circuit_open"),
                    step,
                    state.attempt,
                    reactor.run.run_id,
                ),
            )
        say(
            reactor,
            message_line("on_failure", handlers.get("on_failure"), step, state.attempt, reactor.run.run_id),
        )
        # Imported only here: no other moment of a run needs diagnostics' modules.
        from .diagnostics import collect_if_asked

        collect_if_asked(reactor, sid)
        failed_for_good(reactor, sid)


def failed_for_good(reactor: RunContext, sid: str) -> None:
    """Apply the workstream's on_failure action to a step that just tripped."""
    action = reactor.ws.error_handling.on_failure_action
    if action == "skip_step":
        reactor.fire(sid, "skip", StepSkipped(by=ENGINE, reason="on_failure action skip_step"))
        reactor.release_dependents(sid)
        return
    if action in ("fail_fast", "escalate"):
        halt(reactor, sid)
        if action == "escalate":
            state = reactor.run.steps[sid]
            line = (f"ESCALATION: step {sid} failed for good ({state.last_reason}) in run "
                    f"{reactor.run.run_id}; the run stops")  # fmt: skip
            notify = reactor.ws.error_handling.handlers.get("on_failure")
            if notify is not None and notify.notify:
                line += f"; notify {', '.join(notify.notify)}"
            say(reactor, line)
        return
    block_dependents(reactor, sid)


def halt(reactor: RunContext, sid: str) -> None:
    """Fail fast: block every waiting step, start nothing new; running ones finish."""
    reactor.halted_by = sid
    for other in reactor.steps:
        if reactor.life[other].state in ("pending", "ready", "retrying", "failed"):
            reactor.fire(other, "block", StepBlocked(blocked_by=sid, reason="fail_fast"))


def block_dependents(reactor: RunContext, failed_sid: str) -> None:
    """Block every step that can no longer run because `failed_sid` failed for good."""
    todo = list(reactor.dependents[failed_sid])
    while todo:
        sid = todo.pop()
        if reactor.life[sid].can("block"):
            reactor.fire(sid, "block", StepBlocked(blocked_by=failed_sid, reason="dependency failed"))
            todo.extend(reactor.dependents[sid])


def say(reactor: RunContext, line: str | None) -> None:
    """Write a handler's line to the run's log and output."""
    if line:
        reactor.reporter.note(line)
