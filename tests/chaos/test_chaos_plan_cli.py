"""`stepledger chaos --dry-run` prints the plan and runs nothing; bad options are one line, exit 2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from chaoskit import REPO, chain, chaos, project


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    args = ["examples/chaos-saga.json", "--seed", "5", "-n", "4", "--dry-run", "--scratch", str(scratch)]
    result = chaos(args, REPO)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "(seed 5); nothing has run" in out and f"go to {scratch}/" in out
    assert "left out: retry_wait (no step may be retried" in out
    assert [line.split(":")[0].strip() for line in out.splitlines() if "iteration" in line][-4:] == [
        f"iteration {i}" for i in range(4)
    ]
    assert "iteration 2: rollback — run killed rollback_after_append:1" in out
    assert not scratch.exists()  # nothing copied, nothing run

    as_json = chaos([*args, "--json"], REPO)
    plan = json.loads(as_json.stdout)
    assert plan["seed"] == 5 and plan["kill_points"][:4] == [
        "after_dispatch",
        "random",
        "rollback",
        "acceptance",
    ]
    replays = [it["replay"] for it in plan["iterations"]]
    assert replays[2].endswith("--seed 5 --iteration 2 --kill-at rollback")
    # The same seed plans the same iterations; the replay of one plans that one again.
    assert json.loads(chaos([*args, "--json"], REPO).stdout) == plan
    one = json.loads(
        chaos([*replays[2].split()[2:], "--dry-run", "--json", "--scratch", str(scratch)], REPO).stdout
    )
    assert one["iterations"][0] | {"replay": ""} == plan["iterations"][2] | {"replay": ""}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kill-at", "halfway"], "--kill-at halfway: no such kill point; choose from after_dispatch,"),
        (
            ["--kill-at", "rollback"],
            "--kill-at rollback: this workstream never gets there (the workstream has no saga",
        ),
        (
            ["--kill-at", "retry_wait"],
            "--kill-at retry_wait: this workstream never gets there (no step may be retried",
        ),
        (["-n", "0"], "--iterations 0: give a number from 1 to 10000"),
        (["--shell-stub", "--stub-seconds", "-1"], "--stub-seconds -1: give seconds from 0 to 3600"),
        (["--workdir", "missing"], "--workdir"),
        (["--scratch", "inside"], "is inside the working directory"),
        (["--scratch", "../full"], "exists and is not an empty folder; give a new or empty one"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    file = project(tmp_path / "project", chain())
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    result = chaos([str(file), *args], tmp_path / "project")
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["ws.json"]  # nothing written


def test_an_invalid_workstream_is_reported_with_its_path(tmp_path: Path) -> None:
    file = project(
        tmp_path / "project", [{"id": "a", "tool": "shell", "tasks": ["true"], "depends_on": ["zz"]}]
    )
    result = chaos([str(file)], tmp_path / "project")
    assert result.returncode == 2 and "zz" in result.stderr and "Traceback" not in result.stderr


def test_a_workstream_that_cannot_run_here_says_so_and_suggests_stubs(tmp_path: Path) -> None:
    file = project(tmp_path / "project", [{"id": "a", "tool": "aider", "tasks": ["write the module"]}])
    scratch = tmp_path / "s"
    no_aider = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}  # not even one installed elsewhere
    result = chaos([str(file), "-n", "1", "--scratch", str(scratch)], tmp_path / "project", no_aider)
    assert result.returncode == 2, result.stdout + result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "the uninterrupted run of" in line and "tool `aider` is not available here" in line
    assert (
        "try --shell-stub" in line and (scratch / "uninterrupted" / "out.1.txt").exists()
    )  # its output stays
    assert "Traceback" not in result.stderr
