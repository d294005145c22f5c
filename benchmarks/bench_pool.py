"""Throughput and latency of the execution layer alone (no reactor, no event store).

    .venv/bin/python benchmarks/bench_pool.py [--workers 2] [--python 3000] [--shell 300]

Prints: pool start-up, no-op `python` attempts per second (a function that returns at once),
`shell` attempts running `true` per second, and the dispatch→start latency (submit() to the
worker's started_at) of attempts submitted one at a time.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stepledger.engine.execution.pool import WorkerPool
from stepledger.engine.execution.spec import AttemptSpec


def spec(work: str, i: int, tool: str, task: str) -> AttemptSpec:
    return AttemptSpec(
        run_id="bench",
        step_id=f"s{i}",
        attempt=1,
        tool=tool,
        tasks=(task,),
        acceptance_tests=(),
        workdir=work,
        env={},
        timeout=None,
        files_scope=(),
        run_dir=f"{work}/run",
    )


def throughput(pool: WorkerPool, results: queue.SimpleQueue, specs: list[AttemptSpec]) -> float:
    """Keep every worker busy until all specs ran; attempts per second."""
    todo = list(reversed(specs))
    done = 0
    began = time.perf_counter()
    while done < len(specs):
        while todo and (worker := pool.idle_worker()) is not None:
            pool.submit(worker, todo.pop())
        result = results.get()
        assert result.passed, result
        done += 1
    return len(specs) / (time.perf_counter() - began)


def latency(pool: WorkerPool, results: queue.SimpleQueue, specs: list[AttemptSpec]) -> list[float]:
    """Submit one attempt at a time; seconds from submit() to the worker starting it."""
    out = []
    for s in specs:
        worker = pool.idle_worker()
        assert worker is not None
        t = time.time()
        pool.submit(worker, s)
        result = results.get()
        out.append(result.started_at - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--python", type=int, default=3000)
    parser.add_argument("--shell", type=int, default=300)
    parser.add_argument("--dir", default=None, help="where the run directory goes (default: the temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        Path(work, "bench_noop.py").write_text("def noop():\n    return None\n")
        results: queue.SimpleQueue = queue.SimpleQueue()
        pool = WorkerPool(args.workers, results)
        t = time.perf_counter()
        pool.start()
        print(f"pool start ({args.workers} workers): {(time.perf_counter() - t) * 1000:.1f} ms")
        # Warm-up: the workers' interpreters come up and import the module once.
        throughput(pool, results, [spec(work, -i - 1, "python", "bench_noop:noop") for i in range(20)])
        n = args.python
        rate = throughput(pool, results, [spec(work, i, "python", "bench_noop:noop") for i in range(n)])
        print(f"python no-op: {n} attempts on {args.workers} workers: {rate:,.0f} attempts/s")
        n = args.shell
        rate = throughput(pool, results, [spec(work, 10**6 + i, "shell", "true") for i in range(n)])
        print(f"shell `true`: {n} attempts on {args.workers} workers: {rate:,.0f} attempts/s")
        lat = latency(
            pool, results, [spec(work, 2 * 10**6 + i, "python", "bench_noop:noop") for i in range(500)]
        )
        lat_ms = sorted(x * 1000 for x in lat)
        print(
            f"dispatch→start (python, one at a time): median {statistics.median(lat_ms):.3f} ms, "
            f"p90 {lat_ms[int(len(lat_ms) * 0.9)]:.3f} ms, max {lat_ms[-1]:.3f} ms"
        )
        t = time.perf_counter()
        pool.shutdown()
        print(f"pool shutdown: {(time.perf_counter() - t) * 1000:.1f} ms")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
