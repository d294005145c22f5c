"""Reading a workstream file (JSON or YAML) into plain data, with line and column on syntax errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .problems import Problem, WorkstreamInvalid

YAML_SUFFIXES = (".yaml", ".yml")


class _PlainYamlLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver, so dates stay strings and the data stays JSON."""


_PlainYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_text(text: str, file: str, yaml_format: bool) -> Any:
    """Parse `text` as YAML or JSON; a syntax error becomes a WorkstreamInvalid naming line and column."""
    if yaml_format:
        try:
            return yaml.load(text, Loader=_PlainYamlLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
            message = f"invalid YAML: {error.problem or error.context}"
            raise WorkstreamInvalid([Problem(message, file=file, line=line, column=column)], file) from None
        except yaml.YAMLError as error:
            raise WorkstreamInvalid([Problem(f"invalid YAML: {error}", file=file)], file) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        problem = Problem(f"invalid JSON: {error.msg}", file=file, line=error.lineno, column=error.colno)
        raise WorkstreamInvalid([problem], file) from None


def read_document(path: str | Path) -> Any:
    """Load the file at `path` (YAML for .yaml/.yml, else JSON) as plain data."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WorkstreamInvalid([Problem("no such file", file=str(path))], str(path)) from None
    except (OSError, UnicodeDecodeError) as error:
        raise WorkstreamInvalid([Problem(f"cannot read: {error}", file=str(path))], str(path)) from None
    return parse_text(text, str(path), p.suffix.lower() in YAML_SUFFIXES)
