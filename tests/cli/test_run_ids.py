"""Run ids, help and commands as people type them: prefixes, `latest`, filters, --version, -h,
completion, `python -m stepledger`, readable placeholders, and no database made by a question."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

COMMAND = [sys.executable, "-m", "stepledger"]
ONE_RUN_COMMANDS = (["status"], ["logs"], ["audit", "timeline"], ["replay"], ["events"])


def stepledger(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})  # fmt: skip


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A log with three runs: two of `ws-one` (one passed, one failed) and one of `ws-two`."""
    folder = tmp_path_factory.mktemp("runs")
    files = {
        "one.json": {"id": "ws-one", "steps": [{"id": "a", "tool": "shell", "tasks": ["echo one"]}]},
        "bad.json": {"id": "ws-one", "steps": [{"id": "a", "tool": "shell", "tasks": ["exit 3"]}]},
        "two.json": {"id": "ws-two", "steps": [{"id": "a", "tool": "shell", "tasks": ["echo two"]}]},
    }
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data))
        stepledger("run", name, cwd=folder)
    rows = [json.loads(line) for line in stepledger("runs", "--json", cwd=folder).stdout.splitlines()]
    return folder, [r["run_id"] for r in rows]  # newest first


def test_a_unique_prefix_or_latest_names_a_run_in_every_command(three_runs: tuple[Path, list[str]]) -> None:
    folder, (newest, middle, oldest) = three_runs
    for command in ONE_RUN_COMMANDS:
        for named in ("latest", oldest[: len(oldest) - 1], oldest.removeprefix("run-")[:-1]):
            done = stepledger(*command, named, cwd=folder)
            assert done.returncode == 0, (command, named, done.stderr)
            wanted = newest if named == "latest" else oldest
            other = oldest if named == "latest" else newest
            if command == ["audit", "timeline"]:  # its title echoes the argument: compare the rows
                whole = stepledger(*command, wanted, cwd=folder).stdout
                assert done.stdout.splitlines()[1:] == whole.splitlines()[1:], (named, done.stdout)
                continue
            if command == ["logs"]:
                wanted = f"run {wanted} started"
            assert wanted in done.stdout, (command, named, done.stdout)
            assert other not in done.stdout, (command, named)
    status = json.loads(stepledger("status", "--json", cwd=folder).stdout)  # no argument: the newest
    assert status["run_id"] == newest
    why = stepledger("audit", "why", middle[:-1], "a", cwd=folder)
    assert why.returncode == 0 and "a is tripped" in why.stdout, why.stderr  # the middle run failed


def test_an_ambiguous_or_unknown_prefix_is_one_line_and_exit_2(three_runs: tuple[Path, list[str]]) -> None:
    folder, ids = three_runs
    for command in (["status"], ["logs"], ["cancel"], ["resume"], ["audit", "timeline"]):
        ambiguous = stepledger(*command, "run-", cwd=folder)
        assert ambiguous.returncode == 2, (command, ambiguous.stderr)
        line = ambiguous.stderr.strip()
        assert "\n" not in line and "names 3 runs" in line and ids[0] in line, line
        unknown = stepledger(*command, "run-1999", cwd=folder)
        assert unknown.returncode == 2 and "no run 'run-1999'" in unknown.stderr, unknown.stderr


def test_runs_filters(three_runs: tuple[Path, list[str]]) -> None:
    folder, ids = three_runs

    def listed(*options: str) -> list[str]:
        done = stepledger("runs", "--json", *options, cwd=folder)
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["run_id"] for line in done.stdout.splitlines()]

    assert listed() == ids
    assert listed("--limit", "2") == ids[:2]
    assert listed("--status", "failed") == [ids[1]]
    assert listed("--workstream", "ws-one") == ids[1:]
    assert listed("--workstream", "ws-one", "--status", "passed", "--limit", "1") == [ids[2]]
    bad = stepledger("runs", "--status", "finished", cwd=folder)
    assert bad.returncode == 2 and "one of: running, passed, failed" in bad.stderr


def test_resume_without_a_run_says_which_it_takes_or_that_there_is_none(
    three_runs: tuple[Path, list[str]],
) -> None:
    folder, _ = three_runs
    done = stepledger("resume", cwd=folder)  # every run has ended
    assert done.returncode == 2 and "no unfinished run" in done.stderr, done.stderr


def test_version_help_completion_and_python_m(tmp_path: Path) -> None:
    version = stepledger("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("stepledger ")
    assert stepledger("-V", cwd=tmp_path).stdout == version.stdout
    script = Path(sys.executable).parent / "stepledger"
    installed = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert installed.stdout == version.stdout  # python -m stepledger is the same command
    short = stepledger("-h", cwd=tmp_path)
    assert short.returncode == 0 and "Usage: stepledger" in short.stdout
    assert "--install-completion" in short.stdout
    env = {"_STEPLEDGER_COMPLETE": "complete_bash", "COMP_WORDS": "stepledger re", "COMP_CWORD": "1"}
    completion = subprocess.run(
        [str(Path(sys.executable).parent / "stepledger")], capture_output=True, text=True,
        env={**os.environ, **env}, cwd=tmp_path,
    )  # fmt: skip
    assert {"resume", "replay", "retry"} <= set(completion.stdout.split()), completion.stdout


@pytest.mark.parametrize(
    "command",
    [["run"], ["resume"], ["status"], ["runs"], ["logs"], ["cancel"], ["validate"], ["events"],
     ["replay"], ["retry"], ["audit", "timeline"], ["audit", "failures"], ["db", "upgrade"]],
)  # fmt: skip
def test_each_help_has_an_example_and_readable_placeholders(command: list[str], tmp_path: Path) -> None:
    shown = stepledger(*command, "-h", cwd=tmp_path, env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "Example" in text and f"stepledger {' '.join(command)}" in text.split("Example", 1)[1]
    for noise in ("<str>", "<int", "<path>", "{file", "x>=", "<integer>"):
        assert noise not in text, (noise, text)
    if command == ["run"]:
        assert "Usage: stepledger run [OPTIONS] FILE" in text and "--db" in text and "URL" in text
        assert "--max-workers" in text and " N " in text


def test_questions_in_a_folder_without_a_log_create_nothing_and_say_where_they_looked(tmp_path: Path) -> None:
    for command in (["runs"], ["status"], ["status", "latest"], ["logs"], ["cancel"], ["resume"],
                    ["retry", "latest", "a"]):  # fmt: skip
        done = stepledger(*command, cwd=tmp_path)
        assert done.returncode == 2, command
        assert f"no stepledger log at sqlite:///{tmp_path}/.stepledger/ledger.db" in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "command", [["run", "ws.json"], ["run", "ws.json", "--detach"], ["status"], ["runs"]]
)
def test_an_unsupported_database_is_one_line_and_exit_2(command: list[str], tmp_path: Path) -> None:
    (tmp_path / "ws.json").write_text(
        '{"id": "w", "steps": [{"id": "a", "tool": "shell", "tasks": ["true"]}]}'
    )
    done = stepledger(*command, "--db", "mysql://u:secret@h/x", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "unsupported database URL" in line and "secret" not in line and "Traceback" not in done.stderr
    assert not (tmp_path / ".stepledger").exists()


def test_every_command_has_an_example() -> None:
    from typer.main import get_command

    from stepledger.cli.app import build_app
    from stepledger.cli.help_text import EXAMPLES

    def paths(command: Any, path: tuple[str, ...] = ()) -> list[str]:
        found = [" ".join(path)] if path else []
        for name, sub in (getattr(command, "commands", None) or {}).items():
            found += paths(sub, (*path, name))
        return found

    missing = [p for p in paths(get_command(build_app())) if p not in EXAMPLES]
    assert not missing, f"commands without an example in cli/help_text.py: {missing}"
