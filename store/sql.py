"""The SQLAlchemy Core event store: one code path for SQLite and PostgreSQL.

Dialect differences live in column types (schema.py) and in the connect hooks (connect.py) that
make a write transaction take the writer lock (`BEGIN IMMEDIATE` on SQLite, `LOCK TABLE` on
PostgreSQL). An append is one transaction: insert every event (one statement, positions come back
by RETURNING), then write the projection rows; no SELECT per stream on the hot path — the unique
(stream, version) key detects a conflict, and only then do we look at what happened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, exc, func, insert, or_, select, update

from stepledger.events import RecordedEvent, StreamWrite, to_stored

from .connect import LOCK_OPTION, WRITE
from .driver import DriverStatement
from .errors import ConcurrencyError, StoreError
from .port import EventStore, Lease
from .projections import Pending, Projector, StaleWrite, run_from_row, step_from_row
from .runstate import RunState
from .schema import events, run_leases, runs, step_states
from .sqlerrors import translating

_PAGE = 2_000  # rows per query when iterating the whole log


class SqlEventStore(EventStore):
    """An event store in a SQL database reached through a SQLAlchemy engine (see `open_store`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = engine.url.render_as_string(hide_password=True)
        self._projector = Projector(engine.dialect)
        self._insert = DriverStatement(insert(events), engine.dialect, ["payload"])
        # The same pool; its connections ask the "begin" hook for the writer lock (connect.py).
        self._writer = engine.execution_options(**{LOCK_OPTION: WRITE})
        self._next_position: int | None = None  # the position after this store's last commit
        self._last_position = select(func.coalesce(func.max(events.c.position), 0))

    # --- writing ------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._writer.connect() as conn, conn.begin():
            yield conn

    def append(self, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        writes = list(writes)
        if not any(w.events for w in writes):
            return []
        now = time.time()
        rows: list[dict[str, Any]] = []
        for w in writes:
            for offset, (event_id, event) in enumerate(zip(w.event_ids, w.events, strict=True), 1):
                type_name, schema_version, payload = to_stored(event)
                rows.append(
                    {
                        "event_id": event_id,
                        "run_id": w.run_id,
                        "stream": w.stream,
                        "version": w.expected_version + offset,
                        "type": type_name,
                        "schema_version": schema_version,
                        "payload": payload,
                        "recorded_at": now,
                    }
                )
        with translating(self.url):
            guess = self._next_position
            while True:
                try:
                    recorded, pending = self._append_once(writes, rows, guess)
                    break
                except exc.IntegrityError:
                    if guess is None:
                        return self._after_conflict(writes)
                    guess = None  # another process appended since our last commit: ask the database
                except StaleWrite:
                    return self._after_conflict(writes)
        self._next_position = recorded[-1].position + 1
        self._projector.committed(pending)
        return recorded

    def _append_once(
        self, writes: Sequence[StreamWrite], rows: list[dict[str, Any]], first: int | None
    ) -> tuple[list[RecordedEvent], Pending]:
        with self._write() as conn:
            pending = self._projector.prepare(conn, writes)
            # Positions are given here, under the writer lock, not by a sequence: no other
            # transaction can insert before this one commits, so positions follow commit order. The
            # first is our last commit's successor when we have one (positions are contiguous, so a
            # stale guess collides on the primary key and we ask for max + 1), saving a query.
            if first is None:
                first = conn.execute(self._last_position).scalar_one() + 1
            for position, row in enumerate(rows, first):
                row["position"] = position
            self._insert.execute(conn, rows)
            recorded = [RecordedEvent(**r) for r in rows]
            self._projector.apply(conn, pending, recorded)
        return recorded, pending

    def _after_conflict(self, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        """Tell a retried append (return what it recorded) from a concurrency conflict (raise)."""
        ids = [i for w in writes for i in w.event_ids]
        with self.engine.connect() as conn:
            found = [
                RecordedEvent(*row)
                for chunk in _chunks(ids, 500)
                for row in conn.execute(select(events).where(events.c.event_id.in_(chunk)))
            ]
            if len(found) == len(ids):
                return sorted(found, key=lambda e: e.position)
            versions: dict[str, int] = {}
            for w in writes:
                actual = versions.get(w.stream)
                if actual is None:
                    actual = self._version(conn, w.stream)
                if actual != w.expected_version:
                    raise ConcurrencyError(w.stream, w.expected_version, actual)
                versions[w.stream] = actual + len(w.events)
        if found:
            raise StoreError(
                f"event id {found[0].event_id} is already recorded in stream {found[0].stream!r}"
            )
        raise StoreError("the projections disagree with the log: run `stepledger db rebuild`")

    def rebuild_projections(self) -> int:
        """Drop and rebuild the projection tables from the log, in one transaction; returns runs."""
        with translating(self.url), self._write() as conn:
            return self._projector.rebuild(conn)

    # --- reading ------------------------------------------------------------------------------

    def _rows(self, query: Any) -> list[RecordedEvent]:
        with translating(self.url), self.engine.connect() as conn:
            return [RecordedEvent(*row) for row in conn.execute(query)]

    def read_stream(self, stream: str, after_version: int = 0) -> list[RecordedEvent]:
        query = select(events).where(and_(events.c.stream == stream, events.c.version > after_version))
        return self._rows(query.order_by(events.c.version))

    def read_run(self, run_id: str, after_position: int = 0) -> Iterator[RecordedEvent]:
        return self.find_events(run_id=run_id, after_position=after_position)

    def read_all(self, after_position: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        return self.find_events(after_position=after_position, limit=limit)

    def find_events(
        self,
        run_id: str | None = None,
        step_id: str | None = None,
        types: Sequence[str] = (),
        after_position: int = 0,
        limit: int | None = None,
    ) -> Iterator[RecordedEvent]:
        conditions = []
        if run_id is not None:
            conditions.append(events.c.run_id == run_id)
        if step_id is not None:
            conditions.append(events.c.stream.like(f"%/{_escape_like(step_id)}", escape="\\"))
        if types:
            conditions.append(events.c.type.in_(list(types)))
        return self._paged(conditions, after_position, limit)

    def _paged(self, conditions: list[Any], after: int, limit: int | None) -> Iterator[RecordedEvent]:
        # Page by position so a long log never sits in memory and no connection stays open.
        left = limit
        while left is None or left > 0:
            size = _PAGE if left is None else min(_PAGE, left)
            query = select(events).where(events.c.position > after, *conditions)
            page = self._rows(query.order_by(events.c.position).limit(size))
            yield from page
            if len(page) < size:
                return
            after = page[-1].position
            if left is not None:
                left -= len(page)

    def stream_version(self, stream: str) -> int:
        with translating(self.url), self.engine.connect() as conn:
            return self._version(conn, stream)

    @staticmethod
    def _version(conn: Connection, stream: str) -> int:
        query = select(func.coalesce(func.max(events.c.version), 0)).where(events.c.stream == stream)
        return int(conn.execute(query).scalar_one())

    def run_ids(self) -> list[str]:
        query = select(events.c.run_id).group_by(events.c.run_id).order_by(func.min(events.c.position))
        with translating(self.url), self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def last_position(self) -> int:
        with translating(self.url), self.engine.connect() as conn:
            return int(conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one())

    # --- projections --------------------------------------------------------------------------

    def run_state(self, run_id: str) -> RunState | None:
        with translating(self.url), self.engine.connect() as conn:
            row = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
            if row is None:
                return None
            state = run_from_row(row)
            query = select(step_states).where(step_states.c.run_id == run_id)
            state.steps = {r.step_id: step_from_row(r) for r in conn.execute(query)}
            last = select(func.max(events.c.position)).where(events.c.run_id == run_id)
            state.last_position = conn.execute(last).scalar() or 0
        return state

    def run_states(self) -> list[RunState]:
        with translating(self.url), self.engine.connect() as conn:
            states = {r.run_id: run_from_row(r) for r in conn.execute(select(runs))}
            for r in conn.execute(select(step_states).order_by(step_states.c.last_position)):
                if r.run_id in states:
                    states[r.run_id].steps[r.step_id] = step_from_row(r)
            last = select(events.c.run_id, func.max(events.c.position)).group_by(events.c.run_id)
            for run_id, position in conn.execute(last):
                if run_id in states:
                    states[run_id].last_position = position
        return sorted(states.values(), key=lambda s: (s.started_at or 0.0, s.run_id))

    # --- leases -------------------------------------------------------------------------------

    def acquire_lease(self, run_id: str, owner: str, ttl: float, host: str = "", pid: int = 0) -> bool:
        now = time.time()
        values = {"owner": owner, "host": host, "pid": pid, "expires_at": now + ttl}
        # One conditional statement per step, no read-then-write: on PostgreSQL a concurrent UPDATE
        # re-checks its WHERE against the winner's row, so two takers of an expired lease cannot
        # both succeed; a second INSERT of a free lease hits the primary key.
        taking = update(run_leases).where(
            run_leases.c.run_id == run_id, or_(run_leases.c.owner == owner, run_leases.c.expires_at <= now)
        )
        with translating(self.url):
            with self.engine.begin() as conn:
                if conn.execute(taking.values(**values)).rowcount == 1:
                    return True
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(run_leases).values(run_id=run_id, **values))
            except exc.IntegrityError:
                return False  # held by another live owner
        return True

    def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        query = update(run_leases).where(run_leases.c.run_id == run_id, run_leases.c.owner == owner)
        with translating(self.url), self.engine.begin() as conn:
            return bool(conn.execute(query.values(expires_at=time.time() + ttl)).rowcount == 1)

    def release_lease(self, run_id: str, owner: str) -> None:
        query = delete(run_leases).where(run_leases.c.run_id == run_id, run_leases.c.owner == owner)
        with translating(self.url), self.engine.begin() as conn:
            conn.execute(query)

    def lease_holder(self, run_id: str) -> Lease | None:
        columns = (run_leases.c.owner, run_leases.c.host, run_leases.c.pid, run_leases.c.expires_at)
        with translating(self.url), self.engine.connect() as conn:
            row = conn.execute(select(*columns).where(run_leases.c.run_id == run_id)).first()
        return None if row is None else Lease(row[0], row[1], int(row[2]), float(row[3]))

    def close(self) -> None:
        self.engine.dispose()


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
