"""The event store contract: one suite, run against every adapter (memory, SQLite, PostgreSQL).

What it proves: a batch is atomic; a wrong expected version raises ConcurrencyError and writes
nothing; two writers racing on a stream (real processes on SQL) → exactly one wins; a retried
append is not recorded twice; positions strictly increase; writers in several processes while a
reader tails by position → the reader misses nothing; the port offers no way to update or delete
an event (there is no such method — that absence, and that a retry returns the first recording
unchanged, is what is proven about immutability); projections equal the fold of the log.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from stepledger.events import (
    RunFinished,
    RunStarted,
    StepFailed,
    StepPassed,
    StepReady,
    StepStarted,
    StreamWrite,
    run_stream,
    step_stream,
)
from stepledger.events.state import fold
from stepledger.store.connect import MEMORY_URL, open_store
from stepledger.store.errors import ConcurrencyError
from stepledger.store.port import EventStore


def started(run_id: str = "r1") -> StreamWrite:
    return StreamWrite(
        run_id,
        run_stream(run_id),
        0,
        [
            RunStarted(
                workstream_id="ws-x",
                workstream={"id": "ws-x", "steps": [{"id": "a"}]},
                workstream_hash="abc",
                source_path="ws.json",
                workdir="/tmp",
            )
        ],
    )


def step_write(run_id: str, step: str, version: int, *events: Any) -> StreamWrite:
    return StreamWrite(run_id, step_stream(run_id, step), version, list(events) or [StepReady()])


def attempt(n: int) -> StepStarted:
    return StepStarted(attempt=n, host="h", pid=100 + n, pgid=100 + n)


def test_append_returns_what_it_recorded_and_reads_agree(store: EventStore) -> None:
    first = store.append([started()])
    batch = store.append([step_write("r1", "a", 0, StepReady(), attempt(1)), step_write("r1", "b", 0)])
    assert [e.version for e in first + batch] == [1, 1, 2, 1]
    assert [e.stream for e in batch] == ["r1/a", "r1/a", "r1/b"]
    assert [e.type for e in batch] == ["step.ready", "step.started", "step.ready"]
    assert batch[1].event == attempt(1)
    assert list(store.read_all()) == first + batch
    assert list(store.read_run("r1")) == first + batch
    assert list(store.read_run("r1", after_position=first[0].position)) == batch
    assert store.read_stream("r1/a") == batch[:2]
    assert store.read_stream("r1/a", after_version=1) == batch[1:2]
    assert store.stream_version("r1/a") == 2 and store.stream_version("nope") == 0
    assert list(store.read_all(first[0].position, limit=1)) == batch[:1]
    assert store.run_ids() == ["r1"]
    assert store.last_position() == batch[-1].position


def test_positions_strictly_increase(store: EventStore) -> None:
    store.append([started("r1"), started("r2")])
    for i in range(5):
        store.append([step_write("r1", "a", i), step_write("r2", "a", i)])
    positions = [e.position for e in store.read_all()]
    assert positions == sorted(set(positions)) and len(positions) == 12
    assert store.run_ids() == ["r1", "r2"]


def test_a_batch_is_atomic_across_streams(store: EventStore) -> None:
    store.append([started()])
    before = list(store.read_all())
    with pytest.raises(ConcurrencyError):
        store.append([step_write("r1", "a", 0), step_write("r1", "b", 0), step_write("r1", "a", 0)])
    assert list(store.read_all()) == before
    assert store.stream_version("r1/a") == 0 and store.stream_version("r1/b") == 0
    state = store.run_state("r1")
    assert state is not None and state.steps == {}


@pytest.mark.parametrize("expected", [0, 1, 3])
def test_a_wrong_expected_version_raises_and_writes_nothing(store: EventStore, expected: int) -> None:
    store.append([started()])
    store.append([step_write("r1", "a", 0, StepReady(), attempt(1))])
    before = list(store.read_all())
    with pytest.raises(ConcurrencyError) as raised:
        store.append([step_write("r1", "b", 0), step_write("r1", "a", expected)])
    assert (raised.value.stream, raised.value.expected, raised.value.actual) == ("r1/a", expected, 2)
    assert "r1/a" in str(raised.value)
    assert list(store.read_all()) == before
    assert store.stream_version("r1/b") == 0


def test_two_writes_to_one_stream_in_a_batch_must_follow_on(store: EventStore) -> None:
    recorded = store.append([step_write("r1", "a", 0), step_write("r1", "a", 1, attempt(1))])
    assert [e.version for e in recorded] == [1, 2]
    with pytest.raises(ConcurrencyError):
        store.append([step_write("r1", "a", 2), step_write("r1", "a", 2)])
    assert store.stream_version("r1/a") == 2


def test_a_retried_append_is_not_recorded_twice(store: EventStore) -> None:
    store.append([started()])
    write = step_write("r1", "a", 0, StepReady(), attempt(1))
    first = store.append([write])
    store.append([step_write("r1", "b", 0)])  # the log moves on between the attempt and the retry
    again = store.append([write])
    assert again == first  # the first recording, unchanged: same positions, payloads, times
    assert [e.event_id for e in store.read_all()].count(write.event_ids[0]) == 1
    assert store.stream_version("r1/a") == 2


def test_a_write_that_reuses_recorded_ids_with_new_ones_is_a_conflict(store: EventStore) -> None:
    write = step_write("r1", "a", 0)
    store.append([write])
    with pytest.raises(ConcurrencyError):
        store.append([write, step_write("r1", "b", 0)])
    assert store.stream_version("r1/b") == 0


def test_the_port_has_no_way_to_change_or_remove_events() -> None:
    names = {n for n in dir(EventStore) if not n.startswith("_")}
    assert not {n for n in names if any(w in n for w in ("update", "delete", "remove", "truncate", "edit"))}


def test_projection_equals_the_fold_of_the_log(store: EventStore) -> None:
    store.append([started()])
    store.append([step_write("r1", "a", 0, StepReady(), attempt(1)), step_write("r1", "b", 0)])
    failed = StepFailed(attempt=1, reason="exit_code", started_at=1.0, finished_at=3.5, exit_code=2)
    store.append([step_write("r1", "a", 2, failed, attempt(2))])
    passed = StepPassed(attempt=2, started_at=4.0, finished_at=5.0, outputs={"k": [1, 2]})
    store.append([step_write("r1", "a", 4, passed), step_write("r1", "b", 1, attempt(1))])
    store.append([StreamWrite("r1", "r1", 1, [RunFinished(outcome="failed", passed=1, failed=1)])])
    assert store.run_state("r1") == fold("r1", store.read_run("r1"))
    assert store.run_state("nope") is None
    assert [s.run_id for s in store.run_states()] == ["r1"]
    assert store.rebuild_projections() == 1
    assert store.run_state("r1") == fold("r1", store.read_run("r1"))


def test_two_store_objects_on_one_log_keep_projections_right(sql_url: str) -> None:
    one, two = open_store(sql_url), open_store(sql_url)  # as two processes would (SQL stores only)
    try:
        one.append([started()])
        for i in range(6):
            writer = (one, two)[i % 2]
            writer.append([step_write("r1", "a", i, attempt(i + 1)), step_write("r1", "b", i)])
        two.append([StreamWrite("r1", "r1", 1, [RunFinished(outcome="passed")])])
        one.append([StreamWrite("r1", "r1", 2, [RunFinished(outcome="failed")])])
        for s in (one, two):
            assert s.run_state("r1") == fold("r1", s.read_run("r1"))
    finally:
        one.close()
        two.close()


def test_filtered_reads(store: EventStore) -> None:
    store.append([started("r1"), started("r2")])
    store.append([step_write("r1", "a", 0, StepReady(), attempt(1)), step_write("r1", "a_b", 0)])
    store.append([step_write("r2", "a", 0)])
    assert [e.stream for e in store.find_events(step_id="a")] == ["r1/a", "r1/a", "r2/a"]
    assert [e.type for e in store.find_events(run_id="r1", types=["step.started"])] == ["step.started"]
    assert [e.stream for e in store.find_events(run_id="r2", step_id="a")] == ["r2/a"]
    assert len(list(store.find_events(limit=2))) == 2
    last = store.last_position()
    assert not store.wait_for_events(last, timeout=0.05)
    assert store.wait_for_events(last - 1, timeout=0.05)


# --- real concurrency: processes on the SQL stores, threads on the in-memory one ----------------

_SHARED: dict[str, EventStore] = {}  # in-memory stores the threads use, by a made-up URL


def _open(url: str) -> EventStore:
    return _SHARED.get(url) or open_store(url)


def _close(url: str, store: EventStore) -> None:
    if url not in _SHARED:
        store.close()


def _claim(url: str, start_at: float, queue: Any) -> None:
    store = _open(url)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        try:
            store.append([step_write("race", "a", 0, attempt(1))])
            queue.put("won")
        except ConcurrencyError:
            queue.put("lost")
    finally:
        _close(url, store)


def _write_many(url: str, writer: int, count: int, start_at: float) -> None:
    store = _open(url)
    try:
        time.sleep(max(0.0, start_at - time.time()))
        for i in range(count):
            store.append([step_write("tail", f"w{writer}", i, attempt(i + 1))])
    finally:
        _close(url, store)


def _start(
    url: str, store: EventStore, target: Callable[..., None], args: list[tuple[Any, ...]]
) -> list[Any]:
    """Run `target(url, *a)` for each `a` in its own process (a thread sharing `store` for memory)."""
    if url == MEMORY_URL:
        key = f"memory://{id(store)}"
        _SHARED[key] = store
        threads = [threading.Thread(target=target, args=(key, *a)) for a in args]
        for t in threads:
            t.start()
        return threads
    context = multiprocessing.get_context("spawn")  # a clean interpreter, as a second reactor would be
    procs = [context.Process(target=target, args=(url, *a)) for a in args]
    for p in procs:
        p.start()
    return procs


def _queue(url: str) -> Any:
    return queue.Queue() if url == MEMORY_URL else multiprocessing.get_context("spawn").Queue()


def _start_time(url: str) -> float:
    # Processes need time to start (spawn imports stepledger); all then write at the same instant.
    return time.time() + (3.0 if url != MEMORY_URL else 0.05)


def test_two_writers_racing_on_a_stream_exactly_one_wins(store_url: str, store: EventStore) -> None:
    results = _queue(store_url)
    start_at = _start_time(store_url)
    workers = _start(store_url, store, _claim, [(start_at, results)] * 3)
    outcomes = sorted(results.get(timeout=60) for _ in workers)
    for w in workers:
        w.join(60)
    assert outcomes == ["lost", "lost", "won"]
    assert store.stream_version("race/a") == 1


def test_a_reader_tailing_by_position_misses_nothing(store_url: str, store: EventStore) -> None:
    writers, per_writer = 4, 100
    start_at = _start_time(store_url)
    workers = _start(store_url, store, _write_many, [(w, per_writer, start_at) for w in range(writers)])
    seen: list[int] = []
    after = 0
    while True:
        running = any(w.is_alive() for w in workers)  # checked before reading: one last pass after
        page = list(store.read_all(after))
        seen.extend(e.position for e in page)
        if page:
            after = page[-1].position
        elif not running:
            break
        else:
            store.wait_for_events(after, timeout=0.01)
    for w in workers:
        w.join(60)
    everything = [e.position for e in store.read_all()]
    assert seen == everything  # nothing skipped, nothing twice, in order
    assert len(everything) == writers * per_writer


def test_payloads_come_back_as_they_went_in_with_nul_replaced(store: EventStore) -> None:
    odd = 'snow ☃, tab\t, quote " backslash \\u0000 (text), emoji 🧪, nul \x00 end'
    failed = StepFailed(
        attempt=1, reason="exit_code", started_at=0.1, finished_at=1e9 + 0.25, output_excerpt=odd
    )
    passed = StepPassed(
        attempt=2, started_at=-1.5, finished_at=2**53, outputs={"k\x00": [1, {"n": None}], "e": {}}
    )
    recorded = store.append([step_write("r1", "a", 0, failed, passed)])
    read = store.read_stream("r1/a")
    assert read == recorded
    failed_read, passed_read = read[0].event, read[1].event
    assert isinstance(failed_read, StepFailed) and isinstance(passed_read, StepPassed)
    assert failed_read.output_excerpt == odd.replace("\x00", "\ufffd")  # jsonb cannot hold U+0000
    assert passed_read.outputs == {"k\ufffd": [1, {"n": None}], "e": {}}
    assert passed_read.finished_at == 2**53 and failed_read.finished_at == 1e9 + 0.25


def test_a_stream_belongs_to_its_run(store: EventStore) -> None:
    with pytest.raises(ValueError, match="does not belong"):
        store.append([StreamWrite("r1", "r2/a", 0, [StepReady()])])
    assert list(store.read_all()) == []
