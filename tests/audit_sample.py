"""A small log with known answers for the audit tests: three runs, retries, a trip, a block,
operator actions and a step still running. Events go through the store's own `append`; the store's
clock is replaced so `recorded_at` is predictable too.

Run r1 (ws-a, from T0): build passes (10 s); lint fails (E501) then passes (4 s); test times out
twice and trips; deploy is blocked by test. Run r2 (ws-a, from T0+1000): build passes (12 s); lint
fails (E501), alice asks for a retry, it passes (5 s); test passes (20 s); bob skips deploy.
Run r3 (ws-b, from T0+5000): `only` is still running, `after` waits for it; carol presses Ctrl-C
once (a drain, as the engine records it), then asks to cancel.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from stepledger.events import (
    Event,
    RetryScheduled,
    RunCancelRequested,
    RunDrainRequested,
    RunFinished,
    RunStarted,
    StepBlocked,
    StepFailed,
    StepPassed,
    StepReady,
    StepRetryRequested,
    StepSkipped,
    StepStarted,
    StepTripped,
    StreamWrite,
)
from stepledger.store import sql as sql_module
from stepledger.store.port import EventStore

T0 = 1_800_000_000.0  # 2027-01-15, so `--last` windows ending now never reach into the sample

WS_A = {"id": "ws-a", "steps": [
    {"id": "build", "requires": []}, {"id": "lint", "requires": []},
    {"id": "test", "requires": ["build"]}, {"id": "deploy", "requires": ["test", "lint"]},
]}  # fmt: skip
WS_B = {"id": "ws-b", "steps": [{"id": "only", "requires": []}, {"id": "after", "requires": ["only"]}]}


class Clock:
    """Stands in for the `time` module inside the store, so `recorded_at` is what the test says."""

    def __init__(self) -> None:
        self.now = T0

    def time(self) -> float:
        return self.now


class Log:
    """Appends events stream by stream, tracking each stream's version, at chosen times."""

    def __init__(self, store: EventStore, clock: Clock) -> None:
        self.store, self.clock = store, clock
        self.versions: dict[str, int] = {}

    def add(self, at: float, run_id: str, step_id: str | None, *events: Event) -> None:
        stream = run_id if step_id is None else f"{run_id}/{step_id}"
        self.clock.now = at
        version = self.versions.get(stream, 0)
        self.store.append([StreamWrite(run_id, stream, version, list(events))])
        self.versions[stream] = version + len(events)


def _started(attempt: int, pid: int) -> StepStarted:
    return StepStarted(attempt=attempt, host="h1", pid=pid, pgid=pid)


def _failed(attempt: int, start: float, end: float, reason: Any, signature: str) -> StepFailed:
    excerpt = f"...\n{signature} (attempt {attempt})"
    return StepFailed(attempt=attempt, reason=reason, started_at=start, finished_at=end, exit_code=1,
                      error_signature=signature, output_excerpt=excerpt)  # fmt: skip


def _run_started(workstream: dict[str, Any]) -> RunStarted:
    return RunStarted(workstream_id=workstream["id"], workstream=workstream, workstream_hash="h",
                      source_path=f"{workstream['id']}.json", workdir=".")  # fmt: skip


def fill(store: EventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Write the three sample runs into `store`."""
    with recorded_at_clock(monkeypatch) as clock:
        log = Log(store, clock)
        t = T0
        log.add(t, "r1", None, _run_started(WS_A))
        log.add(t + 0, "r1", "build", StepReady(), _started(1, 11))
        log.add(t + 0, "r1", "lint", StepReady(), _started(1, 12))
        log.add(t + 3, "r1", "lint", _failed(1, t + 1, t + 3, "exit_code", "E501 line too long"),
                RetryScheduled(attempt=1, next_attempt=2, not_before=t + 4, delay_s=1.0))  # fmt: skip
        log.add(t + 4, "r1", "lint", _started(2, 13))
        log.add(t + 8, "r1", "lint", StepPassed(attempt=2, started_at=t + 4, finished_at=t + 8))
        log.add(t + 11, "r1", "build", StepPassed(attempt=1, started_at=t + 1, finished_at=t + 11))
        log.add(t + 11, "r1", "test", StepReady(), _started(1, 14))
        log.add(t + 72, "r1", "test", _failed(1, t + 12, t + 72, "timeout", "timeout"),
                RetryScheduled(attempt=1, next_attempt=2, not_before=t + 73, delay_s=1.0))  # fmt: skip
        log.add(t + 73, "r1", "test", _started(2, 15))
        log.add(t + 133, "r1", "test", _failed(2, t + 73, t + 133, "timeout", "timeout"),
                StepTripped(attempt=2, reason="max_attempts", error_signature="timeout"))  # fmt: skip
        log.add(t + 133, "r1", "deploy", StepBlocked(blocked_by="test", reason="test tripped"))
        log.add(t + 134, "r1", None, RunFinished(outcome="failed", passed=2, failed=1, blocked=1))

        t = T0 + 1000
        log.add(t, "r2", None, _run_started(WS_A))
        log.add(t, "r2", "build", StepReady(), _started(1, 21))
        log.add(t, "r2", "lint", StepReady(), _started(1, 22))
        log.add(t + 2, "r2", "lint", _failed(1, t + 1, t + 2, "exit_code", "E501 line too long"))
        log.add(t + 9, "r2", "lint", StepRetryRequested(by="alice", reason="flaky"))
        log.add(t + 10, "r2", "lint", _started(2, 23))
        log.add(t + 13, "r2", "build", StepPassed(attempt=1, started_at=t + 1, finished_at=t + 13))
        log.add(t + 14, "r2", "test", StepReady(), _started(1, 24))
        log.add(t + 15, "r2", "lint", StepPassed(attempt=2, started_at=t + 10, finished_at=t + 15))
        log.add(t + 34, "r2", "test", StepPassed(attempt=1, started_at=t + 14, finished_at=t + 34))
        log.add(t + 35, "r2", "deploy", StepSkipped(by="bob", reason="no deploy on fridays"))
        log.add(t + 36, "r2", None, RunFinished(outcome="passed", passed=3, skipped=1))

        t = T0 + 5000
        log.add(t, "r3", None, _run_started(WS_B))
        log.add(t + 1, "r3", "only", StepReady(), _started(1, 31))
        log.add(t + 30, "r3", None, RunDrainRequested(by="carol", reason="Ctrl-C"))
        log.add(t + 60, "r3", None, RunCancelRequested(by="carol", reason="stuck"))


@contextmanager
def recorded_at_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """Make the store stamp events with a clock the test moves."""
    clock = Clock()
    with monkeypatch.context() as patch:
        patch.setattr(sql_module, "time", clock)
        yield clock
