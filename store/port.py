"""The event store port: the operations every adapter (memory, SQL) offers, with one meaning.

It is split by role, as eventsourcing splits its recorders: `EventLog` (the append-only log),
`LeaseTable` (who drives a run now), `Projections` (read models derived from the log) and
`AuditQueries` (the audit's SQL). `EventStore` is all of them, and it is what an adapter
implements; a piece of the engine that needs only one role names only that role.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

from stepledger.events import RecordedEvent, StreamWrite
from stepledger.events.state import RunState, fold


class Lease(NamedTuple):
    """Who holds a run's lease (the one reactor allowed to drive it), and until when."""

    owner: str
    host: str
    pid: int
    expires_at: float


class AuditReader(Protocol):
    """One read transaction of the audit (store/audit_reads.py): SQL with `:name` placeholders."""

    dialect: str

    def rows(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]: ...

    def dicts(self, sql: str, params: Any = None) -> list[dict[str, Any]]: ...

    def json_field(self, alias: str, path: str, kind: str = "text") -> str: ...

    def in_list(
        self, column: str, values: Sequence[Any], params: dict[str, Any], prefix: str = "v"
    ) -> str: ...

    def chunks(self, values: Sequence[Any]) -> Iterator[Sequence[Any]]: ...


class EventLog(ABC):
    """An append-only event log, partitioned into streams with contiguous versions.

    Every adapter passes the same contract suite (tests/store/test_contract.py):
    - `append` is atomic across all its writes: all are recorded or none;
    - a write whose stream is not at its expected version raises ConcurrencyError and writes nothing;
    - event ids are unique: re-appending a write whose events are already recorded returns the
      recorded events instead of recording them twice (a retry after a lost connection);
    - positions strictly increase in commit order, so a reader tailing by position misses nothing;
    - nothing is ever updated or deleted.
    """

    @abstractmethod
    def append(
        self, writes: Sequence[StreamWrite], along: Callable[[Any], None] | None = None
    ) -> list[RecordedEvent]:
        """Record every write in one transaction and return the recorded events in order.

        `along(cursor)`, if given, runs in that transaction after the events are written, with the
        transaction's DB-API cursor: work that must commit with the events or not at all (the
        fleet enqueues the attempts that the appended step.started events start,
        engine/fleet/dispatcher.py). It may run more than once, each time in a new transaction
        after the previous one rolled back. Only SQL stores take it."""

    @abstractmethod
    def read_stream(self, stream: str, after_version: int = 0) -> list[RecordedEvent]:
        """The events of one stream with a version above `after_version`, in version order."""

    @abstractmethod
    def read_run(self, run_id: str, after_position: int = 0) -> Iterator[RecordedEvent]:
        """Every event of a run (its own stream and its steps'), in position order."""

    @abstractmethod
    def read_all(self, after_position: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        """Every event of the log after `after_position`, in position order."""

    @abstractmethod
    def stream_version(self, stream: str) -> int:
        """The version of a stream's last event, 0 if the stream is empty."""

    @abstractmethod
    def run_ids(self) -> list[str]:
        """Every run id in the log, oldest first."""

    # --- queries with a default built on the methods above (SQL adapters answer them in SQL) ----

    def find_events(
        self,
        run_id: str | None = None,
        step_id: str | None = None,
        types: Sequence[str] = (),
        after_position: int = 0,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        """Events after `after_position` in position order, of one run / step / some types if given."""
        source = self.read_run(run_id, after_position) if run_id else self.read_all(after_position)
        count = 0
        for event in source:
            if limit is not None and count >= limit:
                return
            if step_id is not None and event.step_id != step_id:
                continue
            if types and event.type not in types:
                continue
            count += 1
            yield event

    def last_position(self) -> int:
        """The position of the newest event, 0 for an empty log."""
        last = 0
        for event in self.read_all():
            last = event.position
        return last

    def wait_for_events(self, after_position: int, timeout: float) -> bool:
        """Wait up to `timeout` seconds for an event after `after_position`; True if one is there."""
        deadline = time.monotonic() + timeout
        while True:
            if next(iter(self.read_all(after_position, limit=1)), None) is not None:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # A short poll is enough for a tail; both databases lack a portable wake-up.
            time.sleep(min(0.05, left))


class LeaseTable(ABC):
    """Only one live reactor drives a run. Not events: a lease is about now, not history."""

    @abstractmethod
    def acquire_lease(self, run_id: str, owner: str, ttl: float, host: str = "", pid: int = 0) -> bool:
        """Take the run's lease for `ttl` seconds if it is free, expired or already `owner`'s."""

    @abstractmethod
    def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        """Extend `owner`'s lease by `ttl` seconds from now; False if `owner` no longer holds it."""

    @abstractmethod
    def release_lease(self, run_id: str, owner: str) -> None:
        """Give up the run's lease if `owner` holds it (anyone may take it at once)."""

    @abstractmethod
    def lease_holder(self, run_id: str) -> Lease | None:
        """The run's lease as recorded (possibly expired), None if nobody holds one."""


class Projections(ABC):
    """Read models derived from the log: each can be dropped and rebuilt from it."""

    @abstractmethod
    def run_state(self, run_id: str) -> RunState | None:
        """The run's current state from the projections (the fold of its log), None if unknown."""

    @abstractmethod
    def run_states(
        self, *, newest: int | None = None, status: str | None = None, workstream: str | None = None
    ) -> list[RunState]:
        """The current state of every run, oldest first; of those with `status` (as recorded) and
        `workstream` (its id) if given; and with `newest`, only the first `newest` of them in a
        stable sort by start, newest first (a run without a start counts as oldest): what a list
        of the newest runs shows, read without reading the others."""

    @abstractmethod
    def outcome_rows(self, run_id: str) -> list[tuple[Any, ...]] | None:
        """The run's `step_outcomes` rows (statements.OUTCOME_COLUMNS) in position order; None for a
        store that keeps no such projection (it is derived from the log on demand)."""

    @abstractmethod
    def expected_outcome_rows(self, recorded: Sequence[RecordedEvent]) -> list[tuple[Any, ...]]:
        """The `step_outcomes` rows these events make: what `outcome_rows` must hold for them."""

    @abstractmethod
    def rebuild_projections(self) -> int:
        """Drop and rebuild the projections from the log; returns the number of runs."""


class AuditQueries(ABC):
    """The audit's SQL, answered by the stores that have SQL."""

    @abstractmethod
    def audit_reading(self) -> AbstractContextManager[AuditReader]:
        """A read transaction for the audit's SQL (one snapshot); NotASqlLog for a store without SQL."""


class EventStore(EventLog, LeaseTable, Projections, AuditQueries):
    """Every role in one adapter. The projections' and audit's defaults are built on the log, for a
    store that keeps no read models (the in-memory one); the SQL adapter answers them in SQL."""

    def close(self) -> None:
        """Release connections; the store must not be used afterwards."""

    def run_state(self, run_id: str) -> RunState | None:
        events = list(self.read_run(run_id))
        return fold(run_id, events) if events else None

    def run_states(
        self, *, newest: int | None = None, status: str | None = None, workstream: str | None = None
    ) -> list[RunState]:
        states = [self.run_state(run_id) for run_id in self.run_ids()]
        chosen = [
            s for s in states
            if s is not None and status in (None, s.status) and workstream in (None, s.workstream_id)
        ]  # fmt: skip
        if newest is None:
            return chosen
        newest_first = sorted(chosen, key=lambda s: s.started_at or 0.0, reverse=True)
        kept = {id(s) for s in newest_first[: max(newest, 0)]}
        return [s for s in chosen if id(s) in kept]

    def outcome_rows(self, run_id: str) -> list[tuple[Any, ...]] | None:
        return None

    def audit_reading(self) -> AbstractContextManager[AuditReader]:
        from .errors import NotASqlLog

        raise NotASqlLog("the audit needs a SQL log (SQLite or PostgreSQL); this store has none")

    def expected_outcome_rows(self, recorded: Sequence[RecordedEvent]) -> list[tuple[Any, ...]]:
        from .projections import outcome_rows

        return outcome_rows(recorded)

    def rebuild_projections(self) -> int:
        return len(self.run_ids())
