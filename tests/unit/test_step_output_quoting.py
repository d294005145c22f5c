"""`${step_output.NAME}` in a compensation's action reaches the tool as data, never as code.

Each hostile value is run through a real bash (and python's shlex, as python tasks are split) in
every quoting the reference may be written in; the command must see the value as exactly one
word, unchanged, and nothing in it may run.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from stepledger.engine.saga.log import output_env_names, resolve
from stepledger.engine.workstream.model import Compensation

HOSTILE = [
    'u1"; touch pwned; echo "',
    "$(touch pwned)",
    "`touch pwned`",
    "; touch pwned",
    "' ; touch pwned ; '",
    "a b  c",
    "*",
    "-n",
    "line1\nline2",
    "back\\slash\\",
    "${HOME}",
    "",
]
# How a user may write the reference; each must give the value as one word.
FORMS = [
    "printf '%s\\n' ${step_output.v}",
    "printf '%s\\n' \"${step_output.v}\"",
    "printf '%s\\n' '${step_output.v}'",
    "printf '%s\\n' x${step_output.v}y",
    "printf '%s\\n' \"x ${step_output.v} y\"",
    "printf '%s\\n' 'x ${step_output.v} y'",
    "printf '%s\\n' \"it's\"${step_output.v}'\"'",
]
EXPECTED = ["{v}", "{v}", "{v}", "x{v}y", "x {v} y", "x {v} y", "it's{v}\""]


@pytest.mark.parametrize("value", HOSTILE)
def test_shell_action_gives_the_value_as_one_word_and_runs_nothing(value: str, tmp_path: Path) -> None:
    for form, expected in zip(FORMS, EXPECTED, strict=True):
        resolved = resolve(Compensation(action=form), {"v": value})
        assert value not in resolved.action or value in ("", "*", "-n")  # the text holds a reference
        done = subprocess.run(
            ["/bin/bash", "-c", resolved.action],
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", **resolved.env},
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout == expected.format(v=value) + "\n", form
        assert not (tmp_path / "pwned").exists(), form


@pytest.mark.parametrize("value", HOSTILE)
def test_python_action_gives_the_value_as_one_argument(value: str) -> None:
    for form in (
        "mod:fn ${step_output.v} end",
        'mod:fn "${step_output.v}" end',
        "mod:fn '${step_output.v}' end",
    ):
        resolved = resolve(Compensation(action=form, tool="python"), {"v": value})
        assert shlex.split(resolved.action) == ["mod:fn", value, "end"]


def test_other_tools_get_the_value_inside_their_one_argument() -> None:
    resolved = resolve(Compensation(action="undo ${step_output.v}", tool="aider"), {"v": "$(x)"})
    assert resolved.action == "undo $(x)"  # an argv element, run without a shell


def test_outputs_and_missing_references_become_variables() -> None:
    resolved = resolve(
        Compensation(
            action="echo ${step_output.user-id} ${step_output.gone}", parameters={"n": "${step_output.n}"}
        ),
        {"user-id": "u1", "user_id": "u2", "n": 3},
    )
    assert resolved.missing == {"gone"}
    assert resolved.env["STEPLEDGER_OUTPUT_USER_ID"] == "u1"  # user-id sorts before user_id
    assert resolved.env["STEPLEDGER_OUTPUT_USER_ID_2"] == "u2"
    assert resolved.env["STEPLEDGER_OUTPUT_N"] == "3" and resolved.env["STEPLEDGER_OUTPUT_GONE"] == ""
    assert resolved.action == 'echo "${STEPLEDGER_OUTPUT_USER_ID}" "${STEPLEDGER_OUTPUT_GONE}"'
    assert resolved.parameters == {"n": "3"} and resolved.env["STEPLEDGER_PARAM_N"] == "3"
    assert output_env_names(["a.b", "a-b"]) == {
        "a-b": "STEPLEDGER_OUTPUT_A_B",
        "a.b": "STEPLEDGER_OUTPUT_A_B_2",
    }
