"""A file that is meaningful loads: what stepledger does not understand is said, not fatal.

Unknown fields are warnings (errors when strict), words match whatever their case, a block with
`enabled: false` lacks nothing, a field may be a word or an object, `_comment_*` keys never become
data, settings not acted on are notes, and message placeholders are filled or warned about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stepledger.engine.run.messages import message_line
from stepledger.engine.workstream import Problem, workstream_from_data
from stepledger.engine.workstream.model import Compensation, Message, Step, Workstream
from stepledger.engine.workstream.placeholders import fill, fill_known, unfilled

ORIGINALS = Path(__file__).resolve().parents[1] / "workstreams" / "original"


def load(data: dict[str, Any], strict: bool = False) -> tuple[Workstream | None, list[Problem]]:
    return workstream_from_data(data, "t.json", {}, strict=strict)


def by_severity(problems: list[Problem], severity: str) -> list[Problem]:
    return [p for p in problems if p.severity == severity]


def steps(*items: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"id": "w", "steps": [{"tool": "shell", **item} for item in items], **top}


# --- unknown fields ------------------------------------------------------------------------------


def test_an_unknown_field_is_a_warning_with_did_you_mean_and_is_ignored() -> None:
    ws, problems = load(steps({"id": "a"}, circuit_breaker={"max_attempts": 2, "per_phase": True}))
    assert ws is not None and not by_severity(problems, "error")
    (warning,) = by_severity(problems, "warning")
    assert warning.path == "circuit_breaker.per_phase" and warning.hint == "did you mean `per_step`?"
    assert warning.render() == (
        "t.json: circuit_breaker.per_phase: unknown field `per_phase` is ignored — did you mean `per_step`?"
    )
    assert ws.steps[0].circuit_breaker.max_attempts == 2  # the fields it knows are read


def test_strict_makes_unknown_fields_errors() -> None:
    data = steps({"id": "a"}, rollback_strategy={"partial_rollback": False, "max_rollback_retries": 3})
    _, problems = load(data, strict=True)
    (error,) = by_severity(problems, "error")
    assert error.path == "rollback_strategy.max_rollback_retries"
    assert error.message == "unknown field `max_rollback_retries`"


def test_the_workstream_switch_makes_unknown_fields_errors_in_any_case() -> None:
    for word in ("error", "ERROR"):
        _, problems = load(steps({"id": "a", "tols": "x"}, unknown_fields=word))
        assert [p.path for p in by_severity(problems, "error")] == ["steps[0].tols"]
    ws, problems = load(steps({"id": "a", "tols": "x"}, unknown_fields="warn"))
    assert ws is not None and [p.path for p in by_severity(problems, "warning")] == ["steps[0].tols"]
    _, problems = load(steps({"id": "a"}, unknown_fields="sometimes"))
    assert [p.path for p in by_severity(problems, "error")] == ["unknown_fields"]


# --- words, switched-off blocks, word-or-object --------------------------------------------------


def test_enumerations_match_whatever_their_case() -> None:
    data = steps(
        {"id": "a", "retry": {"strategy": "Exponential"}},
        step_groups=[{"id": "g", "steps": ["a"], "execute": "SEQUENTIAL"}],
        rollback_order="Reverse",
        execution={"max_workers": "AUTO"},
        error_handling={
            "on_failure": {"action": "FAIL_FAST", "log_level": "ERROR"},
            "on_retry": {"log_level": "WARNING"},
        },
    )
    ws, problems = load(data)
    assert ws is not None and not by_severity(problems, "error"), problems
    assert ws.steps[0].retry.strategy == "exponential"
    assert ws.step_groups[0].execute == "sequential"
    assert ws.execution.max_workers >= 1  # "AUTO" is `auto`: the CPU count
    assert ws.error_handling.on_failure_action == "fail_fast"
    assert ws.error_handling.handlers["on_failure"].log_level == "error"
    assert ws.error_handling.handlers["on_retry"].log_level == "warning"


def test_a_word_that_is_no_choice_in_any_case_is_still_an_error() -> None:
    _, problems = load(steps({"id": "a", "retry": {"strategy": "EXPONENTIALLY"}}))
    (error,) = by_severity(problems, "error")
    assert error.path == "steps[0].retry.strategy" and error.hint == "did you mean `exponential`?"


def test_a_block_switched_off_lacks_nothing() -> None:
    data = steps(
        {"id": "a", "compensation": {"enabled": False, "_comment_enabled": "no undo needed"}},
        {"id": "b", "compensation": {"enabled": True}},
        saga={"enabled": True},
    )
    ws, problems = load(data)
    errors = by_severity(problems, "error")
    assert [(p.path, p.message) for p in errors] == [
        ("steps[1].compensation.action", "required field `action` is missing")  # on, so it lacks one
    ]
    assert ws is not None and ws.steps[0].compensation is None


def test_compensation_may_be_the_action_alone() -> None:
    ws, problems = load(steps({"id": "a", "compensation": "rm -f out.txt"}, saga={}))
    assert ws is not None and not by_severity(problems, "error")
    assert ws.steps[0].compensation == Compensation(action="rm -f out.txt")


def test_resume_strategy_as_a_word_or_an_object_is_a_note() -> None:
    for value in ("retry_phase", {"on_failure": "retry_phase", "max_phase_retries": 2, "_comment_x": "y"}):
        ws, problems = load({"id": "w", "phases": [{"id": "p", "resume_strategy": value, "steps": []}]})
        assert ws is not None and not by_severity(problems, "error"), problems
        (note,) = by_severity(problems, "note")
        assert note.path == "phases[0].resume_strategy" and note.message == "read but not acted on"
        assert "stepledger resume RUN" in (note.hint or "")
        kept = ws.annotations["phases[0].resume_strategy"]
        assert kept in ("retry_phase", {"on_failure": "retry_phase", "max_phase_retries": 2})


def test_a_type_error_in_a_setting_not_acted_on_is_a_warning() -> None:
    data = {"id": "w", "phases": [{"id": "p", "resume_strategy": {"max_phase_retries": "two"}, "steps": []}]}
    ws, problems = load(data)
    assert ws is not None and not by_severity(problems, "error")
    (warning,) = by_severity(problems, "warning")
    assert warning.path == "phases[0].resume_strategy.max_phase_retries"
    assert warning.message.endswith("(not acted on)")


def test_a_type_error_in_a_field_acted_on_stays_an_error() -> None:
    _, problems = load(steps({"id": "a", "compensation": {"action": "undo", "timeout": "soon"}}))
    (error,) = by_severity(problems, "error")
    assert error.path == "steps[0].compensation.timeout" and error.step_id == "a"
    assert error.message == "must be a number > 0 and ≤ 100000000, got string 'soon'"


# --- comments ------------------------------------------------------------------------------------


def test_comment_keys_inside_free_data_are_dropped_at_any_depth() -> None:
    parameters = {
        "user_id": "${step_output.user_id}",
        "_comment_user_id": "who",
        "nested": {"_comment": 1, "k": 2},
    }
    metadata = {"owner": "me", "_comment_owner": "x", "sla": {"max": 900, "_comment_max": "15 min"}}
    ws, problems = load(steps({"id": "a", "compensation": {"action": "undo", "parameters": parameters}},
                              metadata=metadata))  # fmt: skip
    assert ws is not None and not by_severity(problems, "error")
    comp = ws.steps[0].compensation
    assert comp is not None and comp.parameters == {"user_id": "${step_output.user_id}", "nested": {"k": 2}}
    assert ws.metadata == {"owner": "me", "sla": {"max": 900}}
    assert parameters["_comment_user_id"] == "who"  # the file's data is not changed in place


# --- settings read but not acted on --------------------------------------------------------------


def test_settings_not_acted_on_are_notes_and_annotations_are_not() -> None:
    data = steps(
        {"id": "a", "doc_id": "DOC-1"},
        error_handling={
            "on_step_failure": {"action": "trigger_saga_rollback", "log_level": "ERROR"},
            "on_failure": {"action": "log_and_continue", "notify": ["ops@x"]},
            "on_rollback_failure": {"action": "escalate", "notify": ["ops@x"]},
            "on_circuit_open": {"action": "pause_and_notify"},
            "on_retry": {"action": "log"},
            "on_recovery": {"action": "escalate", "notify": ["ops@x"]},  # only on_failure's escalates
        },
        gate=1,
    )
    ws, problems = load(data)
    assert ws is not None
    notes = {p.path for p in by_severity(problems, "note")}
    assert notes == {
        "error_handling.on_step_failure",
        "error_handling.on_failure.notify",  # notify is used only with escalate
        "error_handling.on_circuit_open.action",
        "error_handling.on_recovery.action",
        "error_handling.on_recovery.notify",
    }
    assert "on_step_failure" not in ws.error_handling.handlers
    assert notes <= set(ws.not_acted_on) and {"gate", "steps[0].doc_id"} <= set(ws.not_acted_on)


# --- placeholders --------------------------------------------------------------------------------


def test_placeholders_a_handler_does_not_fill_are_warned_about() -> None:
    data = steps(
        {"id": "a"},
        error_handling={
            "on_retry": {"message": "retry ${step} of ${workstream_id} (${attempt_number})"},
            "on_rollback_complete": {"message": "${compensation_count} undone in ${run_id}, ${env.HOME}"},
        },
    )
    ws, problems = load(data)
    assert ws is not None
    warnings = [(p.path, p.message, p.hint) for p in by_severity(problems, "warning")]
    assert warnings == [
        (
            "error_handling.on_retry.message",
            "placeholder `${step}` is not filled in on_retry messages: it is written as `?`",
            "did you mean `step_id`?",
        ),
        (
            "error_handling.on_rollback_complete.message",
            "placeholder `${env.HOME}` is not filled in on_rollback_complete messages: it is written as `?`",
            "the ones filled here: ${workstream_id}, ${run_id}, ${step_id}, ${completed_steps}, "
            "${compensation_count}",
        ),
    ]
    # the workstream id is filled when the file is loaded
    assert ws.error_handling.handlers["on_retry"].message == "retry ${step} of w (${attempt_number})"


def test_a_message_is_never_printed_with_its_placeholders() -> None:
    step = Step(id="a", tool="shell")
    text = "${run_id}/${step_id}: attempt ${attempt_number}, ${nope}; pause ${pause_duration}s"
    handler = Message(message=text, log_level="error")
    assert message_line("on_circuit_open", handler, step, 2, "r9") == "ERROR: r9/a: attempt 2, ?; pause 0s"
    assert fill("${ run_id }/${x}", {"run_id": "r1"}) == "r1/?"
    assert fill_known("${a} ${b}", {"a": 1}) == "1 ${b}"
    assert unfilled("on_retry", "${step_id} ${step_id} ${x} ${x}") == ["x"]


def test_the_originals_give_no_error_and_say_what_they_should() -> None:
    from stepledger.engine.workstream import validate_problems

    said: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(ORIGINALS.glob("*.json")):
        ws, problems = validate_problems(path, env={}, check_tools=False)
        assert ws is not None and not by_severity(problems, "error"), [p.render() for p in problems]
        said[path.name] = {(p.severity, p.path) for p in problems}
    assert len(said) == 5
    assert ("warning", "circuit_breaker.per_phase") in said["04_multi_phase.json"]
    assert ("note", "phases[1].resume_strategy") in said["04_multi_phase.json"]
    assert {
        ("warning", "rollback_strategy.max_rollback_retries"),
        ("warning", "rollback_strategy.rollback_timeout"),
        ("note", "error_handling.on_step_failure"),
    } <= said["05_saga_pattern.json"]
    assert not any(severity == "warning" for severity, _ in said["03_error_handling.json"])
    assert said["02_parallel_execution.json"] == set()
