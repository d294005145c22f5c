"""How fast the web view (`stepledger ui`) answers, and how soon an open page shows a new event.

    .venv/bin/python benchmarks/bench_ui.py [--runs 10000] [--steps 2000] [--pages 20] [--repeat 20]

Fills a temporary SQLite log through the store's own `append` (as bench_audit.py does): `--runs`
finished runs of five steps, and one run of `--steps` steps that is still going. Starts a real
`stepledger ui` process on it and measures, from a client on the same machine:

- server time per page (request to last byte): the runs page (first, filtered, last of its pages),
  the big run's page, one of its steps, an audit view;
- commit to page: the time from an append's commit (in this process) to the moment the event
  arrives on an open run page's stream, and on the runs page's stream;
- the server's CPU while `--pages` live pages stay open and the log is quiet (a page left open
  must not cost the server anything while nothing happens).

Targets (issue 19): ≤ 200 ms a page, ≤ 300 ms commit to page. The figures go to docs/performance.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_audit import record_runs, workstream

from stepledger.events import RunStarted, StepPassed, StepReady, StepStarted, StreamWrite
from stepledger.store.connect import open_store
from stepledger.store.port import EventStore

BIG_RUN = "run-big"
DAY = 86_400.0


def fill(store: EventStore, runs: int, steps: int) -> None:
    """`runs` finished runs of five steps over 30 days, then the big run, started and not finished."""

    def progress(run_no: int, written: int) -> None:
        if run_no % 2000 == 1999:
            print(f"  {run_no + 1:,} runs", file=sys.stderr)

    record_runs(store, [workstream(i, 5) for i in range(5)], runs, days=30, seed=19, each=progress)
    chains = [[f"s{i - 1:04d}"] if i % 20 else [] for i in range(steps)]  # chains of 20 steps
    big = {"id": "ws-big", "steps": [
        {"id": f"s{i:04d}", "tool": "shell", "tasks": ["true"], "depends_on": deps, "requires": deps}
        for i, deps in enumerate(chains)
    ]}  # fmt: skip
    started = RunStarted(workstream_id="ws-big", workstream=big, workstream_hash="0" * 64, host="bench",
                         source_path="/src/big.json", workdir="/src", pid=os.getpid())  # fmt: skip
    store.append([StreamWrite(BIG_RUN, BIG_RUN, 0, [started])])
    # Half of the steps passed already, so the page has real rows of every kind to draw.
    t = time.time()
    store.append([
        StreamWrite(BIG_RUN, f"{BIG_RUN}/s{i:04d}", 0, [
            StepReady(), StepStarted(attempt=1, host="bench", pid=1, pgid=1),
            StepPassed(attempt=1, started_at=t, finished_at=t + 0.5)])
        for i in range(steps // 2)
    ])  # fmt: skip


def start_ui(workdir: Path, db: str) -> tuple[subprocess.Popen[str], str, int]:
    program = str(Path(sys.executable).with_name("stepledger"))
    ui = subprocess.Popen([program, "ui", "--db", db, "--port", "0"], cwd=workdir, stdout=subprocess.PIPE,
                          text=True)  # fmt: skip
    assert ui.stdout is not None
    first = ui.stdout.readline()
    address = first.split("http://", 1)[1].split("/", 1)[0]
    host, port = address.rsplit(":", 1)
    return ui, host, int(port)


def get(host: str, port: int, path: str) -> tuple[float, int, int]:
    """(seconds from request to the last byte, status, bytes)."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    began = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    took = time.perf_counter() - began
    conn.close()
    return took, response.status, len(body)


def pages(host: str, port: int, repeat: int, runs: int) -> None:
    last_page = -(-runs // 50)
    paths = [
        ("runs page, newest 50", "/"),
        ("runs page, status=failed", "/?status=failed"),
        (f"runs page, last page ({last_page})", f"/?page={last_page}"),
        ("runs page, --last 7d", "/?last=7d"),
        ("run page, 2,000 steps", f"/runs/{BIG_RUN}"),
        ("step page", f"/runs/{BIG_RUN}/steps/s0001"),
        ("timeline of the 2,000-step run", f"/runs/{BIG_RUN}/timeline"),
        ("audit failures", "/audit/failures?last=7d"),
    ]
    print(f"\nserver time per page (request to last byte, {repeat} requests each)")
    print(f"  {'page':38} {'median':>9} {'p95':>9} {'size':>10}")
    for name, path in paths:
        times = []
        for _ in range(repeat):
            took, status, size = get(host, port, path)
            assert status == 200, (path, status)
            times.append(took)
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        print(f"  {name:38} {statistics.median(times) * 1000:7.1f}ms {p95 * 1000:7.1f}ms {size:>9,}B")


class Stream(threading.Thread):
    """An open page's stream: when each event position arrived."""

    def __init__(self, host: str, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.conn.request("GET", path)
        self.response = self.conn.getresponse()
        self.arrived: dict[int, float] = {}
        self.rows: list[float] = []  # when each update of the runs page's rows arrived
        self.ready = threading.Event()

    def run(self) -> None:
        fp = self.response.fp
        try:
            while line := fp.readline():
                now = time.perf_counter()
                self.ready.set()
                if line.startswith(b"data: "):
                    data = json.loads(line[6:])
                    for event in data.get("events", []):
                        self.arrived.setdefault(event["position"], now)
                    if data.get("runs"):
                        self.rows.append(now)
        except (OSError, ValueError):  # closed by the benchmark
            return


def latency(host: str, port: int, store: EventStore, steps: int, repeat: int) -> None:
    run_page = Stream(host, port, f"/live/runs/{BIG_RUN}?after={store.last_position()}")
    runs_page = Stream(host, port, "/live/runs")
    for stream in (run_page, runs_page):
        stream.start()
    run_page.ready.wait(30)  # the snapshot is in: the page is open
    time.sleep(1.0)  # the runs page's stream has no snapshot to wait for
    commits: list[tuple[int, float]] = []
    t = time.time()
    for n in range(repeat):
        step = steps // 2 + n
        events = [StepReady(), StepStarted(attempt=1, host="bench", pid=1, pgid=1),
                  StepPassed(attempt=1, started_at=t, finished_at=t + 0.1)]  # fmt: skip
        recorded = store.append([StreamWrite(BIG_RUN, f"{BIG_RUN}/s{step:04d}", 0, events)])
        commits.append((recorded[-1].position, time.perf_counter()))
        time.sleep(0.5)  # one change at a time: a page's latency, not a queue's
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline and len(run_page.arrived) < len(commits):
        time.sleep(0.1)
    delays = sorted(run_page.arrived[p] - at for p, at in commits if p in run_page.arrived)
    print(
        f"\ncommit to an open page ({len(delays)} of {len(commits)} appends seen; each: 3 events of one step)"
    )
    if delays:
        p95 = delays[min(len(delays) - 1, int(len(delays) * 0.95))]
        print(f"  run page of 2,000 steps: median {statistics.median(delays) * 1000:.0f} ms, "
              f"p95 {p95 * 1000:.0f} ms, max {delays[-1] * 1000:.0f} ms")  # fmt: skip
    row_delays = sorted(
        min((r for r in runs_page.rows if r >= at), default=at + 99) - at for _, at in commits
    )
    print(f"  runs page (its row of the run): median {statistics.median(row_delays) * 1000:.0f} ms, "
          f"max {row_delays[-1] * 1000:.0f} ms")  # fmt: skip


def idle_cpu(host: str, port: int, pid: int, pages_open: int) -> None:
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    print(f"\nserver CPU while the log is quiet (10 s each), with 0 and {pages_open} live pages open")
    for count in (0, pages_open):
        streams = [Stream(host, port, f"/live/runs/{BIG_RUN}?after=0") for _ in range(count)]
        for s in streams:
            s.start()
        for s in streams:
            s.ready.wait(60)
        time.sleep(1)
        before, began = cpu(), time.perf_counter()
        time.sleep(10)
        share = (cpu() - before) / (time.perf_counter() - began)
        print(f"  {count:3} pages: {share * 100:.1f}% of one core")
        for s in streams:
            s.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db = f"sqlite:///{workdir / 'ledger.db'}"
        store = open_store(db, workdir=str(workdir), create=True)
        began = time.perf_counter()
        fill(store, args.runs, args.steps)
        print(f"filled: {args.runs:,} runs and a {args.steps:,}-step run, {store.last_position():,} events "
              f"in {time.perf_counter() - began:.0f} s")  # fmt: skip
        ui, host, port = start_ui(workdir, db)
        try:
            pages(host, port, args.repeat, args.runs + 1)
            latency(host, port, store, args.steps, args.repeat)
            idle_cpu(host, port, ui.pid, args.pages)
        finally:
            ui.send_signal(signal.SIGINT)
            ui.wait(timeout=30)
            store.close()


if __name__ == "__main__":
    main()
