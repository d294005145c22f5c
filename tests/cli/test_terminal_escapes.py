"""Escape sequences in step ids, errors and output are shown escaped in every view, never acted on.

A step whose id and whose error output hold `ESC ] 0;pwned BEL` (retitle the terminal) and
`ESC [2J` (clear the screen) runs through `run` (plain lines, and the live view on a real
pseudo-terminal), `status`, `runs`, `events` (table and plain lines) and orchestrator.log: each
shows the text as `\\x1b]0;pwned\\x07`, and no raw ESC or BEL from it reaches the output.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepledger.cli.output import echo_json
from stepledger.cli.text_table import Cell, render
from stepledger.engine.read.terminal_text import json_printable, printable

TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
STEP = f"s{TITLE}{CLEAR}x"
SHOWN = "\\x1b]0;pwned\\x07"
RAW = ("\x1b]0;pwned", "\x07", CLEAR)


def stepledger(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepledger.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "400"},  # wide enough that no table folds the text checked
    )  # fmt: skip


def hostile_run(tmp_path: Path) -> Path:
    task = f"printf 'boom {TITLE}{CLEAR}\\n' >&2; exit 3"
    steps = [{"id": STEP, "tool": "shell", "tasks": [task], "circuit_breaker": {"max_attempts": 1}}]
    path = tmp_path / "ws.json"
    path.write_text(json.dumps({"id": f"ws{CLEAR}", "steps": steps}))
    return path


def assert_escaped(text: str, where: str) -> None:
    for raw in RAW:
        assert raw not in text, f"{where}: {raw!r} reached the output:\n{text!r}"


def test_printable_shows_controls_as_escapes() -> None:
    assert (
        printable(f"a{TITLE}{CLEAR}\r\n\t\x9b\u202eb") == "a\\x1b]0;pwned\\x07\\x1b[2J\\r\\n\\t\\x9b\\u202eb"
    )
    assert printable("plain é 中 text") == "plain é 中 text"
    value = {"k": f"{TITLE}\x9b\u202e\ud800"}
    line = json_printable(json.dumps(value, ensure_ascii=False))
    assert json.loads(line) == value and "\x9b" not in line and "\x1b" not in line


def test_tables_and_json_lines_escape_cells(capsys: pytest.CaptureFixture[str]) -> None:
    table = render(["step", "error"], [[Cell(STEP), Cell("x\ny")]], [True, False], title=f"run {CLEAR}")
    assert_escaped(table, "table")
    assert SHOWN in table and "x\\ny" in table
    echo_json({"step": STEP, "c1": "\x9b"})
    out = capsys.readouterr().out
    assert_escaped(out, "json")
    assert json.loads(out) == {"step": STEP, "c1": "\x9b"}


def test_every_view_of_a_hostile_run_shows_its_escapes_as_text(tmp_path: Path, sqlite_url: str) -> None:
    ws = hostile_run(tmp_path)
    done = stepledger("run", str(ws), "--db", sqlite_url, cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert_escaped(done.stdout + done.stderr, "run")
    assert f"[s{SHOWN}\\x1b[2Jx] Failed" in done.stdout and "boom " + SHOWN in done.stdout
    for args in (["status"], ["runs"], ["events"], ["events", "--since", "0", "--type", "step.failed"]):
        shown = stepledger(*args, "--db", sqlite_url, cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        assert_escaped(shown.stdout + shown.stderr, " ".join(args))
        assert SHOWN in shown.stdout or "ws\\x1b[2J" in shown.stdout, (args, shown.stdout)
    (log,) = (tmp_path / ".stepledger" / "runs").glob("*/orchestrator.log")
    assert_escaped(log.read_text(), "orchestrator.log")
    missing = stepledger("status", f"nope{TITLE}", "--db", sqlite_url, cwd=tmp_path)
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1
    assert_escaped(missing.stderr, "error line")


def test_the_live_view_on_a_terminal_escapes_them_too(tmp_path: Path, sqlite_url: str) -> None:
    ws = hostile_run(tmp_path)
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "stepledger.cli", "run", str(ws), "--db", sqlite_url],
        cwd=tmp_path, stdin=follower, stdout=follower, stderr=follower, env=env,
    )  # fmt: skip
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
    assert proc.wait(timeout=60) == 1
    os.close(leader)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert_escaped(out, "live view")
    assert SHOWN in out
