"""Runs on a fleet of `stepledger worker` processes (docs/workers.md): scaling, throughput, death.

    .venv/bin/python benchmarks/bench_fleet.py [--server postgresql+psycopg://postgres@127.0.0.1/postgres]
                                               [--steps 200] [--sleep 0.5] [--noop 1000] [--ahead 8]
                                               [--only NAME]

Each figure uses a fresh database on the server (dropped afterwards) and real processes: worker
processes standing for machines (own STEPLEDGER_HOSTNAME and work directory) and one
`stepledger run --on-workers` driver.

- scaling: `--steps` steps of `sleep --sleep` on 1, 2 and 4 workers × 4 slots, wall time of the run
  against the ideal (steps × sleep / slots);
- throughput: `--noop` no-op steps on 2 workers × 4 slots, steps per second of the whole run and
  from its first start to its last outcome, once with shell steps (`true`: a process per attempt),
  once with python no-op steps; each again with the run's max_workers `--ahead` above the fleet's 8
  slots (a job waits in the queue when a slot frees); the CPU seconds of each process; where an
  attempt's time goes;
- death: a worker killed (its whole session: a machine gone) mid-attempt, with the default
  heartbeat and stall settings; seconds from the kill until the retry started on another worker;
- takeover: a submitted chain of steps, the worker driving it killed (its whole session) a few
  steps in; seconds from the kill until the first attempt started by the worker that takes the
  run over (`--takeovers` kills with the default settings, as many with short ones).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from stepledger.engine.fleet.settings import conninfo

STEPLEDGER = str(Path(sys.executable).with_name("stepledger"))


@contextmanager
def fresh_db(server: str) -> Iterator[str]:
    name = f"stepledger_bench_fleet_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(conninfo(server), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(server).set(database=name).render_as_string(hide_password=False)
        # A fleet's database is set up once; the first run on a new one would migrate it first.
        subprocess.run([STEPLEDGER, "db", "upgrade", "--db", url], check=True, stdout=subprocess.DEVNULL,
                       env=env("driver"))  # fmt: skip
        yield url
    finally:
        with psycopg.connect(conninfo(server), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def env(host: str, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "STEPLEDGER_DB"}
    out.update(STEPLEDGER_HOSTNAME=host, **extra)
    return out


def start_workers(
    db: str, root: Path, count: int, slots: int, first: int = 1
) -> list[subprocess.Popen[bytes]]:
    procs = []
    for n in range(first, first + count):
        workdir = root / f"m{n}"
        workdir.mkdir()
        procs.append(subprocess.Popen(
            [STEPLEDGER, "worker", "--db", db, "--concurrency", str(slots), "--workdir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            env=env(f"m{n}"),
        ))  # fmt: skip
    for proc in procs:  # each prints one line once it serves
        assert proc.stderr is not None
        proc.stderr.readline()
        # The rest is read as it comes: a worker saying much must not block on a full pipe.
        threading.Thread(target=proc.stderr.read, daemon=True).start()
    return procs


def stat_of(pid: int) -> tuple[str, list[str]] | None:
    """The command name and the fields after it of /proc/PID/stat; None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()


def processes() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, command name, the fields of /proc/PID/stat after the name) of each live process."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (found := stat_of(int(entry))) is not None:
            yield int(entry), *found


def cpu_seconds(match: Callable[[int, str], bool]) -> float:
    """User + system CPU seconds of the live processes `match(pid, command name)` selects."""
    tick = os.sysconf("SC_CLK_TCK")
    # fields 11-14: its own user and system time and its reaped children's
    return sum(
        sum(int(f) for f in fields[11:15]) / tick for pid, name, fields in processes() if match(pid, name)
    )


def session_of(pid: int) -> int:
    found = stat_of(pid)
    return int(found[1][3]) if found else -1


def kill_session(sid: int) -> None:
    while True:
        members = [pid for pid, _, fields in processes() if int(fields[3]) == sid and fields[0] != "Z"]
        if not members:
            return
        for pid in members:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_session(proc.pid)
            proc.wait()


def write_ws(path: Path, steps: list[dict], max_workers: int) -> Path:
    full = [{"tool": "shell", "depends_on": [], "acceptance_tests": [], **s} for s in steps]
    path.write_text(json.dumps({"id": "bench", "name": "bench", "execution": {"max_workers": max_workers},
                                "steps": full}))  # fmt: skip
    return path


def failures(db: str) -> str:
    """The failed attempts' outcomes, as the log has them (what a failed run is asked first)."""
    with psycopg.connect(conninfo(db), autocommit=True) as conn:
        rows = conn.execute("SELECT stream, payload::text FROM events WHERE type = 'step.failed'").fetchall()
    return "".join(f"\n  {stream}: {payload[:1500]}" for stream, payload in rows)


def timed_run(db: str, ws: Path, cwd: Path) -> float:
    return timed_run_cpu(db, ws, cwd)[0]


def timed_run_cpu(db: str, ws: Path, cwd: Path) -> tuple[float, float]:
    """Wall seconds of the run and CPU seconds of its driver process."""
    began = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([STEPLEDGER, "run", str(ws), "--db", db, "--on-workers", "--json"], cwd=cwd,
                                stdout=out, stderr=err, env=env("driver"))  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        took = time.monotonic() - began
        if proc.returncode != 0:
            out.seek(0)
            err.seek(0)
            said = err.read().decode(errors="replace") or out.read().decode(errors="replace")[-1500:]
            raise SystemExit(f"the run failed ({proc.returncode}): {said[-3000:]}{failures(db)}")
    return took, usage.ru_utime + usage.ru_stime


def scaling(server: str, steps: int, sleep: float) -> None:
    print(f"scaling: {steps} steps of sleep {sleep}, workers × 4 slots")
    for workers in (1, 2, 4):
        slots = workers * 4
        with fresh_db(server) as db, tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            procs = start_workers(db, root, workers, 4)
            try:
                (root / "drv").mkdir()
                ws = write_ws(root / "drv" / "ws.json", [{"id": f"s{i:03d}", "tasks": [f"sleep {sleep}"]}
                                                        for i in range(steps)], slots)  # fmt: skip
                took = timed_run(db, ws, root / "drv")
                inside = in_run_seconds(db)
            finally:
                stop(procs)
        ideal = steps * sleep / slots
        print(f"  {workers} worker(s): whole command {took:6.2f} s ({100 * (took / ideal - 1):+.0f}%),"
              f" first start → last outcome {inside:6.2f} s ({100 * (inside / ideal - 1):+.0f}%),"
              f" ideal {ideal:6.2f} s")  # fmt: skip


NOOP_STEPS = {
    # a shell step running `true` (a process per attempt), or a python no-op (none)
    "shell": {"tool": "shell", "tasks": ["true"]},
    "python": {"tool": "python", "tasks": ["fleet_noop:noop"]},
}


def throughput(server: str, steps: int, kind: str, ahead: int = 0) -> None:
    with fresh_db(server) as db, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        procs = start_workers(db, root, 2, 4)
        for machine in ("m1", "m2"):  # the python step's module, in each worker's work directory
            (root / machine / "fleet_noop.py").write_text("def noop():\n    return None\n")
        try:
            (root / "drv").mkdir()
            ws = write_ws(root / "drv" / "ws.json", [{"id": f"s{i:04d}", **NOOP_STEPS[kind]}
                                                    for i in range(steps)], 8 + ahead)  # fmt: skip
            sessions = {proc.pid for proc in procs}

            def in_workers(pid: int, name: str) -> bool:
                return session_of(pid) in sessions

            def in_database(pid: int, name: str) -> bool:
                return name.startswith("postgres")

            workers_before, database_before = cpu_seconds(in_workers), cpu_seconds(in_database)
            took, driver_cpu = timed_run_cpu(db, ws, root / "drv")
            workers_cpu = cpu_seconds(in_workers) - workers_before
            database_cpu = cpu_seconds(in_database) - database_before
            phases = breakdown(db)
            inside = in_run_seconds(db)
        finally:
            stop(procs)
    print(
        f"throughput ({kind} no-op steps, max_workers {8 + ahead}): {steps} on 2 workers × 4 slots"
        f" in {took:.2f} s:"
        f" {steps / took:.0f} steps/s"
        f" (first start → last outcome {inside:.2f} s: {steps / inside:.0f} steps/s)"
    )
    # The run's CPU time by process (the workers' step processes count with their worker while
    # they live): on 2 cores, more than ~2 s of CPU per second of run means the run is bound by CPU.
    print(
        f"  CPU seconds: driver {driver_cpu:.2f}, workers {workers_cpu:.2f}, PostgreSQL {database_cpu:.2f}"
        f" — {1000 * (driver_cpu + workers_cpu + database_cpu) / steps:.1f} ms per step"
        f" over {took:.2f} s of run (2 cores: {2 * took:.2f} CPU seconds at most)"
    )
    print("  per attempt, median ms: " + ", ".join(f"{name} {ms:.1f}" for name, ms in phases.items()))


def in_run_seconds(db: str) -> float:
    """From the run's first step.started to its last step outcome, as the log recorded them."""
    with psycopg.connect(conninfo(db), autocommit=True) as conn:
        row = conn.execute(
            "SELECT min(recorded_at) FILTER (WHERE type = 'step.started'),"
            " max(recorded_at) FILTER (WHERE type IN ('step.passed', 'step.failed')) FROM events"
        ).fetchone()
    assert row is not None
    return float(row[1] - row[0])


def breakdown(db: str) -> dict[str, float]:
    """Where an attempt's time goes: the log's step.started/step.passed times and the ledger's."""
    with psycopg.connect(conninfo(db), autocommit=True) as conn:
        events = conn.execute(
            "SELECT type, split_part(stream, '/', 2), recorded_at FROM events"
            " WHERE type IN ('step.started', 'step.passed')"
        ).fetchall()
        ledger = conn.execute(
            "SELECT step_id, extract(epoch FROM claimed_at)::float, extract(epoch FROM finished_at)::float,"
            " (result->>'started_at')::float, (result->>'finished_at')::float FROM stepledger_fleet_attempts"
        ).fetchall()
    at = {(kind, step): when for kind, step, when in events}
    phases: dict[str, list[float]] = {
        "started → claimed by a worker": [],
        "claimed → running": [],
        "running": [],
        "ended → recorded": [],
        "recorded → step.passed": [],
    }
    for step, claimed, recorded, began, ended in ledger:
        values = (claimed - at["step.started", step], began - claimed, ended - began, recorded - ended,
                  at["step.passed", step] - recorded)  # fmt: skip
        for name, value in zip(phases, values, strict=True):
            phases[name].append(value * 1000)
    return {name: statistics.median(values) for name, values in phases.items()}


def death(server: str) -> None:
    with fresh_db(server) as db, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ready = root / "ready"
        procs = start_workers(db, root, 1, 1)
        try:
            (root / "drv").mkdir()
            task = (
                f'if [ "$STEPLEDGER_ATTEMPT" = 1 ]; then touch {ready}; sleep 120; fi;'
                f" date +%s.%N > {root}/retry"
            )
            ws = write_ws(root / "drv" / "ws.json", [{"id": "x", "tasks": [task]}], 1)
            driver = subprocess.Popen(
                [STEPLEDGER, "run", str(ws), "--db", db, "--on-workers", "--json"],
                cwd=root / "drv", stdout=subprocess.DEVNULL, env=env("driver"),
            )  # fmt: skip
            while not ready.exists():
                time.sleep(0.01)
            procs += start_workers(db, root, 1, 1, first=2)
            killed = time.time()
            kill_session(procs[0].pid)
            procs[0].wait()
            driver.wait(timeout=120)
            retried = float((root / "retry").read_text())
        finally:
            stop(procs)
    print(f"death: worker killed → retry running on another worker after {retried - killed:.2f} s"
          f" (heartbeat {os.environ.get('STEPLEDGER_FLEET_HEARTBEAT', '2')} s,"
          f" stall timeout {os.environ.get('STEPLEDGER_FLEET_STALL_TIMEOUT', '6')} s)")  # fmt: skip


SHORT = {"STEPLEDGER_LEASE_SECONDS": "2", "STEPLEDGER_FLEET_HEARTBEAT": "0.3",
         "STEPLEDGER_FLEET_STALL_TIMEOUT": "1.5"}  # fmt: skip


def takeover(server: str, rounds: int) -> None:
    """kill -9 of the driving worker's machine → the first attempt the new driver starts."""
    for settings, extra in (("default settings", {}), ("short settings", SHORT)):
        took = [takeover_once(server, extra) for _ in range(rounds)]
        print(f"takeover ({settings}): driving worker killed → first attempt started by another:"
              f" {', '.join(f'{t:.2f}' for t in took)} s (median {statistics.median(took):.2f})")  # fmt: skip


def submit(db: str, ws: Path, cwd: Path) -> str:
    """`stepledger submit`: the run's id."""
    done = subprocess.run([STEPLEDGER, "submit", str(ws), "--db", db], cwd=cwd, check=True,
                          capture_output=True, text=True, env=env("driver"))  # fmt: skip
    return done.stdout.strip()


def takeover_once(server: str, extra: dict[str, str]) -> float:
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)  # the workers' and the submitting command's settings (env() copies them)
    try:
        with fresh_db(server) as db, tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            procs = start_workers(db, root, 2, 2)
            try:
                (root / "drv").mkdir()
                after: list[list[str]] = [[]] + [[f"s{i - 1:02d}"] for i in range(1, 40)]
                chain = [{"id": f"s{i:02d}", "tasks": ["sleep 0.3"], "depends_on": d}
                         for i, d in enumerate(after)]  # fmt: skip
                run_id = submit(db, write_ws(root / "drv" / "ws.json", chain, 1), root / "drv")
                with psycopg.connect(conninfo(db), autocommit=True) as conn:
                    host = ""
                    while not host:  # driven, and a few steps in
                        row = conn.execute(
                            "SELECT l.host FROM run_leases l WHERE l.run_id = %s AND (SELECT count(*) FROM"
                            " events WHERE run_id = %s AND type = 'step.passed') >= 3", (run_id, run_id)
                        ).fetchone()  # fmt: skip
                        host = str(row[0]) if row else ""
                        time.sleep(0.02)
                    victim = procs[int(host.removeprefix("m")) - 1]
                    killed = time.time()
                    kill_session(victim.pid)
                    victim.wait()
                    while True:
                        row = conn.execute(
                            "SELECT min(recorded_at) FROM events WHERE run_id = %s AND type = 'step.started'"
                            " AND recorded_at > %s", (run_id, killed)
                        ).fetchone()  # fmt: skip
                        if row and row[0] is not None:
                            return float(row[0]) - killed
                        time.sleep(0.02)
            finally:
                stop(procs)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--sleep", type=float, default=0.5)
    parser.add_argument("--noop", type=int, default=1000)
    parser.add_argument("--takeovers", type=int, default=3, help="kills per setting for the takeover figure")
    parser.add_argument(
        "--ahead",
        type=int,
        default=8,
        help="throughput again with the run's max_workers this far above the fleet's 8 slots (0: not)",
    )
    parser.add_argument("--only", choices=("scaling", "throughput", "death", "takeover"))
    args = parser.parse_args()
    if shutil.which(STEPLEDGER) is None:
        raise SystemExit(f"{STEPLEDGER} not found: install the project into this venv")
    if args.only in (None, "scaling"):
        scaling(args.server, args.steps, args.sleep)
    if args.only in (None, "throughput"):
        for kind in NOOP_STEPS:
            throughput(args.server, args.noop, kind)
            if args.ahead:
                throughput(args.server, args.noop, kind, args.ahead)
    if args.only in (None, "death"):
        death(args.server)
    if args.only in (None, "takeover"):
        takeover(args.server, args.takeovers)


if __name__ == "__main__":
    main()
