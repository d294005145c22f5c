"""The shipped JSON Schema matches the format description, and agrees with the validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from stepledger.engine.workstream import generate_schema, json_schema, workstream_from_data
from stepledger.engine.workstream.reading import read_document

ROOT = Path(__file__).resolve().parents[2]
FILES = [p for p in sorted((ROOT / "tests/workstreams").iterdir()) if p.is_file()]
FILES.append(ROOT / "examples/parallel-utilities.json")


def test_shipped_schema_is_the_generated_one() -> None:
    # If this fails: python -m stepledger.engine.workstream > engine/workstream/schema.json
    assert json_schema() == generate_schema()


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_example_validates_against_the_schema(path: Path) -> None:
    jsonschema.validate(read_document(path), json_schema())


@pytest.mark.parametrize(
    "data",
    [
        {"id": "w"},
        {"id": "w", "tool": "shell", "tols": 1},
        {"id": "w", "steps": [{"id": "a", "tool": "shell", "timeout": 0}]},
        {"id": "w", "steps": [{"id": "a", "tool": "shell", "retry": {"strategy": "sometimes"}}]},
        {"id": "w", "tool": "shell", "execution": {"max_workers": 0}},
        {"id": "w", "tool": "shell", "execution": {"max_workers": "many"}},
        {"id": "w", "steps": [{"tool": "shell"}]},
        {"id": "", "tool": "shell"},
    ],
)
def test_schema_and_validator_both_reject(data: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema())
    _, problems = workstream_from_data(data, "t.json", {})
    assert problems


@pytest.mark.parametrize(
    "data",
    [
        {
            "id": "w",
            "tool": "shell",
            "_comment_x": 1,
            "execution": {"max_workers": "${env.N:-2}", "_comment": 2},
        },
        {"id": "w", "tool": "shell", "execution": {"max_workers": "auto", "parallel": "${env.CI == 'true'}"}},
        {"$schema": "x", "id": "w", "phases": [{"id": "p", "steps": [{"id": "a", "tool": "shell"}]}]},
    ],
)
def test_schema_and_validator_both_accept(data: dict[str, Any]) -> None:
    jsonschema.validate(data, json_schema())
    _, problems = workstream_from_data(data, "t.json", {})
    assert problems == []


def test_schema_text_is_stable_json() -> None:
    from stepledger.engine.workstream.schema import schema_text

    assert json.loads(schema_text()) == generate_schema()


def test_docs_mention_every_field() -> None:
    from stepledger.engine.workstream import format_spec

    doc = (ROOT / "docs/workstreams.md").read_text()
    for obj in (format_spec.WORKSTREAM, format_spec.STEP, format_spec.PHASE, format_spec.EXECUTION):
        for name in obj.fields:
            assert f"`{name}`" in doc, name
