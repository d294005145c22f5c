"""The reactor against an in-memory log and an in-process pool: scheduling and failure handling."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from fakes import ThreadPool, threaded_reactor

from stepledger.engine.run.context import ReactorOptions
from stepledger.engine.session.runs import drive as drive_to_end
from stepledger.engine.workstream.model import (
    BreakerPolicy,
    ErrorHandling,
    Execution,
    FailureAction,
    Message,
    RetryPolicy,
    Step,
    StepGroup,
    Workstream,
)
from stepledger.events import RecordedEvent, RunStarted, StreamWrite, run_stream
from stepledger.events.state import RunState, fold
from stepledger.store.memory import InMemoryEventStore


def step(sid: str, *requires: str, tasks: tuple[str, ...] = ("pass",), **kw: Any) -> Step:
    return Step(id=sid, tool="fake", tasks=tasks, depends_on=requires, requires=requires, **kw)


def drive(
    ws: Workstream, tmp_path: Path, max_workers: int | None = None
) -> tuple[str, InMemoryEventStore, list[ThreadPool]]:
    store = InMemoryEventStore()
    started = RunStarted(workstream_id=ws.id, workstream={}, workstream_hash="", source_path="",
                         workdir=str(tmp_path))  # fmt: skip
    recorded = store.append([StreamWrite("r1", run_stream("r1"), 0, [started])])
    reactor = threaded_reactor(store, ws, fold("r1", recorded), tmp_path, max_workers)
    assert isinstance(reactor.pool, ThreadPool)  # the reactor's Dispatcher, as threaded_reactor made it
    pools = [reactor.pool]
    return drive_to_end(reactor), store, pools


def intervals(store: InMemoryEventStore) -> dict[tuple[str, int], tuple[float, float]]:
    out: dict[tuple[str, int], tuple[float, float]] = {}
    for e in store.read_run("r1"):
        if e.type in ("step.passed", "step.failed"):
            assert e.step_id is not None
            out[(e.step_id, e.payload["attempt"])] = (e.payload["started_at"], e.payload["finished_at"])
    return out


def position_of(store: InMemoryEventStore, sid: str, type_: str) -> int:
    return next(e.position for e in store.read_run("r1") if e.step_id == sid and e.type == type_)


def test_diamond_runs_in_dependency_order(tmp_path: Path) -> None:
    ws = Workstream(id="ws", steps=(step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c")))
    outcome, store, _ = drive(ws, tmp_path)
    assert outcome == "passed"
    for child, parent in [("b", "a"), ("c", "a"), ("d", "b"), ("d", "c")]:
        assert position_of(store, parent, "step.passed") < position_of(store, child, "step.started")
    final = fold("r1", store.read_run("r1"))
    assert final.status == "passed"
    assert {s.state for s in final.steps.values()} == {"passed"}


def test_independent_steps_overlap_and_respect_max_workers(tmp_path: Path) -> None:
    ws = Workstream(id="ws", steps=tuple(step(f"s{i}", tasks=("sleep:0.05",)) for i in range(6)),
                    execution=Execution(max_workers=3))  # fmt: skip
    outcome, store, pools = drive(ws, tmp_path)
    assert outcome == "passed"
    assert pools[0].max_busy == 3
    spans = sorted(intervals(store).values())
    # At most three attempts are ever in flight at one instant.
    for start, _ in spans:
        assert sum(1 for s, f in spans if s <= start < f) <= 3


def test_parallel_false_runs_one_at_a_time(tmp_path: Path) -> None:
    ws = Workstream(id="ws", steps=tuple(step(f"s{i}", tasks=("sleep:0.01",)) for i in range(4)),
                    execution=Execution(max_workers=3, parallel=False))  # fmt: skip
    outcome, _, pools = drive(ws, tmp_path)
    assert outcome == "passed"
    assert pools[0].size == 1


def test_step_group_limits_its_members(tmp_path: Path) -> None:
    ws = Workstream(
        id="ws",
        steps=tuple(step(f"s{i}", tasks=("sleep:0.03",)) for i in range(4)),
        execution=Execution(max_workers=4),
        step_groups=(StepGroup("g", ("s0", "s1", "s2"), execute="sequential"),),
    )
    outcome, store, _ = drive(ws, tmp_path)
    assert outcome == "passed"
    spans = intervals(store)
    group = sorted(spans[(f"s{i}", 1)] for i in range(3))
    for (_, end), (start, _) in itertools.pairwise(group):
        assert end <= start


def test_failure_trips_step_and_blocks_dependents_only(tmp_path: Path) -> None:
    ws = Workstream(id="ws", steps=(step("a"), step("b", "a", tasks=("fail:bad",)), step("c", "a"),
                                    step("d", "b"), step("e", "d")))  # fmt: skip
    outcome, store, _ = drive(ws, tmp_path)
    assert outcome == "failed"
    final = fold("r1", store.read_run("r1"))
    states = {sid: s.state for sid, s in final.steps.items()}
    assert states == {"a": "passed", "b": "tripped", "c": "passed", "d": "blocked", "e": "blocked"}
    assert final.steps["e"].blocked_by == "b"
    assert final.status == "failed"


def test_retries_until_pass_with_backoff_events(tmp_path: Path) -> None:
    ws = Workstream(id="ws", steps=(step("a", tasks=("fail-times:2",),
        circuit_breaker=BreakerPolicy(max_attempts=3), retry=RetryPolicy(initial_delay=0.01)),))  # fmt: skip
    outcome, store, _pools = drive(ws, tmp_path)
    assert outcome == "passed"
    types = [e.type for e in store.read_run("r1") if e.step_id == "a"]
    assert types.count("step.started") == 3
    assert types.count("step.retry_scheduled") == 2
    delays = [e.payload["delay_s"] for e in store.read_run("r1") if e.type == "step.retry_scheduled"]
    assert delays == [pytest.approx(0.01), pytest.approx(0.02)]  # exponential


def test_attempts_used_up_trip_the_step(tmp_path: Path) -> None:
    ws = Workstream(id="ws", steps=(step("a", tasks=("fail-times:5",),
        circuit_breaker=BreakerPolicy(max_attempts=2), retry=RetryPolicy(initial_delay=0.0)),))  # fmt: skip
    outcome, store, _ = drive(ws, tmp_path)
    assert outcome == "failed"
    tripped = [e for e in store.read_run("r1") if e.type == "step.tripped"]
    assert [t.payload["reason"] for t in tripped] == ["max_attempts"]


def test_rate_limit_spaces_starts(tmp_path: Path) -> None:
    ws = Workstream(id="ws", steps=tuple(step(f"s{i}") for i in range(3)),
                    execution=Execution(max_workers=3, rate_limit_delay=0.05))  # fmt: skip
    outcome, store, _ = drive(ws, tmp_path)
    assert outcome == "passed"
    # The reactor's own clock at each start (lease_expires_at is that instant plus the lease):
    # the rate limit spaces the decisions, whatever a loaded machine does to the threads after.
    lease = ReactorOptions().lease_seconds
    starts = sorted(
        e.payload["lease_expires_at"] - lease for e in store.read_run("r1") if e.type == "step.started"
    )
    assert len(starts) == 3
    assert all(b - a >= 0.045 for a, b in itertools.pairwise(starts))


def _notes(ws: Workstream, tmp_path: Path) -> tuple[str, InMemoryEventStore, list[str]]:
    notes: list[str] = []

    class Collect:
        def events(self, run: RunState, recorded: list[RecordedEvent]) -> None:
            pass

        def note(self, text: str) -> None:
            notes.append(text)

    store = InMemoryEventStore()
    started = RunStarted(workstream_id=ws.id, workstream={}, workstream_hash="", source_path="",
                         workdir=str(tmp_path))  # fmt: skip
    recorded = store.append([StreamWrite("r1", run_stream("r1"), 0, [started])])
    reactor = threaded_reactor(store, ws, fold("r1", recorded), tmp_path, reporter=Collect())
    return drive_to_end(reactor), store, notes


def test_skip_step_action_lets_dependents_run(tmp_path: Path) -> None:
    ws = Workstream(id="ws", steps=(step("a", tasks=("fail",)), step("b", "a")),
                    error_handling=ErrorHandling(on_failure_action="skip_step"))  # fmt: skip
    outcome, store, _ = drive(ws, tmp_path)
    states = {sid: s.state for sid, s in fold("r1", store.read_run("r1")).steps.items()}
    assert states == {"a": "skipped", "b": "passed"}
    assert outcome == "passed"
    types = [e.type for e in store.read_run("r1") if e.step_id == "a"]
    assert types[-2:] == ["step.tripped", "step.skipped"]  # why it failed stays in the log


@pytest.mark.parametrize("action", ["fail_fast", "escalate"])
def test_fail_fast_blocks_everything_waiting(tmp_path: Path, action: FailureAction) -> None:
    ws = Workstream(
        id="ws",
        steps=(step("a", tasks=("fail",)), step("b", tasks=("sleep:0.2",)), step("c", "b"), step("d")),
        execution=Execution(max_workers=2),
        error_handling=ErrorHandling(on_failure_action=action,
                                     handlers={"on_failure": Message(notify=("ops@example.com",))}),
    )  # fmt: skip
    outcome, store, notes = _notes(ws, tmp_path)
    states = {sid: s.state for sid, s in fold("r1", store.read_run("r1")).steps.items()}
    assert outcome == "failed"
    assert states["a"] == "tripped"
    assert states["b"] == "passed"  # running steps finish
    assert states["c"] == states["d"] == "blocked"
    escalations = [n for n in notes if n.startswith("ESCALATION")]
    assert len(escalations) == (1 if action == "escalate" else 0)
    if escalations:
        assert "ops@example.com" in escalations[0]


def test_handler_messages_at_their_moments(tmp_path: Path) -> None:
    handlers = {
        "on_retry": Message(message="retrying ${step_id} (${attempt_number}/${max_attempts})"),
        "on_recovery": Message(message="${step_id} recovered at attempt ${attempt_number}"),
    }
    ws = Workstream(id="ws", steps=(step("a", tasks=("fail-times:1",),
        circuit_breaker=BreakerPolicy(max_attempts=3), retry=RetryPolicy(initial_delay=0.0)),),
        error_handling=ErrorHandling(handlers=handlers))  # fmt: skip
    outcome, _, notes = _notes(ws, tmp_path)
    assert outcome == "passed"
    assert notes == ["retrying a (2/3)", "a recovered at attempt 2"]


def test_a_late_start_by_a_previous_reactor_is_recovered_not_awaited_forever(tmp_path: Path) -> None:
    """The old reactor's StepStarted lands just before ours: we re-read, and resolve that attempt."""
    import threading

    from stepledger.events import StepReady, StepStarted, step_stream

    class LateWriter(InMemoryEventStore):
        injected = False

        def append(
            self, writes: Sequence[StreamWrite], along: Callable[[Any], None] | None = None
        ) -> list[RecordedEvent]:
            if not self.injected and any(w.stream == step_stream("r1", "c") for w in writes):
                self.injected = True  # a stale reactor's claim, committed first
                stale = [StepReady(), StepStarted(attempt=1, host="elsewhere", pid=1, pgid=1)]
                super().append([StreamWrite("r1", step_stream("r1", "c"), 0, stale)])
            return super().append(writes, along)

    store = LateWriter()
    ws = Workstream(id="ws", steps=(step("a", tasks=("sleep:0.05",)), step("c", "a")))
    started = RunStarted(workstream_id=ws.id, workstream={}, workstream_hash="", source_path="",
                         workdir=str(tmp_path))  # fmt: skip
    recorded = store.append([StreamWrite("r1", run_stream("r1"), 0, [started])])
    reactor = threaded_reactor(store, ws, fold("r1", recorded), tmp_path)
    outcome: list[str] = []
    thread = threading.Thread(target=lambda: outcome.append(drive_to_end(reactor)), daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert outcome == ["passed"], "the reactor waited on an attempt it never dispatched"
    failed = [e.payload for e in store.read_run("r1") if e.type == "step.failed"]
    assert [(f["attempt"], f["reason"]) for f in failed] == [(1, "interrupted")]
    assert fold("r1", store.read_run("r1")).steps["c"].attempt == 2
