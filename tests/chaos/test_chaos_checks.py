"""The parts of `stepledger chaos` that decide without running anything: the plan, the stubs, and
what a side-effect log says went wrong."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from chaoskit import REPO

from stepledger.engine.chaos.checks import Expected, side_effect_findings
from stepledger.engine.chaos.plan import plan_iteration
from stepledger.engine.chaos.points import BY_NAME, passes
from stepledger.engine.chaos.side_effects import read_side_effects
from stepledger.engine.chaos.stubs import stub_document, stub_durations
from stepledger.engine.workstream.loading import load_workstream

EXPECTED = Expected("passed", {"a": "passed"}, {"a": 1}, {}, {"a": 1}, 1.0)


def findings(tmp_path: Path, text: str) -> list[tuple[str, str, str]]:
    log = tmp_path / "side.log"
    log.write_text(text)
    return [(f.rule, f.step, f.message) for f in side_effect_findings(read_side_effects(log), EXPECTED)]


def test_a_clean_log_has_no_findings(tmp_path: Path) -> None:
    # An interrupted attempt 1 that never ran, then attempt 2 once: what a kill leaves.
    assert findings(tmp_path, "a start 2 10.0\na end 2 11.0\n") == []


def test_an_attempt_started_twice_is_found(tmp_path: Path) -> None:
    found = findings(tmp_path, "a start 1 10.0\na end 1 11.0\na start 1 12.0\na end 1 13.0\n")
    assert ("executed-twice", "a", "attempt 1 started 2 and ended 2 times") in found
    assert ("executed-twice", "a", "its work was done 2 times; uninterrupted, 1") in found


def test_work_done_by_two_attempts_is_found_and_their_overlap(tmp_path: Path) -> None:
    found = findings(tmp_path, "a start 1 10.0\na start 2 10.5\na end 2 11.0\na end 1 12.0\n")
    assert ("executed-twice", "a", "its work was done 2 times; uninterrupted, 1") in found
    assert ("overlap", "a", "attempts 1 and 2 overlapped (1.500s)") in found


def test_start_lines_alone_still_count_executions(tmp_path: Path) -> None:
    found = findings(tmp_path, "a start 1 10.0\na start 2 12.0\n")
    assert found == [("executed-twice", "a", "its work was done 2 times; uninterrupted, 1")]


def test_unreadable_lines_are_set_aside(tmp_path: Path) -> None:
    log = tmp_path / "side.log"
    log.write_text("garbage\na start 1 10.0\na middle 1 10.0\n")
    effects = read_side_effects(log)
    assert effects.unreadable == ["garbage", "a middle 1 10.0"]
    assert effects.executions("a") == 1


def test_the_plan_is_a_function_of_the_seed_and_the_iteration() -> None:
    point = BY_NAME["after_append"]
    first = [plan_iteration(7, i, point, 3) for i in range(20)]
    assert first == [plan_iteration(7, i, point, 3) for i in range(20)]
    assert first != [plan_iteration(8, i, point, 3) for i in range(20)]
    assert {it.first.kill_at for it in first} <= {"after_append:1", "after_append:2", "after_append:3"}
    # Only the passes every run makes are aimed at: a one-level graph dispatches once.
    assert {plan_iteration(7, i, BY_NAME["after_dispatch"], 1).first.kill_at for i in range(20)} == {
        "after_dispatch:1"
    }
    slow = plan_iteration(7, 0, BY_NAME["slow_workers"], 2).first
    assert slow.claim_delay > 0 and slow.kill_at.startswith("after_dispatch:")
    random_instant = plan_iteration(7, 0, BY_NAME["random"], 2).first
    assert random_instant.at_fraction is not None and 0 < random_instant.at_fraction < 1


def test_passes_follow_the_graph() -> None:
    parallel = load_workstream(REPO / "examples" / "chaos-parallel.json")
    assert passes(BY_NAME["after_dispatch"], parallel) == 2  # three modules, then the package
    assert passes(BY_NAME["on_result"], parallel) == 4


def test_stubs_keep_the_shape_and_put_nothing_of_the_file_into_shell_code(tmp_path: Path) -> None:
    hostile = "x$(touch pwned)"
    ws = {
        "id": "ws-stub",
        "saga": {"enabled": True},
        "steps": [
            {"id": "a", "tool": "aider", "tasks": [f"echo {hostile}"], "acceptance_tests": ["false"],
             "compensation": {"action": "rm -rf /nothing", "tool": "shell"}, "estimated_duration": "2s"},
            {"id": "b", "tool": "shell", "tasks": ["exit 3"], "depends_on": ["a"],
             "env": {"NOTE": hostile}},
        ],
    }  # fmt: skip
    path = tmp_path / "ws.json"
    path.write_text(json.dumps(ws))
    workstream = load_workstream(path)
    durations = stub_durations(workstream, {"b": 0.25}, None)
    assert durations == {"a": 2.0, "b": 0.25}  # the file's estimate, then the measured median
    assert stub_durations(workstream, {"b": 0.25}, 0.1) == {"a": 0.1, "b": 0.1}  # the setting wins
    stubbed = stub_document(path, durations)
    a, b = stubbed["steps"]
    assert a["tool"] == b["tool"] == "shell" and b["depends_on"] == ["a"]
    assert a["acceptance_tests"] == ["sleep 0.2"] and a["compensation"]["action"] == "sleep 0.05"
    assert "sleep 2.000" in a["tasks"][0] and "sleep 0.250" in b["tasks"][0]
    shell_text = json.dumps([a["tasks"], b["tasks"], a["acceptance_tests"]])
    assert "pwned" not in shell_text and "$STEPLEDGER_STEP_ID" in shell_text


def test_a_replay_command_never_carries_a_masked_password(tmp_path: Path) -> None:
    from stepledger.engine.chaos.plan import ChaosPlan

    it = plan_iteration(5, 0, BY_NAME["after_dispatch"], 3)
    secret = "postgresql+psycopg://u:hunter2@db.example/log"
    masked = ChaosPlan(file=tmp_path / "ws.json", workdir=tmp_path, scratch=tmp_path, seed=5,
                       points=("after_dispatch",), unreachable={}, iterations=(it,),
                       db=secret, db_shown="postgresql+psycopg://u:***@db.example/log")  # fmt: skip
    line = masked.replay_command(it)
    assert "hunter2" not in line and "***" not in line and "--db" not in line
    assert line.endswith("# with STEPLEDGER_DB set to the log's URL")
    plain = "postgresql+psycopg://postgres@127.0.0.1/log"  # nothing to mask: the command names it
    assert f"--db {plain}" in replace(masked, db=plain, db_shown=plain).replay_command(it)
