"""Event store speed: SQLite and PostgreSQL appends, and the fold of a long run.

    .venv/bin/python benchmarks/bench_store.py [--pg URL] [--quick]

Targets (issue 3): SQLite ≥ 4,000 one-event transactions/s and ≥ 100,000 events/s in batches of
100, at the default durability (WAL, synchronous=NORMAL); folding a 100,000-event run ≥ 200,000
events/s; PostgreSQL over loopback ≥ 2,000 one-event commits/s and ≥ 40,000 events/s in batches.
Every append also writes the projections (runs, step_states, step_outcomes), as in production.
Batches of 100 go to one stream (the port's batch) and, second, over the streams of 10 steps (a
reactor tick); each beside a bare insert loop of the same shape (docs/event-log.md, "Speed").
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from stepledger.events import RecordedEvent, RunStarted, StepFailed, StepReady, StepStarted, StreamWrite
from stepledger.events.state import fold
from stepledger.store.connect import make_engine, open_store
from stepledger.store.port import EventStore

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


Work = Callable[[int], float]  # does `n` more units of work; returns the seconds the work itself took


def single_appends(store: EventStore) -> Work:
    """One event per append (one transaction each), round-robin over the steps of one run."""
    run_id = f"single-{uuid.uuid4().hex[:8]}"
    store.append([_started(run_id)])
    versions = [0] * STEPS
    done = [0]

    def work(n: int) -> float:
        # The writes are the caller's input (built by the engine before it appends): built first,
        # so the clock measures the store alone.
        writes = []
        for i in range(done[0], done[0] + n):
            s = i % STEPS
            writes.append([StreamWrite(run_id, f"{run_id}/s{s}", versions[s], [_event(i)])])
            versions[s] += 1
        done[0] += n
        return _timed(store.append, writes)

    return work


def batch_appends(store: EventStore, size: int, streams: int) -> Work:
    """Appends of `size` events each: to one stream (the port's batch, and the bare loop's shape),
    or spread over the streams of `streams` steps of one run (as a reactor tick writes)."""
    run_id = f"batch-{uuid.uuid4().hex[:8]}"
    store.append([_started(run_id)])
    per_step = size // streams
    versions = [0] * streams
    done = [0]

    def work(n: int) -> float:
        batches = []
        for b in range(done[0], done[0] + n):
            writes = []
            for s in range(streams):
                events = [_event(b * size + s * per_step + k) for k in range(per_step)]
                writes.append(StreamWrite(run_id, f"{run_id}/s{s}", versions[s], events))
                versions[s] += per_step
            batches.append(writes)
        done[0] += n
        return _timed(store.append, batches)

    return work


def bare_inserts(conn: Any, size: int, offset: int, streams: int = 1) -> Work:
    """The issue's reference: a bare SQLAlchemy insert loop into an `events` table of the same
    schema (`conn`'s database), `size` rows per transaction, no projections and no checks. Its rows
    are the events ours append (the same types and payloads, every other one a failure, the same
    number of streams, each stream's rows together), so both pay the same indexes the same way;
    like ours, its input (the rows) is built before the clock starts."""
    from sqlalchemy import insert

    from stepledger.store.schema import events

    kinds = [(e.type_name, e.to_payload()) for e in (_event(0), _event(1))]
    base = {"run_id": "p", "schema_version": 1}
    per_stream = size // streams
    statement = insert(events)
    done = [0]

    def work(n: int) -> float:
        batches = []
        for t in range(done[0], done[0] + n):
            rows = [
                {**base, "position": offset + t * size + k, "event_id": f"p{offset}-{t}-{k}",
                 "stream": f"p/{offset}/s{k // per_stream}", "version": t * per_stream + k % per_stream + 1,
                 "type": kinds[(t * size + k) % 2][0],
                 "payload": kinds[(t * size + k) % 2][1],
                 "recorded_at": time.time()}
                for k in range(size)
            ]  # fmt: skip
            batches.append(rows if size > 1 else rows[0])
        done[0] += n

        def transaction(rows: Any) -> None:
            with conn.begin():
                conn.execute(statement, rows)

        return _timed(transaction, batches)

    return work


def _timed(call: Callable[[Any], Any], inputs: list[Any]) -> float:
    """Seconds taken by `call` on each of `inputs` in turn."""
    begin = time.perf_counter()
    for item in inputs:
        call(item)
    return time.perf_counter() - begin


def interleaved(ours: Work, reference: Work, total: int, rounds: int = 10) -> tuple[float, float]:
    """(units/s of `ours`, units/s of `reference`), run in alternating rounds so that the load of a
    shared machine weighs on both alike."""
    spent = [0.0, 0.0]
    chunk = max(1, total // rounds)
    for _ in range(rounds):
        for i, work in enumerate((ours, reference)):
            spent[i] += work(chunk)
    return chunk * rounds / spent[0], chunk * rounds / spent[1]


def compare(
    label: str, store: EventStore, bare_url: str, single: int, batches: int, targets: tuple[int, int]
) -> None:
    """Print one-event and 100-event append rates next to the bare loop's, interleaved. The bare loop
    writes to a database of its own (`bare_url`, with the same schema), so neither run's rows sit in
    the other's indexes and neither connection's cache is emptied by the other's commits."""
    open_store(bare_url).close()  # the schema
    engine = make_engine(bare_url)
    with engine.connect() as conn:
        conn.execution_options(stepledger_lock="write")
        ours, bare = interleaved(single_appends(store), bare_inserts(conn, 1, 10**9), single)
        _line(f"{label} one-event transactions", ours, targets[0], "tx/s", bare)
        ours, bare = interleaved(batch_appends(store, 100, 1), bare_inserts(conn, 100, 2 * 10**9), batches)
        _line(f"{label} events in batches of 100", ours * 100, targets[1], "events/s", bare * 100)
        # A reactor tick's batch: ten events to each of ten steps' streams. Ten places in the
        # (stream, version) index grow at once, so both loops write several times the pages.
        spread = batch_appends(store, 100, STEPS), bare_inserts(conn, 100, 3 * 10**9, STEPS)
        ours, bare = interleaved(*spread, batches)
        _line(f"{'  the same, over 10 steps':<40}", ours * 100, targets[1], "events/s", bare * 100)
    engine.dispose()


def _line(label: str, value: float, target: float, unit: str, reference: float | None = None) -> None:
    verdict = "ok" if value >= target else "below target"
    ref = f"  bare loop {reference:>9,.0f} ({value / reference:.0%})" if reference else ""
    print(f"{label:<40} {value:>10,.0f} {unit:<9} target {target:>7,.0f} {verdict:<12}{ref}")


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
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
        bare = f"sqlite:///{Path(folder) / 'bare.db'}"
        compare("SQLite", store, bare, int(5000 * scale), int(500 * scale), (4000, 100_000))
        # The machine ran its bare loop at about 5,900 and 135,000: the targets ask for 68%
        # and 74% of it there. Set the percentages above against those on a slower machine.
        print(f"{'':<40} (the targets are {4000 / 5900:.0%} and {100_000 / 135_000:.0%} of the bare loop "
              "on the issue's machine)")  # fmt: skip
        store.close()
    folded, decoded = fold_run(100_000)
    _line("fold of a 100,000-event run", folded, 200_000, "events/s")
    print(f"{'  (decoding payloads into event objects)':<40} {decoded:>10,.0f} events/s")
    if args.no_pg:
        return
    url, drop = _fresh_pg(args.pg)
    bare, drop_bare = _fresh_pg(args.pg)
    try:
        store = open_store(url)
        compare("PostgreSQL", store, bare, int(3000 * scale), int(300 * scale), (2000, 40_000))
        store.close()
    finally:
        drop()
        drop_bare()


if __name__ == "__main__":
    main()
