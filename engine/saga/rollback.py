"""Saga rollback: when a step fails for good, undo the completed steps with their compensations.

The reactor calls `roll_back` once every step is terminal and the run would end `failed`, while its
worker pool is still up. Compensations run on that pool like steps (a tool call, with a timeout),
one at a time in reverse completion order or all at once (`rollback_order: parallel`), each
retried up to its `retries`. Every decision is an event on the run's stream (events/saga.py),
committed before it is acted on; `log.read_rollback` reads them back, so an orchestrator that
resumes a crashed rollback continues it and never runs a compensation the log shows as passed.
A compensation's files live in `<run dir>/compensations/` (`<step>.<attempt>.log`, ...). Every saga
event is committed one at a time through `_commit`; the notes, `error_handling` messages and the
closing tally that becomes rollback.finished are at the end of the class.
Fault point for the crash suite: `STEPLEDGER_KILL_AT=rollback_after_append:N` dies right after the
N-th saga event is committed (before it is acted on).
"""

from __future__ import annotations

import queue
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

from stepledger.events import (
    CompensationFailed,
    CompensationPassed,
    CompensationStarted,
    Event,
    FailureReason,
    RollbackFinished,
    RollbackOutcome,
    RollbackStarted,
    RunOutcome,
)
from stepledger.events.state import UNCOUNTED_REASONS

from ..execution.spec import AttemptResult, AttemptSpec
from ..paths import compensation_dir
from ..read.describe import plural
from ..run import kill_points
from ..run.context import WAKE
from ..run.orphans import settle_orphan, stop_attempt
from .log import ResolvedCompensation, RollbackLog, plan_rollback, read_rollback, resolve

if TYPE_CHECKING:
    from ..run.context import RunContext

_CANCEL_WAIT = 10.0  # seconds to wait for the results of compensations killed by a stop


def roll_back(reactor: RunContext) -> RunOutcome:
    """Run the compensations of the completed steps; return the run's outcome afterwards."""
    return Rollback(reactor).run()


class Rollback:
    """One rollback of one run, driven on the reactor's pool and recorded in its ledger."""

    def __init__(self, reactor: RunContext) -> None:
        self.reactor = reactor
        self.ws = reactor.ws
        self.saga = reactor.ws.saga
        self.run_id = reactor.run.run_id
        self.dir = compensation_dir(reactor.run_dir)
        self.running: dict[str, int] = {}  # step id -> attempt in flight
        self.orphans: set[tuple[str, int]] = set()  # attempts of a previous orchestrator
        self.todo: deque[str] = deque()
        self.halted = ""  # why no further compensation starts (fail_fast, timeout)
        self.log = RollbackLog()

    # --- the whole rollback -------------------------------------------------------------------

    def run(self) -> RunOutcome:
        """Start or resume the rollback, drive it to its end, and return the run's outcome."""
        events = list(self.reactor.ledger.store.read_run(self.run_id))
        self.log = read_rollback(events)
        if self.log.finished_outcome is not None:
            return self.log.finished_outcome  # it ended before a crash that came before run.finished
        if self.log.open:
            self._note(f"resuming the rollback: {self._count_done()}/{len(self.log.plan)} compensations done")
        else:
            self._start(events)
        self.dir.mkdir(parents=True, exist_ok=True)
        steps = {s.id: s for s in self.ws.steps}
        for sid in self.log.plan:
            progress = self.log.progress[sid]
            if progress.passed or progress.gave_up:
                continue
            if sid in steps and steps[sid].compensation is not None:
                self.todo.append(sid)
            else:  # resumed with --use-current-file, and the file no longer undoes this step
                self._note(f"[{sid}] the workstream no longer has a compensation for this step: not undone")
        self._recover_in_flight()
        return self._drive()

    def _start(self, events: list[Any]) -> None:
        run = self.reactor.run
        plan, without = plan_rollback(run, self.ws, events)
        failed = [sid for sid, s in run.steps.items() if s.state in ("tripped", "failed")]
        self._commit(
            RollbackStarted(
                failed_steps=failed,
                compensations=plan,
                without_compensation=without,
                order=self.saga.rollback_order,
            )
        )
        self.log = read_rollback(self.reactor.ledger.store.read_run(self.run_id))
        self._message(
            "on_rollback_start",
            f"rolling back {plural(len(plan), 'completed step')}: {', '.join(plan)}"
            if plan
            else "nothing to roll back: no completed step has a compensation",
            completed_steps=len(plan),
            step_id=", ".join(failed),
        )
        if without:
            self._note("completed step(s) without a compensation, left as they are: " + ", ".join(without))

    def _drive(self) -> RunOutcome:
        deadline = (self.log.started_at or time.time()) + self.saga.timeout if self.saga.timeout else None
        while True:
            if self._stopping():
                return self._stop()
            if deadline is not None and time.time() >= deadline and not self.halted:
                self._halt(f"the rollback timed out after {self.saga.timeout:g}s")
            self._start_what_fits()
            if not self.running and (not self.todo or self.halted):
                return self._finish()
            timeout = None if deadline is None or self.halted else max(0.0, deadline - time.time())
            if not self.running:
                timeout = 0.1 if timeout is None else min(timeout, 0.1)  # no idle worker yet: look again soon
            try:
                item = self.reactor.results.get(timeout=timeout)
            except queue.Empty:
                continue
            self._take(item)

    def _start_what_fits(self) -> None:
        if self.halted:
            return
        while self.todo:
            if self.saga.rollback_order == "reverse" and self.running:
                return  # one at a time, in order: an undo may rely on the later step being undone
            worker = self.reactor.pool.idle_worker()
            if worker is None:
                return
            self._dispatch(self.todo.popleft(), worker)

    def _dispatch(self, sid: str, worker: Any) -> None:
        step = self.ws.step(sid)
        comp = step.compensation
        assert comp is not None  # the plan holds only steps with a compensation
        progress = self.log.progress[sid]
        attempt = progress.last_attempt + 1
        resolved = resolve(comp, self.reactor.run.step(sid).outputs)
        if resolved.missing:
            self._note(
                f"[{sid}] compensation: no recorded output {', '.join(sorted(resolved.missing))}; "
                "using empty values"
            )
        self._commit(
            CompensationStarted(
                step_id=sid,
                attempt=attempt,
                action=resolved.action,
                parameters=resolved.parameters,
                host=self.reactor.host,
                pid=worker.pid,
            )
        )
        progress.last_attempt = attempt
        self.running[sid] = attempt
        self.reactor.pool.submit(worker, self._spec(sid, attempt, resolved))

    def _spec(self, sid: str, attempt: int, resolved: ResolvedCompensation) -> AttemptSpec:
        return self.reactor.specs.compensation(
            self.ws.step(sid), attempt, resolved.action, resolved.env, self.dir
        )

    # --- results ------------------------------------------------------------------------------

    def _take(self, item: Any) -> None:
        if item == WAKE:
            external = self.reactor.ledger.absorb()  # a cancel, or an operator's action
            if external:
                self.reactor.reporter.events(self.reactor.run, external)
            return
        result: AttemptResult = item
        if self.running.get(result.step_id) != result.attempt:
            self._note(f"[{result.step_id}] ignored a result of attempt {result.attempt} during the rollback")
            return
        del self.running[result.step_id]
        self.orphans.discard((result.step_id, result.attempt))
        self._record(result)

    def _record(self, result: AttemptResult) -> None:
        sid = result.step_id
        progress = self.log.progress[sid]
        if result.passed:
            progress.passed = True
            self._commit(
                CompensationPassed(
                    step_id=sid,
                    attempt=result.attempt,
                    started_at=result.started_at,
                    finished_at=result.finished_at,
                )
            )
            return
        counted = result.reason not in UNCOUNTED_REASONS
        progress.counted_failures += counted
        comp = self.ws.step(sid).compensation
        retries = comp.retries if comp else 0
        final = counted and progress.counted_failures > retries
        self._commit(
            CompensationFailed(
                step_id=sid,
                attempt=result.attempt,
                reason=result.reason or "error",
                started_at=result.started_at,
                finished_at=result.finished_at,
                exit_code=result.exit_code,
                output_excerpt=result.output_excerpt[-2000:],
                final=final,
            )
        )
        if not final:
            self.todo.appendleft(sid)  # first in line again: the order of the rollback is kept
            return
        progress.gave_up = True
        if self.saga.on_compensation_failure == "fail_fast":
            self._halt(f"compensation of {sid} failed (on_compensation_failure: fail_fast)")

    def _recover_in_flight(self) -> None:
        """Settle the compensations a previous orchestrator started and did not see finish."""
        for sid in self.log.plan:
            progress = self.log.progress[sid]
            attempt = progress.in_flight
            if attempt is None or sid not in self.todo:
                continue  # nothing in flight, or settled, or no longer compensated by the workstream
            self.todo.remove(sid)
            self.running[sid] = attempt
            self.orphans.add((sid, attempt))  # before a waiting thread could deliver its result
            started_at = progress.in_flight_started_at
            deliver = self.reactor.results.put
            delivered = settle_orphan(str(self.dir), self.run_id, sid, attempt, started_at, deliver)
            if delivered:
                self.orphans.discard((sid, attempt))
            else:
                self._note(
                    f"[{sid}] compensation attempt {attempt} is still running after a restart: waiting"
                )

    # --- the end ------------------------------------------------------------------------------

    def _halt(self, why: str) -> None:
        self.halted = why
        self._note(f"rollback stopping: {why}")
        if why.startswith("the rollback timed out"):
            self._kill_running("timeout")

    def _kill_running(self, reason: FailureReason) -> None:
        for sid, attempt in list(self.running.items()):
            orphan = (sid, attempt) in self.orphans
            stop_attempt(
                self.reactor.pool, str(self.dir), self.run_id, sid, attempt, orphan=orphan, reason=reason
            )

    def _stopping(self) -> bool:
        return self.reactor.stop_requested or self.reactor.run.cancel_requested

    def _stop(self) -> Literal["cancelled", "interrupted"]:
        """Stop the rollback where it is (Ctrl-C or a cancel); a resume continues it."""
        reason: Literal["cancelled", "interrupted"] = (
            "cancelled" if self.reactor.run.cancel_requested else "interrupted"
        )
        self._kill_running(reason)
        give_up_at = time.time() + _CANCEL_WAIT
        while self.running and time.time() < give_up_at:
            try:
                item = self.reactor.results.get(timeout=max(0.0, give_up_at - time.time()))
            except queue.Empty:
                break
            if item != WAKE:
                self._take(item)
        self._note(
            f"rollback {reason} with {len(self.todo) + len(self.running)} compensation(s) to go; "
            f"`stepledger resume {self.run_id}` continues it"
        )
        return reason

    # --- the end ------------------------------------------------------------------------------

    def _finish(self) -> RollbackOutcome:
        progress = [self.log.progress[sid] for sid in self.log.plan]
        compensated = [p.step_id for p in progress if p.passed]
        failed = [p.step_id for p in progress if p.gave_up]
        not_attempted = [p.step_id for p in progress if not (p.passed or p.gave_up)]
        outcome: RollbackOutcome
        if not failed and not not_attempted:
            outcome = "rolled_back"
        else:
            outcome = "partially_rolled_back" if self.saga.partial_rollback else "failed"
        self._commit(
            RollbackFinished(
                outcome=outcome,
                compensated=compensated,
                failed=failed,
                not_attempted=not_attempted,
                reason=self.halted,
            )
        )
        if outcome == "rolled_back":
            self._message(
                "on_rollback_complete",
                f"rollback complete: {plural(len(compensated), 'step')} undone"
                if compensated
                else "rollback complete: nothing needed undoing",
                completed_steps=len(compensated),
            )
        else:
            self._collect_diagnostics(failed)
            undone = ", ".join(compensated) or "none"
            text = (
                f"rollback {outcome.replace('_', ' ')}: undone {undone}; compensation failed: "
                f"{', '.join(failed) or 'none'}; not attempted: {', '.join(not_attempted) or 'none'}"
            )
            self._message(
                "on_rollback_failure",
                text,
                completed_steps=len(compensated),
                step_id=", ".join(failed + not_attempted),
            )
        return outcome

    def _collect_diagnostics(self, failed: list[str]) -> None:
        """Keep the failed compensations' output when `on_rollback_failure.collect_diagnostics` asks."""
        spec = self.ws.error_handling.handlers.get("on_rollback_failure")
        if spec is None or not spec.collect_diagnostics:
            return
        from ..run.diagnostics import collect_compensation_diagnostics

        for sid in failed:
            attempts = self.log.progress[sid].last_attempt
            folder = collect_compensation_diagnostics(
                self.reactor.run_dir, self.reactor.run, self.ws.step(sid), attempts
            )
            self._note(f"[{sid}] compensation diagnostics kept in {folder}")

    # --- recording and telling ----------------------------------------------------------------

    def _commit(self, event: Event) -> None:
        """Append one event to the run's stream now (re-folding and re-trying if another writer was first)."""
        ledger = self.reactor.ledger
        for _ in range(20):
            ledger.record(None, event)
            recorded = ledger.flush()
            if recorded is not None:
                # Crash-suite point: the event is committed, nothing has acted on it yet.
                kill_points.reached("rollback_after_append")
                self.reactor.reporter.events(self.reactor.run, recorded)
                return
        raise RuntimeError(f"run {self.run_id}: could not record {event.type_name} after 20 tries")

    def _note(self, text: str) -> None:
        self.reactor.reporter.note(text)

    def _message(self, handler: str, default: str, **values: Any) -> None:
        """Write an `error_handling.<handler>` message (or `default`), with its placeholders filled."""
        from ..run.messages import handler_line

        spec = self.ws.error_handling.handlers.get(handler)
        values = {"run_id": self.run_id, "workstream_id": self.ws.id, **values}
        values.setdefault("compensation_count", values.get("completed_steps", 0))
        if spec is not None and spec.message:
            text = handler_line(spec, spec.message, values)
        else:  # the default names step ids: nothing in them is a placeholder
            text = handler_line(spec, default, None)
        self._note(text)
        if spec is not None and spec.action == "escalate":
            to = f" (notify: {', '.join(spec.notify)})" if spec.notify else ""
            self._note(f"ESCALATION: {text}{to}")

    def _count_done(self) -> int:
        return sum(1 for p in self.log.progress.values() if p.passed or p.gave_up)
