"""The stored form of an event (the envelope) and the unit of an append (a stream write)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .registry import Event
from .serialization import from_stored


@dataclass(frozen=True)
class StreamWrite:
    """Events to append to one stream, valid only if the stream is at `expected_version`.

    The event ids are fixed when the write is built, so retrying the same write after a lost
    connection cannot record the events twice.
    """

    run_id: str
    stream: str
    expected_version: int  # 0 for a new stream
    events: Sequence[Event]
    event_ids: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not self.event_ids:
            object.__setattr__(self, "event_ids", tuple(str(uuid.uuid4()) for _ in self.events))
        if len(self.event_ids) != len(self.events):
            raise ValueError("a stream write needs one event id per event")


@dataclass(frozen=True)
class RecordedEvent:
    """An event as the log holds it: global position, stream, version and when it was recorded."""

    position: int
    event_id: str
    run_id: str
    stream: str
    version: int
    type: str
    schema_version: int
    payload: dict[str, Any]
    recorded_at: float  # seconds since the epoch, stamped by the store

    @cached_property
    def event(self) -> Event:
        """The event object (decoded, and upcast if its schema version is old)."""
        return from_stored(self.type, self.schema_version, self.payload)

    @property
    def step_id(self) -> str | None:
        """The step this event is about, or None for run-level events."""
        _, _, step_id = self.stream.partition("/")
        return step_id or None
