"""The resolved model as a JSON-able dict and back, exactly (it is stored in the `run.started` event).

Driven by the dataclasses' type hints, so a field added to the model round-trips without changes
here; a dict missing a newer field gets that field's default, which is how old runs still resume.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from stepledger.engine.workstream.model import Workstream

FORMAT_VERSION = 1


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(sys.modules[Workstream.__module__]))


_SCALARS = frozenset({str, int, float, bool, type(None)})


@functools.cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    """The fields of a dataclass type, None for any other type (asked once per type)."""
    return tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None


def _dump(value: Any) -> Any:
    # Dispatch on the exact type first: run.started carries the whole workstream, and asking
    # dataclasses about every value made dumping a big workstream slow.
    kind: Any = type(value)
    if kind in _SCALARS:
        return value
    if kind is tuple or kind is list:
        return [_dump(v) for v in value]
    if kind is dict:
        return {str(k): _dump(v) for k, v in value.items()}
    names = _field_names(kind)
    if names is not None:
        return {name: _dump(getattr(value, name)) for name in names}
    if isinstance(value, tuple | list):  # subclasses (a NamedTuple, say) dump as lists too
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _dump(v) for k, v in value.items()}
    return value


@functools.cache
def _loader(hint: Any) -> Callable[[Any], Any]:
    """A function turning JSON data into a value of type `hint`, built once per type.

    Resume rebuilds the whole workstream from the run.started event; deciding per value what its
    type hint means (origin, args, is it a dataclass) cost more than the building itself.
    """
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        cls = hint
        fields = {name: _loader(field_hint) for name, field_hint in _hints(cls).items()}
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {name: load for name, load in fields.items() if name in known}
        return lambda value: cls(**{k: fields[k](v) for k, v in value.items() if k in fields})
    if origin in (typing.Union, types.UnionType):
        inner = next((_loader(arg) for arg in args if arg is not type(None)), _copy)
        return lambda value: None if value is None else inner(value)
    if origin is tuple:
        item = _loader(args[0])
        return lambda value: tuple(item(v) for v in value)
    if origin is dict:
        item = _loader(args[1])
        return lambda value: {k: item(v) for k, v in value.items()}
    # Any, Literal, str, int, bool: JSON already has the right type; copy lists so nothing is shared.
    return _copy


def _load(hint: Any, value: Any) -> Any:
    return _loader(hint)(value)


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value


def workstream_to_dict(ws: Workstream) -> dict[str, Any]:
    """The resolved workstream as plain JSON data (tuples become lists)."""
    return {"format_version": FORMAT_VERSION, **_dump(ws)}


def workstream_from_dict(data: dict[str, Any]) -> Workstream:
    """Rebuild the workstream `workstream_to_dict` produced."""
    body = {k: v for k, v in data.items() if k != "format_version"}
    result: Workstream = _load(Workstream, body)
    return result
