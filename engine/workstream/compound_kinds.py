"""The kinds built from other kinds: wrappers (Nullable, Interp), collections (ListOf, MapOf) and
objects with named fields (Field, Obj).

They live apart from spec.py, which holds the checking context, the `Kind` base and the kinds of
single values, because they do a different job: they recurse into an inner kind, and Obj carries
the rules of the format's objects (`_comment_*` keys, unknown, duplicate and required fields,
blocks switched off with `enabled: false`, annotations and notes for fields the engine does not
act on, the step id that problems inside a step name), and ScalarOr, a field written as a word or
as an object.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .interpolation import (
    STEP_REFERENCE,
    InterpolationError,
    UnknownParameter,
    UnsetVariable,
    has_placeholder,
    interpolate,
    refused_secret,
    secret_variables,
    unusable,
    variables,
)
from .problems import PathPart, did_you_mean, json_path
from .spec import COMMENT_PREFIX, INVALID, Context, Kind, Str, _show, without_comments

NOT_ACTED_ON = "read but not acted on"


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
    """The inner kind, or a string with `${env...}` placeholders that resolves to it.

    Problems name the placeholder, never the value it resolved to: the environment may hold secrets.
    Variables with secret-looking names are refused unless `secrets` (a step's env, which only the
    step's process receives resolved). Each template is kept in `ctx.templates` by JSON path.
    """

    inner: Kind
    secrets: bool = False
    # A step's field: `${steps.ID.outputs.NAME}` may stay in it, to be filled at dispatch.
    deferred: bool = False

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if not (isinstance(value, str) and has_placeholder(value)):
            return self.inner.check(value, path, ctx)
        secret = [] if self.secrets else secret_variables(value, ctx.env)
        if secret:
            return ctx.problem(path, *refused_secret(value, secret))
        try:
            resolved = interpolate(value, ctx.env, ctx.params)
        except UnknownParameter as error:
            if error.name in ctx.refused_params:  # its own problem was said at `parameters.NAME`
                return INVALID
            return ctx.problem(path, str(error), error.hint)
        except UnsetVariable as error:
            if not (self.secrets and ctx.env_on_workers):
                return ctx.problem(path, str(error), error.hint)
            return self._for_workers(value, path, ctx)
        except InterpolationError as error:
            return ctx.problem(path, str(error), error.hint)
        if isinstance(resolved, str) and STEP_REFERENCE.search(resolved):
            if not self.deferred:
                hint = "step outputs are read in a step's tasks, acceptance_tests, env, cwd and timeout"
                return ctx.problem(path, "${steps...} cannot be used here", hint)
            # Filled at dispatch; rules.py checks that the step depends on the step it reads.
            ctx.templates[json_path(path)] = value
            return resolved
        if isinstance(resolved, str) and not isinstance(self.inner, Str):
            try:
                resolved = self.inner.coerce(resolved)
            except ValueError:
                return ctx.problem(path, *unusable(value, self.inner.expected, ctx.env))
        # The inner kind's own problems would quote the resolved value: check it aside.
        aside = Context(env=ctx.env, file=ctx.file)
        checked = self.inner.check(resolved, path, aside)
        if checked is INVALID:
            return ctx.problem(path, *unusable(value, self.inner.expected, ctx.env))
        ctx.templates[json_path(path)] = value
        return checked

    def _for_workers(self, value: str, path: list[PathPart], ctx: Context) -> Any:
        """A step's env value reading a variable unset here, in a run on workers: checked as if every
        variable it reads were set, and kept as its template, which each worker resolves."""
        try:
            interpolate(value, {**ctx.env, **dict.fromkeys(variables(value), "")}, ctx.params)
        except InterpolationError as error:
            return ctx.problem(path, str(error), error.hint)
        ctx.templates[json_path(path)] = value
        return value

    def schema(self) -> dict[str, Any]:
        placeholder = {"type": "string", "pattern": r"\$\{\s*(env|params|steps)\."}
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
    """A named field of an object: its kind, what it means, and whether the engine acts on it.

    A field not `acted` on is checked, kept as an annotation and reported as a note (a problem in
    it is a warning: nothing depends on it), unless it is `kept` — an annotation by nature (doc_id,
    gate, ...), which no one expects to change what a run does. `instead` says what does the job.
    """

    kind: Kind
    doc: str = ""
    acted: bool = True
    required: bool = False
    kept: bool = False
    instead: str = ""


@dataclass(frozen=True)
class Obj(Kind):
    """An object with known fields; `_comment_*` keys are dropped anywhere, other unknown keys are
    warned about and ignored (errors when the context is strict)."""

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
                ctx.unknown_field(key_path, key, hint)
                continue
            if not spec.acted:
                self._not_acted_on(spec, item, key_path, ctx)
                continue
            kind = spec.kind
            if type(kind) is Str and type(item) is str and not kind.choices and (item or not kind.non_empty):
                checked = item  # fast path: most fields are plain strings
            else:
                checked = kind.check(item, key_path, ctx)
            if checked is not INVALID:
                out[key] = checked
        # A block that says `"enabled": false` is off: whatever else it lacks is not missing.
        if value.get("enabled") is not False or "enabled" not in self.fields:
            for name, spec in self.fields.items():
                if spec.required and name not in value:
                    ctx.problem([*path, name], f"required field `{name}` is missing")
        ctx.step_id = outer_step
        return out

    @staticmethod
    def _not_acted_on(spec: Field, item: Any, key_path: list[PathPart], ctx: Context) -> None:
        """Keep a field the engine does not act on; say so, and let nothing in it be fatal."""
        aside = Context(env=ctx.env, file=ctx.file, step_id=ctx.step_id, strict=ctx.strict)
        spec.kind.check(item, key_path, aside)
        for problem in aside.problems:
            unknown = problem.message.startswith("unknown field")
            if problem.severity == "error" and not (unknown and ctx.strict):
                problem = replace(problem, severity="warning", message=f"{problem.message} (not acted on)")
            ctx.problems.append(problem)
        ctx.annotations[json_path(key_path)] = without_comments(item)
        if not spec.kept:
            ctx.warn(key_path, NOT_ACTED_ON, spec.instead or spec.doc or None, note=True)

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


@dataclass(frozen=True)
class ScalarOr(Kind):
    """A field written either as one word (or number) or as an object of settings.

    The word is read as the object's `key` field (`"compensation": "rm x"` is `{"action": "rm x"}`);
    the object is checked as `obj`, so the settings it knows are read and the others are warned about.
    """

    obj: Obj
    key: str

    @property
    def expected(self) -> str:  # type: ignore[override]
        return f"{self.obj.fields[self.key].kind.expected} or an object"

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if isinstance(value, dict):
            return self.obj.check(value, path, ctx)
        if isinstance(value, list) or value is None:
            return self.wrong(value, path, ctx)
        return self.obj.check({self.key: value}, path, ctx)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.obj.fields[self.key].kind.schema(), self.obj.schema()]}
