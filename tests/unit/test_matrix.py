"""Matrix steps: the expansion at load time, its ids, substitution, dependents and problems."""

from __future__ import annotations

from typing import Any

from stepledger.engine.workstream import workstream_from_data
from stepledger.engine.workstream.limits import MAX_MATRIX_STEPS


def _load(steps: list[dict[str, Any]], **top: Any) -> tuple[Any, list[str]]:
    data = {"id": "w", "tool": "shell", "steps": steps, **top}
    ws, problems = workstream_from_data(data, "w.json", env={})
    return ws, [p.render() for p in problems if p.severity == "error"]


MATRIX_STEP = {
    "id": "test",
    "matrix": {"python": ["3.11", "3.12"], "db": ["sqlite", "pg"]},
    "env": {"DB": "${matrix.db}"},
    "cwd": "out/${matrix.python}",
    "tasks": ["run-tests --python ${matrix.python}"],
    "when": "matrix.db != 'pg' or matrix.python == '3.12'",
}


def test_one_step_per_combination_in_order_with_values_filled() -> None:
    ws, errors = _load([MATRIX_STEP])
    assert errors == []
    assert [s.id for s in ws.steps] == [
        "test[python=3.11,db=sqlite]",
        "test[python=3.11,db=pg]",
        "test[python=3.12,db=sqlite]",
        "test[python=3.12,db=pg]",
    ]
    pg = ws.step("test[python=3.11,db=pg]")
    assert pg.env == {"DB": "pg"} and pg.cwd == "out/3.11" and pg.tasks == ("run-tests --python 3.11",)
    assert pg.matrix == {"python": "3.11", "db": "pg"}
    assert pg.when == MATRIX_STEP["when"]  # read with matrix.KEY when decided, not rewritten


def test_dependents_and_groups_name_every_expansion() -> None:
    steps: list[dict[str, Any]] = [
        {"id": "build", "tasks": ["true"]},
        {"id": "t", "depends_on": ["build"], "matrix": {"n": [1, 2, True]}, "tasks": ["echo ${matrix.n}"]},
        {"id": "report", "depends_on": ["t", "build"], "tasks": ["true"]},
    ]
    ws, errors = _load(steps, step_groups=[{"id": "g", "steps": ["t"], "execute": "sequential"}])
    assert errors == []
    expansions = ("t[n=1]", "t[n=2]", "t[n=true]")
    assert ws.step("report").requires == (*expansions, "build")
    assert ws.step("t[n=2]").requires == ("build",) and ws.step("t[n=true]").tasks == ("echo true",)
    assert ws.step_groups[0].steps == expansions


def test_matrix_steps_inside_phases_expand_too() -> None:
    data = {
        "id": "w",
        "tool": "shell",
        "phases": [{"id": "p", "steps": [{"id": "a", "matrix": {"k": ["x", "y"]}}]}],
    }
    ws, problems = workstream_from_data(data, "w.json", env={})
    assert ws is not None and [s.id for s in ws.steps] == ["a[k=x]", "a[k=y]"] and problems == []


def test_a_problem_in_an_expansion_names_the_step_as_written() -> None:
    steps: list[dict[str, Any]] = [
        {"id": "ok", "tasks": ["true"]},
        {"id": "t", "matrix": {"k": ["a", "b"]}, "timeout": "${matrix.k}"},
    ]
    _, errors = _load(steps)
    assert len(errors) == 2
    assert all("steps[1].timeout" in e for e in errors)
    assert "[step t[k=a]]" in errors[0] and "[step t[k=b]]" in errors[1]


def test_bad_matrices_are_refused_with_their_path() -> None:
    cases = [
        ({"k": []}, "must be a non-empty list"),
        ({"k": [{"a": 1}]}, "must be a non-empty list of strings, numbers or booleans"),
        ([1, 2], "must be an object of non-empty lists"),
        ({"k": ["a", "a"]}, "lists a value twice"),
        ({"bad key": ["a"]}, "is not a name"),
    ]
    for matrix, said in cases:
        _, errors = _load([{"id": "t", "matrix": matrix, "tasks": ["true"]}])
        assert len(errors) == 1 and "steps[0].matrix" in errors[0] and said in errors[0], (matrix, errors)


def test_an_unknown_matrix_key_is_an_error() -> None:
    _, errors = _load([{"id": "t", "matrix": {"k": ["a"]}, "tasks": ["echo ${matrix.x}"]}])
    assert any("${matrix.x} is not a key" in e and "steps[0]" in e for e in errors)


def test_the_number_of_expansions_is_bounded() -> None:
    side = int(MAX_MATRIX_STEPS**0.5) + 1
    matrix = {"a": list(range(side)), "b": list(range(side))}
    _, errors = _load([{"id": "t", "matrix": matrix, "tasks": ["true"]}])
    assert len(errors) == 1 and f"past {MAX_MATRIX_STEPS:,} expanded steps" in errors[0]


def test_the_input_is_not_changed() -> None:
    steps: list[dict[str, Any]] = [
        {"id": "t", "matrix": {"k": ["a"]}, "tasks": ["true"]},
        {"id": "r", "depends_on": ["t"]},
    ]
    data = {"id": "w", "tool": "shell", "steps": steps}
    workstream_from_data(data, "w.json", env={})
    assert steps[1]["depends_on"] == ["t"] and "matrix" in steps[0]


def test_a_key_named_when_below_the_step_is_filled_like_any_text() -> None:
    step = {"id": "t", "matrix": {"n": ["1", "2"]}, "env": {"when": "at ${matrix.n}"}, "tasks": ["true"]}
    ws, errors = _load([step])
    assert errors == []
    assert [s.env for s in ws.steps] == [{"when": "at 1"}, {"when": "at 2"}]
