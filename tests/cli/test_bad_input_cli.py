"""Bad input to `run` is one line on stderr and exit 2, and the log gets no run (issue 14, section 5)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

OK = {"id": "ws-ok", "tool": "shell", "tasks": ["true"]}


def stepledger(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stepledger.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "STEPLEDGER_DB": ""})  # fmt: skip


def runs_in_log(cwd: Path) -> int:
    if not (cwd / ".stepledger" / "ledger.db").exists():
        return 0
    done = stepledger("runs", "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    return len(done.stdout.splitlines())


CASES = {
    "nan.json": '{"id": "ws", "tool": "shell", "tasks": ["true"], "timeout": NaN}',
    "infinity.json": '{"id": "ws", "tool": "shell", "tasks": ["true"], "metadata": {"x": Infinity}}',
    "surrogate.json": '{"id": "ws", "tool": "shell", "tasks": ["true"], "description": "\\udc00"}',
    "nul-cwd.json": '{"id": "ws", "tool": "shell", "tasks": ["true"], "cwd": "out\\u0000x"}',
    "long-cwd.json": json.dumps({**OK, "cwd": "c" * 5000}),
    "long-name-cwd.json": json.dumps({**OK, "cwd": "out/" + "n" * 300}),
    "bigint.json": '{"id": "ws", "tool": "shell", "tasks": ["true"], "metadata": {"n": ' + "9" * 4301 + "}}",
    "deep.json": '{"id": "ws", "tool": "shell", "tasks": ["true"], "metadata": '
    + "[" * 100_000
    + "]" * 100_000
    + "}",
    "recursive.yaml": "id: ws\ntool: shell\ntasks: ['true']\nmetadata: &m\n  again: [*m]\n",
    "workers.json": json.dumps({**OK, "execution": {"max_workers": 1_000_000_000}}),
    "bad-pattern.json": json.dumps({**OK, "circuit_breaker": {"error_patterns": ["(unclosed"]}}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_bad_file_records_nothing(tmp_path: Path, name: str) -> None:
    # A first good run makes the log, so "no new run" is read from a log that exists.
    (tmp_path / "ok.json").write_text(json.dumps(OK))
    assert stepledger("run", "ok.json", cwd=tmp_path).returncode == 0
    (tmp_path / name).write_text(CASES[name], encoding="utf-8", errors="surrogatepass")
    done = stepledger("run", name, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    assert runs_in_log(tmp_path) == 1


@pytest.mark.parametrize("value", ["0", "257", "1000000000"])
def test_max_workers_out_of_range_is_one_line(tmp_path: Path, value: str) -> None:
    (tmp_path / "ok.json").write_text(json.dumps(OK))
    done = stepledger("run", "ok.json", "--max-workers", value, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"error: --max-workers must be an integer from 1 to 256, got {value}\n"
    assert runs_in_log(tmp_path) == 0


def test_a_runs_folder_that_is_a_file_records_nothing(tmp_path: Path) -> None:
    (tmp_path / "ok.json").write_text(json.dumps(OK))
    assert stepledger("run", "ok.json", cwd=tmp_path).returncode == 0
    runs = tmp_path / ".stepledger" / "runs"
    os.rename(runs, tmp_path / "old-runs")
    runs.write_text("not a folder")
    done = stepledger("run", "ok.json", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"error: {runs} is not a folder: move that file away, then run again\n"
    assert runs_in_log(tmp_path) == 1


def test_a_step_cwd_under_a_file_records_nothing(tmp_path: Path) -> None:
    (tmp_path / "ok.json").write_text(json.dumps(OK))
    assert stepledger("run", "ok.json", cwd=tmp_path).returncode == 0
    (tmp_path / "blocker").write_text("")
    (tmp_path / "ws.json").write_text(json.dumps({**OK, "cwd": "blocker/out"}))
    done = stepledger("run", "ws.json", cwd=tmp_path)
    assert done.returncode == 2 and "which is a file" in done.stderr and len(done.stderr.splitlines()) == 1
    assert runs_in_log(tmp_path) == 1


def test_a_pattern_that_times_out_is_reported_and_the_run_ends(tmp_path: Path) -> None:
    fail = "python3 -c \"import sys; print('a' * 3000 + '!'); sys.exit(1)\""
    ws = {"id": "ws", "steps": [{"id": "s", "tool": "shell", "tasks": [fail]}],
          "circuit_breaker": {"max_attempts": 3, "error_patterns": ["(a|aa)+$"]}}  # fmt: skip
    (tmp_path / "ws.json").write_text(json.dumps(ws))
    done = stepledger("run", "ws.json", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "warning: step s: error_patterns '(a|aa)+$'" in done.stdout
    assert "not_retryable" in stepledger("events", "--json", cwd=tmp_path).stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("run", "--bogus", "x.json"), "No such option: --bogus"),
        (("status", "--max"), "No such option: --max"),
        (("run",), "Missing argument 'FILE'"),
        (("runs", "extra"), "unexpected extra argument"),
        (("db", "bogus"), "No such command 'bogus'"),
    ],
)
def test_a_command_line_typer_cannot_parse_is_one_line(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    done = stepledger(*args, cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0] and "--help" in lines[0], done.stderr
    assert done.stdout == ""
