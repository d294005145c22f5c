"""How fast the audit commands answer on a big log: 1,000 runs and about 1,000,000 events.

    .venv/bin/python benchmarks/bench_audit.py [--db URL] [--runs 1000] [--events 1000000]
                                               [--reuse] [--no-cli]

Fills a fresh database (a temporary SQLite file by default; `--db` for PostgreSQL, which must be
empty) through the store's own `append` — one append per run, every stream of the run in it — so
the projections stay consistent with the log. Runs cycle over five workstreams of ~200 steps; about
one attempt in five fails and is retried, a few steps trip, and a few runs carry operator actions.
Then times each audit query (the functions behind `stepledger audit ...`), then each command as a
whole `stepledger audit ...` process (start-up, imports, query, printing; output to /dev/null), as a
table and with --json and --csv, and prints the figures. `--reuse` times an already filled `--db`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepledger.engine import audit
from stepledger.events import (
    AcceptanceTestsRecorded,
    Event,
    RetryScheduled,
    RunCancelRequested,
    RunFinished,
    RunStarted,
    StepFailed,
    StepPassed,
    StepReady,
    StepRetryRequested,
    StepStarted,
    StepTripped,
    StreamWrite,
)
from stepledger.store import sql as sql_module
from stepledger.store.connect import open_store
from stepledger.store.port import EventStore

WORKSTREAMS = 5
DAY = 86_400.0
SIGNATURES = ("ModuleNotFoundError: No module named 'x'", "AssertionError", "timeout after 60s", "exit 2")


def workstream(index: int, steps: int) -> dict[str, Any]:
    """A resolved workstream dict as run.started records it (chains of steps, fan-in every tenth)."""
    items = []
    for i in range(steps):
        deps = [f"step-{i - 1:03d}"] if i % 10 else ([f"step-{i - 10:03d}"] if i else [])
        items.append({"id": f"step-{i:03d}", "tool": "shell", "tasks": [f"make part-{i}"],
                      "description": f"part {i} of workstream {index}", "depends_on": deps,
                      "requires": deps, "acceptance_tests": [f"test -f out/{i}"]})  # fmt: skip
    return {"id": f"ws-bench-{index}", "name": f"bench {index}", "steps": items}


def run_writes(
    rng: random.Random, run_no: int, ws: dict[str, Any], started: float
) -> tuple[list[StreamWrite], float]:
    """The writes of a run after its run.started (steps from `started` on), and when it ended."""
    run_id = f"run-{run_no:05d}"
    host, pid = f"host-{run_no % 7}", 1000 + run_no
    clock = started
    passed = failed = 0
    step_writes = []
    for step_no, step in enumerate(ws["steps"]):
        base = 1.0 + (step_no % 13) * 0.5
        events: list[Event] = [StepReady()]
        attempt = 0
        while True:
            attempt += 1
            duration = base * rng.uniform(0.8, 1.3)
            events.append(StepStarted(attempt=attempt, host=host, pid=pid + attempt, pgid=pid + attempt))
            begin, clock = clock, clock + duration
            if rng.random() < 0.18:
                sig = SIGNATURES[rng.randrange(len(SIGNATURES))]
                events.append(StepFailed(attempt=attempt, reason="exit_code", started_at=begin,
                                         finished_at=clock, exit_code=1, error_signature=sig,
                                         output_excerpt=f"Traceback ...\n{sig}"))  # fmt: skip
                if attempt == 3:
                    events.append(StepTripped(attempt=attempt, reason="max_attempts", error_signature=sig))
                    failed += 1
                    break
                events.append(RetryScheduled(attempt=attempt, next_attempt=attempt + 1,
                                             not_before=clock + 1, delay_s=1.0))  # fmt: skip
                if attempt == 2 and run_no % 20 == 0:
                    events.append(StepRetryRequested(by="alice", reason="flaky runner"))
                continue
            events.append(AcceptanceTestsRecorded(attempt=attempt, results=[]))
            events.append(StepPassed(attempt=attempt, started_at=begin, finished_at=clock))
            passed += 1
            break
        step_writes.append(StreamWrite(run_id, f"{run_id}/{step['id']}", 0, events))
    run_events: list[Event] = []
    if run_no % 50 == 7:
        run_events.append(RunCancelRequested(by="bob", reason="wrong branch"))
    run_events.append(RunFinished(outcome="failed" if failed else "passed", passed=passed, failed=failed,
                                  elapsed_s=clock - started, sequential_s=clock - started))  # fmt: skip
    return [*step_writes, StreamWrite(run_id, run_id, 1, run_events)], clock


def run_start(run_no: int, ws: dict[str, Any]) -> StreamWrite:
    """The run.started write of run `run_no`."""
    run_id, host = f"run-{run_no:05d}", f"host-{run_no % 7}"
    started = RunStarted(workstream_id=ws["id"], workstream=ws, workstream_hash="0" * 64, host=host,
                         source_path=f"/src/{ws['id']}.json", workdir="/src", pid=1000 + run_no)  # fmt: skip
    return StreamWrite(run_id, run_id, 0, [started])


class Clock:
    """The store's clock during the fill: each run is recorded when it happened, not now."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now


def record_runs(
    store: EventStore,
    shapes: list[dict[str, Any]],
    runs: int,
    days: float,
    seed: int,
    each: Callable[[int, int], None] | None = None,
) -> int:
    """Append `runs` finished runs of `shapes` (in turn), spread over the last `days` days, each
    recorded when it happened (the store's clock is set back for it); the events written.
    `each(run_no, written)` is called after each run (progress lines)."""
    rng = random.Random(seed)
    now = time.time()
    written = 0
    clock = Clock()
    real_time, sql_module.time = sql_module.time, clock  # type: ignore[assignment]
    try:
        for run_no in range(runs):
            clock.now = now - days * DAY + run_no * (days * DAY / runs)
            chosen = shapes[run_no % len(shapes)]
            written += len(store.append([run_start(run_no, chosen)]))
            writes, clock.now = run_writes(rng, run_no, chosen, clock.now + 0.5)
            written += len(store.append(writes))
            if each is not None:
                each(run_no, written)
    finally:
        sql_module.time = real_time  # type: ignore[assignment]
    return written


def fill(store: EventStore, runs: int, total_events: int) -> int:
    """Append `runs` runs of about `total_events` events in all, over the last 30 days; returns the
    events written."""
    # ~4.6 events per step on average with these odds, plus 2-3 per run.
    steps = max(1, round((total_events / runs - 3) / 4.6))
    began = time.perf_counter()

    def progress(run_no: int, written: int) -> None:
        if run_no % 100 == 99:
            rate = written / (time.perf_counter() - began)
            print(f"  {run_no + 1} runs, {written:,} events ({rate:,.0f} events/s)", file=sys.stderr)

    shapes = [workstream(i, steps) for i in range(WORKSTREAMS)]
    return record_runs(store, shapes, runs, days=30, seed=7, each=progress)


def analyse(store: EventStore) -> None:
    """On PostgreSQL, gather the planner statistics autovacuum would have gathered by now."""
    engine = getattr(store, "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def timed(name: str, call: Callable[[], Any], repeat: int = 3) -> tuple[str, float, float, int]:
    """(name, best wall seconds of `repeat` calls, this process's CPU seconds for that call, rows)."""
    best = (float("inf"), 0.0)
    rows: Any = None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        rows = call()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    count = len(rows) if hasattr(rows, "__len__") else 1
    return name, best[0], best[1], count


def command_lines(run_id: str) -> list[list[str]]:
    """The `stepledger audit ...` commands timed as whole processes."""
    commands: list[list[str]] = [["timeline", run_id], ["why", run_id, "step-050"]]
    commands += [[name] for name in ("failures", "durations", "retries", "actions")]
    commands += [[*c, flag] for c in commands for flag in ("--json", "--csv")]
    return commands


def time_commands(url: str, run_id: str, repeat: int = 5) -> list[tuple[str, float, float]]:
    """(command, best wall seconds, its CPU seconds) of each command line as its own process.

    Rounds go through every command in turn, so a busy spell of the machine weighs on all alike.
    """
    program = str(Path(sys.executable).with_name("stepledger"))
    commands = command_lines(run_id)
    best = {" ".join(args): (float("inf"), 0.0) for args in commands}
    for _ in range(repeat):
        for args in commands:
            before = os.times()
            wall = time.perf_counter()
            subprocess.run([program, "audit", *args, "--db", url], stdout=subprocess.DEVNULL, check=True)
            elapsed, after = time.perf_counter() - wall, os.times()
            cpu = (after.children_user - before.children_user) + (
                after.children_system - before.children_system
            )
            line = " ".join(args)
            best[line] = min(best[line], (elapsed, cpu))
    return [(line, wall, cpu) for line, (wall, cpu) in best.items()]


def main() -> None:
    """Fill a database, then time each audit query and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", help="SQLAlchemy URL of an empty database (default: a temporary SQLite file)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--reuse", action="store_true", help="skip filling: time an already filled --db")
    parser.add_argument("--no-cli", action="store_true", help="time the queries only, not the command lines")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="bench-audit-")
    url = args.db or f"sqlite:///{Path(folder) / 'ledger.db'}"
    store = open_store(url)
    try:
        if not args.reuse:
            began = time.perf_counter()
            written = fill(store, args.runs, args.events)
            print(f"filled {url}: {args.runs} runs, {written:,} events in {time.perf_counter() - began:.1f}s")
            analyse(store)
        run_id = f"run-{args.runs // 2:05d}"
        week = audit.AuditFilter(since=time.time() - 7 * DAY)
        ws0 = audit.AuditFilter(workstream_id="ws-bench-0")
        checks = [
            ("timeline RUN", lambda: audit.timeline(store, run_id)),
            ("failures", lambda: audit.failures(store)),
            ("failures --last 7d", lambda: audit.failures(store, week)),
            ("durations", lambda: audit.durations(store)),
            ("durations --workstream", lambda: audit.durations(store, ws0)),
            ("historical_durations", lambda: audit.historical_durations(store, "ws-bench-0")),
            ("retries", lambda: audit.retries(store)),
            ("retries --last 7d", lambda: audit.retries(store, week)),
            ("actions", lambda: audit.actions(store)),
            ("why RUN STEP", lambda: audit.why(store, run_id, "step-050")),
            ("runs (run_summaries)", lambda: audit.run_summaries(store)),
        ]
        results = [timed(name, call) for name, call in checks]
    finally:
        store.close()
    # CPU is this process's (SQLite runs in it; a PostgreSQL server's share is not counted): on a
    # busy machine it shows the work apart from the wait for a core.
    print(f"\n{'command':<26}{'wall s':>9}{'cpu s':>9}{'rows':>9}")
    for name, wall, cpu, rows in results:
        print(f"{name:<26}{wall:>9.3f}{cpu:>9.3f}{rows:>9}")
    walls = [wall for _, wall, _, _ in results]
    print(f"\nslowest: {max(walls):.3f}s; median {statistics.median(walls):.3f}s")
    if args.no_cli:
        return
    print(f"\n{'stepledger audit ...':<34}{'wall s':>9}{'cpu s':>9}")
    lines = time_commands(url, run_id)
    for line, wall, cpu in lines:
        print(f"{line:<34}{wall:>9.3f}{cpu:>9.3f}")
    print(f"\nslowest command: {max(w for _, w, _ in lines):.3f}s")


if __name__ == "__main__":
    main()
