"""An in-memory event store: a real implementation of the port for unit tests and dry runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from stepledger.events import RecordedEvent, StreamWrite, split_stream, to_stored

from .errors import ConcurrencyError
from .port import EventStore, Lease


class InMemoryEventStore(EventStore):
    """Holds the log in lists; a lock makes appends atomic between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._by_id: dict[str, RecordedEvent] = {}
        self._runs: dict[str, list[RecordedEvent]] = {}
        self._leases: dict[str, Lease] = {}

    def append(
        self, writes: Sequence[StreamWrite], along: Callable[[Any], None] | None = None
    ) -> list[RecordedEvent]:
        if along is not None:
            raise NotImplementedError("the in-memory store runs no work in its appends")
        with self._lock:
            already = [self._by_id.get(i) for w in writes for i in w.event_ids]
            if already and all(r is not None for r in already):
                return [r for r in already if r is not None]
            versions: dict[str, int] = {}
            for w in writes:
                if split_stream(w.stream)[0] != w.run_id:
                    raise ValueError(f"stream {w.stream!r} does not belong to run {w.run_id!r}")
                actual = versions.get(w.stream, len(self._streams.get(w.stream, ())))
                if actual != w.expected_version:
                    raise ConcurrencyError(w.stream, w.expected_version, actual)
                versions[w.stream] = actual + len(w.events)
            now = time.time()
            recorded: list[RecordedEvent] = []
            for w in writes:
                version = w.expected_version
                for event_id, event in zip(w.event_ids, w.events, strict=True):
                    version += 1
                    type_name, schema_version, payload = to_stored(event)
                    recorded.append(
                        RecordedEvent(
                            position=len(self._events) + len(recorded) + 1,
                            event_id=event_id,
                            run_id=w.run_id,
                            stream=w.stream,
                            version=version,
                            type=type_name,
                            schema_version=schema_version,
                            payload=payload,
                            recorded_at=now,
                        )
                    )
            for r in recorded:
                self._events.append(r)
                self._streams.setdefault(r.stream, []).append(r)
                self._runs.setdefault(r.run_id, []).append(r)
                self._by_id[r.event_id] = r
            return recorded

    def read_stream(self, stream: str, after_version: int = 0) -> list[RecordedEvent]:
        with self._lock:
            return list(self._streams.get(stream, ())[after_version:])

    def read_run(self, run_id: str, after_position: int = 0) -> Iterator[RecordedEvent]:
        with self._lock:
            events = [e for e in self._runs.get(run_id, ()) if e.position > after_position]
        return iter(events)

    def read_all(self, after_position: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        with self._lock:
            events = self._events[after_position:]
        return iter(events if limit is None else events[:limit])

    def stream_version(self, stream: str) -> int:
        with self._lock:
            return len(self._streams.get(stream, ()))

    def run_ids(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def acquire_lease(self, run_id: str, owner: str, ttl: float, host: str = "", pid: int = 0) -> bool:
        with self._lock:
            now = time.time()
            held = self._leases.get(run_id)
            if held is not None and held.owner != owner and held.expires_at > now:
                return False
            self._leases[run_id] = Lease(owner, host, pid, now + ttl)
            return True

    def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        with self._lock:
            held = self._leases.get(run_id)
            if held is None or held.owner != owner:
                return False
            self._leases[run_id] = held._replace(expires_at=time.time() + ttl)
            return True

    def release_lease(self, run_id: str, owner: str) -> None:
        with self._lock:
            held = self._leases.get(run_id)
            if held is not None and held.owner == owner:
                del self._leases[run_id]

    def lease_holder(self, run_id: str) -> Lease | None:
        with self._lock:
            return self._leases.get(run_id)
