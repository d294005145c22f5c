"""`stepledger chaos` as a user runs it: real processes, real SIGKILL, real SQLite files (and one
PostgreSQL log). It must find a duplicate execution when the claim rule is switched off (and its
replay command must find it again), hold on the seed's shapes, and print a stable JSON report."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from chaoskit import CLAIM_RULE_OFF, REPO, STEPLEDGER, chain, chaos, project, replay_argv, report, side_task

from stepledger.engine.chaos.report import ITERATION_KEYS, REPORT_KEYS, VIOLATION_KEYS


def example_project(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A working directory holding examples/NAME as the repository does; (workdir, file)."""
    workdir = tmp_path / "project"
    (workdir / "examples").mkdir(parents=True)
    file = workdir / "examples" / name
    shutil.copy(REPO / "examples" / name, file)
    return workdir, file


def test_a_duplicate_let_through_by_a_switched_off_claim_rule_is_found_and_replayed(tmp_path: Path) -> None:
    file = project(tmp_path / "project", chain())
    args = [str(file), "--seed", "11", "--kill-at", "slow_workers", "-n", "1", "--json"]
    found = chaos([*args, "--scratch", str(tmp_path / "s1")], tmp_path / "project", CLAIM_RULE_OFF)
    assert found.returncode == 1, found.stderr
    body = report(found)
    rows = body["violations"]
    assert rows and {r["rule"] for r in rows} <= {"executed-twice", "overlap"}
    assert "executed-twice" in {r["rule"] for r in rows}
    assert all(r["seed"] == 11 and r["kill_point"] == "slow_workers" and r["iteration"] == 0 for r in rows)
    assert body["totals"]["kill_points_hit"].get("slow_workers") == 1
    kept = Path(body["kept"][0])
    assert kept.name == "iteration-000" and (kept / "side-effects.log").exists()  # the evidence stays

    # The replay command runs exactly that iteration again and finds the same duplicate.
    replay = replay_argv(rows[0]["replay"])
    again = chaos([*replay, "--json", "--scratch", str(tmp_path / "s2")], tmp_path, CLAIM_RULE_OFF)
    assert again.returncode == 1, again.stderr
    assert {(r["rule"], r["step"]) for r in report(again)["violations"]} == {
        (r["rule"], r["step"]) for r in rows
    }

    # With the claim rule in force the very same iteration holds: the rule is what the check saw.
    held = chaos([*replay, "--json", "--scratch", str(tmp_path / "s3")], tmp_path)
    assert held.returncode == 0, held.stdout + held.stderr
    assert report(held)["totals"]["violations"] == 0
    assert report(held)["totals"]["kills"] == 1


@pytest.mark.parametrize(
    ("name", "points", "status"),
    [
        ("chaos-parallel.json", ["after_dispatch", "retry_wait", "acceptance", "random"], "passed"),
        ("chaos-saga.json", ["rollback", "in_resume", "after_append", "on_result"], "rolled_back"),
    ],
)
def test_the_seed_shapes_hold(tmp_path: Path, name: str, points: list[str], status: str) -> None:
    workdir, file = example_project(tmp_path, name)
    kill_at = [word for point in points for word in ("--kill-at", point)]
    args = [
        str(file),
        "--seed",
        "5",
        "-n",
        str(len(points)),
        *kill_at,
        "--scratch",
        str(tmp_path / "s"),
        "--json",
    ]
    result = chaos(args, workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    body = report(result)
    assert body["uninterrupted"]["status"] == status
    assert body["totals"]["violations"] == 0 and body["violations"] == []
    # Every iteration was killed where it aimed: each of these points is reached by every run (a
    # random instant may come after the run has ended, and then nothing is killed).
    for iteration in body["iterations"]:
        if iteration["kill_point"] != "random":
            assert iteration["kill_points_hit"][:1] == [iteration["kill_point"]], iteration
            assert iteration["resumes"] >= 1
    # Never in place: the project has no log, no run folder and no step output of its own.
    assert sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*")) == [
        "examples",
        f"examples/{name}",
    ]
    assert not (tmp_path / "s").exists()  # clean iterations leave nothing behind


def volatile_free(body: dict[str, Any]) -> dict[str, Any]:
    """The report without what differs between two runs of one plan: times, run ids, folders."""
    body = json.loads(json.dumps(body))
    for key in ("scratch", "kept"):
        body.pop(key)
    body["uninterrupted"].pop("seconds")
    body["totals"].pop("recovery_seconds")
    for iteration in body["iterations"]:
        for key in ("seconds", "recovery_seconds", "run_id"):
            iteration.pop(key)
    return body


def test_the_json_report_is_stable(tmp_path: Path) -> None:
    file = project(tmp_path / "project", chain(0.05))
    args = [
        str(file),
        "--seed",
        "3",
        "-n",
        "2",
        "--kill-at",
        "after_append",
        "--kill-at",
        "on_result",
        "--json",
    ]
    first = report(chaos([*args, "--scratch", str(tmp_path / "s1")], tmp_path / "project"))
    second = report(chaos([*args, "--scratch", str(tmp_path / "s2")], tmp_path / "project"))
    assert tuple(first) == REPORT_KEYS
    assert all(tuple(it) == ITERATION_KEYS for it in first["iterations"])
    assert first["format"] == 1 and first["seed"] == 3
    assert volatile_free(first) == volatile_free(second)
    assert first["totals"]["kills"] >= 2 and first["totals"]["violations"] == 0
    assert [it["replay"].split("--iteration ")[1] for it in first["iterations"]] == [
        "0 --kill-at after_append",
        "1 --kill-at on_result",
    ]  # fmt: skip
    assert VIOLATION_KEYS == ("iteration", "seed", "kill_point", "rule", "step", "message", "replay")


def test_the_text_report_and_keep(tmp_path: Path) -> None:
    file = project(tmp_path / "project", chain(0.05))
    scratch = tmp_path / "s"
    result = chaos([str(file), "--seed", "2", "-n", "1", "--kill-at", "after_dispatch", "--keep",
                    "--scratch", str(scratch)], tmp_path / "project")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"copies in {scratch}" in out and "✓ iteration 0 (after_dispatch)" in out
    for column in (
        "iterations",
        "kills",
        "kill points hit",
        "resumes",
        "time lost to recovery",
        "violations",
    ):
        assert column in out
    assert "after_dispatch 1" in out and "every iteration held" in out
    assert sorted(p.name for p in scratch.iterdir()) == ["iteration-000", "uninterrupted"]
    assert oct((scratch / "iteration-000").stat().st_mode & 0o777) == "0o700"
    assert oct((scratch / "iteration-000" / "side-effects.log").stat().st_mode & 0o777) == "0o600"


def test_shell_stub_checks_steps_that_cannot_run_here(tmp_path: Path) -> None:
    # The real steps fail (or need a tool); the stubs keep the shape and take the measured time.
    steps: list[dict[str, Any]] = [
        {"id": "fetch", "tool": "shell", "tasks": ["sleep 0.3; exit 7"], "acceptance_tests": ["false"],
         "circuit_breaker": {"max_attempts": 2}},
        {"id": "build", "tool": "shell", "tasks": ["exit 9"], "depends_on": ["fetch"],
         "estimated_duration": "0.2s"},
    ]  # fmt: skip
    file = project(tmp_path / "project", steps)
    plain = chaos([str(file), "--dry-run", "--shell-stub", "--json", "--seed", "1"], tmp_path / "project")
    assert json.loads(plain.stdout)["stub_seconds"] == {"fetch": 0.5, "build": 0.2}
    # An earlier real run of the same workstream (its id) in this folder gives the measured durations.
    history = project(tmp_path / "history", [{"id": "fetch", "tool": "shell", "tasks": ["sleep 0.3"]}])
    shutil.copy(history, tmp_path / "project" / "real.json")
    ran = subprocess.run(
        [STEPLEDGER, "run", "real.json"], cwd=tmp_path / "project", capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    planned = chaos([str(file), "--dry-run", "--shell-stub", "--json", "--seed", "1"], tmp_path / "project")
    stub_seconds = json.loads(planned.stdout)["stub_seconds"]
    assert 0.3 <= stub_seconds["fetch"] < 3 and stub_seconds["build"] == 0.2

    args = [str(file), "--shell-stub", "--stub-seconds", "0.1", "--seed", "4", "-n", "2", "--kill-at",
            "on_result", "--kill-at", "acceptance", "--json", "--scratch", str(tmp_path / "s")]  # fmt: skip
    result = chaos(args, tmp_path / "project")
    assert result.returncode == 0, result.stdout + result.stderr
    body = report(result)
    assert body["shell_stub"] and body["uninterrupted"]["status"] == "passed"
    assert (
        body["totals"]["kills"] >= 2 and "--shell-stub --stub-seconds 0.1" in body["iterations"][0]["replay"]
    )


@pytest.mark.postgres
def test_runs_record_in_a_postgresql_log_when_asked(tmp_path: Path, pg_url: str) -> None:
    file = project(tmp_path / "project", [{"id": "a", "tool": "shell", "tasks": [side_task(0.1)]}])
    args = [str(file), "--seed", "9", "-n", "2", "--kill-at", "after_dispatch", "--kill-at", "random",
            "--db", pg_url, "--json", "--scratch", str(tmp_path / "s")]  # fmt: skip
    result = chaos(args, tmp_path / "project")
    assert result.returncode == 0, result.stdout + result.stderr
    body = report(result)
    from stepledger.store.connect import open_store

    store = open_store(pg_url)
    try:
        recorded = set(store.run_ids())
    finally:
        store.close()
    assert {it["run_id"] for it in body["iterations"]} <= recorded and len(recorded) == 3  # + uninterrupted
    assert f"--db {pg_url}" in body["iterations"][0]["replay"]
