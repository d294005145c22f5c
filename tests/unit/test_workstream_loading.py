"""Every supported file shape loads unchanged into the resolved model."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from stepledger.engine.workstream import Problem, load_workstream, workstream_from_data
from stepledger.engine.workstream.model import Compensation, RetryPolicy, Workstream

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "tests" / "workstreams"
SEED = EXAMPLES / "ws-example-02-parallel-execution.json"


def build(data: dict[str, Any], env: dict[str, str] | None = None) -> tuple[Workstream | None, list[Problem]]:
    """Load data as if it were a file; return the model and the error messages."""
    ws, problems = workstream_from_data(data, "t.json", env or {})
    return ws, [p for p in problems if p.severity == "error"]


def test_every_example_file_loads() -> None:
    files = (
        sorted(EXAMPLES.glob("*.json"))
        + sorted(EXAMPLES.glob("*.y*ml"))
        + [ROOT / "examples/parallel-utilities.json"]
    )
    assert len(files) >= 8
    for path in files:
        assert load_workstream(path, env={}).steps, path


def test_the_seed_loads_as_written() -> None:
    ws = load_workstream(SEED, env={})
    assert ws.id == "ws-example-02-parallel-execution"
    assert [s.id for s in ws.steps] == ["step-01-math-utils", "step-02-string-utils", "step-03-file-utils"]
    step = ws.steps[0]
    assert step.tool == "aider"
    assert step.tasks[0] == "Create examples/math_utils.py"
    assert step.acceptance_tests == ('python -c "from examples.math_utils import add; assert add(2,3) == 5"',)
    assert step.requires == ()
    # top-level circuit_breaker is the default of every step
    assert all(
        s.circuit_breaker.max_attempts == 3 and s.circuit_breaker.max_error_repeats == 2 for s in ws.steps
    )
    assert step.timeout == 300  # from execution.timeout_per_step
    assert ws.execution.max_workers == 3 and ws.execution.parallel
    assert ws.metadata["owner"] == "example@team.com"
    for name in ("openspec_change", "ccpm_issue", "gate", "files_create", "doc_id", "files_scope"):
        assert name in ws.not_acted_on
    assert ws.annotations["ccpm_issue"] == 1002
    assert ws.source_path == str(SEED)


def test_yaml_and_json_give_the_same_model() -> None:
    from_json = load_workstream(SEED, env={})
    from_yaml = load_workstream(EXAMPLES / "ws-example-02-parallel-execution.yaml", env={})
    assert from_yaml.steps == from_json.steps
    assert from_yaml.execution == from_json.execution
    multi_json = load_workstream(EXAMPLES / "ws-example-04-multi-phase.json", env={})
    multi_yaml = load_workstream(EXAMPLES / "ws-example-04-multi-phase.yml", env={})
    assert multi_yaml.steps == multi_json.steps


def test_single_step_file_is_its_own_step() -> None:
    ws = load_workstream(EXAMPLES / "ws-example-01-single-step.json", env={})
    (step,) = ws.steps
    assert step.id == ws.id == "ws-example-01-simple-task"
    assert step.tool == "shell"
    assert step.files_scope == ("examples/greeting.py",)
    assert step.timeout == 60
    assert step.circuit_breaker.max_attempts == 2
    assert step.estimated_duration == 90  # "1-2 minutes" → its middle
    assert "files_scope" not in ws.not_acted_on  # acted on: it is the step's


def test_error_handling_shape() -> None:
    ws = load_workstream(EXAMPLES / "ws-example-03-error-handling.json", env={})
    first, second = ws.steps
    assert first.circuit_breaker.error_patterns == ("TimeoutError", "ConnectionError", "rate limit exceeded")
    assert first.circuit_breaker.cooldown_seconds == 30
    assert first.retry == RetryPolicy(True, "exponential", 1, 60, True)
    # a step's own block overrides the top-level one field by field
    assert second.retry == RetryPolicy(True, "linear", 0.5, 60, True)
    assert second.circuit_breaker.max_attempts == 2 and second.circuit_breaker.max_error_repeats == 3
    handlers = ws.error_handling.handlers
    assert set(handlers) == {"on_failure", "on_retry", "on_recovery", "on_circuit_open"}
    assert ws.error_handling.on_failure_action == "log_and_continue"
    assert handlers["on_failure"].notify == ("example@team.com",)
    assert handlers["on_retry"].message == "Retrying ${step_id} (attempt ${attempt_number}/${max_attempts})"
    assert handlers["on_circuit_open"].pause_duration == 30
    assert "circuit_breaker.escalation_strategy" in ws.not_acted_on


def test_multi_phase_shape() -> None:
    ws = load_workstream(EXAMPLES / "ws-example-04-multi-phase.json", env={"MAX_WORKERS": "5"})
    by_id = {s.id: s for s in ws.steps}
    assert by_id["step-01-models"].phase == "phase-1-foundation"
    assert by_id["step-03-extract"].requires == ("step-01-models", "step-02-config")
    assert by_id["step-04-transform"].depends_on == ("step-03-extract",)
    assert by_id["step-04-transform"].requires == ("step-03-extract", "step-01-models", "step-02-config")
    assert by_id["step-05-load"].requires == ("step-03-extract", "step-04-transform")
    assert [p["id"] for p in ws.phases] == ["phase-1-foundation", "phase-2-processing", "phase-3-delivery"]
    assert ws.phases[1]["steps"] == ["step-03-extract", "step-04-transform"]
    assert ws.execution.max_workers == 5
    assert by_id["step-01-models"].estimated_duration == 120
    assert by_id["step-03-extract"].estimated_duration == 180  # from metadata.estimated_duration
    for path in ("phases[0].checkpoint", "phases[0].resume_strategy", "state_transitions", "resume"):
        assert path in ws.not_acted_on


def test_saga_shape() -> None:
    ws = load_workstream(EXAMPLES / "ws-example-05-saga.json", env={})
    assert ws.saga.enabled and ws.saga.rollback_order == "reverse" and ws.saga.timeout == 600
    first, _, third = ws.steps
    assert first.compensation == Compensation(
        action="rm -f saga/user.txt", parameters={"user_id": "${step_output.user_id}"}, timeout=60, retries=3
    )
    assert third.compensation is None  # enabled: false
    assert ws.execution.worker_limit == 1
    assert set(ws.error_handling.handlers) >= {"on_rollback_start", "on_rollback_failure"}
    # on_step_failure is read but not acted on: kept as an annotation, not a handler
    assert "on_step_failure" not in ws.error_handling.handlers
    assert {"saga.strategy", "rollback_strategy", "error_handling.on_step_failure"} <= set(ws.not_acted_on)


def test_saga_rollback_on_failure_false_disables_it() -> None:
    data = {"id": "w", "tool": "shell", "saga": {"rollback_on_failure": False}}
    ws, errors = build(data)
    assert not errors and ws is not None and not ws.saga.enabled


def test_comments_are_accepted_at_any_depth() -> None:
    data = {
        "_comment_a": "top",
        "id": "w",
        "steps": [{"id": "a", "tool": "shell", "_comment_b": {"nested": [1]}, "retry": {"_comment_c": 1}}],
        "execution": {"_comment_d": "x"},
        "error_handling": {"on_failure": {"_comment_e": "x", "action": "fail_fast"}},
        "phases": [{"id": "p", "_comment_f": 1, "steps": []}],
    }
    ws, errors = build(data)
    assert errors == [] and ws is not None
    assert ws.error_handling.on_failure_action == "fail_fast"
    assert ws.not_acted_on == ()


def test_top_level_tool_env_and_cwd_are_step_defaults() -> None:
    data = {
        "id": "w",
        "tool": "shell",
        "env": {"A": "1", "B": 2},
        "cwd": "work",
        "steps": [{"id": "a"}, {"id": "b", "tool": "python", "env": {"A": "x"}, "cwd": "other"}],
    }
    ws, errors = build(data)
    assert errors == [] and ws is not None
    a, b = ws.steps
    assert (a.tool, a.env, a.cwd) == ("shell", {"A": "1", "B": "2"}, "work")
    assert (b.tool, b.env, b.cwd) == ("python", {"A": "x", "B": "2"}, "other")


def test_interpolation_in_execution_and_step_fields() -> None:
    data = {
        "id": "w",
        "execution": {
            "parallel": "${env.CI == 'true'}",
            "max_workers": "${env.MAX_WORKERS:-3}",
            "timeout_per_step": "${env.TIMEOUT}",
            "rate_limit_delay": "${env.DELAY:-0.5}",
        },
        "steps": [
            {
                "id": "a",
                "tool": "shell",
                "env": {"HOME_DIR": "${env.HOME_DIR:-/tmp}/x", "LITERAL": "$HOME", "RUNTIME": "keep"},
                "cwd": "${env.WORKDIR:-.}",
                "timeout": "${env.STEP_TIMEOUT:-12.5}",
                "tasks": ["echo ${env.NOT_INTERPOLATED}"],
            }
        ],
    }
    ws, errors = build(data, {"CI": "true", "TIMEOUT": "30"})
    assert errors == [] and ws is not None
    assert ws.execution.parallel is True
    assert ws.execution.max_workers == 3
    assert ws.execution.timeout_per_step == 30
    assert ws.execution.rate_limit_delay == 0.5
    step = ws.steps[0]
    assert step.env == {"HOME_DIR": "/tmp/x", "LITERAL": "$HOME", "RUNTIME": "keep"}
    assert step.cwd == "."
    assert step.timeout == 12.5
    assert step.tasks == ("echo ${env.NOT_INTERPOLATED}",)  # tasks are commands: never interpolated
    ws, _ = build(data, {"CI": "false", "TIMEOUT": "30", "MAX_WORKERS": "7"})
    assert ws is not None and ws.execution.parallel is False and ws.execution.max_workers == 7


@pytest.mark.parametrize("default", ["${steps.a.outputs.y}", "${worktree_path}", "${env.OTHER}"])
@pytest.mark.parametrize("workers", [False, True])
def test_a_default_holding_a_placeholder_is_refused_set_or_not(default: str, workers: bool) -> None:
    # A default ends at the first `}`: with X set the value had a stray `}`; unset, a reference
    # came out of two pieces (and a fleet worker, given the template cut at the reference, failed).
    data = {"id": "w", "tool": "shell", "steps": [
        {"id": "a", "tasks": ["true"]},
        {"id": "b", "depends_on": ["a"], "env": {"V": "${env.X:-" + default + "}"}, "tasks": ["true"]},
    ]}  # fmt: skip
    for env in ({"X": "set"}, {}):
        _, errors = workstream_from_data(data, "ws.json", env, env_on_workers=workers)
        assert len(errors) == 1, errors
        assert "steps[1].env.V" in str(errors[0]) and "a default is plain text" in str(errors[0])


def test_max_workers_auto_is_the_cpu_count() -> None:
    ws, errors = build({"id": "w", "tool": "shell", "execution": {"max_workers": "auto"}})
    assert not errors and ws is not None and ws.execution.max_workers == (os.cpu_count() or 1)


def test_environment_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SL_TEST_WORKERS", "4")
    path = tmp_path / "w.json"
    path.write_text(
        json.dumps({"id": "w", "tool": "shell", "execution": {"max_workers": "${env.SL_TEST_WORKERS}"}})
    )
    assert load_workstream(path).execution.max_workers == 4


def test_step_metadata_and_duration_are_kept() -> None:
    data = {
        "id": "w",
        "steps": [{"id": "a", "tool": "shell", "metadata": {"estimated_duration": "2m 30s", "k": [1]}}],
    }
    ws, errors = build(data)
    assert not errors and ws is not None
    assert ws.steps[0].estimated_duration == 150 and ws.steps[0].metadata["k"] == [1]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (90, 90.0),
        ("90s", 90.0),
        ("3m", 180.0),
        ("2m 30s", 150.0),
        ("1.5 hours", 5400.0),
        ("3-6 minutes", 270.0),
        ("3-6 minutes with parallel execution (9-18 min sequential)", 270.0),
        ("250ms", 0.25),
        ("10 secs", 10.0),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    from stepledger.engine.workstream.durations import parse_duration

    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "a while", "", "5 parsecs"])
def test_not_durations(text: str) -> None:
    from stepledger.engine.workstream.durations import parse_duration

    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
