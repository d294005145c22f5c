"""A database briefly out of reach: reads and appends are asked again; nothing is written twice;
other errors, and outages longer than the patience or the lease, end the wait at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import ThreadPool, threaded_reactor

from stepledger.engine.session.leases import LeasedStore, LeaseLost, RunLease
from stepledger.engine.session.runs import drive
from stepledger.engine.workstream.model import Step, Workstream
from stepledger.events import RecordedEvent, RunCancelRequested, RunStarted, StreamWrite, run_stream
from stepledger.events.state import fold
from stepledger.store.errors import DatabaseUnavailable, StoreError
from stepledger.store.memory import InMemoryEventStore
from stepledger.store.outages import PatientStore

GONE = DatabaseUnavailable("cannot use the database x: server closed the connection unexpectedly")


class OutageStore(InMemoryEventStore):
    """An in-memory store that fails the next `failures` calls of a method, as a lost database would.

    `lose_answer`: the failing append commits first and only its answer is lost.
    """

    def __init__(self) -> None:
        super().__init__()
        self.failures: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.lose_answer = False

    def _fail(self, name: str) -> bool:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.failures.get(name, 0) > 0:
            self.failures[name] -= 1
            return True
        return False

    def append(self, writes: Any, along: Any = None) -> list[RecordedEvent]:
        if self._fail("append"):
            if self.lose_answer:
                super().append(writes, along)
            raise GONE
        return super().append(writes, along)

    def read_run(self, run_id: str, after_position: int = 0) -> Iterator[RecordedEvent]:
        fail = self._fail("read_run")
        yield from super().read_run(run_id, after_position)
        if fail:  # lazily, half way: the error arrives while the caller iterates
            raise GONE


def cancel(store: InMemoryEventStore) -> list[StreamWrite]:
    return [
        StreamWrite(
            "r1", run_stream("r1"), store.stream_version(run_stream("r1")), [RunCancelRequested(by="t")]
        )
    ]


def leased(store: InMemoryEventStore, ttl: float = 30) -> tuple[LeasedStore, RunLease, list[str]]:
    lease = RunLease(store, "r1", owner="me", ttl=ttl)
    assert lease.acquire()
    heard: list[str] = []
    return LeasedStore(store, lease, on_outage=heard.append), lease, heard


@pytest.mark.parametrize("lose_answer", [False, True], ids=["not-committed", "committed-answer-lost"])
def test_an_append_is_asked_again_and_recorded_once(lose_answer: bool) -> None:
    store = OutageStore()
    store.lose_answer = lose_answer
    store.failures["append"] = 3
    proxy, _, heard = leased(store)
    writes = cancel(store)
    recorded = proxy.append(writes)
    assert store.calls["append"] == 4
    assert [e.event_id for e in recorded] == list(writes[0].event_ids)
    assert [e.event_id for e in store.read_run("r1")] == list(writes[0].event_ids)  # once, not twice
    assert len(heard) == 2 and "out of reach" in heard[0] and "is back" in heard[1]


def test_a_read_that_fails_while_iterated_is_asked_again_whole() -> None:
    store = OutageStore()
    first = store.append(cancel(store))
    store.append(cancel(store))
    store.failures["read_run"] = 2
    proxy, _, _ = leased(store)
    events = proxy.read_run("r1")
    # Read whole inside the retry: all three tries happened before anything was iterated.
    assert store.calls["read_run"] == 3
    assert [e.position for e in events] == [first[0].position, first[0].position + 1]


def test_other_errors_are_not_waited_for() -> None:
    class Broken(InMemoryEventStore):
        calls = 0

        def append(self, writes: Any, along: Any = None) -> list[RecordedEvent]:
            self.calls += 1
            raise StoreError("database error: syntax error")

    store = Broken()
    proxy, _, heard = leased(store)
    with pytest.raises(StoreError, match="syntax error"):
        proxy.append(cancel(store))
    assert store.calls == 1 and heard == []


def test_an_outage_longer_than_the_patience_raises_the_database_error() -> None:
    store = OutageStore()
    store.failures["read_run"] = 10**6
    patient = PatientStore(store, patience=0.15)
    asked_at = time.time()
    with pytest.raises(DatabaseUnavailable, match="server closed"):
        patient.read_run("r1")
    assert time.time() - asked_at >= 0.15  # it did wait its patience out
    assert store.calls["read_run"] > 1


def test_an_outage_longer_than_the_lease_loses_it_and_writes_nothing() -> None:
    store = OutageStore()
    store.failures["append"] = 10**6
    proxy, lease, _ = leased(store, ttl=0.2)
    with pytest.raises(LeaseLost, match="out of reach for longer than the lease"):
        proxy.append(cancel(store))
    assert lease.lost_reason
    assert list(store.read_run("r1")) == []


class FailsOnce(InMemoryEventStore):
    """Fails the append that holds the `nth` step.started with an error the reactor does not wait
    out; the same append would go through if asked again (the CI failure: a transient error)."""

    def __init__(self, nth: int) -> None:
        super().__init__()
        self.nth = nth
        self.failed = False

    def append(self, writes: Any, along: Any = None) -> list[RecordedEvent]:
        starts = sum(e.type_name == "step.started" for w in writes for e in w.events)
        if starts and not self.failed:
            self.nth -= starts
            if self.nth <= 0:
                self.failed = True
                raise StoreError("database error: the disk is full")
        return super().append(writes, along)


def test_a_failing_loop_stops_its_attempts_and_dispatches_nothing_more(tmp_path: Path) -> None:
    chain = [(f"s{i}", (f"s{i - 1}",) if i > 1 else ()) for i in range(1, 4)]
    steps = tuple(Step(id=sid, tool="fake", tasks=("sleep:0.05",), depends_on=before, requires=before)
                  for sid, before in chain)  # fmt: skip
    store = FailsOnce(nth=2)
    started = RunStarted(
        workstream_id="w", workstream={}, workstream_hash="", source_path="", workdir=str(tmp_path)
    )
    recorded = store.append([StreamWrite("r1", run_stream("r1"), 0, [started])])
    reactor = threaded_reactor(store, Workstream(id="w", steps=steps), fold("r1", recorded), tmp_path)
    pool = reactor.pool
    assert isinstance(pool, ThreadPool)
    with pytest.raises(StoreError, match="disk is full"):  # the error itself, nothing raised over it
        drive(reactor)
    assert pool.shut and pool.busy_count() == 0
    assert [s.step_id for s in pool.submitted] == ["s1"]  # s2's start was never recorded nor sent
    # The log is left as a crash would leave it: s1 running (resume recovers it), s2 never started.
    run = fold("r1", store.read_run("r1"))
    assert run.steps["s1"].state == "running" and "s2" not in run.steps
