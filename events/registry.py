"""The registry from stable event type names to event classes, and the upcasters of old versions.

Stored events carry a stable name such as ``step.started`` — never a Python import path — so
that renaming or moving a class is not a data migration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class UnknownEventType(LookupError):
    """The log holds an event type this version of stepledger does not know; upgrade stepledger."""

    def __init__(self, type_name: str) -> None:
        super().__init__(f"unknown event type {type_name!r}: this log was written by a newer stepledger")
        self.type_name = type_name


@dataclasses.dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event: a frozen record of something that happened, named in the past tense."""

    type_name: ClassVar[str] = ""
    schema_version: ClassVar[int] = 1

    def to_payload(self) -> Payload:
        """The JSON-ready body of this event (fields are plain JSON types by construction)."""
        names = _field_names.get(type(self))
        if names is None:  # dataclasses.fields() per call was a tenth of an append's time
            names = _field_names[type(self)] = tuple(f.name for f in dataclasses.fields(self))
        return {name: getattr(self, name) for name in names}


E = TypeVar("E", bound=type[Event])

_field_names: dict[type[Event], tuple[str, ...]] = {}

_by_name: dict[str, type[Event]] = {}
# (type name, from version) -> function turning a payload of that version into the next version.
_upcasters: dict[tuple[str, int], Upcaster] = {}


def event_type(name: str, schema_version: int = 1) -> Callable[[E], E]:
    """Register a class under a stable type name (class decorator)."""

    def register(cls: E) -> E:
        if name in _by_name and _by_name[name] is not cls:
            raise ValueError(f"event type name {name!r} is registered twice")
        cls.type_name = name
        cls.schema_version = schema_version
        _by_name[name] = cls
        return cls

    return register


def upcaster(name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that turns a `from_version` payload of `name` into the next version."""

    def register(fn: Upcaster) -> Upcaster:
        _upcasters[(name, from_version)] = fn
        return fn

    return register


def event_class(name: str) -> type[Event]:
    """The class registered under `name`."""
    try:
        return _by_name[name]
    except KeyError:
        raise UnknownEventType(name) from None


def all_event_classes() -> list[type[Event]]:
    """Every registered event class (for tests and documentation)."""
    return list(_by_name.values())


def upcast(name: str, schema_version: int, payload: Payload) -> Payload:
    """Bring a stored payload up to the current schema version of its type."""
    current = event_class(name).schema_version
    while schema_version < current:
        payload = _upcasters[(name, schema_version)](payload)
        schema_version += 1
    return payload
