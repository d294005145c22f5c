"""Time from `stepledger resume` to the first dispatched step, on a run of ~10,000 events.

The run is synthesised through the store (what a crashed reactor leaves behind): a workstream of
no-op shell steps, most of them recorded as ready → started → passed (3 events each), the rest
still pending. Resume must fold the log, recover, decide and dispatch the first pending step.

Two figures, each the median of several resumes of fresh copies of the run:
- `cli`: from starting the `stepledger resume RUN` process to the first step.started it commits
  (store clock) and to the first pending step's process writing its marker (the step really runs);
- `in-process`: `resume_run()` called directly, to the moment the reactor reports that start
  (after dispatch) — the engine's own share, without interpreter start-up and imports.

    .venv/bin/python benchmarks/bench_resume.py [--events 10000] [--repeat 5] [--db URL]

With `--crash-stats FILE` it also prints the kill iterations the crash suite recorded there
(`STEPLEDGER_CRASH_STATS=FILE pytest tests/crash`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stepledger.engine.run.reporting import NullReporter
from stepledger.engine.session.runs import resume_run
from stepledger.engine.workstream import load_workstream, workstream_to_dict
from stepledger.events import (
    RetryScheduled,
    RunStarted,
    StepFailed,
    StepPassed,
    StepReady,
    StepStarted,
    StreamWrite,
    run_stream,
    step_stream,
)
from stepledger.store.connect import open_store

STEPLEDGER = str(Path(sys.executable).with_name("stepledger"))
PENDING = 20  # steps left for the resumed reactor


def step_history(failures: int, now: float) -> list[Any]:
    """A passed step's events after `failures` interrupted attempts (4 events each), then 3 more."""
    events: list[Any] = []
    for attempt in range(1, failures + 1):
        events += [
            StepReady(),
            StepStarted(attempt=attempt, host="elsewhere", pid=1, pgid=1),
            StepFailed(attempt=attempt, reason="interrupted", started_at=now, finished_at=now),
            RetryScheduled(attempt=attempt, next_attempt=attempt + 1, not_before=now, delay_s=0.0),
        ]
    attempt = failures + 1
    return [*events, StepReady(), StepStarted(attempt=attempt, host="elsewhere", pid=1, pgid=1),
            StepPassed(attempt=attempt, started_at=now, finished_at=now + 0.01)]  # fmt: skip


def build(workdir: Path, url: str, events: int, shape: str = "wide") -> str:
    """Write the workstream and record a run of about `events` events; return its id.

    `wide`: many steps of 3 events each (a big workstream); `deep`: 100 steps with long histories.
    """
    failures = 0 if shape == "wide" else max(0, (events // 100 - 3) // 4)
    per_step = 3 + 4 * failures
    done = (events - 1) // per_step
    steps = [{"id": f"s{i:05d}", "tool": "shell", "tasks": ["true"]} for i in range(done)]
    marker = workdir / "first.txt"
    steps += [
        {"id": f"p{i:03d}", "tool": "shell", "tasks": [f"date +%s.%N >> {marker}"]} for i in range(PENDING)
    ]
    ws_path = workdir / "ws.json"
    ws_path.write_text(json.dumps({"id": "ws-bench-resume", "steps": steps}))
    workstream = load_workstream(ws_path)
    run_id = "run-bench-resume"
    store = open_store(url)
    try:
        started = RunStarted(workstream_id=workstream.id, workstream=workstream_to_dict(workstream),
                             workstream_hash="", source_path=str(ws_path), workdir=str(workdir),
                             host="elsewhere", pid=1)  # fmt: skip
        store.append([StreamWrite(run_id, run_stream(run_id), 0, [started])])
        now = time.time()
        batch: list[StreamWrite] = []
        for i in range(done):
            sid = f"s{i:05d}"
            batch.append(StreamWrite(run_id, step_stream(run_id, sid), 0, step_history(failures, now)))
            if sum(len(w.events) for w in batch) >= 1500:
                store.append(batch)
                batch = []
        if batch:
            store.append(batch)
        total = sum(1 for _ in store.read_run(run_id))
    finally:
        store.close()
    print(f"run {run_id} ({shape}): {total} events, {done} steps passed, {PENDING} pending")
    return run_id


def first_start_after(url: str, run_id: str, after: float) -> float | None:
    """recorded_at of the first step.started recorded after `after` (store clock = this host)."""
    store = open_store(url)
    try:
        times = [e.recorded_at for e in store.find_events(run_id=run_id, types=["step.started"])
                 if e.recorded_at > after]  # fmt: skip
    finally:
        store.close()
    return min(times) if times else None


def cli_resume(workdir: Path, url: str, run_id: str) -> tuple[float, float]:
    """(seconds to the first committed start, seconds to the first step's process running)."""
    marker = workdir / "first.txt"
    began = time.time()
    subprocess.run([STEPLEDGER, "resume", run_id, "--db", url], cwd=workdir, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    committed = first_start_after(url, run_id, began)
    ran = min(float(line) for line in marker.read_text().split())
    assert committed is not None
    return committed - began, ran - began


class FirstStart(NullReporter):
    """A reporter that notes when the reactor reports its first step.started (after dispatch)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def events(self, run: Any, recorded: list[Any]) -> None:
        if self.at is None and any(e.type == "step.started" for e in recorded):
            self.at = time.perf_counter()


def in_process_resume(url: str, run_id: str) -> float:
    """Seconds from calling resume_run to the reactor reporting its first dispatched start."""
    store = open_store(url)
    reporter = FirstStart()
    try:
        began = time.perf_counter()
        resume_run(store, run_id, reporter=reporter)
    finally:
        store.close()
    assert reporter.at is not None
    return reporter.at - began


def fresh_copy(template: Path, n: int) -> str:
    """A copy of the crashed run's database, so every resume starts from the crash.

    The run's workdir is recorded in the log (the template folder): its attempt files and the
    marker are cleared instead of copied.
    """
    target = template.parent / f"copy{n}.db"
    shutil.copyfile(template / "ledger.db", target)
    shutil.rmtree(template / ".stepledger", ignore_errors=True)
    (template / "first.txt").unlink(missing_ok=True)
    return f"sqlite:///{target}"


def measure(events: int, repeat: int, shape: str) -> None:
    """Build one crashed run of that shape, resume copies of it `repeat` times, print medians."""
    root = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    template = root / "template"
    template.mkdir()
    run_id = build(template, f"sqlite:///{template / 'ledger.db'}", events, shape)
    committed, ran, engine = [], [], []
    for n in range(repeat):
        c, r = cli_resume(template, fresh_copy(template, 2 * n), run_id)
        committed.append(c)
        ran.append(r)
        engine.append(in_process_resume(fresh_copy(template, 2 * n + 1), run_id))
    for label, values in (
        ("cli `stepledger resume` → first step.started committed", committed),
        ("cli `stepledger resume` → first step's process running", ran),
        ("in-process resume_run() → first dispatched step reported", engine),
    ):
        median, low, high = statistics.median(values), min(values), max(values)
        print(f"  {label}: median {median:.3f}s (min {low:.3f}s, max {high:.3f}s)")
    shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    """Build the runs, resume them several times, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shape", choices=["wide", "deep", "both"], default="both")
    parser.add_argument("--crash-stats", type=Path, default=None)
    args = parser.parse_args()
    for shape in ("wide", "deep") if args.shape == "both" else (args.shape,):
        measure(args.events, args.repeat, shape)
    print("target: ≤ 0.5 s")
    if args.crash_stats and args.crash_stats.exists():
        rows = [json.loads(line) for line in args.crash_stats.read_text().splitlines() if line.strip()]
        total = {k: sum(r[k] for r in rows) for k in ("iterations", "kills", "processes", "verified")}
        print(f"crash suite: {total['iterations']} kill iterations, {total['kills']} SIGKILLs, "
              f"{total['processes']} stepledger processes, {total['verified']} runs verified")  # fmt: skip


if __name__ == "__main__":
    main()
