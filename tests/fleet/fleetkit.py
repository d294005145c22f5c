"""Helpers of the fleet tests: real `stepledger worker` processes, each a "machine" of its own.

A worker is started in a session of its own, with its own work directory and STEPLEDGER_HOSTNAME.
`kill_machine` SIGKILLs every process of that session — the worker, its pool's processes and the
attempts' children, which keep the session though they have process groups of their own — as a
machine that dies takes them all.

Waiting: the database and files offer no notification a test process can block on, so `wait_for`
polls them with a deadline; no test sleeps to synchronise.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg

from stepledger.engine.fleet.settings import conninfo

_SCRIPT = Path(sys.executable).with_name("stepledger")
STEPLEDGER = [str(_SCRIPT)] if _SCRIPT.exists() else [shutil.which("stepledger") or "stepledger"]
# Short heartbeats, so a dead worker is found in about two seconds; short leases, so a dead
# driver's run is taken over in about as long.
FAST = {
    "STEPLEDGER_FLEET_HEARTBEAT": "0.3",
    "STEPLEDGER_FLEET_STALL_TIMEOUT": "1.5",
    "STEPLEDGER_LEASE_SECONDS": "2",
}


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll `condition` until it returns something true; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def query(db: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql` on the test database (the fleet's tables may not exist yet: then none)."""
    with psycopg.connect(conninfo(db), autocommit=True) as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except psycopg.errors.UndefinedTable:
            return []


class Fleet:
    """The worker processes of one test, on one database."""

    def __init__(self, db: str, root: Path) -> None:
        self.db = db
        self.root = root
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: list[tuple[str, float]] = []  # (host, when) of each kill_machine

    def start(
        self,
        host: str,
        *extra: str,
        concurrency: int = 1,
        env_extra: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Path:
        """Start a worker as machine `host` (serving once this returns, unless not `wait`: then
        `serving(host)` waits for it); its work directory."""
        workdir = self.root / host
        workdir.mkdir(exist_ok=True)
        env = {**os.environ, **FAST, "STEPLEDGER_HOSTNAME": host, **(env_extra or {})}
        env.pop("STEPLEDGER_DB", None)
        log = open(self.root / f"{host}.worker.log", "ab")  # noqa: SIM115 - the process keeps it
        self.workers[host] = subprocess.Popen(
            [*STEPLEDGER, "worker", "--db", self.db, "--concurrency", str(concurrency), "--workdir",
             str(workdir), *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
        )  # fmt: skip
        log.close()
        if wait:
            self.serving(host)
        return workdir

    def serving(self, *hosts: str) -> None:
        """Wait until each worker of `hosts` serves."""
        for host in hosts:
            wait_for(lambda: "serving" in self.output(host), f"worker {host} to start")  # noqa: B023

    def kill_machine(self, host: str) -> None:
        """SIGKILL every process of the worker's session, until none is left."""
        self.kills.append((host, time.time()))
        sid = self.workers[host].pid
        while True:
            members = session_members(sid)
            if not members:
                break
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.workers[host].poll()  # reap the worker itself (our child)
        self.workers[host].wait()

    def stop(self) -> None:
        """SIGTERM every worker still running; each must exit 0 (anything left is killed, and fails)."""
        stopped = [host for host, proc in self.workers.items() if proc.poll() is None]
        for host in stopped:
            self.workers[host].send_signal(signal.SIGTERM)
        stuck = []
        for host in stopped:
            try:
                code = self.workers[host].wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_machine(host)
                stuck.append(f"{host} did not stop on SIGTERM")
                continue
            if code != 0:
                stuck.append(f"{host} exited {code} on SIGTERM:\n{self.output(host)[-2000:]}")
        assert not stuck, "; ".join(stuck)

    def output(self, host: str) -> str:
        return (self.root / f"{host}.worker.log").read_text(errors="replace")


def fleet_state(db: str, run_id: str, fleet: Fleet) -> str:
    """What a failed wait leaves to read: the run's last events, its jobs and each worker's output."""
    lines = []
    with contextlib.suppress(psycopg.Error):
        events = query(db, "SELECT position, stream, type, payload, recorded_at FROM events WHERE run_id = %s"
                           " ORDER BY position DESC LIMIT 40", run_id)  # fmt: skip
        lines += ["events, newest first:", *(str(row) for row in events)]
        jobs = query(db, "SELECT id, queue_name, task_name, status, attempts FROM procrastinate_jobs"
                         " ORDER BY id DESC LIMIT 30")  # fmt: skip
        lines += ["jobs, newest first:", *(str(row) for row in jobs)]
    for host in fleet.workers:
        lines += [f"--- worker {host} (exit {fleet.workers[host].poll()}):", fleet.output(host)[-4000:]]
    return "\n".join(lines)


def session_members(sid: int) -> list[int]:
    """Pids of the live (not zombie) processes in session `sid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry))
    return found


def workstream(path: Path, steps: list[dict[str, Any]], max_workers: int = 4) -> Path:
    """Write a workstream file of `steps` (shell steps; defaults filled in)."""
    full = [{"tool": "shell", "depends_on": [], "acceptance_tests": [], **step} for step in steps]
    ws = {"id": "fleet-test", "name": "fleet test", "execution": {"max_workers": max_workers}, "steps": full}
    path.write_text(json.dumps(ws))
    return path


def driver_env() -> dict[str, str]:
    """The environment of the driving machine's commands."""
    env = {**os.environ, **FAST, "STEPLEDGER_HOSTNAME": "driver", "STEPLEDGER_LEASE_SECONDS": "2"}
    env.pop("STEPLEDGER_DB", None)
    return env


def driver(
    db: str, ws: Path, cwd: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`stepledger run WS --on-workers` in `cwd`, as the driving machine (`env`: more variables)."""
    return subprocess.Popen(
        [*STEPLEDGER, "run", str(ws), "--db", db, "--on-workers", *extra],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**driver_env(), **(env or {})},
    )  # fmt: skip


def cli(db: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A stepledger command, run to its end, on the driving machine."""
    return subprocess.run([*STEPLEDGER, *args, "--db", db], cwd=cwd, capture_output=True, text=True,
                          env=driver_env(), timeout=120)  # fmt: skip


def run_status(db: str, run_id: str) -> str:
    """The run's status in the log ("" before it is recorded)."""
    rows = query(db, "SELECT status FROM runs WHERE run_id = %s", run_id)
    return str(rows[0][0]) if rows else ""


def driving_host(db: str, run_id: str) -> str:
    """The host whose driver holds the run's live lease ("" if nobody drives it now)."""
    live = "SELECT host FROM run_leases WHERE run_id = %s AND expires_at > extract(epoch FROM now())"
    rows = query(db, live, run_id)
    return str(rows[0][0]) if rows else ""


def evidence_task(side: Path, seconds: float | str, gate: Path | None = None) -> str:
    """A shell task writing `start`/`end STEP ATTEMPT HOST TIME` lines to `side` around its work: a
    sleep, or waiting for the file `gate` to appear (after writing `side`.STEP.ready)."""
    line = f'"$STEPLEDGER_STEP_ID $STEPLEDGER_ATTEMPT $STEPLEDGER_HOSTNAME $(date +%s.%N)" >> {side}'
    work = f"sleep {seconds}"
    if gate is not None:
        work = (f"touch {side}.$STEPLEDGER_STEP_ID.ready; for i in $(seq 2400); do [ -e {gate} ] && break;"
                f" sleep 0.05; done")  # fmt: skip
    return f"echo start {line}; {work}; echo end {line}"


# Longest time from a step's command ending to its outcome in the database, on a loaded machine.
RECORDING_WINDOW = 2.0


def check_evidence(
    side: Path, steps: list[str], kills: Sequence[tuple[str, float]] = ()
) -> dict[str, list[tuple[int, str]]]:
    """Every step ended exactly once, in its last attempt; no attempt started twice; the attempts of
    a step never overlapped (each started after the one before it ended, or after it died unended).
    Returns each step's started (attempt, host).

    `kills` are the machines killed, (host, when): an earlier attempt may have ended too only if its
    machine was killed just after (within RECORDING_WINDOW): its command had finished, its outcome
    had not reached the database, and it was retried like a running one (docs/workers.md, "A worker
    dies"). Nothing else lets a step end twice."""
    started: dict[str, list[tuple[int, str, float]]] = {}
    ended: dict[str, list[tuple[int, float]]] = {}
    for line in side.read_text().splitlines():
        kind, step, attempt, host, when = line.split()
        if kind == "start":
            started.setdefault(step, []).append((int(attempt), host, float(when)))
        else:
            ended.setdefault(step, []).append((int(attempt), float(when)))
    assert sorted(ended) == sorted(steps) == sorted(started), (started, ended)
    for step, attempts in started.items():
        numbers = [a for a, _, _ in attempts]
        assert len(numbers) == len(set(numbers)), (step, attempts)  # no attempt ran twice
        hosts = {a: host for a, host, _ in attempts}
        early = [(a, when) for a, when in ended[step] if a != max(numbers)]
        lost = [
            (a, when)
            for a, when in early
            if any(host == hosts.get(a) and 0 <= killed - when <= RECORDING_WINDOW for host, killed in kills)
        ]
        last = [a for a, _ in ended[step] if a == max(numbers)]
        assert last == [max(numbers)] and early == lost, (
            step,
            attempts,
            ended[step],
            kills,
        )  # one end, the last (and those of attempts whose machine died before their outcome was in)
        last_start = max(when for a, _, when in attempts if a == max(numbers))
        assert all(when <= last_start for _, _, when in attempts), (step, attempts)
    return {step: [(a, host) for a, host, _ in attempts] for step, attempts in started.items()}


def attempt_rows(db: str, run_id: str) -> list[tuple[str, int, str, str, dict | None, Any, Any]]:
    """(step, attempt, host, state, result, claimed_at, finished_at) of the run's attempts in the ledger."""
    sql = ("SELECT step_id, attempt, host, state, result, claimed_at, finished_at"
           " FROM stepledger_fleet_attempts WHERE run_id = %s ORDER BY step_id, attempt")  # fmt: skip
    return [tuple(r) for r in query(db, sql, run_id)]


def check_replay(db: str, run_id: str, cwd: Path) -> None:
    """`stepledger replay RUN --verify` passes: the projections agree with a fold of the log."""
    verify = cli(db, "replay", run_id, "--verify", cwd=cwd)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def check_no_overlap(db: str, run_id: str) -> None:
    """In the attempt ledger, each attempt of a step was claimed only after the one before was settled."""
    rows = attempt_rows(db, run_id)
    for before, after in itertools.pairwise(rows):
        if before[0] == after[0] and after[2]:  # the same step, and a worker claimed the later one
            assert before[3] == "done" and before[6] is not None and after[5] >= before[6], (before, after)
