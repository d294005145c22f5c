"""Event store speed: SQLite and PostgreSQL appends, and the fold of a long run.

    .venv/bin/python benchmarks/bench_store.py [--pg URL] [--quick]

Targets (issue 3): SQLite ≥ 4,000 one-event transactions/s and ≥ 100,000 events/s in batches of
100, at the default durability (WAL, synchronous=NORMAL); folding a 100,000-event run ≥ 200,000
events/s; PostgreSQL over loopback ≥ 2,000 one-event commits/s and ≥ 40,000 events/s in batches.
Every append also writes the projections (runs, step_states), as in production.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import create_engine, text

from stepledger.events import RecordedEvent, RunStarted, StepFailed, StepReady, StepStarted, StreamWrite
from stepledger.store.connect import open_store
from stepledger.store.port import EventStore
from stepledger.store.runstate import fold

STEPS = 10


def _started(run_id: str) -> StreamWrite:
    event = RunStarted(
        workstream_id="ws-bench",
        workstream={"id": "ws-bench"},
        workstream_hash="h",
        source_path="-",
        workdir=".",
    )
    return StreamWrite(run_id, run_id, 0, [event])


def _event(i: int) -> StepStarted | StepFailed:
    if i % 2:
        return StepFailed(attempt=i, reason="exit_code", started_at=1.0, finished_at=2.0, exit_code=1)
    return StepStarted(attempt=i, host="bench-host", pid=4242, pgid=4242, lease_expires_at=123.0)


def single_event_transactions(store: EventStore, count: int) -> float:
    """One event per append (one transaction each), round-robin over the steps of one run."""
    run_id = f"single-{uuid.uuid4().hex[:8]}"
    store.append([_started(run_id)])
    versions = [0] * STEPS
    begin = time.perf_counter()
    for i in range(count):
        s = i % STEPS
        store.append([StreamWrite(run_id, f"{run_id}/s{s}", versions[s], [_event(i)])])
        versions[s] += 1
    return count / (time.perf_counter() - begin)


def batched_events(store: EventStore, batches: int, size: int = 100) -> float:
    """Appends of `size` events each, spread over the steps of one run (as a reactor tick writes)."""
    run_id = f"batch-{uuid.uuid4().hex[:8]}"
    store.append([_started(run_id)])
    per_step = size // STEPS
    versions = [0] * STEPS
    begin = time.perf_counter()
    for b in range(batches):
        writes = []
        for s in range(STEPS):
            events = [_event(b * size + s * per_step + k) for k in range(per_step)]
            writes.append(StreamWrite(run_id, f"{run_id}/s{s}", versions[s], events))
            versions[s] += per_step
        store.append(writes)
    return batches * size / (time.perf_counter() - begin)


def fold_run(count: int) -> tuple[float, float]:
    """(events/s folding `count` events of one run, events/s decoding them into event objects)."""
    events = [
        RecordedEvent(i + 1, str(i), "r", f"r/s{i % 50}", i // 50 + 1, e.type_name, 1, e.to_payload(), 1.0)
        for i, e in enumerate(_event(i) if i % 3 else StepReady() for i in range(count))
    ]
    begin = time.perf_counter()
    fold("r", events)
    folded = count / (time.perf_counter() - begin)
    begin = time.perf_counter()
    for e in events:
        _ = e.event
    return folded, count / (time.perf_counter() - begin)


def read_and_fold(store: EventStore, run_id: str) -> float:
    """Events/s reading a run back from the database and folding it."""
    begin = time.perf_counter()
    n = len(fold(run_id, store.read_run(run_id)).steps)
    assert n >= 0
    return store.last_position() / (time.perf_counter() - begin)


def plain_insert_loop(url: str, count: int, batches: int) -> tuple[float, float]:
    """The reference of the issue: a bare SQLAlchemy insert loop into the same events table (no
    projections, no checks), one row per transaction and then 100 rows per transaction."""
    from sqlalchemy import insert

    from stepledger.store.connect import make_engine
    from stepledger.store.schema import events

    engine = make_engine(url)
    row = {"run_id": "p", "stream": "p/s", "type": "step.started", "schema_version": 1, "recorded_at": 1.0}
    payload = _event(2).to_payload()
    statement = insert(events)
    with engine.connect() as conn:
        conn.execution_options(stepledger_lock="write")
        begin = time.perf_counter()
        for i in range(count):
            with conn.begin():
                conn.execute(
                    statement,
                    {**row, "position": 10**9 + i, "event_id": f"p{i}", "version": i + 1, "payload": payload},
                )
        single = count / (time.perf_counter() - begin)
        begin = time.perf_counter()
        for b in range(batches):
            rows = [
                {
                    **row,
                    "position": 2 * 10**9 + b * 100 + k,
                    "event_id": f"q{b}-{k}",
                    "version": count + b * 100 + k + 1,
                    "payload": payload,
                }
                for k in range(100)
            ]
            with conn.begin():
                conn.execute(statement, rows)
        batched = batches * 100 / (time.perf_counter() - begin)
    engine.dispose()
    return single, batched


def _fresh_pg(server: str) -> tuple[str, Callable[[], None]]:
    name = f"stepledger_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return server.rsplit("/", 1)[0] + "/" + name, drop


def main() -> None:
    """Run every benchmark and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0

    def line(label: str, value: float, target: float, unit: str) -> None:
        verdict = "ok" if value >= target else "BELOW TARGET"
        print(f"{label:<44} {value:>12,.0f} {unit:<10} (target {target:>9,.0f})  {verdict}")

    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
        line(
            "SQLite one-event transactions", single_event_transactions(store, int(5000 * scale)), 4000, "tx/s"
        )
        line("SQLite events in batches of 100", batched_events(store, int(1000 * scale)), 100_000, "events/s")
        store.close()
        single, batched = plain_insert_loop(f"sqlite:///{Path(folder) / 'bench.db'}", int(5000 * scale), 200)
        print(f"{'  reference: bare insert loop, 1 event/tx':<44} {single:>12,.0f} tx/s")
        print(f"{'  reference: bare insert loop, 100 events/tx':<44} {batched:>12,.0f} events/s")
    folded, decoded = fold_run(100_000)
    line("fold of a 100,000-event run", folded, 200_000, "events/s")
    print(f"{'  (decoding payloads into event objects)':<44} {decoded:>12,.0f} events/s")
    if args.no_pg:
        return
    url, drop = _fresh_pg(args.pg)
    try:
        store = open_store(url)
        line(
            "PostgreSQL one-event commits", single_event_transactions(store, int(3000 * scale)), 2000, "tx/s"
        )
        line(
            "PostgreSQL events in batches of 100", batched_events(store, int(500 * scale)), 40_000, "events/s"
        )
        store.close()
        single, batched = plain_insert_loop(url, int(3000 * scale), 100)
        print(f"{'  reference: bare insert loop, 1 event/tx':<44} {single:>12,.0f} tx/s")
        print(f"{'  reference: bare insert loop, 100 events/tx':<44} {batched:>12,.0f} events/s")
    finally:
        drop()


if __name__ == "__main__":
    main()
