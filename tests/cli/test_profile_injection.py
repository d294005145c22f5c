"""Tool profiles put each files_scope entry where the tool cannot read it as an option.

A files_scope entry such as `--test-cmd=touch pwned` given to Aider as a bare argument is an
option, and `--test-cmd`/`--lint-cmd` run commands. Every built-in profile is run through the
command line against a stand-in program (tests/fixtures/fake_aider.py, which reports each
argument it would take as an option); a user profile that places files unsafely gets no entry
starting with `-` past validation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stepledger.engine.execution.tools import commands, file_arguments_are_safe
from stepledger.engine.workstream.profiles import BUILTIN_PROFILES

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
FAKE = FIXTURES / "fake_aider.py"
HOSTILE_FILES = ["--lint-cmd=touch pwned", "--test-cmd=touch pwned", "--auto-test", "-x", "src/a.py"]


def stepledger(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stepledger.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def workstream(tmp_path: Path, tool: str, task: str = "Add a function") -> Path:
    path = tmp_path / "ws.json"
    step = {"id": "code", "tool": tool, "tasks": [task], "files_scope": HOSTILE_FILES}
    path.write_text(json.dumps({"id": "ws-profile", "steps": [step]}))
    return path


def fake_on_path(tmp_path: Path, program: str) -> dict[str, str]:
    """PATH with `program` standing for the fake tool."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / program
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def attempt_log(tmp_path: Path) -> str:
    (log,) = (tmp_path / ".stepledger" / "runs").glob("*/code.1.log")
    return log.read_text()


@pytest.mark.parametrize("name", sorted(BUILTIN_PROFILES))
def test_every_builtin_profile_passes_files_and_task_as_data(
    name: str, tmp_path: Path, sqlite_url: str
) -> None:
    profile = BUILTIN_PROFILES[name]
    assert file_arguments_are_safe(profile.command)
    env = fake_on_path(tmp_path, profile.executable)
    ws = workstream(tmp_path, name, task="--auto-test")  # a task that looks like an option, too
    checked = stepledger("validate", str(ws), cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stderr
    done = stepledger("run", str(ws), "--db", sqlite_url, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    log = attempt_log(tmp_path)
    assert "fake-aider OPTION" not in log, log
    assert "fake-aider message: --auto-test" in log
    for entry in HOSTILE_FILES:
        assert f"fake-aider wrote {entry}\n" in log
        assert (tmp_path / entry).is_file()


def user_profile(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "stepledger.toml").write_text(f"[tools.coder]\ncommand = {json.dumps(command)}\n")


def test_a_profile_with_bare_file_arguments_refuses_option_like_entries(
    tmp_path: Path, sqlite_url: str
) -> None:
    user_profile(tmp_path, [sys.executable, str(FAKE), "--message", "{task}", "{files}"])
    ws = workstream(tmp_path, "coder")
    checked = stepledger("validate", str(ws), cwd=tmp_path)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    errors = [line for line in checked.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 4, checked.stderr  # one line per entry starting with "-"
    assert (
        "steps[0].files_scope[0]" in errors[0]
        and "code" in errors[0]
        and "--lint-cmd=touch pwned" in errors[0]
    )
    assert "./--lint-cmd=touch pwned" in errors[0] and "Traceback" not in checked.stderr
    done = stepledger("run", str(ws), "--db", sqlite_url, cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / ".stepledger" / "runs").exists() or not any(
        (tmp_path / ".stepledger" / "runs").iterdir()
    )
    listed = stepledger("runs", "--json", "--db", sqlite_url, cwd=tmp_path)
    assert listed.stdout.strip() == "", listed.stdout  # nothing recorded


def test_a_profile_with_files_after_dashes_takes_them_all(tmp_path: Path, sqlite_url: str) -> None:
    user_profile(tmp_path, [sys.executable, str(FAKE), "--message={task}", "--", "{files}"])
    ws = workstream(tmp_path, "coder")
    assert stepledger("validate", str(ws), cwd=tmp_path).returncode == 0
    done = stepledger("run", str(ws), "--db", sqlite_url, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    log = attempt_log(tmp_path)
    assert "fake-aider OPTION" not in log and all((tmp_path / entry).is_file() for entry in HOSTILE_FILES)


def test_an_unsafe_profile_met_at_run_time_names_option_like_files_by_a_path() -> None:
    # Validation refuses this; a profile changed under a resumed run still gets no option.
    template = ["coder", "{files}", "{file}.bak", "--f={file}"]
    spec = {"tool": "coder", "tasks": ["t"], "step_id": "s", "attempt": 1, "profile_per_task": False,
            "profile_command": template, "files_scope": ["-x", "y"]}  # fmt: skip
    ((argv, _),) = commands(spec)
    assert argv == ["coder", "./-x", "y", "./-x.bak", "y.bak", "--f=./-x", "--f=y"]
    assert commands(
        {**spec, "profile_command": ["c", "{task} {attempt}", "{step_id}"], "tasks": ["{attempt}"]}
    )[0][0] == ["c", "{attempt} 1", "s"]  # one pass: a task's own braces are left alone


def test_a_profile_that_pastes_the_task_into_a_shell_script_is_refused(tmp_path: Path) -> None:
    """`bash -c "echo {task}"` would run a task (which may hold a dependency's output) as code."""
    (tmp_path / "stepledger.toml").write_text('[tools.echoer]\ncommand = ["bash", "-c", "echo {task}"]\n')
    path = workstream(tmp_path, "echoer", task="x; touch pwned")
    refused = stepledger("run", str(path), cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert "tools.echoer.command" in line and "'-c'" in line and '"mytool \\"$1\\""' in line
    assert "Traceback" not in refused.stderr and not (tmp_path / ".stepledger" / "runs").exists()
    assert not (tmp_path / "pwned").exists()


def test_a_profile_that_hands_the_task_to_its_script_as_an_argument_runs_it_as_text(tmp_path: Path) -> None:
    (tmp_path / "stepledger.toml").write_text(
        '[tools.echoer]\ncommand = ["bash", "-c", "printf \'got:%s\\\\n\' \\"$1\\"", "bash", "{task}"]\n'
    )
    step = {"id": "code", "tool": "echoer", "tasks": ["x; touch pwned"]}
    path = tmp_path / "ws.json"
    path.write_text(json.dumps({"id": "ws-profile", "steps": [step]}))
    done = stepledger("run", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "got:x; touch pwned" in attempt_log(tmp_path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["perl", "-E", "say {task}"], "-E"),
        (["node", "--eval", "run({task})"], "--eval"),
        (["node", "--eval=run({task})"], "--eval"),
        (["pwsh", "-Command", "Write-Output {task}"], "-Command"),
        (["cmd", "/c", "echo {task}"], "/c"),
        (["sh", "-c{task}"], "-c"),
        (["sh", "-cmytool {file}"], "-c"),
    ],
)
def test_every_way_of_giving_a_script_with_a_placeholder_is_refused(
    command: list[str], flag: str, tmp_path: Path
) -> None:
    (tmp_path / "stepledger.toml").write_text(f"[tools.coder]\ncommand = {json.dumps(command)}\n")
    path = workstream(tmp_path, "coder", task="x; touch pwned")
    refused = stepledger("validate", str(path), cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    (line,) = refused.stderr.strip().splitlines()
    assert f"placeholder in the script after {flag!r}" in line


@pytest.mark.parametrize(
    "command",
    [
        ["tool", "-config={file}", "--message={task}"],
        ["tool", "-C", "dir", "{task}"],
        ["gcc", "-o", "{file}"],
    ],
)
def test_options_that_take_data_are_not_mistaken_for_scripts(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "stepledger.toml").write_text(f"[tools.coder]\ncommand = {json.dumps(command)}\n")
    path = workstream(tmp_path, "coder", task="x")
    checked = stepledger("validate", str(path), cwd=tmp_path)
    assert "placeholder in the script" not in checked.stderr, checked.stderr
