"""The `when` expression language: what it reads, what it means, and what it refuses to parse."""

from __future__ import annotations

from typing import Any

import pytest

from stepledger.engine.workstream import workstream_from_data
from stepledger.engine.workstream.expressions import ExpressionError, parse

VALUES: dict[tuple[str, str], Any] = {
    ("params", "target"): "prod",
    ("params", "replicas"): 3,
    ("params", "dry"): False,
    ("env", "CI"): "true",
    ("matrix", "db"): "pg",
    ("steps", "scan.outputs.areas"): ["docs", "api"],
    ("steps", "scan.outputs.count"): 0,
    ("steps", "test[python=3.11].outputs.ok"): True,
}


def holds(text: str) -> bool:
    return parse(text).holds(lambda namespace, name: VALUES.get((namespace, name)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.target == 'prod'", True),
        ('params.target != "prod"', False),
        ("params.replicas == 3 and params.replicas == '3'", True),  # values compare as text
        ("params.dry == false", True),
        ("params.dry", False),
        ("not params.dry", True),
        ("${params.target} == 'prod'", True),
        ("${env.CI == 'true'}", True),  # the form execution fields know
        ("${env.CI != 'true'} or matrix.db == 'pg'", True),
        ("env.MISSING == ''", True),  # a missing variable reads as empty
        ("env.MISSING", False),
        ("'docs' in steps.scan.outputs.areas", True),  # an item of a JSON-list output
        ("'web' not in steps.scan.outputs.areas", True),
        ("matrix.db in ['pg', 'mysql']", True),
        ("'ro' in params.target", True),  # text inside text
        ("steps.scan.outputs.count", False),
        ("steps.test[python=3.11].outputs.ok", True),
        ("steps.scan.outputs.gone == ''", True),
        ("not (params.target == 'prod' and env.CI == 'true') or false", False),
        ("true and (false or true)", True),
    ],
)
def test_meaning(text: str, expected: bool) -> None:
    assert holds(text) is expected


def test_not_binds_tighter_than_and_which_binds_tighter_than_or() -> None:
    assert holds("true or true and false") is True
    assert holds("not false and false") is False


def test_references_are_listed_once_each_in_order() -> None:
    expression = parse("params.a == 'x' or (steps.b.outputs.c in params.a and ${env.D == '1'})")
    assert expression.references() == [("params", "a"), ("steps", "b.outputs.c"), ("env", "D")]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("__import__('os').system('id')", "cannot read"),
        ("open('x')", "cannot read"),
        ("params.target = 'prod'", "cannot read \"= 'prod'\" at column 15"),
        ("params.replicas + 1 == 4", "cannot read '+ 1 == 4'"),
        ("params.a.b == 1", "cannot read"),
        ("prod == params.target", "cannot read"),  # a bare word is not a value
        ("(params.a == 'x'", "expected ')'"),
        ("params.a ==", "expected a value"),
        ("params.a == 'x' params.b", "unexpected 'params.b'"),
        ("['a' 'b']", "expected ','"),
        ("lambda: 1", "cannot read"),
        ("", "empty"),
    ],
)
def test_refusals(text: str, said: str) -> None:
    with pytest.raises(ExpressionError, match=None) as caught:
        parse(text)
    assert said in str(caught.value)


def _errors(data: dict) -> list[str]:
    _, problems = workstream_from_data(data, "w.json", env={})
    return [p.render() for p in problems if p.severity == "error"]


def test_validate_reads_every_condition() -> None:
    data = {
        "id": "w",
        "parameters": {"target": {"default": "staging"}},
        "steps": [
            {"id": "a", "tool": "shell", "tasks": ["true"]},
            {"id": "b", "tool": "shell", "depends_on": ["a"], "when": "steps.a.outputs.x == 'y'"},
            {"id": "c", "tool": "shell", "when": "params.taget == 'prod'"},
            {"id": "d", "tool": "shell", "when": "steps.a.outputs.x == 'y'"},
            {"id": "e", "tool": "shell", "when": "params.target = 'prod'"},
            {"id": "f", "tool": "shell", "when": "matrix.db == 'pg'"},
            {"id": "g", "tool": "shell", "on_skip": "never"},
        ],
    }
    said = {line.split("[step ")[1].split("]")[0]: line for line in _errors(data)}
    assert sorted(said) == ["c", "d", "e", "f", "g"]
    c, d, e, f, g = (said[k] for k in "cdefg")
    assert "steps[2].when" in c and "params.taget names no parameter" in c and "target" in c
    assert "steps[3].when" in d and "`d` does not depend on" in d
    assert "steps[4].when" in e and "cannot read the condition" in e
    assert "steps[5].when" in f and "matrix.db is not a key" in f
    assert "steps[6].on_skip" in g


def test_nesting_is_bounded_and_long_chains_are_not_deep() -> None:
    for deep in ("(" * 5000, "not " * 5000 + "true", "[" * 300):
        with pytest.raises(ExpressionError, match="more than 100 levels of nesting"):
            parse(deep)
    assert holds(" and ".join(["true"] * 20_000)) is True
    assert holds(" or ".join(["false"] * 20_000)) is False
