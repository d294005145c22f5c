"""Reading a workstream file (JSON or YAML) into plain data, with line and column on syntax errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .problems import Problem, WorkstreamInvalid

YAML_SUFFIXES = (".yaml", ".yml")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeys(dict):
    """A mapping whose source repeated some keys (the last value won); the checker reports them."""

    duplicate_keys: tuple[str, ...] = ()


def _object(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    # json keeps the last of repeated keys silently; keep that, but remember the names.
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    marked = DuplicateKeys(out)
    marked.duplicate_keys = _repeated([str(k) for k, _ in pairs])
    return marked


def _repeated(keys: list[str]) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return tuple(k for k, n in counts.items() if n > 1)


class _PlainYamlLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver, so dates stay strings and the data stays JSON."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, remembering repeated keys (keys merged in with `<<` may be overridden)."""
        own = [k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode) and k.tag != _MERGE_TAG]
        self.flatten_mapping(node)
        pairs = [
            (self.construct_object(k, deep=deep), self.construct_object(v, deep=deep)) for k, v in node.value
        ]
        try:
            out = dict(pairs)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", node.start_mark
            ) from None
        if len(set(own)) == len(own):
            return out
        marked = DuplicateKeys(out)
        marked.duplicate_keys = _repeated(own)
        return marked


def _construct_map(loader: _PlainYamlLoader, node: yaml.MappingNode) -> Any:
    # PyYAML yields the mapping before filling it (for anchors); fill it and carry the marker over.
    data = DuplicateKeys()
    yield data
    value = loader.construct_mapping(node)
    data.update(value)
    data.duplicate_keys = getattr(value, "duplicate_keys", ())


_PlainYamlLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


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
