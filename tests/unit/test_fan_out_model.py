"""for_each, the model's side: reading the list, ids, grafting, validation, the fold and the filling."""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stepledger.engine.run.expanding import grafted
from stepledger.engine.run.lifecycle import StepLifecycle
from stepledger.engine.workstream import workstream_from_data
from stepledger.engine.workstream.for_each import expansion_ids, graft, read_items
from stepledger.engine.workstream.model import Step, StepGroup, Workstream
from stepledger.engine.workstream.step_outputs import Filler
from stepledger.events import RecordedEvent
from stepledger.events.state import DONE_STATES, RunState, apply
from stepledger.events.types import StepExpanded

SOURCE = "${steps.list.outputs.files}"
EVIL = "x'\"; touch pwned; \"' $(touch pwned) ${steps.list.outputs.files}"


def _load(steps: list[dict[str, Any]], **top: Any) -> tuple[Workstream | None, list[str]]:
    ws, problems = workstream_from_data({"id": "w", "tool": "shell", "steps": steps, **top}, "w.json", env={})
    return ws, [p.render() for p in problems if p.severity == "error"]


def _step(**kw: Any) -> Step:
    return Step(id="process", tool="shell", for_each=SOURCE, **kw)


LIST = {"id": "list", "tasks": ["true"]}


# --- reading the list ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "items"),
    [
        (["a", "b"], ("a", "b")),
        ('["a", {"k": 1}, 3, null]', ("a", {"k": 1}, 3, None)),  # a JSON list written as text
        ([["nested"], True], (["nested"], True)),
    ],
)
def test_a_list_is_expanded_item_by_item(value: Any, items: tuple[Any, ...]) -> None:
    reading = read_items(_step(), "passed", {"files": value})
    assert (reading.verdict, reading.items) == ("expand", items)


@pytest.mark.parametrize(
    ("state", "outputs", "verdict", "why"),
    [
        ("passed", {"files": []}, "skip", "empty: steps.list.outputs.files is an empty list"),
        ("passed", {"files": "[]"}, "skip", "empty: steps.list.outputs.files is an empty list"),
        ("skipped", {}, "skip", "empty: list was skipped, so steps.list.outputs.files holds no list"),
        ("passed", {}, "refuse", "for_each: list recorded no output `files` (it must be a JSON list)"),
        ("passed", {"files": 5}, "refuse", "for_each: steps.list.outputs.files is a number, not a list"),
        ("passed", {"files": {"a": 1}}, "refuse", "is an object, not a list"),
        ("passed", {"files": '"a"'}, "refuse", "is a text, not a list"),
        ("passed", {"files": "a.txt b.txt"}, "refuse", "is not JSON (Expecting value"),
        ("passed", {"files": "[NaN]"}, "refuse", "NaN is not a JSON number the log can hold"),
        (
            "passed",
            {"files": [1, 2, 3]},
            "refuse",
            "has 3 items, more than max_fan_out (2)",
        ),
    ],
)
def test_nothing_to_do_is_a_skip_and_no_list_a_refusal(
    state: str, outputs: dict[str, Any], verdict: str, why: str
) -> None:
    reading = read_items(_step(max_fan_out=2), state, outputs)
    assert reading.verdict == verdict and why in reading.why and reading.items == ()
    assert "\n" not in reading.why


def test_a_long_text_is_shown_short_in_the_refusal() -> None:
    reading = read_items(_step(), "passed", {"files": "x" * 10_000})
    assert reading.verdict == "refuse" and len(reading.why) < 200


def test_ids_are_positions_whatever_the_items() -> None:
    assert expansion_ids("process", 3) == ["process[0]", "process[1]", "process[2]"]
    assert expansion_ids("a.b", 1) == ["a.b[0]"]


# --- grafting the expansions into the model ----------------------------------------------------------


def _workstream() -> Workstream:
    ws, errors = _load(
        [
            LIST,
            {"id": "process", "depends_on": ["list"], "for_each": SOURCE, "when": "true",
             "env": {"F": "${for_each.item}"}, "tasks": ["echo ${for_each.index}"]},
            {"id": "other", "tasks": ["true"]},
            {"id": "summary", "depends_on": ["process", "other"], "tasks": ["true"]},
        ],
        step_groups=[{"id": "g", "steps": ["process"], "execute": "sequential"}],
    )  # fmt: skip
    assert errors == [] and ws is not None
    return ws


def test_expansions_follow_their_step_and_its_dependents_wait_for_each() -> None:
    ws = graft(_workstream(), "process", ["a", {"k": 1}], ["process[0]", "process[1]"])
    assert [s.id for s in ws.steps] == ["list", "process", "process[0]", "process[1]", "other", "summary"]
    first, second = ws.step("process[0]"), ws.step("process[1]")
    assert (first.for_each, first.for_each_index, first.for_each_item) == (None, 0, "a")
    assert (second.for_each_index, second.for_each_item, second.when) == (1, {"k": 1}, None)
    assert first.requires == ("list",) and first.env == {"F": "${for_each.item}"}
    assert ws.step("summary").requires == ("process", "other", "process[0]", "process[1]")
    assert ws.step_groups == (StepGroup("g", ("process", "process[0]", "process[1]"), "sequential"),)
    assert ws.step("process").for_each == SOURCE  # the step itself stays, expanded


def _expanded(template: str, ids: list[str], items: list[Any], position: int = 7) -> RecordedEvent:
    payload = {"source": "list.outputs.files", "items": items, "ids": ids}
    return RecordedEvent(position, f"e{position}", "r", f"r/{template}", 1, StepExpanded.type_name, 1,
                         payload, 1.0)  # fmt: skip


def test_a_resumed_reactor_takes_the_recorded_expansions_once() -> None:
    event = _expanded("process", ["process[0]"], ["a"])
    ws = grafted(_workstream(), [event, event])  # a second copy adds nothing
    assert [s.id for s in ws.steps].count("process[0]") == 1
    gone = _expanded("vanished", ["vanished[0]"], ["a"])  # resumed with a file that lost the step
    assert [s.id for s in grafted(_workstream(), [gone]).steps] == [s.id for s in _workstream().steps]


# --- the fold and the lifecycle ----------------------------------------------------------------------


def test_the_fold_makes_the_step_expanded_and_each_expansion_pending() -> None:
    run = RunState("r")
    apply(run, _expanded("process", ["process[0]", "process[1]"], ["a", "b"]))
    assert run.steps["process"].state == "expanded" and run.steps["process"].version == 1
    assert {sid: (s.state, s.version) for sid, s in run.steps.items() if sid != "process"} == {
        "process[0]": ("pending", 0),
        "process[1]": ("pending", 0),
    }
    assert "expanded" in DONE_STATES  # what waited for the step waits for its expansions instead


def test_runs_bar_and_counts_take_the_expansions_and_the_steps_not_begun() -> None:
    from stepledger.cli.run_view import LiveView, counts_line

    run = RunState("r")
    run.workstream = {"steps": [{"id": "list"}, {"id": "process"}, {"id": "summary"}]}
    run.step("list").state = "passed"
    apply(run, _expanded("process", ["process[0]", "process[1]", "process[2]"], ["a", "b", "c"]))
    view = LiveView(total_steps=3)
    try:
        view.events(run, [])
        # list, three expansions and summary, which the log has not mentioned yet: not 4 (5 - 1)
        assert view.progress.tasks[0].total == 5 and view.progress.tasks[0].completed == 1
    finally:
        view.close()
    assert counts_line(run) == "5 steps: 1 passed, 0 failed, 0 blocked, 0 skipped, 4 not finished"


def test_only_a_pending_step_expands_and_an_expanded_one_is_final() -> None:
    life = StepLifecycle("process")
    event = StepExpanded(source="list.outputs.files", items=["a"], ids=["process[0]"])
    life.fire("expand", event)
    assert life.state == "expanded" and life.take_collected() == [event]
    for trigger in ("ready", "start", "skip", "mark_passed", "request_retry", "block", "expand"):
        assert not life.can(trigger), trigger
    assert not StepLifecycle("p", "ready").can("expand")


# --- validate ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ({"for_each": "files"}, "steps[1].for_each [step process]: for_each must be one reference"),
        ({"for_each": "a ${steps.list.outputs.files}"}, "for_each must be one reference"),
        ({"depends_on": []}, "reads step `list`, which `process` does not depend on"),
        ({"for_each": "${steps.nope.outputs.files}"}, "reads unknown step `nope`"),
        ({"for_each": "${steps.process.outputs.files}"}, "a step cannot read its own outputs"),
        (
            {"matrix": {"k": ["a", "b"]}},
            "[step process[k=a]]: a step cannot have both matrix",
        ),
        (
            {"compensation": "rm ${for_each.item}"},
            "compensation.action [step process]: ${for_each.…} is not filled in a compensation",
        ),
        ({"max_fan_out": 10_001}, "steps[1].max_fan_out [step process]: must be an integer ≥ 1 and ≤ 10,000"),
        (
            {"timeout": "${for_each.index}"},
            "steps[1].timeout [step process]: '${for_each.index}' does not give a number > 0 and ≤ 100000000:"
            " ${for_each.index} is filled only when an attempt starts",
        ),
    ],
)
def test_validate_refuses_a_for_each_it_cannot_run(step: dict[str, Any], expected: str) -> None:
    base = {"id": "process", "depends_on": ["list"], "for_each": SOURCE, "tasks": ["true"]}
    _, errors = _load([LIST, {**base, **step}])
    assert len(errors) == 1 and expected in errors[0], errors


def test_validate_refuses_the_placeholders_outside_a_for_each_step_and_colliding_ids() -> None:
    fan = {"id": "process", "depends_on": ["list"], "for_each": SOURCE, "tasks": ["true"]}
    stray = {"id": "x", "env": {"A": "${for_each.item}"}, "tasks": ["echo ${for_each.index}"]}
    _, errors = _load([LIST, fan, stray, {"id": "process[0]", "tasks": ["true"]}])
    assert len(errors) == 3, errors
    assert "steps[2].tasks[0] [step x]: ${for_each.index} is filled only in a step with for_each" in errors[0]
    assert "steps[2].env.A [step x]: ${for_each.item} is filled only in a step with for_each" in errors[1]
    assert "steps[3].id [step process[0]]: step id `process[0]` is the id an expansion" in errors[2]


def test_a_dependent_reads_an_expansion_not_the_for_each_step() -> None:
    fan = {"id": "process", "depends_on": ["list"], "for_each": SOURCE, "tasks": ["true"]}
    ok = {"id": "sum", "depends_on": ["process"], "tasks": ["echo ${steps.process[2].outputs.n}"]}
    assert _load([LIST, fan, ok])[1] == []
    bad = {**ok, "tasks": ["echo ${steps.process.outputs.n}"]}
    errors = _load([LIST, fan, bad])[1]
    assert len(errors) == 1 and "`process` is a for_each step, which records no outputs" in errors[0]
    stranger = {"id": "x", "tasks": ["echo ${steps.process[0].outputs.n}"]}  # not a dependent
    assert "reads unknown step `process[0]`" in _load([LIST, fan, stranger])[1][0]


def test_an_indirect_dependency_may_hold_the_list_and_placeholders_pass_in_env_and_cwd() -> None:
    steps: list[dict[str, Any]] = [
        LIST,
        {"id": "mid", "depends_on": ["list"], "tasks": ["true"]},
        {"id": "process", "depends_on": ["mid"], "for_each": SOURCE, "max_fan_out": 5,
         "env": {"F": "${for_each.item}"}, "cwd": "out/${for_each.index}", "tasks": ["true"]},
    ]  # fmt: skip
    ws, errors = _load(steps)
    assert errors == [] and ws is not None
    assert ws.step("process").max_fan_out == 5 and ws.step("process").cwd == "out/${for_each.index}"


# --- filling: data, never code -----------------------------------------------------------------------


def _bash(command: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        ["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout


@pytest.mark.parametrize(
    "form",
    [
        "printf '%s\\n' ${for_each.item}",
        "printf '%s\\n' \"${for_each.item}\"",
        "printf '%s\\n' '${for_each.item}'",
    ],
)
def test_an_item_reaches_a_shell_as_one_word_and_runs_nothing(form: str, tmp_path: Path) -> None:
    fill = Filler(lambda sid: {"files": "OUT"}, for_each=(4, EVIL))
    command = fill.shell(form)
    assert "pwned" not in command  # the value is not in the command text at all
    assert _bash(command, fill.env, tmp_path) == EVIL + "\n"
    assert not (tmp_path / "pwned").exists()
    assert fill.env["STEPLEDGER_ITEM"] == EVIL and fill.env["STEPLEDGER_ITEM_INDEX"] == "4"


def test_items_and_outputs_are_filled_in_one_pass(tmp_path: Path) -> None:
    # The item holds a reference's text: it stays text, it is not filled again.
    fill = Filler(lambda sid: {"files": "OUT"}, for_each=(0, {"k": EVIL}))
    assert fill.data("${for_each.index}/${steps.list.outputs.files}/${for_each.item}") == (
        "0/OUT/" + json.dumps({"k": EVIL})
    )
    python = fill.python("m:f ${for_each.item} ${steps.list.outputs.files}")
    assert shlex.split(python) == ["m:f", json.dumps({"k": EVIL}), "OUT"]
    shell = fill.shell('echo "${for_each.item}" ${steps.list.outputs.files}')
    assert _bash(shell, fill.env, tmp_path) == json.dumps({"k": EVIL}) + " OUT\n"


def test_without_for_each_the_placeholder_is_left_to_the_shell() -> None:
    fill = Filler(lambda sid: {})
    assert fill.shell("echo ${for_each.item}") == "echo ${for_each.item}" and fill.env == {}


def test_an_item_naming_a_folder_outside_the_run_fails_the_attempt(tmp_path: Path) -> None:
    from stepledger.engine.run.attempt_specs import AttemptSpecs

    ws = graft(_workstream(), "process", ["sub", "../../etc"], ["process[0]", "process[1]"])
    specs = AttemptSpecs("r", str(tmp_path / "run"), tmp_path, ws, {})
    inside = specs.spec(replace(ws.step("process[0]"), cwd="out/${for_each.item}"), 1)
    assert inside.workdir == str(tmp_path / "run" / "out" / "sub") and inside.env["F"] == "sub"
    outside = specs.spec(replace(ws.step("process[1]"), cwd="out/${for_each.item}"), 1)
    assert outside.tasks[0].startswith("echo ") and "leaves the run" in outside.tasks[0]
    assert not (tmp_path / "etc").exists()
