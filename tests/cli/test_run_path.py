"""`stepledger run` parsed without Typer (cli/run_path.py): what it takes, Typer would give the same."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer._click.exceptions import UsageError
from typer.main import get_command

from stepledger.cli import run_commands, run_path
from stepledger.cli.app import build_app
from stepledger.cli.help_text import polish

TAKEN = [
    ["ws.json"],
    ["ws.json", "--json"],
    ["--json", "ws.json"],
    ["ws.json", "--max-workers", "4"],
    ["--max-workers=4", "ws.json"],
    ["ws.json", "--max-workers", "0"],  # a bound is the engine's to refuse, on both paths
    ["ws.json", "--max-workers", "+3"],
    ["ws.json", "--max-workers", "1_0"],
    ["ws.json", "--db", "sqlite:///x.db"],
    ["--db=sqlite:///x.db", "ws.json", "--json"],
    ["ws.json", "--db", "sqlite:///a.db", "--db", "sqlite:///b.db"],
    ["ws.json", "-p", "a=1", "--param", "b=2", "--param=c=3"],
    ["ws.json", "--params-file", "p.json", "-p", "x=y=z"],
    ["ws.json", "--merge-into", "main", "--run-id", "run-1"],
    ["ws.json", "--on-workers"],
    ["my ws.json"],
    ["ws-é.yaml"],
]
DECLINED = [
    [],
    ["--help"],
    ["ws.json", "-h"],
    ["ws.json", "--detach"],
    ["-d", "ws.json"],
    ["ws.json", "extra.json"],
    ["ws.json", "--max-workers", "x"],
    ["ws.json", "--max-workers"],
    ["ws.json", "--max-workers", "4.0"],
    ["ws.json", "--json=1"],
    ["ws.json", "--no-such-option"],
    ["--", "ws.json"],
    ["ws.json", "-pa=1"],
    ["ws.json", "--db", ""],
    ["ws.json", "--db", "-x"],
    [""],
]


def typer_call(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any] | None:
    """What Typer's `run` passes on for `stepledger run ARGS` (None: Typer refused the line)."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(run_commands, "run_workstream", lambda **given: seen.append(given) or 0)
    command = get_command(build_app("run"))
    polish(command)
    try:
        code = command.main(["run", *args], prog_name="stepledger", standalone_mode=False)
    except UsageError:
        return None
    assert code == 0 and len(seen) == 1
    return seen[0]


def own_call(args: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any] | None:
    """What the hand parser passes on for the same line (None: it declines it)."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(run_path, "run_workstream", lambda **given: seen.append(given) or 0)
    code = run_path.run_from_command_line(args)
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
    assert {**ours, "param": ours["param"] or None} == {**theirs, "param": theirs["param"] or None}
    assert isinstance(ours["file"], Path)


@pytest.mark.parametrize("args", DECLINED, ids=lambda a: " ".join(a) or "(nothing)")
def test_anything_else_goes_to_typer(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert own_call(args, monkeypatch) is None


def test_shell_completion_goes_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_STEPLEDGER_COMPLETE", "bash_complete")
    assert own_call(["ws.json"], monkeypatch) is None


def test_a_run_through_the_hand_parser_imports_no_typer_and_prints_what_typer_s_run_prints(
    tmp_path: Path,
) -> None:
    (tmp_path / "ws.json").write_text(json.dumps({"id": "ws", "tool": "shell", "tasks": ["true"]}))
    env = {**os.environ, "STEPLEDGER_DB": ""}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-X", "importtime", "-m", "stepledger.cli", "run", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip

    fast = run("ws.json")
    assert fast.returncode == 0, fast.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in fast.stderr.splitlines() if "|" in line]
    assert "stepledger.engine.run.reactor" in imported
    assert not [name for name in imported if name.startswith("typer")]
    # A line the parser declines (`--` before FILE) runs through Typer: the same lines, the same code.
    through_typer = run("--", "ws.json")
    assert through_typer.returncode == 0, through_typer.stderr
    assert "typer" in through_typer.stderr

    def shown(out: str) -> list[str]:  # run ids and durations differ from one run to the next
        return [re.sub(r"run-[\w-]+|[\d.]+m?s", "_", line) for line in out.splitlines()]

    assert shown(fast.stdout) == shown(through_typer.stdout)
    assert "✓ Workstream complete in" in fast.stdout
