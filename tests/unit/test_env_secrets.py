"""Values from the environment: recorded as their templates, refused where they would show, never
quoted in problems (issue 14, "Secrets")."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stepledger.engine.errors import UserInputError
from stepledger.engine.workstream import Problem, workstream_from_data, workstream_to_dict
from stepledger.engine.workstream.env_values import recorded_workstream, resolved_workstream
from stepledger.engine.workstream.interpolation import looks_secret
from stepledger.engine.workstream.model import Workstream
from stepledger.engine.workstream.serialization import workstream_from_dict

SECRET = "s3cr3t-value-9f2e"


def build(data: dict[str, Any], env: dict[str, str]) -> tuple[Workstream | None, list[Problem]]:
    ws, problems = workstream_from_data(data, "t.json", env)
    return ws, [p for p in problems if p.severity == "error"]


def one_step(**fields: Any) -> dict[str, Any]:
    return {"id": "w", "steps": [{"id": "a", "tool": "shell", "tasks": ["true"], **fields}]}


@pytest.mark.parametrize(
    "name",
    ["GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "api_key", "GCP_CREDENTIALS", "MYSQL_PASSWD"],
)
def test_secret_looking_names(name: str) -> None:
    assert looks_secret(name, {})


def test_more_secret_names_come_from_stepledger_secret_names() -> None:
    assert not looks_secret("DATABASE_URL", {}) and not looks_secret("HOME", {})
    env = {"STEPLEDGER_SECRET_NAMES": "DATABASE_URL, *_PASS"}
    assert looks_secret("DATABASE_URL", env) and looks_secret("smtp_pass", env)
    assert not looks_secret("HOME", env)


def test_step_env_is_recorded_as_its_template_and_resolved_again_on_resume() -> None:
    data = {
        "id": "w",
        "env": {"SHARED": "${env.GITHUB_TOKEN}"},
        "steps": [
            {"id": "a", "tool": "shell", "env": {"TOKEN": "x-${env.GITHUB_TOKEN}", "PLAIN": "keep"}},
            {"id": "b", "tool": "shell", "env": {"SHARED": "own ${env.HOME:-/h}"}},
        ],
    }
    ws, errors = build(data, {"GITHUB_TOKEN": SECRET, "HOME": "/home/u"})
    assert not errors and ws is not None
    a, b = ws.steps
    # The steps get the values...
    assert a.env == {"SHARED": SECRET, "TOKEN": f"x-{SECRET}", "PLAIN": "keep"}
    assert b.env == {"SHARED": "own /home/u"}
    # ...the log gets the templates.
    recorded = recorded_workstream(workstream_to_dict(ws))
    assert SECRET not in json.dumps(recorded) and "/home/u" not in json.dumps(recorded)
    assert recorded["steps"][0]["env"] == {
        "SHARED": "${env.GITHUB_TOKEN}",
        "TOKEN": "x-${env.GITHUB_TOKEN}",
        "PLAIN": "keep",
    }
    assert recorded["steps"][1]["env"] == {"SHARED": "own ${env.HOME:-/h}"}
    # Resume resolves them in its own environment.
    again = workstream_from_dict(resolved_workstream(recorded, {"GITHUB_TOKEN": "new"}, "run-x"))
    assert again.steps[0].env == {"SHARED": "new", "TOKEN": "x-new", "PLAIN": "keep"}
    assert again.steps[1].env == {"SHARED": "own /h"}
    assert again.steps[0].env_templates == a.env_templates


def test_templates_of_phase_steps_and_single_step_files_are_found() -> None:
    phased = {
        "id": "w",
        "tool": "shell",
        "phases": [{"id": "p", "steps": [{"id": "a", "env": {"K-1": "${env.TOKEN}"}}]}],
    }
    ws, errors = build(phased, {"TOKEN": SECRET})
    assert not errors and ws is not None
    assert ws.steps[0].env_templates == {"K-1": "${env.TOKEN}"}
    single = {"id": "w", "tool": "shell", "tasks": ["true"], "env": {"T": "${env.TOKEN:-}"}}
    ws, errors = build(single, {"TOKEN": SECRET})
    assert not errors and ws is not None
    assert SECRET not in json.dumps(recorded_workstream(workstream_to_dict(ws)))


def test_resume_names_a_missing_variable_and_never_a_value() -> None:
    ws, _ = build(
        one_step(env={"T": "${env.GITHUB_TOKEN}", "U": "${env.OTHER}"}),
        {"GITHUB_TOKEN": SECRET, "OTHER": "o"},
    )
    assert ws is not None
    recorded = recorded_workstream(workstream_to_dict(ws))
    with pytest.raises(UserInputError) as caught:
        resolved_workstream(recorded, {"OTHER": "o"}, "run-x")
    message = str(caught.value)
    assert "GITHUB_TOKEN is not set" in message and "run-x" in message and "step a" in message
    assert "\n" not in message and SECRET not in message


def test_a_run_recorded_before_templates_resumes_with_its_values() -> None:
    ws, _ = build(one_step(env={"T": "literal"}), {})
    assert ws is not None
    old = workstream_to_dict(ws)
    for step in old["steps"]:
        del step["env_templates"]
    assert resolved_workstream(old, {}, "run-x") is old


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"cwd": "${env.GITHUB_TOKEN}"}, "steps[0].cwd"),
        ({"cwd": "out/${env.API_KEY:-x}"}, "steps[0].cwd"),
        ({"timeout": "${env.AWS_SECRET_ACCESS_KEY:-5}"}, "steps[0].timeout"),
    ],
)
def test_secret_named_variables_are_refused_outside_env(fields: dict[str, Any], path: str) -> None:
    env = {"GITHUB_TOKEN": SECRET, "API_KEY": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET}
    _, errors = build(one_step(**fields), env)
    assert [e.path for e in errors] == [path]
    assert "looks secret" in errors[0].message and "`env`" in (errors[0].hint or "")
    assert SECRET not in errors[0].render()


def test_execution_settings_refuse_secret_named_variables_too() -> None:
    data = {
        **one_step(),
        "execution": {"max_workers": "${env.WORKER_TOKEN}", "parallel": "${env.MY_SECRET == 'x'}"},
    }
    _, errors = build(data, {"WORKER_TOKEN": "4", "MY_SECRET": "x"})
    assert sorted(e.path for e in errors) == ["execution.max_workers", "execution.parallel"]


def test_the_configured_names_are_refused_as_well() -> None:
    env = {"STEPLEDGER_SECRET_NAMES": "DEPLOY_*", "DEPLOY_DIR": SECRET}
    _, errors = build(one_step(cwd="${env.DEPLOY_DIR}"), env)
    assert [e.path for e in errors] == ["steps[0].cwd"]


@pytest.mark.parametrize(
    "fields",
    [
        {"timeout": "${env.NUMBER:-5}"},  # not a number
        {"timeout": "${env.NEGATIVE}"},  # a number, out of range: the inner check would quote it
        {"cwd": "${env.NUMBER == 'x'}"},  # a comparison where a string is wanted
    ],
)
def test_problems_name_the_template_never_the_value(fields: dict[str, Any]) -> None:
    env = {"NUMBER": "not-a-number-" + SECRET, "NEGATIVE": "-4"}
    _, errors = build(one_step(**fields), env)
    assert len(errors) == 1, errors
    rendered = errors[0].render()
    template = next(iter(fields.values()))
    assert template in rendered
    assert SECRET not in rendered and "-4" not in rendered


def test_an_unusable_default_is_blamed_on_the_default() -> None:
    _, errors = build(one_step(timeout="${env.UNSET_T:-zero}"), {})
    assert len(errors) == 1 and "UNSET_T is not set" in errors[0].message
    assert "default" in (errors[0].hint or "")


def _fleet_spec(env: dict[str, str], outputs: dict[str, Any], loaded_in: dict[str, str]) -> Any:
    """The job payload of step b's attempt in a run on workers, loaded in the environment `loaded_in`
    (a's outputs recorded as `outputs`)."""
    from pathlib import Path

    from stepledger.engine.fleet.jobs import spec_from_payload, spec_payload
    from stepledger.engine.run.attempt_specs import AttemptSpecs
    from stepledger.events.state import RunState, StepState

    data = {"id": "w", "parameters": {"who": {"type": "string", "default": "p-1"}}, "steps": [
        {"id": "a", "tool": "shell", "tasks": ["true"]},
        {"id": "b", "tool": "shell", "tasks": ["true"], "depends_on": ["a"], "env": env},
    ]}  # fmt: skip
    ws, problems = workstream_from_data(data, "t.json", loaded_in, env_on_workers=True)
    assert ws is not None and not [p for p in problems if p.severity == "error"], problems

    run = RunState("run-x", steps={"a": StepState("a", state="passed", outputs=outputs)})
    specs = AttemptSpecs("run-x", "/w", Path("/w/.stepledger/runs/run-x"), ws, {})
    payload = spec_payload(specs.spec(ws.step("b"), 1, run))
    return payload, spec_from_payload(json.loads(json.dumps(payload)))


def test_a_fleet_job_carries_the_templates_and_the_worker_resolves_them_in_its_environment() -> None:
    from stepledger.engine.fleet.attempt_env import with_worker_env

    env = {
        "T": "${env.GITHUB_TOKEN}",
        "P": "plain",
        "W": "${params.who}-${env.CI == 'true'}",
        "O": "out-${steps.a.outputs.v}",  # reads neither: filled by the driver, as it is elsewhere
    }
    payload, spec = _fleet_spec(env, {"v": 1}, {"GITHUB_TOKEN": SECRET})
    assert SECRET not in json.dumps(payload)
    assert payload["env"] == {"P": "plain", "O": "out-1"}
    assert sorted(payload["env_templates"]) == ["T", "W"]
    assert payload["env_templates"]["W"]["params"] == {"who": "p-1"}
    resolved, said = with_worker_env(spec, {"GITHUB_TOKEN": "the-worker-s", "CI": "true"}, "m1:7")
    assert said == ""
    assert resolved.env == {"P": "plain", "O": "out-1", "T": "the-worker-s", "W": "p-1-true"}
    assert resolved.env_templates == {}


def test_an_output_holding_an_env_template_is_never_resolved_on_the_worker() -> None:
    from stepledger.engine.fleet.attempt_env import with_worker_env

    env = {"X": "${env.PUBLIC}/${steps.a.outputs.v}", "Y": "${steps.a.outputs.v}"}
    _, spec = _fleet_spec(env, {"v": "${env.GITHUB_TOKEN}"}, {})
    resolved, _ = with_worker_env(spec, {"PUBLIC": "pub", "GITHUB_TOKEN": SECRET}, "m1:7")
    assert resolved.env == {"X": "pub/${env.GITHUB_TOKEN}", "Y": "${env.GITHUB_TOKEN}"}


def test_a_worker_lacking_a_variable_runs_a_refusal_naming_it_and_never_a_value() -> None:
    from stepledger.engine.fleet.attempt_env import with_worker_env

    _, spec = _fleet_spec({"GH": "x-${env.GITHUB_TOKEN}", "K": "${env.OTHER}"}, {}, {})
    refused, said = with_worker_env(spec, {"OTHER": SECRET}, "m1:7")
    assert "worker m1:7 ran nothing of step b: its env.GH is 'x-${env.GITHUB_TOKEN}'" in said
    assert "set GITHUB_TOKEN in the environment of worker m1:7" in said and "EnvironmentFile=" in said
    assert refused.tool == "shell" and refused.tasks[0].endswith("exit 2") and refused.env_templates == {}
    assert SECRET not in json.dumps(refused.to_dict())


def test_on_workers_a_step_env_variable_may_be_unset_where_the_file_is_loaded() -> None:
    data = one_step(env={"T": "${env.GITHUB_TOKEN}"})
    ws, errors = build(data, {})
    assert [e.path for e in errors] == ["steps[0].env.T"]  # a run on this machine needs it
    ws, problems = workstream_from_data(data, "t.json", {}, env_on_workers=True)
    assert ws is not None and not problems
    assert ws.steps[0].env_templates == {"T": "${env.GITHUB_TOKEN}"}
    # Still checked as a template, and other fields still need their variables.
    bad = one_step(env={"T": "${env.GITHUB_TOKEN"}, cwd="${env.WORK_DIR}")
    _, problems = workstream_from_data(bad, "t.json", {}, env_on_workers=True)
    assert sorted(p.path for p in problems if p.severity == "error") == ["steps[0].cwd", "steps[0].env.T"]
