"""Reading a workstream file (JSON or YAML) into plain data, with line and column on syntax errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .problems import Problem, WorkstreamInvalid

YAML_SUFFIXES = (".yaml", ".yml")


class DuplicateKeys(dict):
    """A mapping whose source repeated some keys (the last value won); the checker reports them."""

    duplicate_keys: tuple[str, ...] = ()


def _object(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # json keeps the last of repeated keys silently; keep that, but remember the names.
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    marked = DuplicateKeys(out)
    marked.duplicate_keys = repeated([str(k) for k, _ in pairs])
    return marked


def repeated(keys: list[str]) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return tuple(k for k, n in counts.items() if n > 1)


def parse_text(text: str, file: str, yaml_format: bool) -> Any:
    """Parse `text` as YAML or JSON; a syntax error becomes a WorkstreamInvalid naming line and column."""
    if yaml_format:
        import yaml  # only for YAML files: the import costs more than reading a JSON workstream

        from .yaml_loader import PlainYamlLoader

        try:
            return yaml.load(text, Loader=PlainYamlLoader)
        except yaml.MarkedYAMLError as error:
            mark = error.problem_mark or error.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
            message = f"invalid YAML: {error.problem or error.context}"
            raise WorkstreamInvalid([Problem(message, file=file, line=line, column=column)], file) from None
        except yaml.YAMLError as error:
            raise WorkstreamInvalid([Problem(f"invalid YAML: {error}", file=file)], file) from None
    try:
        return json.loads(text, object_pairs_hook=_object)
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
