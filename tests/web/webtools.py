"""Helpers of the web view's tests: ledgers made by real `stepledger run`s, the app in process, and a
real `stepledger ui` server process with its streams."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from failure_scripts import STEPLEDGER, cli, write_workstream

HOSTILE = "b<script>alert(1)</script>"  # a step id a page must show as text
HOSTILE_ERROR = "<script>alert('error')</script>"


def hostile_workstream() -> dict[str, Any]:
    """a passes; the hostile step fails for good (its error is markup); c is blocked; d passes."""
    return {
        "id": "ws-<i>web</i>",
        "steps": [
            {"id": "a", "tool": "shell", "tasks": ["echo hello from a"],
             "acceptance_tests": ["test 1 = 1"]},
            {"id": HOSTILE, "tool": "shell", "tasks": [f"echo \"{HOSTILE_ERROR}\" >&2; exit 3"],
             "depends_on": ["a"], "circuit_breaker": {"max_attempts": 1}},
            {"id": "c", "tool": "shell", "tasks": ["echo c"], "depends_on": [HOSTILE]},
            {"id": "d", "tool": "shell", "tasks": ["echo '{\"answer\": 42}' > \"$STEPLEDGER_OUTPUTS\""],
             "depends_on": ["a"]},
        ],
    }  # fmt: skip


def passing_workstream(ws_id: str = "ws-pass") -> dict[str, Any]:
    return {"id": ws_id, "steps": [{"id": "only", "tool": "shell", "tasks": ["echo fine"]}]}


def run_ws(workdir: Path, db: str, data: dict[str, Any], name: str, *options: str) -> str:
    """Run a workstream to its end with the real command (and `options`, e.g. --param); its run id."""
    path = write_workstream(workdir, data, name)
    done = cli("run", str(path), "--json", *options, cwd=workdir, db=db)
    assert done.returncode in (0, 1), done.stderr
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            return str(json.loads(line)["run_id"])
    raise AssertionError(f"no run id in: {done.stdout[-500:]} {done.stderr[-500:]}")


def events_of(db: str, workdir: Path, run_id: str) -> list[dict[str, Any]]:
    """The run's events, as `stepledger events --json` prints them."""
    done = cli("events", run_id, "--json", cwd=workdir, db=db)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


class UiServer:
    """A `stepledger ui` process on a free port, and its address."""

    def __init__(self, process: subprocess.Popen[str], first_lines: list[str]) -> None:
        self.process = process
        self.lines = first_lines
        found = re.search(r"(http://\S+?)/ ", first_lines[0] + " ")
        assert found, first_lines
        self.url = found.group(1)


@contextmanager
def ui_server(workdir: Path, db: str, *args: str, env: dict[str, str] | None = None) -> Iterator[UiServer]:
    """Start `stepledger ui --port 0 ARGS`; stop it (SIGINT, as Ctrl-C) on the way out."""
    environment = {**os.environ, "STEPLEDGER_DB": db, **(env or {})}
    with (workdir / "ui.err").open("a") as err:  # what the server says on stderr, to read after a failure
        process = subprocess.Popen(
            [STEPLEDGER, "ui", "--port", "0", *args], cwd=workdir, env=environment,
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # printed once the socket listens
        assert first, (workdir / "ui.err").read_text()
        lines = [first]
        if "--host" in args:
            lines += [process.stdout.readline(), process.stdout.readline()]
        yield UiServer(process, lines)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=15)  # reads and closes its pipes
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def read_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) of each server-sent event in a stream's lines."""
    name, data = "message", ""
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ").strip()
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
        elif line == "" and data:
            yield name, json.loads(data)
            name, data = "message", ""
