"""The resolved model as a JSON-able dict and back, exactly (it is stored in the `run.started` event).

Driven by the dataclasses' type hints, so a field added to the model round-trips without changes
here; a dict missing a newer field gets that field's default, which is how old runs still resume.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from stepledger.engine import model
from stepledger.engine.model import Workstream

FORMAT_VERSION = 1


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(model))


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _dump(v) for k, v in value.items()}
    return value


def _load(hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = _hints(hint)
        known = {f.name for f in dataclasses.fields(hint)}
        return hint(**{k: _load(hints[k], v) for k, v in value.items() if k in known})
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        for arg in args:
            if arg is not type(None):
                return _load(arg, value)
    if origin is tuple:
        return tuple(_load(args[0], v) for v in value)
    if origin is dict:
        return {k: _load(args[1], v) for k, v in value.items()}
    # Any, Literal, str, int, bool: JSON already has the right type; copy lists so nothing is shared.
    return _copy(value)


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
