"""The registry from stable event type names to event classes, and the upcasters of old versions.

Stored events carry a stable name such as ``step.started`` — never a Python import path — so
that renaming or moving a class is not a data migration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, TypeVar

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
        names = (_shapes.get(type(self)) or _shape(type(self))).names
        values = self.__dict__
        # The instance dict is the payload whenever it holds exactly the fields in their order (as
        # the constructor and `fast_instance` leave it): one C copy instead of a getattr per field.
        if tuple(values) == names:
            return values.copy()
        return {name: getattr(self, name) for name in names}


E = TypeVar("E", bound=type[Event])
EventT = TypeVar("EventT", bound=Event)


class _Shape(NamedTuple):
    """What the hot paths need to know of an event class, computed once per class."""

    names: tuple[str, ...]  # the fields in declaration order: the payload's keys, in its order
    name_set: frozenset[str]
    plain: bool  # its __init__ only sets the fields, so `fast_instance` may skip it


_shapes: dict[type[Event], _Shape] = {}


def _shape(cls: type[Event]) -> _Shape:
    # dataclasses.fields() per call was a sizeable share of an append's time: once per class instead.
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    # Events are plain frozen dataclasses by convention (no hand-written __init__); one that went
    # through @dataclass itself and has no __post_init__ or init=False field is built by its fields.
    plain = (
        "__dataclass_fields__" in vars(cls)
        and not hasattr(cls, "__post_init__")
        and all(f.init for f in fields)
    )
    shape = _shapes[cls] = _Shape(names, frozenset(names), plain)
    return shape


def fast_instance(cls: type[EventT], payload: Payload) -> EventT | None:
    """`cls(**payload)` built without running the frozen dataclass's __init__, or None when that
    could differ (a field missing, so a default applies; an unknown key, which must raise; a class
    with a __post_init__): the caller then calls the constructor.

    A frozen dataclass's __init__ sets each field through object.__setattr__, which made decoding
    a payload slow; filling the instance dict directly gives the same object several times faster.
    """
    shape = _shapes.get(cls) or _shape(cls)
    if not shape.plain:
        return None
    if tuple(payload) == shape.names:
        values = payload
    elif payload.keys() == shape.name_set:  # e.g. jsonb's key order: keep the fields' order
        values = {name: payload[name] for name in shape.names}
    else:
        return None
    event = object.__new__(cls)
    event.__dict__.update(values)
    return event


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
