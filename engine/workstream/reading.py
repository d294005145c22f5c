"""Reading a workstream file (JSON or YAML) into plain data, with line and column on syntax errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from stepledger.engine.workstream.limits import MAX_FILE_BYTES, MAX_NESTING

from .duplicate_keys import json_object
from .problems import PathPart, Problem, WorkstreamInvalid, json_path

YAML_SUFFIXES = (".yaml", ".yml")


def parse_text(text: str, file: str, yaml_format: bool) -> Any:
    """Parse `text` as YAML or JSON; a syntax error becomes a WorkstreamInvalid naming line and column.

    Values JSON cannot hold (NaN, Infinity, lone surrogates, NUL characters) and nesting deeper than
    MAX_NESTING are refused here too, each as one problem with its JSON path.
    """
    data = _parse_yaml(text, file) if yaml_format else _parse_json(text, file)
    problem = hostile_value(data)
    if problem is not None:
        path, message, hint = problem
        raise WorkstreamInvalid([Problem(message, json_path(path), file, None, hint)], file)
    return data


def _invalid(file: str, message: str, hint: str | None = None, line: int | None = None,
             column: int | None = None) -> WorkstreamInvalid:  # fmt: skip
    return WorkstreamInvalid([Problem(message, file=file, hint=hint, line=line, column=column)], file)


_TOO_DEEP = f"nested deeper than {MAX_NESTING} lists and objects"
_FLATTEN = "flatten the data: workstreams nest a few levels deep"


def _parse_json(text: str, file: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=json_object)
    except json.JSONDecodeError as error:
        raise _invalid(file, f"invalid JSON: {error.msg}", line=error.lineno, column=error.colno) from None
    except RecursionError:
        raise _invalid(file, f"invalid JSON: {_TOO_DEEP}", _FLATTEN) from None
    except ValueError as error:  # an integer over sys.get_int_max_str_digits() digits
        raise _invalid(file, f"invalid JSON: {_first_line(error)}", _BIG_INT) from None


_BIG_INT = "write a shorter number, or a string if it is an identifier"


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0].split("; use sys.set_int_max_str_digits")[0] if str(error) else ""


def _parse_yaml(text: str, file: str) -> Any:
    import yaml  # only for YAML files: the import costs more than reading a JSON workstream

    from .yaml_loader import PlainYamlLoader

    try:
        return yaml.load(text, Loader=PlainYamlLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        message = f"invalid YAML: {error.problem or error.context}"
        raise _invalid(file, message, getattr(error, "hint", None), line, column) from None
    except yaml.YAMLError as error:  # e.g. a control character the reader refuses; its text has two lines
        raise _invalid(file, "invalid YAML: " + " ".join(str(error).split())) from None
    except RecursionError:
        raise _invalid(file, f"invalid YAML: {_TOO_DEEP}", _FLATTEN) from None
    except ValueError as error:  # an integer over sys.get_int_max_str_digits() digits
        raise _invalid(file, f"invalid YAML: {_first_line(error)}", _BIG_INT) from None


Found = tuple[list[PathPart], str, str]


def _bad_scalar(value: Any) -> tuple[str, str] | None:
    """What is wrong with a scalar JSON and the event log cannot hold, or None."""
    if type(value) is str:
        if value.isascii():
            if "\x00" in value:
                return "contains a NUL character (\\u0000)", "remove it: no field can hold one"
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (half of a UTF-16 pair)", "write the whole character"
        if "\x00" in value:
            return "contains a NUL character (\\u0000)", "remove it: no field can hold one"
    elif type(value) is float and not math.isfinite(value):
        return f"{value} is not a number JSON can hold", "write a finite number"
    return None


def hostile_value(data: Any) -> Found | None:
    """The first value or key the event log cannot store, or nesting past MAX_NESTING; None if none.

    Iterative, so it cannot itself run out of stack; a path is built only for what it reports.
    """
    if not isinstance(data, dict | list):
        top = _bad_scalar(data)
        return None if top is None else ([], *top)
    stack: list[tuple[Any, list[PathPart]]] = [(data, [])]
    while stack:
        container, path = stack.pop()
        if len(path) >= MAX_NESTING:
            return path[:4], f"{_TOO_DEEP} below here", _FLATTEN
        items = container.items() if isinstance(container, dict) else None
        pairs = items if items is not None else enumerate(container)
        for key, value in pairs:
            if items is not None:
                bad = _bad_scalar(key)
                if bad is not None:
                    return [*path, _printable(key)], f"field name {bad[0]}", bad[1]
            if isinstance(value, dict | list):
                if value:
                    stack.append((value, [*path, key if type(key) is str or type(key) is int else str(key)]))
                continue
            bad = _bad_scalar(value)
            if bad is not None:
                return [*path, _printable(key) if isinstance(key, str) else key], *bad
    return None


def _printable(key: Any) -> Any:
    # A path is printed and written to JSON: a key that is itself the problem is shown escaped.
    if isinstance(key, str):
        return key.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    return str(key)


def read_document(path: str | Path) -> Any:
    """Load the file at `path` (YAML for .yaml/.yml, else JSON) as plain data."""
    p = Path(path)
    name = str(path)
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise _invalid(name, "no such file") from None
    except OSError as error:
        raise _invalid(name, f"cannot read: {error.strerror or error}") from None
    if len(raw) > MAX_FILE_BYTES:
        hint = "split it into several workstreams, or move bulky data out of it"
        raise _invalid(name, f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB", hint)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        hint = "save the file as UTF-8"
        raise _invalid(
            name, f"cannot read: not UTF-8 (byte {error.start} is {raw[error.start]:#04x})", hint
        ) from None
    return parse_text(text, name, p.suffix.lower() in YAML_SUFFIXES)
