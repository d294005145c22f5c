"""Real failing commands for the failure tests, and helpers to run stepledger on a workstream.

Commands are shell text for a step's `tasks` or a compensation's `action`:
- `fails_times(n, name)`: fails its first n runs (the count is kept in a file), then passes;
- `prints_error(text, code)`: prints `text` on stderr and exits with `code`;
- `hangs()`: sleeps far longer than any test timeout.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEPLEDGER = str(Path(sys.executable).with_name("stepledger"))


def fails_times(n: int, name: str) -> str:
    """A command that fails (exit 1, "ERROR: flaky ...") its first `n` runs, then passes."""
    count = f".count-{name}"
    return (
        f"c=$(cat {count} 2>/dev/null || echo 0); c=$((c+1)); echo $c > {count}; "
        f'if [ "$c" -le {n} ]; then echo "ERROR: flaky {name} failure $c" >&2; exit 1; fi; echo "{name} ok"'
    )


def prints_error(text: str, code: int = 1) -> str:
    """A command that prints `text` on stderr and exits with `code`."""
    return f"echo {shlex.quote(text)} >&2; exit {code}"


def hangs() -> str:
    """A command that does not end by itself."""
    return "sleep 300"


def writes_outputs(**outputs: Any) -> str:
    """A command that records `outputs` through the STEPLEDGER_OUTPUTS file."""
    return f'echo {shlex.quote(json.dumps(outputs))} > "$STEPLEDGER_OUTPUTS"'


def write_workstream(directory: Path, data: dict[str, Any], name: str = "ws.json") -> Path:
    """Write a workstream file and return its path."""
    path = directory / name
    path.write_text(json.dumps(data, indent=2))
    return path


def cli(
    *args: str, cwd: Path, db: str, timeout: float = 120, kill_at: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `stepledger ARGS` in `cwd` against the log `db` and wait for it (`kill_at`: a fault point)."""
    env = {**os.environ, "STEPLEDGER_DB": db}
    env.pop("STEPLEDGER_KILL_AT", None)
    if kill_at:
        env["STEPLEDGER_KILL_AT"] = kill_at
    return subprocess.run(
        [STEPLEDGER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def spawn_cli(*args: str, cwd: Path, db: str) -> subprocess.Popen[str]:
    """Start `stepledger ARGS` in the background (its output goes to files in `cwd`)."""
    env = {**os.environ, "STEPLEDGER_DB": db}
    out = (cwd / "cli.out").open("w")
    err = (cwd / "cli.err").open("w")
    try:
        return subprocess.Popen([STEPLEDGER, *args], cwd=cwd, env=env, stdout=out, stderr=err, text=True)
    finally:
        out.close()
        err.close()


def wait_for(check: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `check` until it holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill9(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the process (as a crash would) and reap it."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def only_run_id(db: str, cwd: Path) -> str:
    """The id of the one run in the log."""
    done = cli("runs", "--json", cwd=cwd, db=db)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(rows) == 1, done.stdout + done.stderr
    return str(rows[0]["run_id"])
