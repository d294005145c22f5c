"""stepledger and Luigi side by side, in one run, on the same four workloads.

    .venv/bin/python benchmarks/bench_peers.py [--repeats 3] [--only W1,W2,W3,W4,split,start,memory]
                                               [--luigi-venv DIR]

Luigi (its local scheduler) is what a user would pick for file-defined local pipelines. The script
installs it into a throw-away virtual environment (or into `--luigi-venv DIR`, kept there and
reused by later runs), then alternates the two engines on each workload and prints the medians side
by side with their ratio. Absolute figures move with this machine's load; the ratios are the point.

W1  3 independent `sleep 1` shell steps, 3 workers: the whole command, start to exit.
W2  root -> 500 no-op python steps -> join, 2 workers: steps/s of the whole command; for
    stepledger also from its first dispatch to its last outcome (the run's own events).
W3  a chain of 200 no-op python steps: per hop, the median time between consecutive steps'
    starts (each step writes its start time to a file, in both engines); the whole command
    divided by the steps is printed beside (it includes start-up and, for Luigi, scheduling).
W4  a chain of 100 steps of 50 ms; the orchestrating process is killed with SIGKILL once ~50
    steps have run, then the run is continued (`stepledger resume RUN`; Luigi: the same command
    again). Figure: restart -> done minus the work left; reruns counted from a side-effect file
    to which every step execution appends its id.

Then, for stepledger alone (peers_probes.py): where W1's time goes (`split`), how fast the
commands that only read start (`start`), and the memory of W2 and of a 10,000-step run (`memory`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import peers_probes

STEPLEDGER = str(Path(sys.executable).parent / "stepledger")

# The steps' bodies, the same code for both engines.
STEP_CODE = """
import time

def noop():
    return None

def stamp():
    with open("starts", "a") as f:
        f.write(f"{time.time()}\\n")

def effect(step_id, seconds="0.05"):
    with open("effects", "a") as f:
        f.write(step_id + "\\n")
    time.sleep(float(seconds))
"""

LUIGI_CODE = """
import subprocess
import luigi
import peer_steps

class Done(luigi.Task):
    # Luigi knows a task is complete by its output; every task writes one.
    def output(self):
        return luigi.LocalTarget(f"out/{self.task_id}")

    def finish(self):
        with self.output().open("w") as f:
            f.write("ok")

class Sleep(Done):
    i = luigi.IntParameter()
    def run(self):
        subprocess.run("sleep 1", shell=True, check=True)
        self.finish()

class W1(luigi.WrapperTask):
    def requires(self):
        return [Sleep(i=i) for i in range(3)]

class Root(Done):
    def run(self):
        peer_steps.noop()
        self.finish()

class Mid(Done):
    i = luigi.IntParameter()
    def requires(self):
        return Root()
    def run(self):
        peer_steps.noop()
        self.finish()

class W2(Done):
    def requires(self):
        return [Mid(i=i) for i in range(500)]
    def run(self):
        peer_steps.noop()
        self.finish()

class Hop(Done):
    i = luigi.IntParameter()
    def requires(self):
        return [Hop(i=self.i - 1)] if self.i else []
    def run(self):
        peer_steps.stamp()
        self.finish()

class Slow(Done):
    i = luigi.IntParameter()
    def requires(self):
        return [Slow(i=self.i - 1)] if self.i else []
    def run(self):
        peer_steps.effect(f"c{self.i}")
        self.finish()
"""


def folder_for(tmp: Path, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=name + "-", dir=tmp))
    (folder / "peer_steps.py").write_text(STEP_CODE)
    (folder / "peer_luigi.py").write_text(LUIGI_CODE)
    return folder


def write_ws(folder: Path, steps: list[dict], workers: int) -> Path:
    path = folder / "ws.json"
    path.write_text(json.dumps({"id": "peers", "execution": {"max_workers": workers}, "steps": steps}))
    return path


def chain(n: int, task: Callable[[int], str]) -> list[dict]:
    steps = [{"id": "c0", "tool": "python", "tasks": [task(0)]}]
    steps += [
        {"id": f"c{i}", "tool": "python", "tasks": [task(i)], "depends_on": [f"c{i - 1}"]}
        for i in range(1, n)
    ]
    return steps


def timed(command: list[str], folder: Path, env: dict[str, str] | None = None) -> float:
    began = time.perf_counter()
    subprocess.run(
        command, cwd=folder, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    return time.perf_counter() - began


class Luigi:
    def __init__(self, venv: Path) -> None:
        self.python = str(venv / "bin" / "python")

    def command(self, task: str, workers: int, *params: str) -> list[str]:
        return [self.python, "-m", "luigi", "--module", "peer_luigi", task, *params,
                "--local-scheduler", "--workers", str(workers), "--no-lock"]  # fmt: skip

    def env(self, folder: Path) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(folder)}


def engine_seconds(folder: Path) -> float:
    """First step.started to run.finished, from the run's own log."""
    with sqlite3.connect(folder / ".stepledger" / "ledger.db") as db:
        started = db.execute("SELECT MIN(recorded_at) FROM events WHERE type = 'step.started'").fetchone()[0]
        finished = db.execute("SELECT MAX(recorded_at) FROM events WHERE type = 'run.finished'").fetchone()[0]
    return float(finished) - float(started)


def hops(folder: Path) -> float:
    starts = sorted(float(line) for line in (folder / "starts").read_text().split())
    return statistics.median(b - a for a, b in itertools.pairwise(starts))


# --- the workloads: each returns (stepledger figure, luigi figure, extra text) per repeat ------


def w1(tmp: Path, luigi: Luigi) -> tuple[float, float, str]:
    ours = folder_for(tmp, "w1-ours")
    ws = write_ws(ours, w1_steps(), 3)
    a = timed([STEPLEDGER, "run", str(ws)], ours)
    theirs = folder_for(tmp, "w1-luigi")
    b = timed(luigi.command("W1", 3), theirs, luigi.env(theirs))
    return a, b, ""


def wide(n: int) -> list[dict]:
    """W2's shape: a root, `n` no-op python steps depending on it, and a join."""
    task = "peer_steps:noop"
    steps = [{"id": "root", "tool": "python", "tasks": [task]}]
    steps += [{"id": f"s{i}", "tool": "python", "tasks": [task], "depends_on": ["root"]} for i in range(n)]
    steps.append({"id": "join", "tool": "python", "tasks": [task], "depends_on": [f"s{i}" for i in range(n)]})
    return steps


def w1_steps() -> list[dict]:
    return [{"id": f"s{i}", "tool": "shell", "tasks": ["sleep 1"]} for i in range(3)]


def w2(tmp: Path, luigi: Luigi) -> tuple[float, float, str]:
    n = 502
    ours = folder_for(tmp, "w2-ours")
    ws = write_ws(ours, wide(500), 2)
    a = n / timed([STEPLEDGER, "run", str(ws)], ours)
    inside = n / engine_seconds(ours)
    theirs = folder_for(tmp, "w2-luigi")
    b = n / timed(luigi.command("W2", 2), theirs, luigi.env(theirs))
    return a, b, f"stepledger first dispatch -> last outcome: {inside:.0f} steps/s"


def w3(tmp: Path, luigi: Luigi) -> tuple[float, float, str]:
    ours = folder_for(tmp, "w3-ours")
    ws = write_ws(ours, chain(200, lambda i: "peer_steps:stamp"), 1)
    a = timed([STEPLEDGER, "run", str(ws)], ours)
    theirs = folder_for(tmp, "w3-luigi")
    b = timed(luigi.command("Hop", 1, "--i", "199"), theirs, luigi.env(theirs))
    whole = f"whole command / 200 steps: stepledger {a / 0.2:.2f} ms, Luigi {b / 0.2:.2f} ms"
    return hops(ours) * 1000, hops(theirs) * 1000, whole


def kill_when(proc: subprocess.Popen, effects: Path, count: int) -> None:
    """SIGKILL `proc` once `count` step executions are in the side-effect file."""
    while proc.poll() is None:
        if effects.exists() and len(effects.read_text().split()) >= count:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        time.sleep(0.005)  # polling a file another process appends to: there is nothing to await
    raise RuntimeError("the run ended before it could be killed")


def continued(
    effects: Path, resume: list[str], folder: Path, env: dict[str, str] | None
) -> tuple[float, int]:
    """Time the continuation; (restart -> done minus the work left, reruns)."""
    done = len(set(effects.read_text().split()))
    took = timed(resume, folder, env)
    lines = effects.read_text().split()
    assert len(set(lines)) == 100, f"{len(set(lines))} of 100 steps ran"
    return took - (100 - done) * 0.05, len(lines) - 100


def w4(tmp: Path, luigi: Luigi) -> tuple[float, float, str]:
    ours = folder_for(tmp, "w4-ours")
    ws = write_ws(ours, chain(100, lambda i: f"peer_steps:effect c{i}"), 1)
    proc = subprocess.Popen([STEPLEDGER, "run", str(ws)], cwd=ours, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    kill_when(proc, ours / "effects", 50)
    with sqlite3.connect(ours / ".stepledger" / "ledger.db") as db:
        run_id = db.execute("SELECT run_id FROM runs").fetchone()[0]
    a, a_reruns = continued(ours / "effects", [STEPLEDGER, "resume", run_id], ours, None)
    theirs = folder_for(tmp, "w4-luigi")
    command = luigi.command("Slow", 1, "--i", "99")
    proc = subprocess.Popen(command, cwd=theirs, env=luigi.env(theirs), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    kill_when(proc, theirs / "effects", 50)
    b, b_reruns = continued(theirs / "effects", command, theirs, luigi.env(theirs))
    return a, b, f"reruns: stepledger {a_reruns}, Luigi {b_reruns}"


WORKLOADS = {
    "W1": (w1, "3 x sleep 1, 3 workers, whole command", "s", False),
    "W2": (w2, "root -> 500 no-op python -> join, 2 workers, whole command", "steps/s", True),
    "W3": (w3, "chain of 200 no-op python steps, per hop", "ms", False),
    "W4": (w4, "chain of 100 x 50 ms, kill -9 at ~50, restart -> done minus work left", "s", False),
}


# --- stepledger alone ------------------------------------------------------------------------------


def split(tmp: Path, repeats: int) -> None:
    """W1's time, phase by phase: the median of `repeats` traced runs."""
    runs = []
    for _ in range(repeats):
        folder = folder_for(tmp, "w1-split")
        runs.append(peers_probes.w1_split(folder, sys.executable, write_ws(folder, w1_steps(), 3)))
    print(f"\nW1, phase by phase (traced; median of {repeats}; ms)        {'phase':>8} {'imports in it':>14}")
    for i, (label, _, _) in enumerate(runs[0]):
        took = statistics.median(r[i][1] for r in runs)
        imports = statistics.median(r[i][2] for r in runs)
        print(f"  {label:<55} {took:>8.1f} {imports:>14.1f}")


def start(tmp: Path, repeats: int) -> None:
    """Start-to-exit of the commands that only read, on a log with one finished run."""
    folder = folder_for(tmp, "start")
    timed([STEPLEDGER, "run", str(write_ws(folder, w1_steps()[:1], 1))], folder)
    figures = peers_probes.command_start(Path(sys.executable), folder, max(5, repeats))
    shown = ", ".join(f"{name} {seconds:.3f} s" for name, seconds in figures.items())
    print(f"\ncommands that only read, whole command (median of {max(5, repeats)}): {shown} (target 0.15 s)")


def memory(tmp: Path, repeats: int) -> None:
    """Peak RSS on W2 (the orchestrator) and on its shape with 10,000 steps (everything)."""
    print("\nmemory, MB (orchestrator: its VmHWM sampled every 10 ms; all: the RSS of every process, added;"
          " PSS: their proportional set sizes, added)")  # fmt: skip
    for label, n, workers in (("W2, 502 steps, 2 workers", 500, 2), ("10,000 steps, 2 workers", 9_998, 2)):
        folder = folder_for(tmp, "memory")
        figures = peers_probes.peak_memory(
            [STEPLEDGER, "run", str(write_ws(folder, wide(n), workers))], folder
        )
        print(f"  {label:<26} orchestrator {figures['orchestrator']:5.1f} (wait4 {figures['wait4']:5.1f}), "
              f"largest other {figures['largest other']:5.1f}, all at once {figures['all at once']:6.1f} "
              f"(PSS {figures['pss']:6.1f}; {figures['processes']} processes)")  # fmt: skip


EXTRAS = {"split": split, "start": start, "memory": memory}


def luigi_venv(tmp: Path, given: str | None) -> Path:
    venv = Path(given) if given else tmp / "luigi-venv"
    if (venv / "bin" / "python").exists():
        return venv
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "luigi"],
                   check=True)  # fmt: skip
    return venv


def main() -> None:
    # Every command measured runs with its modules' .pyc files, as an installed stepledger does:
    # with PYTHONDONTWRITEBYTECODE set (as in some shells here), a module edited since its .pyc was
    # written is compiled again by every command, and a command's start-up measures the compiler.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="W1,W2,W3,W4,split,start,memory")
    parser.add_argument("--luigi-venv", help="where Luigi's virtual environment is (made there if missing)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-peers-"))
    chosen = args.only.split(",")
    workloads = [n for n in chosen if n in WORKLOADS]
    if workloads:
        luigi = Luigi(luigi_venv(tmp, args.luigi_venv))
        ask = "import importlib.metadata as m; print(m.version('luigi'))"
        version = subprocess.run(
            [luigi.python, "-c", ask], capture_output=True, text=True, check=True
        ).stdout.strip()
        print(f"stepledger vs Luigi {version} (local scheduler), median of {args.repeats}, alternating\n")
        print(f"{'':4} {'workload':<72} {'stepledger':>12} {'Luigi':>12} {'ratio':>7}")
    try:
        for name in workloads:
            run, label, unit, higher_is_better = WORKLOADS[name]
            ours, theirs, notes = [], [], []
            for _ in range(args.repeats):
                a, b, note = run(tmp, luigi)
                ours.append(a)
                theirs.append(b)
                if note:
                    notes.append(note)
            a, b = statistics.median(ours), statistics.median(theirs)
            ratio = a / b if higher_is_better else b / a  # > 1: stepledger ahead
            print(f"{name:4} {label:<72} {a:>9.3f} {unit:<3}{b:>9.3f} {unit:<3}{ratio:>6.2f}x")
            for note in notes:
                print(f"{'':4}   {note}")
        if workloads:
            print("\nratio: how many times stepledger is ahead (above 1) or behind (below 1).")
        for name in [n for n in chosen if n in EXTRAS]:
            EXTRAS[name](tmp, args.repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
