"""The figures of bench_peers.py that have no peer to compare with: where W1's time goes, how fast
the commands that only read start, and how much memory runs take.

split   One `stepledger run` of W1 under a tracer (`python -c TRACER run ws.json`): it stamps the
        entry and exit of the functions that bound each phase and adds up the time spent in
        imports (a meta-path hook around every module's execution; its own cost is ~5 ms, in the
        figures). The log's events give the commits and the attempts' own start and end times.
start   `stepledger status`, `runs` and `--help` on a log with one finished run: the whole command.
memory  The peak RSS of the orchestrator (VmHWM, sampled every 10 ms, and its wait4 maximum), and
        the peak of the RSS of the orchestrator and every process under it, added up at each
        sample: on W2 and on the W2 shape with 10,000 steps.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sqlite3
import statistics
import subprocess
import threading
import time
from pathlib import Path

# Run as `python -c TRACER ARGS...`: `stepledger ARGS` in this interpreter, with timestamps.
TRACER = r"""
import functools, importlib.abc, json, os, sys, time
T0 = float(os.environ["T0"])
marks, depth, spent = [], [0], [0.0]
def mark(label):
    marks.append((time.time() - T0, label, spent[0]))
mark("python")
WATCH = {
    "stepledger.engine.api": ["Stepledger.prepare_run", "Stepledger.run"],
    "stepledger.engine.execution.pool": ["WorkerPool.start", "WorkerPool.shutdown"],
    "stepledger.store.connect": ["open_store"],
    "stepledger.cli.run_view": ["print_preamble", "print_end"],
}
def wrap(module, dotted):
    owner = module
    *path, name = dotted.split(".")
    for part in path:
        owner = getattr(owner, part)
    fn = getattr(owner, name)
    @functools.wraps(fn)
    def stamped(*a, **k):
        mark(dotted + " >")
        try:
            return fn(*a, **k)
        finally:
            mark(dotted + " <")
    setattr(owner, name, stamped)
class Timed(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or isinstance(loader, type) or not hasattr(loader, "exec_module"):
            return spec  # built-in and frozen modules: their importer is a class shared by all
        run = loader.exec_module
        def exec_module(module):
            depth[0] += 1
            began = time.perf_counter()
            try:
                run(module)
            finally:
                depth[0] -= 1
                if depth[0] == 0:
                    spent[0] += time.perf_counter() - began
            if name in WATCH:
                for dotted in WATCH[name]:
                    wrap(module, dotted)
        loader.exec_module = exec_module
        return spec
sys.meta_path.insert(0, Timed())
leave = os._exit
def exit_(code):
    mark("exit")
    with open(os.environ["MARKS"], "w") as f:
        json.dump(marks, f)
    leave(code)
os._exit = exit_
sys.argv = ["stepledger", *sys.argv[1:]]
from stepledger.cli.app import main
main()
"""


def _events(folder: Path) -> list[tuple[str, float, dict]]:
    with sqlite3.connect(folder / ".stepledger" / "ledger.db") as db:
        rows = db.execute("SELECT type, recorded_at, payload FROM events ORDER BY position").fetchall()
    return [(kind, float(at), json.loads(payload)) for kind, at, payload in rows]


def w1_split(folder: Path, python: str, ws: Path) -> list[tuple[str, float, float]]:
    """(phase, ms, of which imports ms) of one traced W1 run in `folder`, in the order they happen."""
    marks_file = folder / "marks.json"
    began = time.time()
    env = {**os.environ, "T0": repr(began), "MARKS": str(marks_file)}
    subprocess.run([python, "-c", TRACER, "run", str(ws)], cwd=folder, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    marks = json.loads(marks_file.read_text())
    first: dict[str, tuple[float, float]] = {}
    last: dict[str, tuple[float, float]] = {}
    for at, label, imports in marks:
        first.setdefault(label, (at, imports))
        last[label] = (at, imports)

    def imports_at(moment: float) -> float:
        seen = [imports for at, _, imports in marks if at <= moment]
        return seen[-1] if seen else 0.0

    events = _events(folder)
    committed = {kind: at - began for kind, at, _ in reversed(events)}  # the first of each type
    attempts = [p for kind, _, p in events if kind == "step.passed"]
    started = max(p["started_at"] for p in attempts) - began
    finished = max(p["finished_at"] for p in attempts) - began
    outcome = max(at for kind, at, _ in events if kind == "step.passed") - began
    ended = [at - began for kind, at, _ in events if kind == "run.finished"][-1]
    bounds = [
        ("interpreter start, to the first line of Python", 0.0),
        ("imports and parsing, to loading the workstream", first["python"][0]),
        ("loading and checking the workstream", first["Stepledger.prepare_run >"][0]),
        ("starting the pool (forking its workers)", first["WorkerPool.start >"][0]),
        ("isolation check, the preamble (imports)", first["WorkerPool.start <"][0]),
        ("opening the log: the schema check", first["open_store >"][0]),
        ("lease and the first commit (run.started)", first["open_store <"][0]),
        ("the first dispatch (step.started committed)", committed["run.started"]),
        ("the workers: last attempt started", committed["step.started"]),
        ("-- the steps run --", started),
        ("last outcome committed", finished),
        ("summary committed (run.finished)", outcome),
        ("pool shutdown, report, summary printed", ended),
        ("(exit)", first["exit"][0]),
    ]
    phases = []
    for (label, start), (_, end) in itertools.pairwise(bounds):
        inside = imports_at(end) - imports_at(start) if start else 0.0
        phases.append((label, (end - start) * 1000, inside * 1000))
    shutdown = sum(
        last["WorkerPool.shutdown <"][0] - at for at, label, _ in marks if label == "WorkerPool.shutdown >"
    )
    phases.append(("  of which pool shutdown", shutdown * 1000, 0.0))
    phases.append(("whole command", first["exit"][0] * 1000, marks[-1][2] * 1000))
    return phases


def command_start(python_bin: Path, folder: Path, repeats: int) -> dict[str, float]:
    """Median seconds of the commands that only read, on the log in `folder`."""
    stepledger = str(python_bin.parent / "stepledger")
    commands = {"status": ["status"], "runs": ["runs"], "--help": ["--help"]}
    figures = {}
    for name, args in commands.items():
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            subprocess.run([stepledger, *args], cwd=folder, check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "120"})  # fmt: skip
            times.append(time.perf_counter() - began)
        figures[name] = statistics.median(times)
    return figures


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):  # it ended meanwhile
            todo += [int(p) for p in Path(f"/proc/{current}/task/{current}/children").read_text().split()]
    return pids


def _kib(pid: int, field: str, source: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_memory(command: list[str], folder: Path) -> dict[str, float]:
    """Run `command` in `folder`; MB: the orchestrator's peak RSS, and the peak of all its processes'
    memory: their RSS added up, which counts a page shared by several processes (forked workers
    share most of theirs with the orchestrator) once in each, and their PSS added up, which
    divides each shared page among its sharers: the memory the run takes from the machine."""
    proc = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    orchestrator_hwm = total_peak = pss_peak = 0
    hwm: dict[int, int] = {}
    done = threading.Event()

    def sample() -> None:
        nonlocal orchestrator_hwm, total_peak, pss_peak
        while not done.is_set():
            pids = _tree(proc.pid)
            total_peak = max(total_peak, sum(_kib(pid, "VmRSS:") for pid in pids))
            pss_peak = max(pss_peak, sum(_kib(pid, "Pss:", "smaps_rollup") for pid in pids))
            for pid in pids:
                hwm[pid] = max(hwm.get(pid, 0), _kib(pid, "VmHWM:"))
            orchestrator_hwm = max(orchestrator_hwm, hwm.get(proc.pid, 0))
            done.wait(0.01)  # a sampling period: there is nothing to wait for

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    assert proc.returncode == 0, f"{command} exited {proc.returncode}"
    largest = max((kib for pid, kib in hwm.items() if pid != proc.pid), default=0)
    return {
        "orchestrator": orchestrator_hwm / 1024,
        "wait4": usage.ru_maxrss / 1024,  # the largest of the orchestrator and the processes it reaped
        "largest other": largest / 1024,
        "all at once": total_peak / 1024,
        "pss": pss_peak / 1024,
        "processes": len(hwm),
    }
