"""The stored form of an event (the envelope) and the unit of an append (a stream write)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .registry import Event
from .serialization import from_stored


def new_event_ids(count: int) -> tuple[str, ...]:
    """`count` fresh event ids: UUIDv7 (RFC 9562), random but ordered by creation time.

    Time-ordered ids land at the right edge of the database's unique index on event ids, so an
    append dirties one or two index pages instead of one random page per event (random UUIDv4
    ids halved the SQLite append rate).
    """
    millis = time.time_ns() // 1_000_000
    noise = os.urandom(10 * count)
    ids = []
    for i in range(count):
        r = int.from_bytes(noise[10 * i : 10 * i + 10], "big")
        value = (millis << 80) | (0x7 << 76) | (((r >> 62) & 0xFFF) << 64) | (0b10 << 62) | (r & _LOW_62)
        h = f"{value:032x}"
        ids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return tuple(ids)


_LOW_62 = (1 << 62) - 1


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
            object.__setattr__(self, "event_ids", new_event_ids(len(self.events)))
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
