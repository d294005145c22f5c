"""Riding out a database that is briefly out of reach: a server restart, a connection it cut.

A long run should not die because PostgreSQL restarted for a second. `PatientStore` asks the
store again, with growing pauses, while the database answers "unavailable"; every other error
(a conflict, a bad statement) is raised at once. Reads are safe to ask again as they are. An
append is too, given the same StreamWrites: their event ids are fixed, so if the first try did
commit and only its answer was lost, the store returns those events rather than writing them twice
— but only the reactor appends, and only while its lease holds (engine/session/leases.py's
`LeasedStore`, which is this class with a lease as its patience).

Every method of the port is written out: a read is asked again, a write is passed on once. A
dynamic proxy did this before, and a method added to the port went through it unseen; now mypy
refuses a `PatientStore` that lacks one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from stepledger.events import RecordedEvent, StreamWrite
from stepledger.events.state import RunState

from .errors import DatabaseUnavailable
from .port import AuditReader, EventStore, Lease

# While the database is out of reach, the store is asked again after these pauses (doubling):
# a restarted PostgreSQL takes connections again within a second or two.
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 0.5
T = TypeVar("T")


class PatientStore(EventStore):
    """The store, its reads asked again for up to `patience` seconds while the database is away.

    `on_outage` hears one line when the database goes away and one when it is back.
    """

    def __init__(
        self, store: EventStore, patience: float, on_outage: Callable[[str], None] | None = None
    ) -> None:
        self._store = store
        self._patience = patience
        self._on_outage = on_outage
        self._out_since: float | None = None

    # --- the log: reads asked again; an append once (LeasedStore asks it again under its lease) --

    def append(
        self, writes: Sequence[StreamWrite], along: Callable[[Any], None] | None = None
    ) -> list[RecordedEvent]:
        return self._store.append(writes, along)

    def read_stream(self, stream: str, after_version: int = 0) -> list[RecordedEvent]:
        return self.patiently(lambda: self._store.read_stream(stream, after_version))

    def read_run(self, run_id: str, after_position: int = 0) -> Iterator[RecordedEvent]:
        # Materialised inside the retry: a lazy result would fail later, outside it.
        return iter(self.patiently(lambda: list(self._store.read_run(run_id, after_position))))

    def read_all(self, after_position: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        return iter(self.patiently(lambda: list(self._store.read_all(after_position, limit))))

    def stream_version(self, stream: str) -> int:
        return self.patiently(lambda: self._store.stream_version(stream))

    def run_ids(self) -> list[str]:
        return self.patiently(self._store.run_ids)

    def find_events(
        self,
        run_id: str | None = None,
        step_id: str | None = None,
        types: Sequence[str] = (),
        after_position: int = 0,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        found = self.patiently(
            lambda: list(self._store.find_events(run_id, step_id, types, after_position, limit))
        )
        return iter(found)

    def last_position(self) -> int:
        return self.patiently(self._store.last_position)

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        return self.patiently(lambda: self._store.wait_for_events(after_position, timeout))

    # --- leases: passed on once (RunLease decides what a failed renewal means) -----------------

    def acquire_lease(self, run_id: str, owner: str, ttl: float, host: str = "", pid: int = 0) -> bool:
        return self._store.acquire_lease(run_id, owner, ttl, host, pid)

    def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        return self._store.renew_lease(run_id, owner, ttl)

    def release_lease(self, run_id: str, owner: str) -> None:
        self._store.release_lease(run_id, owner)

    def lease_holder(self, run_id: str) -> Lease | None:
        return self.patiently(lambda: self._store.lease_holder(run_id))

    # --- projections and the audit -------------------------------------------------------------

    def run_state(self, run_id: str) -> RunState | None:
        return self.patiently(lambda: self._store.run_state(run_id))

    def run_states(
        self, *, newest: int | None = None, status: str | None = None, workstream: str | None = None
    ) -> list[RunState]:
        return self.patiently(
            lambda: self._store.run_states(newest=newest, status=status, workstream=workstream)
        )

    def outcome_rows(self, run_id: str) -> list[tuple[Any, ...]] | None:
        return self.patiently(lambda: self._store.outcome_rows(run_id))

    def expected_outcome_rows(self, recorded: Sequence[RecordedEvent]) -> list[tuple[Any, ...]]:
        return self._store.expected_outcome_rows(recorded)

    def rebuild_projections(self) -> int:
        return self._store.rebuild_projections()

    def audit_reading(self) -> AbstractContextManager[AuditReader]:
        return self._store.audit_reading()

    def close(self) -> None:
        self._store.close()

    # --- asking again ----------------------------------------------------------------------------

    def patiently(self, call: Callable[[], T]) -> T:
        """`call()`, asked again while the database is out of reach, until `deadline` passes."""
        pause = FIRST_PAUSE
        first_failure: float | None = None
        failure: DatabaseUnavailable | None = None
        while True:
            self.before_try(failure)
            try:
                result = call()
            except DatabaseUnavailable as error:
                failure = error
                now = time.time()
                first_failure = first_failure or now
                deadline = self.deadline(first_failure)
                if now >= deadline:
                    self.give_up(error)
                if self._out_since is None:
                    self._out_since = now
                    self._tell(f"the database is out of reach ({error}); {self.waiting_for}")
                time.sleep(max(0.0, min(pause, deadline - now)))
                pause = min(pause * 2, LONGEST_PAUSE)
                continue
            if self._out_since is not None:
                self._tell(f"the database is back after {time.time() - self._out_since:.1f}s")
                self._out_since = None
            return result

    # --- what a subclass may change ---------------------------------------------------------

    waiting_for = "retrying for a few seconds"

    def before_try(self, failure: DatabaseUnavailable | None) -> None:
        """Called before every try, with the previous try's error (the leased store checks its lease)."""

    def deadline(self, first_failure: float) -> float:
        """When to stop asking, given when this call first failed."""
        return first_failure + self._patience

    def give_up(self, error: DatabaseUnavailable) -> None:
        """Raise the error that ends the waiting."""
        raise error

    def _tell(self, line: str) -> None:
        if self._on_outage is not None:
            self._on_outage(line)
