"""A small declarative description of the file format, used both to check files and to emit the JSON Schema.

Each kind checks one value and returns its cleaned form (interpolated, coerced, annotations and
`_comment_*` keys removed) or `INVALID` after recording a problem; checking never stops at the
first problem. `schema()` gives the JSON Schema of the same kind, so the two cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .durations import parse_duration
from .interpolation import InterpolationError, has_placeholder, interpolate
from .problems import PathPart, Problem, did_you_mean, json_path

COMMENT_PREFIX = "_comment"
INVALID: Any = object()  # a value that failed its check; the builder falls back to the default


@dataclass
class Context:
    """What a check needs besides the value: the environment, and where problems and annotations go."""

    env: Mapping[str, str]
    file: str = ""
    problems: list[Problem] = field(default_factory=list)
    annotations: dict[str, Any] = field(default_factory=dict)  # not-acted-on fields, by JSON path
    step_id: str | None = None

    def problem(self, path: list[PathPart], message: str, hint: str | None = None) -> Any:
        """Record an error at `path` and return INVALID, so checks can `return ctx.problem(...)`."""
        self.problems.append(Problem(message, json_path(path), self.file, self.step_id, hint))
        return INVALID


def _show(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list", dict: "object"}
    name = "null" if value is None else kind.get(type(value), type(value).__name__)
    if isinstance(value, list | dict):
        return f"a {name}"
    return f"{name} {value!r}" if value is not None else "null"


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
    """A string that compiles as a Python regular expression."""

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        value = super().check(value, path, ctx)
        if value is INVALID:
            return value
        try:
            re.compile(value)
        except re.error as error:
            return ctx.problem(path, f"is not a valid regular expression: {error}")
        return value


@dataclass(frozen=True)
class Num(Kind):
    """A number (int or float, never a boolean) with a lower bound."""

    minimum: float = 0
    exclusive: bool = False
    integer: bool = False
    words: tuple[str, ...] = ()  # literal strings also accepted, e.g. "auto"

    @property
    def expected(self) -> str:  # type: ignore[override]
        what = "an integer" if self.integer else "a number"
        bound = f"{'>' if self.exclusive else '≥'} {self.minimum:g}"
        words = "".join(f" or `{w}`" for w in self.words)
        return f"{what} {bound}{words}"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if isinstance(value, str) and value in self.words:
            return value
        ok_type = int if self.integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, ok_type):
            if self.integer and isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                return self.wrong(value, path, ctx)
        too_small = value <= self.minimum if self.exclusive else value < self.minimum
        if too_small:
            return self.wrong(value, path, ctx)
        return value

    def coerce(self, text: str) -> Any:
        text = text.strip()
        if text in self.words:
            return text
        return int(text) if self.integer else float(text)

    def schema(self) -> dict[str, Any]:
        bound = "exclusiveMinimum" if self.exclusive else "minimum"
        out: dict[str, Any] = {"type": "integer" if self.integer else "number", bound: self.minimum}
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
        except ValueError:
            return self.wrong(value, path, ctx)
        return seconds if seconds >= 0 else self.wrong(value, path, ctx)

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
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "object"} if self.object_only else {}


@dataclass(frozen=True)
class Nullable(Kind):
    """`null` or the inner kind."""

    inner: Kind

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        return None if value is None else self.inner.check(value, path, ctx)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.inner.schema(), {"type": "null"}]}


@dataclass(frozen=True)
class Interp(Kind):
    """The inner kind, or a string with `${env...}` placeholders that resolves to it."""

    inner: Kind

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if not (isinstance(value, str) and has_placeholder(value)):
            return self.inner.check(value, path, ctx)
        try:
            resolved = interpolate(value, ctx.env)
        except InterpolationError as error:
            return ctx.problem(path, str(error), error.hint)
        if isinstance(resolved, str) and not isinstance(self.inner, Str):
            try:
                resolved = self.inner.coerce(resolved)
            except ValueError:
                message = f"{value!r} resolves to {resolved!r}, which is not {self.inner.expected}"
                return ctx.problem(path, message)
        return self.inner.check(resolved, path, ctx)

    def schema(self) -> dict[str, Any]:
        placeholder = {"type": "string", "pattern": r"\$\{\s*env\."}
        inner = self.inner.schema()
        return inner if isinstance(self.inner, Str) else {"anyOf": [inner, placeholder]}


@dataclass(frozen=True)
class ListOf(Kind):
    """A list whose every item is `item`."""

    item: Kind
    positions: bool = False  # keep failed items as None so later problems can name the right index

    @property
    def expected(self) -> str:  # type: ignore[override]
        return "a list"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if not isinstance(value, list):
            return self.wrong(value, path, ctx)
        item = self.item
        # Fast path for the common lists of plain strings (tasks, depends_on...): one pass, no calls.
        if isinstance(item, Str) and type(item) is Str and not item.choices and not item.scalars:
            non_empty = item.non_empty
            if all(type(v) is str and (not non_empty or v.strip()) for v in value):
                return list(value)
        out = [item.check(v, [*path, i], ctx) for i, v in enumerate(value)]
        if self.positions:
            return [None if v is INVALID else v for v in out]
        return [v for v in out if v is not INVALID]

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema()}


@dataclass(frozen=True)
class MapOf(Kind):
    """An object with free keys whose values are all `value`."""

    value: Kind
    expected = "an object"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if not isinstance(value, dict):
            return self.wrong(value, path, ctx)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                ctx.problem([*path, str(key)], f"names must be strings, got {_show(key)}")
                continue
            checked = self.value.check(item, [*path, key], ctx)
            if checked is not INVALID:
                out[key] = checked
        return out

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": self.value.schema()}


@dataclass(frozen=True)
class Field:
    """A named field of an object: its kind, what it means, and whether the engine acts on it."""

    kind: Kind
    doc: str = ""
    acted: bool = True
    required: bool = False


@dataclass(frozen=True)
class Obj(Kind):
    """An object with known fields; `_comment_*` keys are allowed anywhere, other unknown keys are errors."""

    fields: dict[str, Field]
    doc: str = ""
    extra_schema: dict[str, Any] = field(default_factory=dict)
    is_step: bool = False  # problems inside carry this object's `id` as the step id
    expected = "an object"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if not isinstance(value, dict):
            return self.wrong(value, path, ctx)
        outer_step = ctx.step_id
        if self.is_step and isinstance(value.get("id"), str):
            ctx.step_id = value["id"]
        for key in getattr(value, "duplicate_keys", ()):  # marked by reading.py
            if not key.startswith(COMMENT_PREFIX):
                ctx.problem(
                    [*path, key], f"`{key}` is given more than once", "keep one: only the last counts"
                )
        out: dict[str, Any] = {}
        for key, item in value.items():
            key_path = [*path, key]
            if not isinstance(key, str):
                ctx.problem(key_path, f"field names must be strings, got {_show(key)}")
                continue
            if key.startswith(COMMENT_PREFIX):
                continue
            spec = self.fields.get(key)
            if spec is None:
                hint = did_you_mean(key, self.fields) or "see `stepledger schema` for the fields allowed here"
                ctx.problem(key_path, f"unknown field `{key}`", hint)
                continue
            kind = spec.kind
            if type(kind) is Str and type(item) is str and not kind.choices and (item or not kind.non_empty):
                checked = item  # fast path: most fields are plain strings
            else:
                checked = kind.check(item, key_path, ctx)
            if checked is INVALID:
                continue
            if spec.acted:
                out[key] = checked
            else:
                ctx.annotations[json_path(key_path)] = item
        for name, spec in self.fields.items():
            if spec.required and name not in value:
                ctx.problem([*path, name], f"required field `{name}` is missing")
        ctx.step_id = outer_step
        return out

    def schema(self) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for name, spec in self.fields.items():
            sub = dict(spec.kind.schema())
            doc = spec.doc + ("" if spec.acted else " (accepted and kept; the engine does not act on it)")
            if doc.strip():
                sub["description"] = doc.strip()
            props[name] = sub
        out: dict[str, Any] = {"type": "object"}
        if self.doc:
            out["description"] = self.doc
        out["properties"] = props
        required = [name for name, spec in self.fields.items() if spec.required]
        if required:
            out["required"] = required
        out["patternProperties"] = {f"^{COMMENT_PREFIX}": {}}
        out["additionalProperties"] = False
        out.update(self.extra_schema)
        return out
