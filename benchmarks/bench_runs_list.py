"""How long `stepledger runs --limit 10` takes on a log with a long history.

    .venv/bin/python benchmarks/bench_runs_list.py [--db URL] [--runs 2000] [--steps 20]
                                                   [--repeat 7] [--reuse]

Fills a fresh database (a temporary SQLite file by default; `--db` for another, which must be
empty) through the store's own `append`, one run at a time as bench_audit.py does: `--runs` finished
runs (about one in five failed) of `--steps` steps each, over five workstreams. Then times the
listing (`list_runs`, the function behind `stepledger runs`) in this process, and the whole
`stepledger runs --json` process (start-up, imports, query, printing; output to /dev/null), with
`--limit 10` alone and with a status or workstream filter, and without a limit for comparison.
Prints the median and the fastest of `--repeat` tries. `--reuse` times an already filled `--db`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_audit import record_runs, workstream

from stepledger.engine.read.status import list_runs
from stepledger.store.connect import open_store
from stepledger.store.port import EventStore

WORKSTREAMS = 5
DAY = 86_400.0

CASES: list[tuple[str, list[str]]] = [
    ("runs --limit 10", ["--limit", "10"]),
    ("runs --limit 10 --status failed", ["--limit", "10", "--status", "failed"]),
    ("runs --limit 10 --workstream ws-bench-3", ["--limit", "10", "--workstream", "ws-bench-3"]),
    ("runs (no limit)", []),
]


def fill(store: EventStore, runs: int, steps: int) -> None:
    """`runs` finished runs of `steps` steps over a year, one append for the start, one for the rest."""
    record_runs(store, [workstream(i, steps) for i in range(WORKSTREAMS)], runs, days=365, seed=7)


def timed(call: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(median, fastest) seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times), min(times)


def options(args: list[str]) -> dict[str, Any]:
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    limit = pairs.get("--limit")
    return {"limit": int(limit) if limit else None, "status": pairs.get("--status"),
            "workstream": pairs.get("--workstream")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="an empty database's URL (default: a temporary SQLite file)")
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--reuse", action="store_true", help="time the already filled --db")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        store = open_store(db, workdir=tmp, create=True)
        if not args.reuse:
            began = time.perf_counter()
            fill(store, args.runs, args.steps)
            print(f"filled: {args.runs:,} runs of {args.steps} steps, {store.last_position():,} events "
                  f"in {time.perf_counter() - began:.0f} s")  # fmt: skip
        program = str(Path(sys.executable).with_name("stepledger"))
        print(f"{'':42} {'list_runs (median, best)':>26} {'process (median, best)':>24}")
        for name, extra in CASES:
            in_process = timed(partial(list_runs, store, **options(extra)), args.repeat)
            command = [program, "runs", "--json", "--db", db, *extra]
            run = partial(subprocess.run, command, check=True, cwd=tmp, stdout=subprocess.DEVNULL)
            whole = timed(run, args.repeat)
            print(f"{name:42} {in_process[0] * 1000:12.1f} ms {in_process[1] * 1000:8.1f} ms "
                  f"{whole[0] * 1000:10.0f} ms {whole[1] * 1000:8.0f} ms")  # fmt: skip
        store.close()


if __name__ == "__main__":
    main()
