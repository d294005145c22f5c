"""The `stepledger` processes of one iteration: started with its kill plan, killed, and awaited.

Every process of an iteration — the orchestrators, their workers, the steps' own processes —
carries `STEPLEDGER_CHAOS_TAG` in its environment. A killed orchestrator's workers live on (they
finish what they claimed, or drop a job they read too late); the checks read the side-effect log
only after every tagged process has exited, so a late execution is still seen. Linux: the tag is
found through /proc, and awaited with pidfds.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

TAG_VARIABLE = "STEPLEDGER_CHAOS_TAG"
# What the chaos run sets itself; a value inherited from the user's shell would change the plan.
OWN_VARIABLES = ("STEPLEDGER_KILL_AT", "STEPLEDGER_FAULT_CLAIM_DELAY", "STEPLEDGER_DB", TAG_VARIABLE)
STRAGGLER_WAIT = 120.0  # seconds the checks wait for an iteration's processes to end


def stepledger_command() -> list[str]:
    """How to start this very stepledger: its console script, else the module."""
    script = Path(sys.executable).with_name("stepledger")
    return [str(script)] if script.exists() else [sys.executable, "-m", "stepledger.cli"]


def environment(tag: str, db_url: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of an iteration's process: ours, without the user's fault settings."""
    env = {k: v for k, v in os.environ.items() if k not in OWN_VARIABLES}
    env.update({TAG_VARIABLE: tag, "STEPLEDGER_DB": db_url, **extra})
    return env


def start(args: list[str], cwd: Path, env: dict[str, str], output: Path) -> subprocess.Popen[bytes]:
    """Start `stepledger ARGS` in `cwd`, its output to the file `output` (0600)."""
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        return subprocess.Popen(
            [*stepledger_command(), *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd
        )
    finally:
        os.close(fd)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL `proc` if it is still running (the death of kill -9)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)


def tagged(tag: str) -> list[int]:
    """Pids of the live processes carrying `tag` (zombies left out)."""
    marker = f"{TAG_VARIABLE}={tag}".encode() + b"\0"
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if marker not in f.read():
                    continue
            with open(f"/proc/{entry}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # exited, not yet reaped by whoever adopted it
        except OSError:
            continue
        found.append(int(entry))
    return found


def await_tagged(tag: str, timeout: float = STRAGGLER_WAIT) -> list[int]:
    """Wait until every process carrying `tag` has exited; SIGKILL and return those that did not."""
    deadline = time.monotonic() + timeout
    for pid in tagged(tag):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)
    left = tagged(tag)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left
