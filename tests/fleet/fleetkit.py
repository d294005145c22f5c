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
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from stepledger.engine.fleet.settings import conninfo

_SCRIPT = Path(sys.executable).with_name("stepledger")
STEPLEDGER = [str(_SCRIPT)] if _SCRIPT.exists() else [shutil.which("stepledger") or "stepledger"]
# Short heartbeats, so a dead worker is found in about two seconds.
FAST = {"STEPLEDGER_FLEET_HEARTBEAT": "0.3", "STEPLEDGER_FLEET_STALL_TIMEOUT": "1.5"}


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

    def start(
        self, host: str, *extra: str, concurrency: int = 1, env_extra: dict[str, str] | None = None
    ) -> Path:
        """Start a worker as machine `host`; its work directory."""
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
        wait_for(lambda: "serving" in self.output(host), f"worker {host} to start")
        return workdir

    def kill_machine(self, host: str) -> None:
        """SIGKILL every process of the worker's session, until none is left."""
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


def driver(db: str, ws: Path, cwd: Path, *extra: str) -> subprocess.Popen[str]:
    """`stepledger run WS --on-workers` in `cwd`, as the driving machine."""
    return subprocess.Popen(
        [*STEPLEDGER, "run", str(ws), "--db", db, "--on-workers", *extra],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=driver_env(),
    )  # fmt: skip


def cli(db: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """A stepledger command, run to its end, on the driving machine."""
    return subprocess.run([*STEPLEDGER, *args, "--db", db], cwd=cwd, capture_output=True, text=True,
                          env=driver_env(), timeout=120)  # fmt: skip
