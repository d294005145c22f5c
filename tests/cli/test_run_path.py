"""`stepledger run` and `resume` parsed without Typer (cli/run_path.py): what it takes, Typer gives alike."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer._click.exceptions import UsageError
from typer.main import get_command

from stepledger.cli import run_commands, run_path
from stepledger.cli.app import build_app
from stepledger.cli.help_text import polish

TAKEN = [
    ["run", "ws.json"],
    ["run", "ws.json", "--json"],
    ["run", "--json", "ws.json"],
    ["run", "ws.json", "--max-workers", "4"],
    ["run", "--max-workers=4", "ws.json"],
    ["run", "ws.json", "--max-workers", "0"],  # a bound is the engine's to refuse, on both paths
    ["run", "ws.json", "--max-workers", "+3"],
    ["run", "ws.json", "--max-workers", "1_0"],
    ["run", "ws.json", "--db", "sqlite:///x.db"],
    ["run", "--db=sqlite:///x.db", "ws.json", "--json"],
    ["run", "ws.json", "--db", "sqlite:///a.db", "--db", "sqlite:///b.db"],
    ["run", "ws.json", "-p", "a=1", "--param", "b=2", "--param=c=3"],
    ["run", "ws.json", "--params-file", "p.json", "-p", "x=y=z"],
    ["run", "ws.json", "--merge-into", "main", "--run-id", "run-1"],
    ["run", "ws.json", "--on-workers"],
    ["run", "ws.json", "--on-workers", "--no-takeover"],
    ["run", "my ws.json"],
    ["run", "ws-é.yaml"],
    ["resume"],
    ["resume", "run-20261203-1"],
    ["resume", "latest", "--json", "--max-workers", "2"],
    ["resume", "--use-current-file", "--db=sqlite:///x.db", "run-1"],
]
DECLINED = [
    ["run"],
    ["run", "--help"],
    ["run", "ws.json", "-h"],
    ["run", "ws.json", "--detach"],
    ["run", "-d", "ws.json"],
    ["run", "ws.json", "extra.json"],
    ["run", "ws.json", "--max-workers", "x"],
    ["run", "ws.json", "--max-workers"],
    ["run", "ws.json", "--max-workers", "4.0"],
    ["run", "ws.json", "--json=1"],
    ["run", "ws.json", "--no-such-option"],
    ["run", "--", "ws.json"],
    ["run", "ws.json", "-pa=1"],
    ["run", "ws.json", "--db", ""],
    ["run", "ws.json", "--db", "-x"],
    ["run", "ws.json", "-p", "--json"],  # a value that looks like an option: Typer's reading decides
    ["run", "ws.json", "--run-id=--detach"],
    ["run", ""],
    ["resume", "--help"],
    ["resume", "a", "b"],
    ["resume", "--use-current-file=1"],
    ["resume", "--max-workers", "two"],
    ["resume", "--detach"],
    ["resume", ""],
]


BODIES = {"run": "run_workstream", "resume": "resume_run"}  # what each command calls with its parameters


def recording(seen: list[dict[str, Any]]) -> Callable[..., int]:
    """A stand-in for a command's body: it keeps the parameters it is called with and succeeds."""

    def body(**given: Any) -> int:
        seen.append(given)
        return 0

    return body


def typer_call(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any] | None:
    """What Typer's command passes on for `stepledger ARGS` (None: Typer refused the line)."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(run_commands, BODIES[args[0]], recording(seen))
    command = get_command(build_app(args[0]))
    polish(command)
    try:
        code = command.main(args, prog_name="stepledger", standalone_mode=False)
    except UsageError:
        return None
    assert code == 0 and len(seen) == 1
    return seen[0]


def own_call(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any] | None:
    """What the hand parser passes on for the same line (None: it declines it)."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(run_path, BODIES[args[0]], recording(seen))
    code = run_path.run_from_command_line(args[0], args[1:])
    if code is None:
        assert not seen
        return None
    return seen[0]


@pytest.mark.parametrize("args", TAKEN, ids=" ".join)
@pytest.mark.parametrize("env_db", [None, "", "sqlite:///from-env.db"])
def test_a_line_the_parser_takes_reaches_the_run_as_typer_would_pass_it(
    args: list[str], env_db: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if env_db is None:
        monkeypatch.delenv("STEPLEDGER_DB", raising=False)
    else:
        monkeypatch.setenv("STEPLEDGER_DB", env_db)
    ours = own_call(args, monkeypatch)
    assert ours is not None, f"{args} should be taken"
    theirs = typer_call(args, monkeypatch)
    assert theirs is not None, f"Typer refuses {args}"
    if "param" in ours:
        ours, theirs = {**ours, "param": ours["param"] or None}, {**theirs, "param": theirs["param"] or None}
    assert ours == theirs
    assert isinstance(ours.get("file", Path()), Path)


@pytest.mark.parametrize("args", DECLINED, ids=lambda a: " ".join(a) or "(nothing)")
def test_anything_else_goes_to_typer(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert own_call(args, monkeypatch) is None


def test_shell_completion_goes_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_STEPLEDGER_COMPLETE", "bash_complete")
    assert own_call(["run", "ws.json"], monkeypatch) is None


def test_a_run_through_the_hand_parser_imports_no_typer_and_prints_what_typer_s_run_prints(
    tmp_path: Path,
) -> None:
    (tmp_path / "ws.json").write_text(json.dumps({"id": "ws", "tool": "shell", "tasks": ["true"]}))
    env = {**os.environ, "STEPLEDGER_DB": ""}

    def command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-X", "importtime", "-m", "stepledger.cli", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return command("run", *args)

    def imported(done: subprocess.CompletedProcess[str]) -> list[str]:
        return [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]

    fast = run("ws.json")
    assert fast.returncode == 0, fast.stderr
    assert "stepledger.engine.run.reactor" in imported(fast)
    assert not [name for name in imported(fast) if name.startswith("typer")]
    # `resume` too; with nothing to resume, the error is the usual single line and exit 2.
    nothing = command("resume")
    errors = [line for line in nothing.stderr.splitlines() if "|" not in line]
    assert nothing.returncode == 2 and errors == [errors[0]] and errors[0].startswith("error: "), errors
    assert "stepledger.engine.api" in imported(nothing)
    assert not [name for name in imported(nothing) if name.startswith("typer")]
    # A line the parser declines (`--` before FILE) runs through Typer: the same lines, the same code.
    through_typer = run("--", "ws.json")
    assert through_typer.returncode == 0, through_typer.stderr
    assert "typer" in through_typer.stderr

    def shown(out: str) -> list[str]:  # run ids and durations differ from one run to the next
        return [re.sub(r"run-[\w-]+|[\d.]+m?s", "_", line) for line in out.splitlines()]

    assert shown(fast.stdout) == shown(through_typer.stdout)
    assert "✓ Workstream complete in" in fast.stdout


DECLINED_OPTIONS = {"run": {"--detach", "-d"}, "resume": set()}  # Typer's alone, on purpose


@pytest.mark.parametrize("name", ["run", "resume"])
def test_the_parser_s_tables_are_the_typer_command_s_parameters(name: str) -> None:
    # An option added to the Typer command (or a kind or variable changed) without the table: caught here.
    from typer.models import TyperPath

    command = get_command(build_app(name))
    command = getattr(command, "commands", {name: command})[name]
    (argument, argument_kind, required), table = run_path.COMMANDS[name]
    kinds = {}
    for param in command.params:
        if param.param_type_name == "argument":
            assert (param.name, param.required) == (argument, required)
            assert isinstance(param.type, TyperPath) == (argument_kind == "path")
            continue
        assert param.envvar == (run_path.DB_ENVVAR if param.name == "db" else None), param.name
        kind = (
            "flag" if param.is_flag else "many" if param.multiple else "int" if param.type.name == "int"
            else "path" if isinstance(param.type, TyperPath) else "text"
        )  # fmt: skip
        assert param.nargs == 1 and not param.secondary_opts
        kinds.update({opt: (param.name, kind) for opt in param.opts})
    assert {opt: kinds[opt] for opt in DECLINED_OPTIONS[name]} == {
        opt: kinds[opt] for opt in kinds if opt not in table
    }
    assert table == {opt: kinds[opt] for opt in table}
