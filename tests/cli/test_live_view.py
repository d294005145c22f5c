"""What `run` shows as it goes: the live view on a real pseudo-terminal (colours, the back-off
state, the ETA), `status` in colour, and the plain lines' wording (counts, plurals, parallelism,
rollbacks, time saved)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from failure_scripts import STEPLEDGER, write_workstream

GREEN, RED, YELLOW = 32, 31, 33  # SGR colour codes


def in_terminal(*args: str, cwd: Path, db: str) -> tuple[int, str]:
    """Run `stepledger ARGS` with a pseudo-terminal as stdin, stdout and stderr; its exit code and
    everything it wrote to the terminal."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm-256color", "STEPLEDGER_DB": db}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([STEPLEDGER, *args], cwd=cwd, stdin=follower, stdout=follower, stderr=follower,
                            env=env)  # fmt: skip
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: every writer of the terminal has gone
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=60)
    os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")


def piped(*args: str, cwd: Path, db: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPLEDGER_DB": db}
    return subprocess.run([STEPLEDGER, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def styled(out: str, colour: int, text: str) -> bool:
    """Whether `text` is printed in `colour` (its escape sequence right before it, maybe with bold)."""
    return re.search(rf"\x1b\[(?:\d+;)*{colour}m" + re.escape(text), out) is not None


def steps(*specs: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": "ws-live", "steps": list(specs), **top}


def test_live_view_colours_its_lines_and_shows_the_back_off(tmp_path: Path, sqlite_url: str) -> None:
    write_workstream(tmp_path, steps(
        {"id": "ok", "tool": "shell", "tasks": ["true"]},
        {"id": "flaky", "tool": "shell", "tasks": ["echo 'ERROR: nope' >&2; exit 2"]},
        circuit_breaker={"max_attempts": 2}, retry={"strategy": "fixed", "initial_delay": 1.5},
    ))  # fmt: skip
    code, out = in_terminal("run", "ws.json", cwd=tmp_path, db=sqlite_url)
    assert code == 1, out
    assert styled(out, GREEN, "✓ [ok] Complete"), out
    assert styled(out, RED, "✗ [flaky] Failed after"), out
    assert styled(out, YELLOW, "↻ [flaky] Retry 2 in 1.5s"), out
    assert "waiting to retry: flaky" in out  # the bar says what the run waits on
    assert "2 steps: 1 passed, 1 failed, 0 blocked, 0 skipped" in out
    assert "time saved" not in out  # a failed run saved no time

    code, out = in_terminal("status", cwd=tmp_path, db=sqlite_url)
    assert code == 0, out
    assert styled(out, GREEN, "passed") and styled(out, RED, "tripped"), out


def test_live_view_counts_down_from_earlier_runs_durations(tmp_path: Path, sqlite_url: str) -> None:
    write_workstream(tmp_path, steps({"id": "slow", "tool": "shell", "tasks": ["sleep 1.5"]}))
    code, first = in_terminal("run", "ws.json", cwd=tmp_path, db=sqlite_url)
    assert code == 0, first
    assert "ETA" not in first  # nothing measured yet: no guess
    code, second = in_terminal("run", "ws.json", cwd=tmp_path, db=sqlite_url)
    assert code == 0, second
    assert re.search(r"ETA ~1\.\ds", second), second  # the first run's 1.5 s, counted down


def test_plain_lines_say_what_happens_in_plain_words(tmp_path: Path, sqlite_url: str) -> None:
    write_workstream(tmp_path, steps({"id": "only", "tool": "shell", "tasks": ["true"]}), name="one.json")
    one = piped("run", "one.json", cwd=tmp_path, db=sqlite_url)
    assert one.returncode == 0, one.stderr
    assert "(1 step, 0 dependencies)" in one.stdout and "1 steps" not in one.stdout
    assert "⟳ Executing the step:" in one.stdout and "in parallel" not in one.stdout
    assert "1 step: 1 passed, 0 failed, 0 blocked, 0 skipped" in one.stdout

    chain = steps({"id": "a", "tool": "shell", "tasks": ["true"]},
                  {"id": "b", "tool": "shell", "tasks": ["true"], "depends_on": ["a"]},
                  execution={"max_workers": 3})  # fmt: skip
    write_workstream(tmp_path, chain, name="chain.json")
    done = piped("run", "chain.json", cwd=tmp_path, db=sqlite_url)
    assert "(2 steps, 1 dependency)" in done.stdout
    assert "⟳ Executing steps one at a time:" in done.stdout  # three workers, but a chain never overlaps
    assert "time saved" in done.stdout  # a passed run says what it saved

    fan = steps({"id": "a", "tool": "shell", "tasks": ["true"]},
                {"id": "b", "tool": "shell", "tasks": ["true"]}, execution={"max_workers": 2})  # fmt: skip
    write_workstream(tmp_path, fan, name="fan.json")
    assert "⟳ Executing steps in parallel:" in piped("run", "fan.json", cwd=tmp_path, db=sqlite_url).stdout


def test_a_rollback_is_not_followed_by_acceptance_tests(tmp_path: Path, sqlite_url: str) -> None:
    saga = steps(
        {"id": "made", "tool": "shell", "tasks": ["true"], "acceptance_tests": ["true"],
         "compensation": {"action": "true"}},
        {"id": "breaks", "tool": "shell", "tasks": ["exit 1"], "depends_on": ["made"]},
        saga={"enabled": True},
    )  # fmt: skip
    write_workstream(tmp_path, saga, name="saga.json")
    done = piped("run", "saga.json", cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 1, done.stderr
    assert "↺ Rolling back 1 completed step in reverse order: made" in done.stdout
    assert "✗ Workstream rolled back" in done.stdout
    assert "Running acceptance tests" not in done.stdout and "time saved" not in done.stdout

    nothing = steps({"id": "breaks", "tool": "shell", "tasks": ["exit 1"]}, saga={"enabled": True})
    write_workstream(tmp_path, nothing, name="nothing.json")
    done = piped("run", "nothing.json", cwd=tmp_path, db=sqlite_url)
    assert "↺ Nothing to roll back: no completed step has a compensation" in done.stdout
    assert "↺ Rolling back 0" not in done.stdout
