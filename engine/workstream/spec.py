"""A small declarative description of the file format, used both to check files and to emit the JSON Schema.

Each kind checks one value and returns its cleaned form (interpolated, coerced, annotations and
`_comment_*` keys removed) or `INVALID` after recording a problem; checking never stops at the
first problem. `schema()` gives the JSON Schema of the same kind, so the two cannot drift apart.
This module holds the checking context, the `Kind` base and the kinds of single values; the kinds
built from other kinds (lists, maps, wrappers, objects) are in compound_kinds.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stepledger.engine.workstream.limits import MAX_SECONDS

from .durations import parse_duration
from .problems import PathPart, Problem, Severity, did_you_mean, json_path

COMMENT_PREFIX = "_comment"
INVALID: Any = object()  # a value that failed its check; the builder falls back to the default


@dataclass
class Context:
    """What a check needs besides the value: the environment, and where problems and annotations go."""

    env: Mapping[str, str]
    file: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)  # the run's parameters, checked
    refused_params: set[str] = field(default_factory=set)  # declared, but their value was refused
    matrix_values: dict[str, dict[str, str]] = field(default_factory=dict)  # a matrix expansion's, by id
    problems: list[Problem] = field(default_factory=list)
    annotations: dict[str, Any] = field(default_factory=dict)  # not-acted-on fields, by JSON path
    templates: dict[str, str] = field(default_factory=dict)  # `${env...}` values as written, by JSON path
    step_id: str | None = None
    strict: bool = False  # unknown fields are errors (`validate --strict`, `"unknown_fields": "error"`)
    # A run on workers: a step's env values are resolved by the worker that runs each attempt
    # (docs/workers.md), so a variable they read may be unset here.
    env_on_workers: bool = False

    def problem(self, path: list[PathPart], message: str, hint: str | None = None) -> Any:
        """Record an error at `path` and return INVALID, so checks can `return ctx.problem(...)`."""
        self.problems.append(Problem(message, json_path(path), self.file, self.step_id, hint))
        return INVALID

    def warn(self, path: list[PathPart], message: str, hint: str | None = None, note: bool = False) -> None:
        """Record a warning (or, with `note`, a note) at `path`: said, not fatal."""
        severity: Severity = "note" if note else "warning"
        self.problems.append(Problem(message, json_path(path), self.file, self.step_id, hint, severity))

    def unknown_field(self, path: list[PathPart], name: str, hint: str) -> None:
        """A field the format does not know: a warning (it is ignored), an error when strict."""
        if self.strict:
            self.problem(path, f"unknown field `{name}`", hint)
        else:
            self.warn(path, f"unknown field `{name}` is ignored", hint)


def _show(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object"}
    name = "null" if value is None else kind.get(type(value), type(value).__name__)
    if isinstance(value, list | dict):
        return f"a {name}"
    if value is None:
        return "null"
    shown = repr(value) if not isinstance(value, int) or abs(value) < 10**60 else f"{str(value)[:20]}…"
    # A problem is one line: a long value (a pasted log, a 4,000-digit number) is cut short.
    return f"{name} {shown[:80] + '…' if len(shown) > 80 else shown}"


def _non_string_key(value: Any, path: list[PathPart]) -> tuple[list[PathPart], Any] | None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return [*path, str(key)], key
            found = _non_string_key(item, [*path, key])
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _non_string_key(item, [*path, i])
            if found:
                return found
    return None


def without_comments(value: Any) -> Any:
    """`value` with every `_comment*` key dropped at any depth: a comment is never data for a step."""
    # Iterative over containers, so free data nested as deep as reading.py allows costs no stack.
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any]] = [(value, root, 0)]
    while stack:
        source, parent, key = stack.pop()
        if isinstance(source, dict):
            copy: Any = {}
            for name, item in source.items():
                if not (isinstance(name, str) and name.startswith(COMMENT_PREFIX)):
                    copy[name] = item
                    if isinstance(item, dict | list):
                        stack.append((item, copy, name))
        else:
            copy = list(source)
            for i, item in enumerate(source):
                if isinstance(item, dict | list):
                    stack.append((item, copy, i))
        parent[key] = copy
    return root[0]


class Kind:
    """One type of value in the format."""

    expected = "a value"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        """Return the cleaned value, or INVALID after recording a problem."""
        raise NotImplementedError

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of this kind."""
        raise NotImplementedError

    def wrong(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        """Record a type error."""
        return ctx.problem(path, f"must be {self.expected}, got {_show(value)}")

    def coerce(self, text: str) -> Any:
        """Turn the text an interpolation produced into this kind's value (ValueError if it cannot)."""
        return text


@dataclass(frozen=True)
class Str(Kind):
    """A string, optionally non-empty or one of `choices`."""

    non_empty: bool = False
    choices: tuple[str, ...] = ()
    scalars: bool = False  # accept numbers and booleans and turn them into strings (env values)

    @property
    def expected(self) -> str:  # type: ignore[override]
        if self.choices:
            return "one of " + ", ".join(f"`{c}`" for c in self.choices)
        return "a non-empty string" if self.non_empty else "a string"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if self.scalars and isinstance(value, bool):
            value = "true" if value else "false"
        elif self.scalars and isinstance(value, int | float):
            value = str(value)
        if not isinstance(value, str) or (self.non_empty and not value.strip()):
            return self.wrong(value, path, ctx)
        if self.choices and value not in self.choices:
            # Words are matched whatever their case (`"ERROR"` is `error`) and kept in the format's own.
            same = [c for c in self.choices if c.casefold() == value.casefold()]
            if same:
                return same[0]
            hint = did_you_mean(value, self.choices)
            return ctx.problem(path, f"must be {self.expected}, got {value!r}", hint)
        return value

    def schema(self) -> dict[str, Any]:
        if self.choices:
            return {"enum": list(self.choices)}
        if self.scalars:
            return {"type": ["string", "number", "boolean"]}
        return {"type": "string", "minLength": 1} if self.non_empty else {"type": "string"}


@dataclass(frozen=True)
class Regex(Str):
    """A string that compiles as a regular expression of the `regex` package (which matches them)."""

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        value = super().check(value, path, ctx)
        if value is INVALID:
            return value
        import regex  # only files with error_patterns pay for the import

        try:
            regex.compile(value)
        except (regex.error, ValueError, OverflowError, RecursionError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            return ctx.problem(path, f"is not a valid regular expression: {message}")
        return value


@dataclass(frozen=True)
class Num(Kind):
    """A number (int or float, never a boolean) with a lower bound."""

    minimum: float = 0
    exclusive: bool = False
    integer: bool = False
    words: tuple[str, ...] = ()  # literal strings also accepted, e.g. "auto"
    maximum: float | None = None  # inclusive; engine/workstream/limits.py says why each bound is there

    @property
    def expected(self) -> str:  # type: ignore[override]
        what = "an integer" if self.integer else "a number"
        bound = f"{'>' if self.exclusive else '≥'} {self.minimum:g}"
        if self.maximum is not None:
            bound += f" and ≤ {self.maximum:,g}" if self.maximum < 1e6 else f" and ≤ {self.maximum:.0f}"
        words = "".join(f" or `{w}`" for w in self.words)
        return f"{what} {bound}{words}"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if isinstance(value, str) and value.casefold() in self.words:  # `"AUTO"` is `auto`
            return value.casefold()
        ok_type = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type):
            if self.integer and isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return self.wrong(value, path, ctx)
        too_small = value <= self.minimum if self.exclusive else value < self.minimum
        if too_small or (self.maximum is not None and value > self.maximum):
            return self.wrong(value, path, ctx)
        return value

    def coerce(self, text: str) -> Any:
        text = text.strip()
        if text.casefold() in self.words:
            return text.casefold()
        return int(text) if self.integer else float(text)

    def schema(self) -> dict[str, Any]:
        bound = "exclusiveMinimum" if self.exclusive else "minimum"
        out: dict[str, Any] = {"type": "integer" if self.integer else "number", bound: self.minimum}
        if self.maximum is not None:
            out["maximum"] = int(self.maximum) if self.integer else self.maximum
        return {"anyOf": [out, {"enum": list(self.words)}]} if self.words else out


@dataclass(frozen=True)
class Bool(Kind):
    """A boolean."""

    expected = "true or false"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        return value if isinstance(value, bool) else self.wrong(value, path, ctx)

    def coerce(self, text: str) -> Any:
        words = {"true": True, "1": True, "yes": True, "on": True}
        words |= {"false": False, "0": False, "no": False, "off": False, "": False}
        try:
            return words[text.strip().lower()]
        except KeyError:
            raise ValueError(text) from None

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Duration(Kind):
    """Seconds as a number, or a text like "90s", "3m", "3-6 minutes"."""

    expected = 'seconds (a number ≥ 0) or a text such as "90s", "3m" or "3-6 minutes"'

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return self.wrong(value, path, ctx)
        try:
            seconds = parse_duration(value)
        except (ValueError, OverflowError):
            return self.wrong(value, path, ctx)
        return seconds if 0 <= seconds <= MAX_SECONDS else self.wrong(value, path, ctx)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}


@dataclass(frozen=True)
class AnyJson(Kind):
    """Anything (free-form data kept as written); `object_only` requires a mapping."""

    object_only: bool = False
    expected = "an object"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if self.object_only and not isinstance(value, dict):
            return self.wrong(value, path, ctx)
        bad = _non_string_key(value, path)
        if bad is not None:  # YAML allows `1: x`; JSON (and the run.started event) does not
            return ctx.problem(bad[0], f"field names must be strings, got {_show(bad[1])}")
        return without_comments(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "object"} if self.object_only else {}
