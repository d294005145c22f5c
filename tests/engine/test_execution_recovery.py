"""probe / wait / kill helpers that `resume` uses on attempts whose orchestrator died."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from exec_support import RESULT_TIMEOUT, alive, await_exit

from stepledger.engine.execution import files
from stepledger.engine.execution.recovery import (
    kill_attempt,
    lock_holders,
    probe_attempt,
    read_result,
    wait_for_attempt,
)
from stepledger.engine.execution.spec import AttemptResult

# A stand-in for an attempt's process: takes the lock (as a worker would), says so, then waits.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def hold_lock(path: str, new_group: bool = True) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        process_group=0 if new_group else None,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "locked\n"
    return proc


def finish(proc: subprocess.Popen[str]) -> None:
    """End a `hold_lock` holder and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    proc.stdout.close()


def test_probe_gone_running_finished(tmp_path: Path) -> None:
    rd = str(tmp_path)
    assert probe_attempt(rd, "s", 1) == "gone"
    holder = hold_lock(files.lock_path(rd, "s", 1))
    try:
        assert probe_attempt(rd, "s", 1) == "running"
    finally:
        finish(holder)
    assert probe_attempt(rd, "s", 1) == "gone"  # died without a result
    result = AttemptResult("r", "s", 1, True, None, 0, "", "", 1.0, 2.0)
    files.write_atomic(files.result_path(rd, "s", 1), result.to_json().encode())
    assert probe_attempt(rd, "s", 1) == "finished"
    assert read_result(rd, "s", 1) == result
    assert read_result(rd, "s", 2) is None


def test_wait_for_attempt_returns_when_the_lock_is_released(tmp_path: Path) -> None:
    rd = str(tmp_path)
    assert wait_for_attempt(rd, "s", 1, timeout=0)  # no lock file: nothing to wait for
    holder = hold_lock(files.lock_path(rd, "s", 1))
    try:
        assert wait_for_attempt(rd, "s", 1, timeout=0.05) is False
        done = threading.Event()

        def wait_then_tell() -> None:
            wait_for_attempt(rd, "s", 1, None)
            done.set()

        waiter = threading.Thread(target=wait_then_tell)
        waiter.start()
        assert not done.is_set()
        assert holder.stdin is not None
        holder.stdin.close()  # the holder exits, its lock goes with it
        waiter.join(RESULT_TIMEOUT)
        assert done.is_set()
    finally:
        finish(holder)
    assert wait_for_attempt(rd, "s", 1, timeout=RESULT_TIMEOUT)
    assert wait_for_attempt(rd, "s", 1, timeout=0)  # a free lock answers at once, even with no time


def _write_lock(rd: str, pgids: list) -> None:
    content = {
        "host": os.uname().nodename,
        "worker_pid": 1,
        "worker_start": 0,
        "kind": "shell",
        "pgids": pgids,
    }
    Path(files.lock_path(rd, "s", 1)).write_text(json.dumps(content))


def test_kill_attempt_kills_recorded_groups(tmp_path: Path) -> None:
    rd = str(tmp_path)
    group = subprocess.Popen(["sh", "-c", "sleep 1000 & wait"], process_group=0)
    try:
        _write_lock(rd, [[group.pid, files.proc_start_time(group.pid)]])
        assert kill_attempt(rd, "s", 1) == [group.pid]
        assert group.wait(RESULT_TIMEOUT) == -9
    finally:
        finish_plain(group)


def finish_plain(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def test_kill_attempt_spares_a_process_that_reused_a_recorded_pid(tmp_path: Path) -> None:
    rd = str(tmp_path)
    bystander = subprocess.Popen(["sleep", "1000"], process_group=0)
    try:
        # Same pid, different start time: it is not the process the attempt started.
        started = files.proc_start_time(bystander.pid)
        assert started is not None
        _write_lock(rd, [[bystander.pid, started - 1]])
        assert kill_attempt(rd, "s", 1) == []
        assert alive(bystander.pid)
    finally:
        finish_plain(bystander)


def test_kill_attempt_refuses_another_host(tmp_path: Path) -> None:
    rd = str(tmp_path)
    Path(files.lock_path(rd, "s", 1)).write_text(json.dumps({"host": "elsewhere-xyz", "pgids": [[1, 1]]}))
    try:
        kill_attempt(rd, "s", 1)
    except RuntimeError as exc:
        assert "elsewhere-xyz" in str(exc)
    else:
        raise AssertionError("kill_attempt must refuse to signal pids of another host")


def test_kill_attempt_without_children_kills_the_lock_holder(tmp_path: Path) -> None:
    # A python task runs inside its worker: the worker holds the lock and no child is recorded.
    rd = str(tmp_path)
    holder = hold_lock(files.lock_path(rd, "s", 1))
    try:
        assert lock_holders(files.lock_path(rd, "s", 1)) == [holder.pid]
        assert probe_attempt(rd, "s", 1) == "running"
        assert lock_holders(files.lock_path(rd, "s", 1)) == [holder.pid]  # a prober is not a holder
        assert kill_attempt(rd, "s", 1) == [holder.pid]
        assert holder.wait(RESULT_TIMEOUT) == -9
        assert await_exit(holder.pid)
        assert probe_attempt(rd, "s", 1) == "gone"
    finally:
        finish(holder)


def test_lock_is_held_by_an_inherited_descriptor(tmp_path: Path) -> None:
    rd = str(tmp_path)
    fd = os.open(files.lock_path(rd, "s", 1), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, pass_fds=(fd,)
    )
    assert child.stdin is not None
    os.close(fd)  # like a worker after its attempt: the child still holds the lock
    try:
        assert probe_attempt(rd, "s", 1) == "running"
        assert lock_holders(files.lock_path(rd, "s", 1)) == [child.pid]
    finally:
        child.stdin.close()
        child.wait()
    assert probe_attempt(rd, "s", 1) == "gone"
