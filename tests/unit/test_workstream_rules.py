"""Every validation rule: a clear problem with file, JSON path, step id and a hint; all of them at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stepledger.engine.errors import UserInputError
from stepledger.engine.workstream import (
    Problem,
    ToolsUnavailable,
    WorkstreamInvalid,
    check_tools_or_raise,
    load_workstream,
    tool_problems,
    validate_problems,
    workstream_from_data,
)


def errors_of(data: Any, env: dict[str, str] | None = None, strict: bool = False) -> list[Problem]:
    """The error problems of data loaded as the file t.json (`strict`: unknown fields are errors)."""
    _, problems = workstream_from_data(data, "t.json", env or {}, strict=strict)
    return [p for p in problems if p.severity == "error"]


def warnings_of(data: Any) -> list[Problem]:
    """The warnings of data loaded as the file t.json."""
    _, problems = workstream_from_data(data, "t.json", {})
    return [p for p in problems if p.severity == "warning"]


def one(data: Any, env: dict[str, str] | None = None, strict: bool = False) -> Problem:
    """The single error of `data`."""
    problems = errors_of(data, env, strict)
    assert len(problems) == 1, [p.render() for p in problems]
    return problems[0]


def steps(*items: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A workstream of shell steps."""
    return {"id": "w", "steps": [{"tool": "shell", **item} for item in items], **top}


def test_unknown_field_names_its_path_and_suggests() -> None:
    problem = one(steps({"id": "a", "depends_om": []}), strict=True)
    assert problem.path == "steps[0].depends_om"
    assert problem.step_id == "a"
    assert "unknown field `depends_om`" in problem.message
    assert problem.hint == "did you mean `depends_on`?"
    assert problem.render() == (
        "t.json: steps[0].depends_om [step a]: unknown field `depends_om` — did you mean `depends_on`?"
    )


def test_unknown_fields_at_every_level() -> None:
    data = steps(
        {"id": "a", "retry": {"stratgy": "fixed"}, "compensation": {"action": "x", "bogus": 1}},
        executon={},
        execution={"max_worker": 2},
        saga={"enabeld": True},
        phases=[{"id": "p", "stepz": []}],
        error_handling={"on_failur": {}},
    )
    assert errors_of(data) == []  # unknown fields are warnings unless strict
    assert {p.path for p in warnings_of(data)} == {p.path for p in errors_of(data, strict=True)}
    paths = {p.path for p in errors_of(data, strict=True)}
    assert paths == {
        "steps[0].retry.stratgy",
        "steps[0].compensation.bogus",
        "executon",
        "execution.max_worker",
        "saga.enabeld",
        "phases[0].stepz",
        "error_handling.on_failur",
    }


def test_duplicate_step_ids() -> None:
    problem = one(steps({"id": "a"}, {"id": "b"}, {"id": "a"}))
    assert problem.path == "steps[2].id" and "duplicate step id `a`" in problem.message
    assert "steps[0]" in (problem.hint or "")


def test_duplicate_phase_ids_and_steps_across_phases() -> None:
    data = {
        "id": "w",
        "tool": "shell",
        "phases": [{"id": "p", "steps": [{"id": "a"}]}, {"id": "p", "steps": [{"id": "a"}]}],
    }
    messages = sorted(p.message for p in errors_of(data))
    assert messages == ["duplicate phase id `p`", "duplicate step id `a`"]


def test_unknown_dependency_suggests_the_closest_step() -> None:
    problem = one(steps({"id": "step-01-math-utils"}, {"id": "b", "depends_on": ["step-01-math-util"]}))
    assert problem.path == "steps[1].depends_on[0]"
    assert problem.step_id == "b"
    assert problem.hint == "did you mean `step-01-math-utils`?"


def test_cycle_is_shown_as_the_cycle() -> None:
    problem = one(
        steps({"id": "step-a", "depends_on": ["step-b"]}, {"id": "step-b", "depends_on": ["step-a"]})
    )
    assert problem.message == "dependency cycle: step-a → step-b → step-a"
    assert problem.path == "steps[0].depends_on"


def test_self_dependency_and_two_separate_cycles_are_all_reported() -> None:
    data = steps(
        {"id": "a", "depends_on": ["a"]},
        {"id": "b", "depends_on": ["c"]},
        {"id": "c", "depends_on": ["b"]},
        {"id": "d", "depends_on": ["b"]},
    )
    messages = [p.message for p in errors_of(data)]
    assert messages == ["dependency cycle: a → a", "dependency cycle: b → c → b"]


def test_phase_rules() -> None:
    data = {
        "id": "w",
        "tool": "shell",
        "phases": [
            {"id": "p1", "depends_on": ["p2"], "steps": [{"id": "a"}]},
            {"id": "p2", "depends_on": ["p1", "p9"], "steps": [{"id": "b"}]},
        ],
    }
    messages = [p.message for p in errors_of(data)]
    assert "depends on unknown phase `p9`" in messages
    assert "phase dependency cycle: p1 → p2 → p1" in messages


def test_step_groups_must_name_known_steps() -> None:
    data = steps(
        {"id": "alpha"}, step_groups=[{"id": "g", "steps": ["alpha", "alpah"], "execute": "sequential"}]
    )
    problem = one(data)
    assert problem.path == "step_groups[0].steps[1]" and problem.hint == "did you mean `alpha`?"


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("timeout", 0, "steps[0].timeout"),
        ("timeout", -5, "steps[0].timeout"),
        ("timeout", "soon", "steps[0].timeout"),
        ("tasks", "echo hi", "steps[0].tasks"),
        ("tasks", ["ok", 3], "steps[0].tasks[1]"),
        ("depends_on", [""], "steps[0].depends_on[0]"),
        ("env", {"A": ["x"]}, "steps[0].env.A"),
        ("retry", {"strategy": "exponentail"}, "steps[0].retry.strategy"),
        ("retry", {"initial_delay": -1}, "steps[0].retry.initial_delay"),
        ("circuit_breaker", {"max_attempts": 0}, "steps[0].circuit_breaker.max_attempts"),
        ("circuit_breaker", {"max_attempts": True}, "steps[0].circuit_breaker.max_attempts"),
        ("circuit_breaker", {"error_patterns": ["("]}, "steps[0].circuit_breaker.error_patterns[0]"),
        ("compensation", {"timeout": 5}, "steps[0].compensation.action"),
        ("estimated_duration", "a while", "steps[0].estimated_duration"),
        ("metadata", {"estimated_duration": "a while"}, "steps[0].metadata.estimated_duration"),
        ("id", 7, "steps[0].id"),
    ],
)
def test_wrong_types_and_bounds(field: str, value: Any, path: str) -> None:
    step = {"id": "a", field: value} if field != "id" else {"id": value}
    problem = one(steps(step))
    assert problem.path == path, problem.render()


@pytest.mark.parametrize(
    ("execution", "path"),
    [
        ({"max_workers": 0}, "execution.max_workers"),
        ({"max_workers": -2}, "execution.max_workers"),
        ({"max_workers": 2.5}, "execution.max_workers"),
        ({"max_workers": "many"}, "execution.max_workers"),
        ({"timeout_per_step": 0}, "execution.timeout_per_step"),
        ({"rate_limit_delay": -1}, "execution.rate_limit_delay"),
        ({"parallel": "yes"}, "execution.parallel"),
        ({"max_workers": "${env.W}"}, "execution.max_workers"),
        ({"max_workers": "${env.BAD:-zero}"}, "execution.max_workers"),
        ({"max_workers": "${env.ZERO:-0}"}, "execution.max_workers"),
        ({"parallel": "${CI}"}, "execution.parallel"),
    ],
)
def test_execution_values(execution: dict[str, Any], path: str) -> None:
    problem = one(steps({"id": "a"}, execution=execution))
    assert problem.path == path, problem.render()


def test_missing_variable_is_named() -> None:
    problem = one(steps({"id": "a"}, execution={"max_workers": "${env.MAX_WORKERS}"}))
    assert "MAX_WORKERS is not set" in problem.message
    assert "${env.MAX_WORKERS:-value}" in (problem.hint or "")


def test_every_problem_is_reported_not_only_the_first() -> None:
    data = steps(
        {"id": "a", "depends_on": ["zz"], "timeout": 0},
        {"id": "a", "tols": "x"},
        {"id": "c", "retry": {"strategy": "never"}},
        execution={"max_workers": 0},
    )
    assert sorted(p.path for p in errors_of(data, strict=True)) == [
        "execution.max_workers",
        "steps[0].depends_on[0]",
        "steps[0].timeout",
        "steps[1].id",
        "steps[1].tols",
        "steps[2].retry.strategy",
    ]


def test_on_failure_action_must_be_known() -> None:
    problem = one(steps({"id": "a"}, error_handling={"on_failure": {"action": "fail-fast"}}))
    assert problem.path == "error_handling.on_failure.action" and problem.hint == "did you mean `fail_fast`?"


def test_the_file_must_have_steps_and_an_object_at_the_top() -> None:
    assert "no steps" in one({"id": "w"}).message
    assert "one object" in one([1, 2]).message
    assert one({"steps": []}).path == "id"


def test_a_step_needs_a_tool() -> None:
    problem = one({"id": "w", "steps": [{"id": "a"}]})
    assert problem.path == "steps[0].tool" and "tool" in (problem.hint or "")


def test_single_step_fields_at_the_top_of_a_multi_step_file() -> None:
    problem = one(steps({"id": "a"}, tasks=["x"]))
    assert problem.path == "tasks" and "move it into a step" in (problem.hint or "")


# --- files_scope ---------------------------------------------------------------------------------


def test_concurrent_steps_sharing_a_file_are_an_error() -> None:
    data = steps({"id": "a", "files_scope": ["src/x.py"]}, {"id": "b", "files_scope": ["./src/x.py"]})
    problem = one(data)
    assert problem.message == "steps `a` and `b` may run at the same time and both touch `src/x.py`"
    assert problem.path == "steps[1].files_scope" and problem.step_id == "b"
    assert "serialize_conflicting_files" in (problem.hint or "")


def test_shared_file_is_fine_with_a_dependency_path_between_the_steps() -> None:
    data = steps(
        {"id": "a", "files_scope": ["x"]},
        {"id": "m", "depends_on": ["a"]},
        {"id": "b", "depends_on": ["m"], "files_scope": ["x"]},
    )
    assert errors_of(data) == []


def test_shared_file_is_fine_when_asked_to_serialise_or_when_running_one_at_a_time() -> None:
    two = [{"id": "a", "files_scope": ["x"]}, {"id": "b", "files_scope": ["x"]}]
    assert errors_of(steps(*two, execution={"serialize_conflicting_files": True})) == []
    assert errors_of(steps(*two, execution={"parallel": False})) == []
    assert errors_of(steps(*two, execution={"max_workers": 1})) == []
    assert (
        errors_of(steps(*two, step_groups=[{"id": "g", "steps": ["a", "b"], "execute": "sequential"}])) == []
    )
    assert len(errors_of(steps(*two, step_groups=[{"id": "g", "steps": ["a", "b"], "max_workers": 2}]))) == 1


def test_files_scope_is_relative_to_the_step_cwd() -> None:
    data = steps({"id": "a", "cwd": "sub", "files_scope": ["x.py"]}, {"id": "b", "files_scope": ["sub/x.py"]})
    assert "`sub/x.py`" in one(data).message
    data = steps(
        {"id": "a", "cwd": "one", "files_scope": ["x.py"]}, {"id": "b", "cwd": "two", "files_scope": ["x.py"]}
    )
    assert errors_of(data) == []


def test_many_conflicts_on_one_file_are_capped() -> None:
    data = steps(*({"id": f"s{i}", "files_scope": ["shared"]} for i in range(30)))
    problems = errors_of(data)
    assert len(problems) == 21
    assert problems[-1].message.startswith("… and 415 more pairs")


def test_phase_order_counts_as_a_dependency_path() -> None:
    data = {
        "id": "w",
        "tool": "shell",
        "phases": [
            {"id": "p1", "steps": [{"id": "a", "files_scope": ["x"]}]},
            {"id": "p2", "depends_on": ["p1"], "steps": [{"id": "b", "files_scope": ["x"]}]},
        ],
    }
    assert errors_of(data) == []


# --- tools ---------------------------------------------------------------------------------------


def test_unavailable_tool_is_a_warning_in_validate_and_an_error_before_run(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps(steps({"id": "a", "tool": "no-such-tool-xyz"}, {"id": "b"})))
    ws, problems = validate_problems(path, env={}, project_dir=tmp_path)
    assert ws is not None
    (warning,) = problems
    assert warning.severity == "warning" and warning.path == "steps[0].tool" and warning.step_id == "a"
    assert "no-such-tool-xyz" in warning.message
    load_workstream(path, env={})  # loading alone never fails on tools
    with pytest.raises(ToolsUnavailable) as caught:
        check_tools_or_raise(ws, tmp_path)
    assert isinstance(caught.value, UserInputError) and caught.value.exit_code == 2
    assert [p.severity for p in caught.value.problems] == ["error"]


def test_a_profile_makes_a_tool_known_but_its_program_must_exist(tmp_path: Path) -> None:
    (tmp_path / "stepledger.toml").write_text('[tools.mine]\ncommand = ["sh", "{task}"]\n')
    ws, _ = workstream_from_data(steps({"id": "a", "tool": "mine"}), "t.json", {})
    assert ws is not None and tool_problems(ws, tmp_path) == []
    (tmp_path / "stepledger.toml").write_text('[tools.mine]\ncommand = ["no-such-program-xyz"]\n')
    (problem,) = tool_problems(ws, tmp_path)
    assert "no-such-program-xyz" in (problem.hint or "")


# --- syntax ---------------------------------------------------------------------------------------


def test_malformed_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "id": "w",\n  "steps": [\n    {"id": "a",}\n  ]\n}\n')
    with pytest.raises(WorkstreamInvalid) as caught:
        load_workstream(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (4, 16)
    assert problem.render().startswith(f"{path}:4:16: invalid JSON")


def test_malformed_yaml_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("id: w\nsteps:\n  - id: a\n   tool: shell\n")
    with pytest.raises(WorkstreamInvalid) as caught:
        load_workstream(path)
    (problem,) = caught.value.problems
    assert problem.line == 4 and problem.message.startswith("invalid YAML")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WorkstreamInvalid, match="no such file"):
        load_workstream(tmp_path / "nope.json")


def test_yaml_dates_stay_strings_and_non_string_keys_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("id: w\ntool: shell\nmetadata:\n  created: 2025-11-22\n")
    assert load_workstream(path, env={}).metadata == {"created": "2025-11-22"}
    path.write_text("id: w\ntool: shell\nenv:\n  1: x\nmetadata:\n  a: {2: y}\n")
    with pytest.raises(WorkstreamInvalid) as caught:
        load_workstream(path, env={})
    assert [p.path for p in caught.value.problems] == ["env['1']", "metadata.a['2']"]


def test_invalid_error_lists_every_problem_in_its_message(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(json.dumps(steps({"id": "a", "depends_on": ["b"]}, {"id": "a"})))
    with pytest.raises(WorkstreamInvalid) as caught:
        load_workstream(path, env={})
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path} is not valid (2 problems):"
    assert len(lines) == 3


def test_shared_files_are_still_checked_when_there_is_a_cycle() -> None:
    data = steps(
        {"id": "a", "depends_on": ["b"], "files_scope": ["x"]},
        {"id": "b", "depends_on": ["a"], "files_scope": ["x"]},
        {"id": "c", "files_scope": ["y"]},
        {"id": "d", "files_scope": ["y"]},
    )
    messages = [p.message for p in errors_of(data)]
    assert messages == [
        "dependency cycle: a → b → a",
        "steps `c` and `d` may run at the same time and both touch `y`",
    ]


def test_repeated_keys_are_reported_in_json_and_yaml(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text(
        '{"id": "w", "_comment": 1, "_comment": 2, "steps": [{"id": "a", "tool": "shell", "tool": "python"}]}'
    )
    with pytest.raises(WorkstreamInvalid) as caught:
        load_workstream(path, env={})
    (problem,) = caught.value.problems
    assert problem.path == "steps[0].tool" and "more than once" in problem.message
    path = tmp_path / "w.yaml"
    path.write_text("id: w\ntool: shell\ntool: python\nbase: &b {a: 1}\n")
    with pytest.raises(WorkstreamInvalid) as caught:
        load_workstream(path, env={})
    assert [p.path for p in caught.value.problems] == ["tool"]  # `base` is an unknown field: a warning
    _, problems = validate_problems(path, env={}, check_tools=False)
    assert [(p.path, p.severity) for p in problems] == [("tool", "error"), ("base", "warning")]


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(
        "id: w\nretry: &r {strategy: fixed, initial_delay: 1}\n"
        "steps:\n  - id: a\n    tool: shell\n    retry:\n      <<: *r\n      initial_delay: 2\n"
    )
    ws = load_workstream(path, env={})
    assert ws.steps[0].retry.strategy == "fixed" and ws.steps[0].retry.initial_delay == 2


def test_python_tasks_must_be_module_function() -> None:
    ok = steps({"id": "a", "tool": "python", "tasks": ["pkg.mod:run", "pkg:obj.method --flag x"]})
    assert errors_of(ok) == []
    problem = one(steps({"id": "a", "tool": "python", "tasks": ["pkg.mod:run", "print('hi')"]}))
    assert problem.path == "steps[0].tasks[1]" and "module:function" in (problem.hint or "")
    bad_comp = steps({"id": "a", "compensation": {"tool": "python", "action": "undo()"}})
    assert one(bad_comp).path == "steps[0].compensation.action"
