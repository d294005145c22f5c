"""The one serialiser between event objects and their stored form (type name, version, JSON)."""

from __future__ import annotations

import json
from typing import Any

from .registry import Event, Payload, event_class, upcast

# Compact separators: the payload is stored, never read by people in this form.
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps(payload: Any) -> str:
    """JSON text of a payload."""
    return _encoder.encode(payload)


def loads(text: str | bytes) -> Any:
    """Payload from JSON text."""
    return json.loads(text)


def to_stored(event: Event) -> tuple[str, int, Payload]:
    """(type name, schema version, payload) of an event."""
    return event.type_name, event.schema_version, event.to_payload()


def from_stored(type_name: str, schema_version: int, payload: Payload) -> Event:
    """The event object for a stored (type name, schema version, payload), upcast if old."""
    cls = event_class(type_name)
    if schema_version != cls.schema_version:
        payload = upcast(type_name, schema_version, payload)
    return cls(**payload)
