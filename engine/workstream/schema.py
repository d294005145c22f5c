"""The JSON Schema of the format: generated from format_spec.py, shipped as schema.json.

Regenerate after changing the format: `python -m stepledger.engine.workstream > engine/workstream/schema.json`
(a test fails when the shipped file and the format disagree).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from .format_spec import WORKSTREAM

SCHEMA_ID = "https://stepledger.dev/schemas/workstream.schema.json"


def generate_schema() -> dict[str, Any]:
    """Build the JSON Schema from the format description."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "stepledger workstream",
        **WORKSTREAM.schema(),
    }


def schema_text() -> str:
    """The schema as the text stored in schema.json."""
    return json.dumps(generate_schema(), indent=2, ensure_ascii=False) + "\n"


def json_schema() -> dict[str, Any]:
    """The shipped JSON Schema (package data `schema.json`)."""
    text = resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")
    result: dict[str, Any] = json.loads(text)
    return result
