"""Run parameters: values given as text or JSON, checked against their declarations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stepledger.engine.errors import UserInputError
from stepledger.engine.workstream import workstream_from_data
from stepledger.engine.workstream.parameters import coerce, given_params


@pytest.mark.parametrize(
    ("kind", "given", "value"),
    [
        ("integer", "42", 42),
        ("integer", 7, 7),
        ("integer", 7.0, 7),
        ("number", "2.5", 2.5),
        ("boolean", "Yes", True),
        ("boolean", "0", False),
        ("boolean", False, False),
        ("string", True, "true"),
        ("string", 3, "3"),
    ],
)
def test_values_are_read_as_their_type(kind: str, given: Any, value: Any) -> None:
    assert coerce(kind, given) == value and type(coerce(kind, given)) is type(value)


@pytest.mark.parametrize(
    ("kind", "given"), [("integer", "4.5"), ("integer", True), ("integer", 1.5), ("number", "x"),
                        ("boolean", "maybe"), ("string", [1])]
)  # fmt: skip
def test_values_of_another_type_are_refused(kind: str, given: Any) -> None:
    with pytest.raises(ValueError):
        coerce(kind, given)


def _errors(parameters: dict[str, Any], given: dict[str, Any]) -> list[str]:
    data = {"id": "w", "tool": "shell", "parameters": parameters}
    _, problems = workstream_from_data(data, "w.json", env={}, params=given)
    return [p.render() for p in problems if p.severity == "error"]


def test_defaults_must_be_of_their_type_even_when_a_value_is_given() -> None:
    (error,) = _errors({"n": {"type": "integer", "default": 1.5}}, {"n": "2"})
    assert "parameters.n.default" in error and "is not an integer: 1.5" in error


def test_given_values_win_over_the_params_file(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"a": 1, "b": "x"}')
    assert given_params(["b=y", "c=a=b"], tmp_path / "p.json") == {"a": 1, "b": "y", "c": "a=b"}
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserInputError, match="must hold one object"):
        given_params([], tmp_path / "bad.yaml")
    with pytest.raises(UserInputError, match="no such file"):
        given_params([], tmp_path / "missing.json")
