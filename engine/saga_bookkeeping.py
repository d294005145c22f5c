"""What a rollback leaves behind: the saga events it commits, what it tells the operator, and its tally.

`Rollback` (saga.py) decides which compensation runs when and takes their results; this base class
holds the bookkeeping those decisions go through: committing one saga event at a time (re-trying
when another writer was first, with the crash suite's `rollback_after_append` fault point), the
notes and `error_handling` messages (with escalation), and the closing tally that becomes
rollback.finished with its messages and kept diagnostics. It lives apart because none of it
chooses what to run: it only records and reports, so saga.py reads as the rollback's control flow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stepledger.events import Event, RollbackFinished, RollbackOutcome

from . import faults

if TYPE_CHECKING:
    from .model import Saga, Workstream
    from .run_context import RunContext
    from .saga_log import RollbackLog


class RollbackBookkeeping:
    """The recording and reporting half of a `Rollback`, which sets these attributes in its __init__."""

    reactor: RunContext
    ws: Workstream
    saga: Saga
    run_id: str
    log: RollbackLog
    halted: str

    # --- the end ------------------------------------------------------------------------------

    def _finish(self) -> str:
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
                f"rollback complete: {len(compensated)} step(s) undone",
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
        from .diagnostics import collect_compensation_diagnostics

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
                faults.reached("rollback_after_append")
                self.reactor.reporter.events(self.reactor.run, recorded)
                return
        raise RuntimeError(f"run {self.run_id}: could not record {event.type_name} after 20 tries")

    def _note(self, text: str) -> None:
        self.reactor.reporter.note(text)

    def _message(self, handler: str, default: str, **values: Any) -> None:
        """Write an `error_handling.<handler>` message (or `default`), with its placeholders filled."""
        spec = self.ws.error_handling.handlers.get(handler)
        text = spec.message if spec is not None and spec.message else default
        values = {"run_id": self.run_id, **values}
        for key, value in values.items():
            text = text.replace("${" + key + "}", str(value))
        self._note(text)
        if spec is not None and spec.action == "escalate":
            to = f" (notify: {', '.join(spec.notify)})" if spec.notify else ""
            self._note(f"ESCALATION: {text}{to}")

    def _count_done(self) -> int:
        return sum(1 for p in self.log.progress.values() if p.passed or p.gave_up)
