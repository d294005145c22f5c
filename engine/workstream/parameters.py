"""Run parameters: the file's `parameters` block, the values a run is given, and checking them.

`stepledger run FILE --param name=value` (or `--params-file`) gives values; each is checked against
its declaration (type, choices) before the file's other fields, so `${params.NAME}` resolves to a
checked value wherever `${env.NAME}` may stand. A run records the values (`run.started`, in the
workstream and as `params`), and `resume` reuses them: they are never read from the command line again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import UserInputError
from .compound_kinds import Field, ListOf, MapOf, Obj
from .problems import WorkstreamInvalid, did_you_mean
from .reading import read_document
from .spec import AnyJson, Context, Str

TYPES = ("string", "integer", "number", "boolean")
_ARTICLE = {"string": "a", "integer": "an", "number": "a", "boolean": "a"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")

_SCALAR = AnyJson()
PARAMETER = Obj(
    {
        "type": Field(Str(choices=TYPES), "string (the default), integer, number or boolean"),
        "default": Field(
            _SCALAR, "the value when the run is given none; without it the parameter is required"
        ),
        "description": Field(Str(), "what the parameter means"),
        "choices": Field(ListOf(_SCALAR), "the only values allowed"),
    },
    doc="A run parameter: `stepledger run FILE --param NAME=VALUE`, read as ${params.NAME}.",
)
PARAMETERS = MapOf(PARAMETER)


def given_params(assignments: list[str], params_file: Path | None = None) -> dict[str, Any]:
    """The values of `--params-file` (a JSON or YAML object) with the `--param NAME=VALUE` items over them.

    UserInputError (one line) for an item without `=` or a file that is not an object of values.
    """
    values: dict[str, Any] = {}
    if params_file is not None:
        try:
            data = read_document(params_file)
        except WorkstreamInvalid as error:
            raise UserInputError(f"--params-file {params_file}: {error.problems[0].message}") from None
        if not isinstance(data, dict) or any(isinstance(v, dict | list) for v in data.values()):
            raise UserInputError(
                f"--params-file {params_file} must hold one object of NAME: value pairs (strings, "
                "numbers or booleans)"
            )
        values.update(data)
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UserInputError(f"--param {item!r} is not NAME=VALUE; write e.g. --param target=staging")
        values[name.strip()] = value
    return values


def coerce(kind: str, value: Any) -> Any:
    """`value` (text from the command line, or JSON from a params file) as a `kind`; ValueError if not one."""
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().casefold()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValueError
    if kind == "integer":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value) if isinstance(value, int | float) else int(str(value).strip())
    if kind == "number":
        if isinstance(value, bool):
            raise ValueError
        return value if isinstance(value, int | float) else float(str(value).strip())
    if isinstance(value, dict | list):
        raise ValueError
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def resolve(declared: Any, given: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """The run's parameter values: each given one checked, the others their defaults.

    Problems (an undeclared name, a missing required value, a wrong type, a value not among the
    choices) go to `ctx` with the path `parameters.NAME`; the block's own shape is checked with the
    rest of the file.
    """
    declared = (
        {k: v for k, v in declared.items() if isinstance(v, dict)} if isinstance(declared, dict) else {}
    )
    values: dict[str, Any] = {}
    for name in given:
        if name not in declared:
            hint = did_you_mean(name, declared) or (
                "declared: " + ", ".join(sorted(declared))
                if declared
                else "the file declares no `parameters`"
            )
            ctx.problem(["parameters"], f"parameter `{name}` is given but not declared", hint)
    ctx.refused_params = set(declared)  # until each one's value is accepted
    for name, spec in declared.items():
        kind = spec.get("type", "string")
        kind = kind if kind in TYPES else "string"
        if "default" in spec and _coerced_or_none(kind, spec["default"]) is None:
            message = f"the default of parameter `{name}` is not {_ARTICLE[kind]} {kind}: {spec['default']!r}"
            ctx.problem(
                ["parameters", name, "default"], message, f"write {_ARTICLE[kind]} {kind}, or change `type`"
            )
            continue
        if name in given:
            raw, source = given[name], "given"
        elif "default" in spec:
            raw, source = spec["default"], "default"
        else:
            hint = f"run with --param {name}=VALUE" + (
                f" ({spec['description']})" if spec.get("description") else ""
            )
            ctx.problem(["parameters", name], f"parameter `{name}` is required: it has no default", hint)
            continue
        try:
            value = coerce(kind, raw)
        except (ValueError, OverflowError):
            ctx.problem(
                ["parameters", name],
                f"parameter `{name}` must be {_ARTICLE[kind]} {kind}, got {raw!r} ({source})",
            )
            continue
        choices = spec.get("choices")
        if isinstance(choices, list) and choices:
            allowed = [_coerced_or_none(kind, c) for c in choices]
            if value not in allowed:
                shown = ", ".join(repr(c) for c in choices)
                ctx.problem(["parameters", name], f"parameter `{name}` is {raw!r}, not one of {shown}")
                continue
        values[name] = value
        ctx.refused_params.discard(name)
    return values


def _coerced_or_none(kind: str, value: Any) -> Any:
    try:
        return coerce(kind, value)
    except (ValueError, OverflowError):
        return None
