"""The one serialiser between event objects and their stored form (type name, version, JSON)."""

from __future__ import annotations

from typing import Any

from .jsontext import dumps, loads, may_hold_nul
from .registry import Event, Payload, event_class, fast_instance, upcast

__all__ = ["dumps", "from_stored", "loads", "to_stored", "to_stored_text", "without_nul"]


def to_stored(event: Event) -> tuple[str, int, Payload]:
    """(type name, schema version, payload) of an event; U+0000 in its strings becomes U+FFFD."""
    payload = event.to_payload()
    # Almost no payload holds a U+0000: a C-speed check first spares the Python walk of every
    # string, which was the second largest cost of an append.
    if may_hold_nul(payload):
        payload = without_nul(payload)
    return event.type_name, event.schema_version, payload


def to_stored_text(event: Event) -> tuple[str, int, Payload, str]:
    """`to_stored`, plus the payload's JSON text (`dumps`), from one encoding.

    The SQL store writes the text as it is: encoding once for the U+0000 check and again for the
    INSERT was two encodings of every payload of every append.
    """
    payload = event.to_payload()
    text = dumps(payload)
    # Both encoders escape U+0000 as these six characters (and a literal backslash-u0000 string
    # reads the same: a check that may say yes wrongly, never no wrongly).
    if ESCAPED_NUL_TEXT in text:
        payload = without_nul(payload)
        text = dumps(payload)
    return event.type_name, event.schema_version, payload, text


NUL, REPLACEMENT = "\x00", "\ufffd"
ESCAPED_NUL_TEXT = "\\u0000"


def without_nul(value: Any) -> Any:
    """`value` with every U+0000 in its strings replaced by U+FFFD (the same object if none is).

    PostgreSQL's jsonb cannot hold U+0000, and a step's output excerpt may well contain one; every
    adapter stores the replacement character instead, so the log reads the same on all of them.
    """
    kind = type(value)
    if kind is str:
        return value.replace(NUL, REPLACEMENT) if NUL in value else value
    if kind is dict:
        for key, item in value.items():  # one pass that allocates nothing when there is no U+0000
            if NUL in key or (type(item) in _NESTED and without_nul(item) is not item):
                return {without_nul(k): without_nul(v) for k, v in value.items()}
        return value
    if kind is list:
        for item in value:
            if type(item) in _NESTED and without_nul(item) is not item:
                return [without_nul(v) for v in value]
        return value
    return value


_NESTED = frozenset({str, dict, list})  # the only JSON types that can hold a U+0000


def from_stored(type_name: str, schema_version: int, payload: Payload) -> Event:
    """The event object for a stored (type name, schema version, payload), upcast if old."""
    cls = event_class(type_name)
    if schema_version != cls.schema_version:
        payload = upcast(type_name, schema_version, payload)
    event = fast_instance(cls, payload)
    return cls(**payload) if event is None else event
