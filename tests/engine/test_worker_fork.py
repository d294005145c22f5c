"""Workers forked from the orchestrator (forking.py) start as spawned ones would: their own process
group, only their own descriptors, default signal handling, no database URL, nothing of the
orchestrator's buffered output; a process with a second thread, or a big one, spawns them instead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stepledger.engine.execution.forking import WORKER_NAME

FIXTURES = Path(__file__).parent.parent / "fixtures"
SECRET_URL = "postgresql://someone:hunter2@db.example/ledger"
WORKER_MODULE = "stepledger.engine.execution.worker"

PROBE = """
import json, os, signal, sys

def probe(out):
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass  # the listing's own descriptor, closed by now
    state = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pgid": os.getpgid(0),
        "comm": open("/proc/self/comm").read().strip(),
        "cmdline": open("/proc/self/cmdline", "rb").read().decode().split("\\0"),
        "argv": sys.argv,
        "environ": open("/proc/self/environ", "rb").read().decode(errors="replace").split("\\0"),
        "db_in_env": "STEPLEDGER_DB" in os.environ,
        "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "fds": fds,
        "path": sys.path,
    }
    with open(out, "w") as f:
        json.dump(state, f)
"""


def drive(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[dict, str]:
    (tmp_path / "fork_probe.py").write_text(PROBE)
    with open(tmp_path / "stderr.txt", "w") as stderr:  # a file: the workers' only pipes are their own
        proc = subprocess.run(
            # The password in its command line and start-up environment must not reach a worker's.
            [
                sys.executable,
                str(FIXTURES / "fork_driver.py"),
                str(tmp_path),
                "2",
                *args,
                f"--db={SECRET_URL}",
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            timeout=120,
            env={**os.environ, "STEPLEDGER_DB": SECRET_URL, **(env or {})},
        )
    errors = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, errors
    printed, _, report = proc.stdout.rpartition("unflushed ")
    return json.loads(report), printed + errors


def test_a_forked_worker_starts_clean(tmp_path: Path) -> None:
    report, rest = drive(tmp_path)
    assert "unflushed" not in rest  # the orchestrator's buffered output was written once, by it
    workers = report["workers"]
    assert len({w["pid"] for w in workers}) == 2
    for worker in workers:
        assert worker["comm"] == WORKER_NAME  # forked, not spawned
        assert worker["ppid"] == report["pid"]
        assert worker["pgid"] == worker["pid"] != report["pgrp"]  # a group of its own
        assert worker["argv"] == ["-c"]
        # `ps` and `pkill -f` see a worker, not another `run` (the driver's file is not named).
        assert WORKER_MODULE in " ".join(worker["cmdline"]) and "fork_driver" not in " ".join(
            worker["cmdline"]
        )
        assert not any("hunter2" in part for part in worker["cmdline"] + worker["environ"])
        assert not worker["db_in_env"]
        assert worker["sigterm_default"]  # the orchestrator's Python handler is not the worker's
        targets = set(worker["fds"].values())
        assert str(tmp_path / "held.txt") not in targets
        # Its own pipes only: a sibling's would keep that sibling's end-of-file from arriving.
        pipes = {t for t in targets if t.startswith("pipe:")}
        assert len(pipes) == 2, worker["fds"]
        assert str(FIXTURES) not in worker["path"]  # the orchestrator's script folder


@pytest.mark.parametrize("because", ["threaded", "big"])
def test_workers_are_spawned_when_the_orchestrator_has_another_thread_or_is_big(
    tmp_path: Path, because: str
) -> None:
    report, _ = drive(tmp_path, because)
    for worker in report["workers"]:
        assert worker["comm"] != WORKER_NAME
        assert "-S" in worker["cmdline"]  # a new interpreter (pool.py's boot)
        assert not any("hunter2" in part for part in worker["cmdline"] + worker["environ"])
        assert not worker["db_in_env"]


def test_STEPLEDGER_SPAWN_WORKERS_turns_forking_off(tmp_path: Path) -> None:
    report, _ = drive(tmp_path, env={"STEPLEDGER_SPAWN_WORKERS": "1"})
    for worker in report["workers"]:
        assert worker["comm"] != WORKER_NAME
        assert "-S" in worker["cmdline"]


@pytest.mark.parametrize("spawn", ["", "1"])
def test_a_run_from_the_command_line_forks_its_workers_unless_told_not_to(tmp_path: Path, spawn: str) -> None:
    ws = tmp_path / "ws.json"
    # Each step writes the name of its shell's parent: the worker that ran it.
    steps = [
        {"id": f"s{i}", "tool": "shell", "tasks": [f"cat /proc/$PPID/comm > out{i}.txt"]} for i in range(3)
    ]
    ws.write_text(json.dumps({"id": "forks", "execution": {"max_workers": 3}, "steps": steps}))
    stepledger = str(Path(sys.executable).parent / "stepledger")
    proc = subprocess.run(
        [stepledger, "run", str(ws)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "STEPLEDGER_SPAWN_WORKERS": spawn},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names = {(tmp_path / f"out{i}.txt").read_text().strip() for i in range(3)}
    assert (names == {WORKER_NAME}) == (not spawn), names  # forked by default, spawned when asked
    assert proc.stdout.count("3 steps: 3 passed") == 1  # nothing of the summary printed twice
