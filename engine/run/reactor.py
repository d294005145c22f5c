"""The reactor: fold the log into state, decide what may start, record it, dispatch, record outcomes.

One reactor drives one run. Each tick it decides (verdicts on failures, due retries, newly ready
steps, starts that fit), appends the tick's events in one transaction through the ledger, and only
after that commit dispatches anything — a transition is committed before it is acted on. It then
blocks on the pool's result queue with a timeout set by the next timer (a retry back-off, the rate
limit), so it wakes on completions instead of polling. Attempt numbers fence stale results.
"""

from __future__ import annotations

import heapq
import os
import queue
import time
from pathlib import Path
from typing import Any

from stepledger.events import (
    AcceptanceTestsRecorded,
    Event,
    FailureReason,
    RunBranchCreated,
    RunFinished,
    RunOutcome,
    StepFailed,
    StepPassed,
    StepReady,
    StepStarted,
)
from stepledger.events.state import DONE_STATES, RunState
from stepledger.store.port import EventStore

from ..execution.dispatcher import Dispatcher
from ..execution.spec import AttemptResult, AttemptSpec
from ..paths import hostname
from ..read.measured import MEASURED_TYPES, measured_times
from ..workstream.for_each import graft
from ..workstream.model import Step, Workstream
from ..workstream.profiles import ToolProfile
from ..worktrees.git import GitError
from ..worktrees.isolation import RunIsolation
from . import kill_points
from .attempt_specs import AttemptSpecs
from .capacity import Capacity
from .conditions import skipped_by_condition
from .context import WAKE, ReactorOptions
from .expanding import fan_out, grafted
from .failures import block_dependents, decide_failure, say
from .ledger import RunLedger
from .lifecycle import StepLifecycle
from .messages import message_line
from .orphans import recover_running_steps, stop_attempt
from .reporting import NullReporter, Reporter

_FAILED_FOR_GOOD = frozenset({"tripped", "blocked"})
__all__ = ["WAKE", "Reactor", "ReactorOptions"]


class Reactor:
    """Drives one run until every step is terminal, the run is cancelled, or it is stopped.

    It is the `RunContext` (context.py) its collaborators act on.
    """

    def __init__(
        self,
        store: EventStore,
        workstream: Workstream,
        run: RunState,
        *,
        pool: Dispatcher,
        workers: int,
        run_dir: Path,
        profiles: dict[str, ToolProfile],
        reporter: Reporter | None = None,
        options: ReactorOptions | None = None,
    ) -> None:
        self.ledger = RunLedger(store, run)
        # The workstream as the run was started (or resumed) with; `ws` adds the expansions of its
        # for_each steps, those the log recorded and those this reactor records (expanding.py).
        self.base_ws = workstream
        self.ws = self._recorded_graph()
        self.run_dir = run_dir
        self.profiles = profiles
        self.reporter = reporter or NullReporter()
        self.options = options or ReactorOptions()
        self.steps: dict[str, Step] = {}
        self.order: dict[str, int] = {}
        self.dependents: dict[str, list[str]] = {}
        self._expanded_in_batch = False  # the batch holds a step.expanded (for a kill point)
        self._build_graph()
        # The session sized the pool (model.worker_limit, decided once per run) and owns it: it
        # starts it before `decide_until_done` and shuts it down before `finish`.
        self.worker_limit = workers
        self.pool = pool
        self.results: queue.SimpleQueue[Any] = pool.results
        self.host = hostname()
        self.stop_requested = False  # Ctrl-C / SIGTERM: kill running attempts, record them interrupted
        self.recovered: set[tuple[str, int]] = set()  # attempts that outlived their reactor
        self.submitted: set[tuple[str, int]] = set()  # attempts this reactor sent to its pool
        self._dispatch: list[tuple[Any, AttemptSpec]] = []
        self._tick_results: list[AttemptResult] = []  # results whose events are not committed yet
        self.specs = AttemptSpecs(run.run_id, run.workdir, run_dir, self.ws, profiles)
        self.halted_by: str | None = None  # the step whose failure stopped the run (fail_fast)
        # Git isolation (engine/worktrees/): where each attempt runs, what a pass commits and merges.
        execution = workstream.execution
        self.isolation = RunIsolation(
            execution.isolation,
            run.workdir,
            run.run_id,
            self.steps,
            scope_strict=execution.files_scope_strict,
            on_workers=bool(run.options.get("on_workers")),
        )
        self.merge_into: str | None = run.options.get("merge_into") or workstream.execution.merge_into
        self._index()

    @property
    def run(self) -> RunState:
        """The run as the log says, plus this tick's decisions."""
        return self.ledger.run

    @property
    def stopping(self) -> bool:
        """Whether no new attempt may start (a cancel or a stop was requested)."""
        return self.stop_requested or self.run.cancel_requested

    # --- derived state ------------------------------------------------------------------------

    def _recorded_graph(self) -> Workstream:
        """The base workstream with the expansions the log recorded; without a for_each step there
        are none to ask the log for."""
        if not any(s.for_each is not None for s in self.base_ws.steps):
            return self.base_ws
        return grafted(self.base_ws, self.ledger.expansions())

    def _build_graph(self) -> None:
        """Steps, their start order and their dependents, from `ws` (in place: isolation holds `steps`)."""
        self.steps.clear()
        self.steps.update((s.id, s) for s in self.ws.steps)
        self.order = {s.id: i for i, s in enumerate(self.ws.steps)}
        self.dependents = {s.id: [] for s in self.ws.steps}
        for s in self.ws.steps:
            for dep in s.requires:
                self.dependents[dep].append(s.id)

    def _index(self) -> None:
        """Rebuild every derived structure from the folded run (at start and after a re-fold)."""
        run = self.run
        self.life = {sid: StepLifecycle(sid, run.step(sid).state) for sid in self.steps}
        self.capacity = Capacity(self.ws, self.worker_limit)
        self.unmet = {
            sid: sum(1 for d in s.requires if run.step(d).state not in DONE_STATES)
            for sid, s in self.steps.items()
        }
        self.ready_heap: list[tuple[int, str]] = []
        self.timers: list[tuple[float, str]] = []
        self.undecided: set[str] = set()
        self.candidates: set[str] = set()
        for sid, lifecycle in self.life.items():
            state = run.steps[sid]
            if lifecycle.state == "pending" and self.unmet[sid] == 0:
                self.candidates.add(sid)
            elif lifecycle.state == "ready":
                heapq.heappush(self.ready_heap, (self.order[sid], sid))
            elif lifecycle.state == "retrying":
                heapq.heappush(self.timers, (state.not_before, sid))
            elif lifecycle.state == "failed":
                self.undecided.add(sid)
            elif lifecycle.state == "running":
                self.capacity.started(sid, state.started_at or 0.0)
        if self.ws.error_handling.on_failure_action in ("fail_fast", "escalate"):
            tripped = [sid for sid, lc in self.life.items() if lc.state == "tripped"]
            self.halted_by = tripped[0] if tripped else None
        for sid, lifecycle in self.life.items():
            if lifecycle.state in _FAILED_FOR_GOOD:
                block_dependents(self, sid)

    def _add_expansions(self, template: str, items: list[Any], ids: list[str]) -> None:
        """Graft a for_each step's expansions, recorded a moment ago, into the running reactor."""
        self.ws = graft(self.ws, template, items, ids)
        self._build_graph()
        for sid in ids:
            self.life[sid] = StepLifecycle(sid, "pending")
            self.unmet[sid] = 0  # they wait for what the for_each step waited for: all done
            self.candidates.add(sid)
        for dependent in self.dependents[template]:
            self.unmet[dependent] += len(ids)
        self.ready_heap = [(self.order[sid], sid) for _, sid in self.ready_heap]  # positions moved
        heapq.heapify(self.ready_heap)
        # Step groups naming the for_each step now name its expansions: the limits are rebuilt,
        # counting what runs now as before.
        old, self.capacity = self.capacity, Capacity(self.ws, self.worker_limit)
        for sid in old.running:
            self.capacity.started(sid, old.last_start_at)
        self.capacity.last_start_at = old.last_start_at
        self._expanded_in_batch = True

    def fire(self, sid: str, trigger: str, event: Event) -> None:
        """Make a step's transition (the machine refuses illegal ones) and record its event."""
        lifecycle = self.life[sid]
        lifecycle.fire(trigger, event)
        for collected in lifecycle.take_collected():
            self.ledger.record(sid, collected)

    # --- the loop -----------------------------------------------------------------------------

    def decide_until_done(self) -> RunOutcome:
        """Settle what a crash left, then tick until every step is terminal or the run stops.

        Returns the outcome the steps' states say; the pool must be started.
        """
        if self.isolation.active:  # the integration branch first: a crash's half merge is undone
            found = self.ledger.store.find_events(
                run_id=self.run.run_id, types=[RunBranchCreated.type_name], limit=1
            )
            for event in self.isolation.start(recorded=any(True for _ in found)):
                self.ledger.record(None, event)
        recover_running_steps(self)
        while True:
            now = time.time()
            self._decide(now)
            self._flush()
            if self._finished():
                break
            self._wait(now)
        return self._outcome()

    def finish(self, outcome: RunOutcome) -> RunOutcome:
        """After the pool was shut down: record what the shutdown delivered, then `run.finished`.

        Called only after a loop that ended. One that raised (the lease was lost, the database kept
        failing, a bug) records nothing more, leaving the log as a crash would — the events its
        failed append held may even name attempts never sent to the pool; resume recovers the
        attempts the log says were running.
        """
        self._drain_after_shutdown()
        if self.stop_requested and outcome not in ("cancelled",):
            outcome = "interrupted"
        return self._finish(outcome)

    def _wait(self, now: float) -> None:
        """Block until a result, a wake-up or the next timer; then take whatever else has arrived."""
        if self.candidates:  # a re-fold after a lost race left decisions: nothing may come to wake us
            return
        deadline = self._next_deadline()
        timeout = None if deadline is None else max(0.0, deadline - now)
        try:
            item = self.results.get(timeout=timeout)
        except queue.Empty:
            return
        self._take(item)
        while True:  # everything that arrived meanwhile goes into the same transaction
            try:
                self._take(self.results.get_nowait())
            except queue.Empty:
                return

    def _take(self, item: Any) -> None:
        if item == WAKE:
            external = self.ledger.absorb()
            if external:
                self._index()  # a cancel or an operator action changed the run under us
                self.reporter.events(self.run, external)
            if self.stopping:
                self.kill_running("cancelled" if self.run.cancel_requested else "interrupted")
        else:
            kill_points.reached("on_result")
            self._tick_results.append(item)
            self._on_result(item)

    def kill_running(self, reason: FailureReason) -> None:
        """Kill every running attempt; their results come back failed with `reason`."""
        for sid in list(self.capacity.running):
            attempt = self.run.steps[sid].attempt
            orphan = (sid, attempt) in self.recovered
            stop_attempt(
                self.pool, str(self.run_dir), self.run.run_id, sid, attempt, orphan=orphan, reason=reason
            )

    def _next_deadline(self) -> float | None:
        deadlines = [self.timers[0][0]] if self.timers else []
        if self.ready_heap and self.capacity.rate_limit_delay > 0 and not self.capacity.full():
            deadlines.append(self.capacity.next_start_at())
        return min(deadlines) if deadlines else None

    # --- decisions ----------------------------------------------------------------------------

    def _decide(self, now: float) -> None:
        for sid in sorted(self.undecided, key=self.order.__getitem__):
            decide_failure(self, sid, now)
        if not self.stopping:
            self.undecided.clear()
        while self.timers and self.timers[0][0] <= now:
            _, sid = heapq.heappop(self.timers)
            if self.life[sid].state == "retrying":
                self._make_ready(sid)
        while self.candidates:  # a step skipped by its condition makes its dependents candidates
            batch, self.candidates = sorted(self.candidates, key=self.order.__getitem__), set()
            for sid in batch:
                waiting = self.life[sid].state == "pending" and self.unmet[sid] == 0
                if not waiting or skipped_by_condition(self, sid):
                    continue
                if self.steps[sid].for_each is not None:
                    fan_out(self, sid, self._add_expansions)  # its expansions join the candidates
                else:
                    self._make_ready(sid)
        if not self.stopping and self.halted_by is None:
            self._start_what_fits(now)

    def _make_ready(self, sid: str) -> None:
        self.fire(sid, "ready", StepReady())
        heapq.heappush(self.ready_heap, (self.order[sid], sid))

    def _start_what_fits(self, now: float) -> None:
        held_back: list[tuple[int, str]] = []
        while self.ready_heap and not self.capacity.full():
            if self.capacity.rate_limit_delay > 0 and now < self.capacity.next_start_at():
                break
            entry = heapq.heappop(self.ready_heap)
            sid = entry[1]
            if self.life[sid].state != "ready":
                continue
            if self.capacity.step_blocked(sid):
                held_back.append(entry)
                continue
            worker = self.pool.idle_worker(exclude={w.pid for w, _ in self._dispatch})
            if worker is None:
                held_back.append(entry)
                break
            self._start(sid, worker, now)
        for entry in held_back:
            heapq.heappush(self.ready_heap, entry)

    def _start(self, sid: str, worker: Any, now: float) -> None:
        state = self.run.steps[sid]
        attempt = state.attempt + 1
        try:  # made before its start is recorded: a crash before the append leaves a worktree resume remakes
            made = self.isolation.new_attempt(sid, attempt)
        except GitError as error:
            self._start_failed(
                sid, attempt, now, f"stepledger: the step's worktree could not be made: {error}"
            )
            return
        self.fire(sid, "start", StepStarted(
            attempt=attempt, host=self.host, pid=worker.pid, pgid=worker.pgid, reactor_pid=os.getpid(),
            lease_expires_at=now + self.options.lease_seconds, trial=state.cooldown_until > 0))  # fmt: skip
        self.capacity.started(sid, now)
        if made is not None:
            self.ledger.record(sid, made)
        self._dispatch.append((worker, self.specs.spec(self.steps[sid], attempt, self.run)))

    def _start_failed(self, sid: str, attempt: int, now: float, why: str) -> None:
        """Record an attempt that failed before it could be dispatched (its worktree could not be made)."""
        self.fire(sid, "start", StepStarted(attempt=attempt, host=self.host, pid=0, pgid=0,
                                            reactor_pid=os.getpid(), lease_expires_at=now))  # fmt: skip
        self.fire(sid, "fail", StepFailed(attempt=attempt, reason="error", started_at=now, finished_at=now,
                                          error_signature=why, output_excerpt=why))  # fmt: skip
        self.undecided.add(sid)

    # --- outcomes -----------------------------------------------------------------------------

    def _on_result(self, result: AttemptResult) -> None:
        sid = result.step_id
        state = self.run.steps.get(sid)
        if state is None or self.life[sid].state != "running" or state.attempt != result.attempt:
            self.reporter.note(f"[{sid}] refused a late result of attempt {result.attempt}")
            return
        self.capacity.stopped(sid)
        recovered = (sid, result.attempt) in self.recovered
        if result.acceptance:
            self.fire(
                sid,
                "record_acceptance",
                AcceptanceTestsRecorded(attempt=result.attempt, results=list(result.acceptance)),
            )
        if result.passed and self.isolation.active:  # commit and merge its work, or fail it after all
            events, result = self.isolation.settled(result)
            for event in events:
                self.ledger.record(sid, event)
        if result.passed:
            self.fire(sid, "pass_", StepPassed(
                attempt=result.attempt, started_at=result.started_at, finished_at=result.finished_at,
                outputs=dict(result.outputs), recovered=recovered, worker_host=result.worker_host,
                worker=result.worker))  # fmt: skip
            self.release_dependents(sid)
            if self.run.steps[sid].counted_failures:
                handler = self.ws.error_handling.handlers.get("on_recovery")
                say(
                    self,
                    message_line("on_recovery", handler, self.steps[sid], result.attempt, self.run.run_id),
                )
        else:
            self.fire(sid, "fail", StepFailed(
                attempt=result.attempt, reason=result.reason or "error",
                started_at=result.started_at, finished_at=result.finished_at, exit_code=result.exit_code,
                error_signature=result.error_signature, output_excerpt=result.output_excerpt,
                recovered=recovered, worker_host=result.worker_host, worker=result.worker))  # fmt: skip
            self.undecided.add(sid)

    def release_dependents(self, sid: str) -> None:
        """`sid` is done (passed or skipped): its dependents may become ready."""
        for dependent in self.dependents[sid]:
            self.unmet[dependent] -= 1
            if self.unmet[dependent] == 0:
                self.candidates.add(dependent)

    def _flush(self) -> None:
        """Commit the tick's events, then dispatch what they started and report them."""
        if self.ledger.batch:
            kill_points.reached("before_append")
        # A fleet's jobs for the attempts started here are enqueued in the same transaction.
        along = self.pool.enqueue_along(self._dispatch, self.isolation.adjust) if self._dispatch else None
        recorded = self.ledger.flush(along)
        expanded, self._expanded_in_batch = self._expanded_in_batch, False
        if recorded is None:  # another writer was first: the ledger re-folded the log
            self._dispatch.clear()  # nothing was sent; those workers stay idle
            # An expansion of the dropped batch is not in the log: the graph is the log's again,
            # and the for_each step, pending once more, is expanded anew from the same outputs.
            self.ws = self._recorded_graph()
            self._build_graph()
            self._index()
            # A step the log now says is running, in an attempt this reactor never dispatched
            # (a late append of a previous reactor), is resolved like an orphan after a crash.
            recover_running_steps(self, known=self.submitted | self.recovered)
            pending, self._tick_results = self._tick_results, []
            for result in pending:
                self._tick_results.append(result)
                self._on_result(result)
            return
        self._tick_results.clear()
        if recorded:
            kill_points.reached("after_append")
            if expanded:
                kill_points.reached("after_fan_out_append")
        for worker, spec in self._dispatch:
            self.pool.submit(worker, self.isolation.adjust(spec))
            self.submitted.add((spec.step_id, spec.attempt))
        if self._dispatch:
            kill_points.reached("after_dispatch")
        self._dispatch.clear()
        if recorded:
            self.reporter.events(self.run, recorded)

    # --- the end ------------------------------------------------------------------------------

    def _finished(self) -> bool:
        if self.capacity.running or self.ledger.batch:
            return False
        if self.stopping:
            return True
        # Heap entries of steps that left `ready` (blocked, skipped by an operator) are stale.
        ready = any(self.life[sid].state == "ready" for _, sid in self.ready_heap)
        return not (self.undecided or ready or self.timers or self.candidates)

    def _drain_after_shutdown(self) -> None:
        """Record the results the pool delivered while shutting down (the attempts it killed)."""
        while True:
            try:
                item = self.results.get_nowait()
            except queue.Empty:
                break
            if item != WAKE:
                self._tick_results.append(item)
                self._on_result(item)
        self._flush()

    def _outcome(self) -> RunOutcome:
        """How the run ends, by the states its steps reached."""
        if self.run.cancel_requested:
            return "cancelled"
        if self.stop_requested or self.capacity.running:
            return "interrupted"
        if all(self.run.steps[sid].state in DONE_STATES for sid in self.steps):
            return "passed"
        return "failed"

    def _finish(self, outcome: RunOutcome) -> RunOutcome:
        """Record how the run ended, with its counts and measured times."""
        states = [self.run.steps[sid].state for sid in self.steps]
        if self.isolation.active:  # merge into --merge-into's branch, remove passed steps' worktrees
            events, notes = self.isolation.finished(
                outcome, dict(zip(self.steps, states, strict=True)), self.merge_into
            )
            for event in events:
                self.ledger.record(None, event)
            for note in notes:
                self.reporter.note(note)
        outcomes = self.ledger.store.find_events(run_id=self.run.run_id, types=MEASURED_TYPES)
        times = measured_times(outcomes)
        self.ledger.record(None, RunFinished(
            outcome=outcome,
            passed=states.count("passed"), failed=sum(s in ("tripped", "failed") for s in states),
            blocked=states.count("blocked"), skipped=states.count("skipped"),
            elapsed_s=times.elapsed_s, sequential_s=times.sequential_s))  # fmt: skip
        self._flush()
        return outcome
