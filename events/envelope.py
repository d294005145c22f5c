"""The stored form of an event (the envelope) and the unit of an append (a stream write)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from .registry import Event
from .serialization import from_stored


def new_event_ids(count: int) -> tuple[str, ...]:
    """`count` fresh event ids: UUIDv7 (RFC 9562), random but ordered by creation time.

    Time-ordered ids land at the right edge of the database's unique index on event ids, so an
    append dirties one or two index pages instead of one random page per event (random UUIDv4
    ids halved the SQLite append rate).

    One random draw per call, not per id: a call's ids share its millisecond and 26 random bits
    (`rand_a` and the top of `rand_b`) and count up from a random 47-bit start in the last 12 hex
    digits (RFC 9562 section 6.2, method 2), so they are in order among themselves too, and each
    costs one short f-string (formatting 128 random bits per id was a twentieth of an append).
    Two calls, in this process or another, collide only if they share a millisecond, those 26 bits
    and an overlapping range of the counter: a chance of about count / 2**73 (independent random
    ids had 74 bits). Nothing is carried between calls, so a forked process cannot repeat them.
    """
    r = int.from_bytes(os.urandom(10), "big")  # 80 random bits, 73 of them used
    millis = time.time_ns() // 1_000_000
    # unix_ts_ms (48 bits) - version 7 and rand_a - variant 0b10 and 14 bits of rand_b - the counter.
    # %-formatting measured cheaper than a four-field f-string, and a one-event append pays it.
    prefix = "%08x-%04x-%04x-%04x-" % (  # noqa: UP031
        millis >> 16,
        millis & 0xFFFF,
        0x7000 | (r >> 68),
        0x8000 | ((r >> 47) & 0x3FFF),
    )
    # A 47-bit start leaves room to count in the last 48 bits without a carry into the prefix.
    start = r & _LOW_47
    if count == 1:  # the commonest write, without the list and range
        return (f"{prefix}{start:012x}",)
    return tuple([f"{prefix}{n:012x}" for n in range(start, start + count)])


_LOW_47 = (1 << 47) - 1


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


class _Decoded:
    """`RecordedEvent.event`: the event object (decoded, and upcast if its schema version is old).

    Decoded on first access and kept in the instance dict, which then shadows this descriptor, as
    functools.cached_property does; but that takes a lock on every first access before Python
    3.12, which was 40% of the cost of decoding an event.
    """

    @overload
    def __get__(self, record: None, owner: type | None = None) -> _Decoded: ...
    @overload
    def __get__(self, record: RecordedEvent, owner: type | None = None) -> Event: ...
    def __get__(self, record: RecordedEvent | None, owner: type | None = None) -> Event | _Decoded:
        if record is None:  # looked up on the class (help(), introspection)
            return self
        event = record.__dict__["event"] = from_stored(record.type, record.schema_version, record.payload)
        return event


@dataclass(frozen=True, init=False)
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

    def __init__(
        self,
        position: int,
        event_id: str,
        run_id: str,
        stream: str,
        version: int,
        type: str,
        schema_version: int,
        payload: dict[str, Any],
        recorded_at: float,
    ) -> None:
        # The frozen dataclass's generated __init__ sets each field through object.__setattr__,
        # slowly; every append and every read builds one of these per event, so the
        # fields go straight into the instance dict instead, in their order: the same object.
        self.__dict__.update(
            position=position,
            event_id=event_id,
            run_id=run_id,
            stream=stream,
            version=version,
            type=type,
            schema_version=schema_version,
            payload=payload,
            recorded_at=recorded_at,
        )

    event = _Decoded()

    @property
    def step_id(self) -> str | None:
        """The step this event is about, or None for run-level events."""
        return self.stream.partition("/")[2] or None  # the fold asks once per event
