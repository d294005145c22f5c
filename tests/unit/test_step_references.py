"""`${steps.ID.outputs.NAME}`: which references a step may make, and how they are filled."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from stepledger.engine.workstream import workstream_from_data
from stepledger.engine.workstream.step_outputs import Filler, references


def _problems(steps: list[dict[str, Any]]) -> list[str]:
    _, problems = workstream_from_data({"id": "w", "steps": steps}, "w.json", env={})
    return [p.render() for p in problems if p.severity == "error"]


def test_references_are_found_with_dotted_and_bracketed_step_ids() -> None:
    text = "${steps.a.outputs.x} ${ steps.test[python=3.11].outputs.log } ${steps.a.outputs.x}"
    assert references(text) == [("a", "x"), ("test[python=3.11]", "log")]


def test_direct_and_indirect_dependencies_may_be_read() -> None:
    steps = [
        {"id": "a", "tool": "shell", "tasks": ["true"]},
        {"id": "b", "tool": "shell", "depends_on": ["a"], "tasks": ["echo ${steps.a.outputs.x}"]},
        {"id": "c", "tool": "shell", "depends_on": ["b"], "timeout": "${steps.a.outputs.t}",
         "cwd": "${steps.b.outputs.dir}", "acceptance_tests": ["test ${steps.a.outputs.x}"]},
    ]  # fmt: skip
    assert _problems(steps) == []


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("tasks", ["echo ${steps.a.outputs.x}"], "steps[1].tasks[0]"),
        ("acceptance_tests", ["test ${steps.a.outputs.x}"], "steps[1].acceptance_tests[0]"),
        ("env", {"V": "${steps.a.outputs.x}"}, "steps[1].env.V"),
        ("cwd", "${steps.a.outputs.x}", "steps[1].cwd"),
        ("timeout", "${steps.a.outputs.x}", "steps[1].timeout"),
    ],
)
def test_a_step_that_is_not_a_dependency_is_refused_in_every_field(
    field: str, value: object, path: str
) -> None:
    reader: dict[str, object] = {"id": "b", "tool": "shell", "tasks": ["true"], field: value}
    steps: list[dict] = [{"id": "a", "tool": "shell", "tasks": ["true"]}, reader]
    (problem,) = _problems(steps)
    assert path in problem and "`b` does not depend on" in problem and 'add "a" to depends_on' in problem


def test_unknown_steps_and_own_outputs_are_refused() -> None:
    steps = [
        {"id": "build", "tool": "shell", "tasks": ["echo ${steps.biuld.outputs.x}"]},
        {"id": "own", "tool": "shell", "tasks": ["echo ${steps.own.outputs.x}"]},
    ]
    unknown, own = _problems(steps)
    assert "unknown step `biuld`" in unknown and "build" in unknown
    assert "cannot read its own outputs" in own


def test_outside_a_step_a_reference_is_refused() -> None:
    data = {
        "id": "w",
        "execution": {"timeout_per_step": "${steps.a.outputs.t}"},
        "steps": [{"id": "a", "tool": "shell"}],
    }
    _, problems = workstream_from_data(data, "w.json", env={})
    assert any(
        "cannot be used here" in p.render() and "execution.timeout_per_step" in p.render() for p in problems
    )


def _sh(command: str, env: dict[str, str]) -> str:
    return subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("value", ['x"; touch pwned; "', "$(id)", "a'b", "`id`", "two  spaces"])
def test_a_shell_command_reads_the_value_from_a_variable_in_every_quoting(value: str) -> None:
    fill = Filler(lambda sid: {"v": value})
    command = fill.shell("printf '%s|' ${steps.a.outputs.v} \"${steps.a.outputs.v}\" '${steps.a.outputs.v}'")
    assert value not in command  # the value never is command text
    assert _sh(command, fill.env) == f"{value}|" * 3


def test_outputs_whose_names_share_a_variable_keep_their_own_values_across_tasks() -> None:
    """`x-y` and `x_y` read by two tasks of one attempt: one environment, two variables."""
    fill = Filler(lambda sid: {"x-y": "dash", "x_y": "underscore"})
    first = fill.shell("printf %s ${steps.a.outputs.x-y}")
    second = fill.shell("printf %s ${steps.a.outputs.x_y}")
    again = fill.shell("printf %s ${steps.a.outputs.x-y}")
    read = [_sh(command, fill.env) for command in (first, second, again)]
    assert read == ["dash", "underscore", "dash"]


def test_data_fields_get_the_value_itself_and_missing_outputs_read_empty() -> None:
    fill = Filler(lambda sid: {"n": 3, "s": "--flag"} if sid == "a" else {})
    assert fill.data("${steps.a.outputs.n}s") == "3s"
    assert fill.task("aider", "${steps.a.outputs.s}") == "--flag"  # one argv item of a profile
    assert fill.data("[${steps.b.outputs.gone}]") == "[]"
    assert fill.missing == {"b.outputs.gone"}
    assert fill.python("m:f ${steps.a.outputs.s}") == "m:f --flag"


def test_a_parameter_in_a_command_is_refused_with_the_env_way_as_hint() -> None:
    (problem,) = _problems([{"id": "a", "tool": "shell", "tasks": ["deploy ${params.target}"]}])
    assert "steps[0].tasks[0]" in problem and "${params.target} is not filled in a command" in problem
    assert '"TARGET": "${params.target}"' in problem


def test_a_compensation_reads_only_its_own_step_s_outputs() -> None:
    steps: list[dict[str, Any]] = [
        {"id": "a", "tool": "shell", "tasks": ["true"]},
        {"id": "b", "tool": "shell", "depends_on": ["a"], "tasks": ["true"],
         "compensation": {"action": "undo ${steps.a.outputs.x}", "parameters": {"t": "${params.t}"}}},
    ]  # fmt: skip
    action, parameters = _problems(steps)
    assert "steps[1].compensation.action" in action and "${steps.…} is not filled in a compensation" in action
    assert "steps[1].compensation.parameters" in parameters and "${params.…}" in parameters
