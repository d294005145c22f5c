"""kill -9 the orchestrator around a for_each expansion, then resume, on SQLite and PostgreSQL.

The list step writes a list holding the time it ran, so a list read again from a second run of it
would differ. `process` waits for `list` and for the slower `gate`: `list`'s pass is committed on
its own, and the expansion is decided when `gate` passes, later. Kill points (engine/run/kill_points.py):

- `fan_out`: the list's pass is in the log, the expansion is not (nor `gate`'s pass, whose attempt
  finished: its result file is recovered by the resume);
- `after_fan_out_append`: `step.expanded` is committed with the first expansions' starts, none of
  them dispatched;
- the same, and the first resume killed too while it recovers the orphaned attempts.

Each resumed run must end passed with exactly one `step.expanded`, whose items are the list the
log recorded for `list` (which ran once), and every expansion's work done exactly once.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from crashkit import CrashRun, Spec, count, side_task

from stepledger.events.state import RunState

SOURCE = "${steps.list.outputs.files}"
ITEMS = 4


def _specs(side: Path) -> list[Spec]:
    listing = ", ".join(f'\\"{i}-$(date +%s%N)\\"' for i in range(ITEMS))
    writes_list = f'echo "{{\\"files\\": [{listing}]}}" > "$STEPLEDGER_OUTPUTS"'
    return [
        Spec("list", (), 0.05, {"tasks": [side_task(side, 0.05), writes_list]}),
        Spec("gate", (), 0.8),
        Spec("process", ("list", "gate"), 0.2, {"for_each": SOURCE}),
        Spec("summary", ("process",), 0.05),
    ]


def _check(run: CrashRun) -> RunState:
    """The run passed, expanded once from the recorded list, and every piece of work ran once."""
    run.await_workers()  # a killed orchestrator's workers may still be finishing their attempt
    state = run.state()
    assert state.status == "passed", run.output()
    [expanded] = run.events("step.expanded")
    [listed] = run.events("step.passed", "list")
    ids = [f"process[{i}]" for i in range(ITEMS)]
    assert expanded.payload["items"] == listed.payload["outputs"]["files"]
    assert expanded.payload["ids"] == ids and state.steps["process"].state == "expanded"
    lines = run.side_lines()
    for sid in ["list", "gate", *ids, "summary"]:
        assert state.steps[sid].state == "passed", (sid, state.steps[sid].state)
        attempts: dict[int, dict[str, Any]] = lines.get(sid, {})
        completed = [a for a, seen in attempts.items() if seen["end"]]
        # Only the orchestrator was killed: no work is thrown away, so each completed once.
        assert completed == [state.steps[sid].attempt], (sid, attempts)
        for seen in attempts.values():
            assert len(seen["start"]) <= 1 and len(seen["end"]) <= 1, (sid, seen)
        spans = sorted(
            (seen["start"][0], seen["end"][0] if seen["end"] else None) for seen in attempts.values()
        )
        for (_, end1), (start2, _) in itertools.pairwise(spans):
            assert end1 is None or end1 <= start2, f"{sid}: two attempts overlapped"
    from typer.testing import CliRunner

    from stepledger.cli.app import app

    verified = CliRunner().invoke(app, ["replay", run.run_id, "--verify", "--db", run.url])
    assert verified.exit_code == 0, verified.output
    return state


CASES = [
    pytest.param("sqlite", "fan_out:1", [], id="sqlite-before-the-expansion"),
    pytest.param("sqlite", "after_fan_out_append:1", [], id="sqlite-expansion-committed"),
    pytest.param("sqlite", "after_fan_out_append:1", ["in_resume:1"], id="sqlite-committed-resume-killed"),
    pytest.param("postgres", "fan_out:1", [], id="postgres-before-the-expansion", marks=pytest.mark.postgres),
    pytest.param(
        "postgres",
        "after_fan_out_append:1",
        [],
        id="postgres-expansion-committed",
        marks=pytest.mark.postgres,
    ),
]


@pytest.mark.parametrize(("db", "kill_at", "resume_plans"), CASES)
def test_kill_around_the_expansion_then_resume_gives_the_same_steps_once(
    tmp_path: Path,
    db: str,
    kill_at: str,
    resume_plans: list[str],
    tally: dict[str, int],
    request: pytest.FixtureRequest,
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if db == "sqlite" else "pg_url"))
    run = CrashRun(tmp_path, url, _specs(tmp_path / "side.log"), max_workers=2)
    code = run.run(kill_at=kill_at)
    assert code == -9, f"the plan {kill_at} never fired (exit {code}):\n{run.output()}"
    types = [e.type for e in run.events("step.passed", "list")] + [
        e.type for e in run.events("step.expanded")
    ]
    if kill_at.startswith("fan_out"):
        assert types == ["step.passed"]  # the list's pass is in the log, the expansion is not
    else:
        assert types == ["step.passed", "step.expanded"]
        assert not any(e.step_id.startswith("process[") for e in run.events("step.passed"))
    run.resume_to_end(plans=resume_plans)
    _check(run)
    count(tally, run)
