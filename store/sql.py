"""The SQL event store: one code path for SQLite and PostgreSQL.

The tables are declared once (schema.py, SQLAlchemy Core, which the migrations build); the store
runs its few statements (statements.py) on the driver's connections (dbapi.py), whose
transactions take the writer lock first (`BEGIN IMMEDIATE` on SQLite, `LOCK TABLE` on
PostgreSQL). Dialect differences are in the column types and in those two files, never here. An
append is one transaction: insert every event (positions given under the writer lock), then write
the projection rows; no SELECT per stream on the hot path — the unique (stream, version) key
detects a conflict, and only then do we look at what happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from stepledger.events import RecordedEvent, StreamWrite, to_stored_text
from stepledger.events.state import RunState

from . import statements as sql
from .dbapi import Database, Mode
from .errors import ConcurrencyError, StoreError
from .port import AuditReader, EventStore, Lease
from .projections import Pending, Projector, StaleWrite, run_from_row, step_from_row
from .sqlerrors import translating
from .statements import OUTCOME_COLUMNS, RUN_COLUMNS, STEP_COLUMNS, Rows, in_list

if TYPE_CHECKING:
    from sqlalchemy import Engine

_PAGE = 2_000  # rows per query when iterating the whole log


class SqlEventStore(EventStore):
    """An event store in a SQLite or PostgreSQL database (see `open_store`)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.url = db.safe_url
        self._rows = Rows(db.decodes_json)
        self._projector = Projector(self._rows, db.sql, db.positional_sql, db.execute_many)
        self._insert = db.positional_sql(sql.INSERT_EVENT)
        self._next_position: int | None = None  # the position after this store's last commit

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on the same database, for SQL the store does not run (audits, migrations)."""
        return self.db.engine

    # --- writing ------------------------------------------------------------------------------

    def append(
        self, writes: Sequence[StreamWrite], along: Callable[[Any], None] | None = None
    ) -> list[RecordedEvent]:
        writes = list(writes)
        if not any(w.events for w in writes):
            return []
        now = time.time()
        # The INSERT's parameters after the position (given in the transaction), in EVENT_COLUMNS
        # order, the payload as its JSON text; and the payloads as data, for the recorded events.
        rows: list[tuple[Any, ...]] = []
        payloads: list[dict[str, Any]] = []
        for w in writes:
            run_id, stream, version = w.run_id, w.stream, w.expected_version
            for event_id, event in zip(w.event_ids, w.events, strict=True):
                type_name, schema_version, payload, text = to_stored_text(event)
                payloads.append(payload)
                version += 1
                rows.append((event_id, run_id, stream, version, type_name, schema_version, text, now))
        with translating(self.url):
            guess = self._next_position
            while True:
                try:
                    recorded, pending = self._append_once(writes, rows, payloads, guess, along)
                    break
                except self.db.errors.IntegrityError:
                    if guess is None:
                        return self._after_conflict(writes)
                    guess = None  # another process appended since our last commit: ask the database
                except StaleWrite:
                    return self._after_conflict(writes)
        self._next_position = recorded[-1].position + 1
        self._projector.committed(pending)
        return recorded

    def _append_once(
        self,
        writes: Sequence[StreamWrite],
        rows: list[tuple[Any, ...]],
        payloads: list[dict[str, Any]],
        first: int | None,
        along: Callable[[Any], None] | None = None,
    ) -> tuple[list[RecordedEvent], Pending]:
        with self.db.transaction(Mode.APPEND) as cursor:
            pending = self._projector.prepare(cursor, writes)
            # Positions are given here, under the writer lock, not by a sequence: no other
            # transaction can insert before this one commits, so positions follow commit order. The
            # first is our last commit's successor when we have one (positions are contiguous, so a
            # stale guess collides on the primary key and we ask for max + 1), saving a query.
            if first is None:
                cursor.execute(sql.LAST_POSITION)
                first = int(cursor.fetchone()[0]) + 1
            positioned = [(position, *row) for position, row in enumerate(rows, first)]
            self.db.execute_many(cursor, self._insert, positioned)
            recorded = [
                RecordedEvent(position, event_id, run_id, stream, version, type_, schema_version, payload, at)
                for (position, event_id, run_id, stream, version, type_, schema_version, _, at), payload
                in zip(positioned, payloads, strict=True)
            ]  # fmt: skip
            self._projector.apply(cursor, pending, recorded)
            if along is not None:
                along(cursor)
        return recorded, pending

    def _after_conflict(self, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        """Tell a retried append (return what it recorded) from a concurrency conflict (raise)."""
        ids = [i for w in writes for i in w.event_ids]
        with self.db.transaction() as cursor:
            found = []
            for chunk in sql.chunks(ids):
                values: dict[str, Any] = {}
                cursor.execute(
                    self.db.sql(f"{sql.SELECT_EVENTS} WHERE {in_list('event_id', chunk, values)}"),
                    values,
                )
                found += [self._rows.event(row) for row in cursor.fetchall()]
            if len(found) == len(ids):
                return sorted(found, key=lambda e: e.position)
            versions: dict[str, int] = {}
            for w in writes:
                actual = versions.get(w.stream)
                if actual is None:
                    actual = self._version(cursor, w.stream)
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
        with translating(self.url), self.db.transaction(Mode.APPEND) as cursor:
            return self._projector.rebuild(cursor)

    # --- reading ------------------------------------------------------------------------------

    def _query(self, query: str, values: dict[str, Any] | None = None) -> list[Any]:
        with translating(self.url), self.db.transaction() as cursor:
            cursor.execute(self.db.sql(query), values or {})
            return list(cursor.fetchall())

    def _events(self, where: str, values: dict[str, Any], tail: str = "") -> list[RecordedEvent]:
        query = " ".join(filter(None, [sql.SELECT_EVENTS, where and f"WHERE {where}", tail]))
        return [self._rows.event(row) for row in self._query(query, values)]

    def read_stream(self, stream: str, after_version: int = 0) -> list[RecordedEvent]:
        values = {"stream": stream, "after": after_version}
        return self._events("stream = :stream AND version > :after", values, "ORDER BY version")

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
        values: dict[str, Any] = {}
        conditions = []
        if run_id is not None:
            conditions.append("run_id = :run_id")
            values["run_id"] = run_id
        if step_id is not None:
            conditions.append("stream LIKE :stream ESCAPE '\\'")
            values["stream"] = f"%/{_escape_like(step_id)}"
        if types:
            conditions.append(in_list("type", list(types), values))
            if set(types).isdisjoint(sql.PER_ATTEMPT_TYPES):  # only indexed types: through the index
                conditions.append(sql.indexed_types())
        return self._paged(conditions, values, after_position, limit)

    def _paged(
        self, conditions: list[str], values: dict[str, Any], after: int, limit: int | None
    ) -> Iterator[RecordedEvent]:
        # Page by position so a long log never sits in memory and no connection stays open.
        where = " AND ".join(["position > :after", *conditions])
        left = limit
        while left is None or left > 0:
            size = _PAGE if left is None else min(_PAGE, left)
            page = self._events(where, {**values, "after": after}, f"ORDER BY position LIMIT {int(size)}")
            yield from page
            if len(page) < size:
                return
            after = page[-1].position
            if left is not None:
                left -= len(page)

    def stream_version(self, stream: str) -> int:
        with translating(self.url), self.db.transaction() as cursor:
            return self._version(cursor, stream)

    def _version(self, cursor: Any, stream: str) -> int:
        cursor.execute(self.db.sql("SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = :stream"),
                       {"stream": stream})  # fmt: skip
        return int(cursor.fetchone()[0])

    def run_ids(self) -> list[str]:
        rows = self._query("SELECT run_id FROM events GROUP BY run_id ORDER BY MIN(position)")
        return [row[0] for row in rows]

    def last_position(self) -> int:
        return int(self._query(sql.LAST_POSITION)[0][0])

    # --- projections --------------------------------------------------------------------------

    def run_state(self, run_id: str) -> RunState | None:
        values = {"run_id": run_id}
        with translating(self.url), self.db.transaction() as cursor:
            cursor.execute(self.db.sql(sql.select("runs", RUN_COLUMNS, "run_id = :run_id")), values)
            row = cursor.fetchone()
            if row is None:
                return None
            state = run_from_row(self._rows.mapping(RUN_COLUMNS, row))
            cursor.execute(self.db.sql(sql.select("step_states", STEP_COLUMNS, "run_id = :run_id")), values)
            steps = [self._rows.mapping(STEP_COLUMNS, r) for r in cursor.fetchall()]
            state.steps = {r["step_id"]: step_from_row(r) for r in steps}
            cursor.execute(self.db.sql("SELECT MAX(position) FROM events WHERE run_id = :run_id"), values)
            state.last_position = cursor.fetchone()[0] or 0
        return state

    def outcome_rows(self, run_id: str) -> list[tuple[Any, ...]]:
        query = sql.select("step_outcomes", OUTCOME_COLUMNS, "run_id = :run_id", "ORDER BY position")
        return [tuple(row) for row in self._query(query, {"run_id": run_id})]

    def run_states(
        self, *, newest: int | None = None, status: str | None = None, workstream: str | None = None
    ) -> list[RunState]:
        conditions: list[str] = []
        values: dict[str, Any] = {}
        if status is not None:
            conditions.append("status = :status")
            values["status"] = status
        if workstream is not None:
            conditions.append("workstream_id = :workstream")
            values["workstream"] = workstream
        with translating(self.url), self.db.transaction() as cursor:
            if newest is None and not conditions:
                states = self._every_run_state(cursor)
            else:
                states = self._run_states_of(cursor, self._chosen_runs(cursor, conditions, values, newest))
        return sorted(states, key=lambda s: (s.started_at or 0.0, s.run_id))

    def _every_run_state(self, cursor: Any) -> list[RunState]:
        # Every run is wanted: one pass over each table beats a lookup per run.
        cursor.execute(sql.select("runs", RUN_COLUMNS))
        states = {
            r["run_id"]: run_from_row(r)
            for r in (self._rows.mapping(RUN_COLUMNS, t) for t in cursor.fetchall())
        }
        cursor.execute(sql.select("step_states", STEP_COLUMNS, tail="ORDER BY last_position"))
        self._add_steps(cursor.fetchall(), states)
        cursor.execute("SELECT run_id, MAX(position) FROM events GROUP BY run_id")
        for run_id, position in cursor.fetchall():
            if run_id in states:
                states[run_id].last_position = position
        return list(states.values())

    def _chosen_runs(
        self, cursor: Any, conditions: list[str], values: dict[str, Any], newest: int | None
    ) -> list[str]:
        """The ids of the runs meeting `conditions`; with `newest`, of the `newest` latest started
        (ties by id, as `run_states` orders them), found from the `runs` rows' narrow columns."""
        where = " AND ".join(conditions)
        if newest is None:
            cursor.execute(self.db.sql(sql.select("runs", ("run_id",), where)), values)
            return [row[0] for row in cursor.fetchall()]
        if newest < 1:
            return []
        start = "COALESCE(started_at, 0)"  # a run without a start counts as oldest
        # Ties are broken here, not in SQL: PostgreSQL may sort ids by a locale's collation, unlike
        # Python. One row past the limit tells whether runs started at the same instant straddle it.
        tail = f"ORDER BY {start} DESC LIMIT {int(newest) + 1}"
        cursor.execute(self.db.sql(sql.select("runs", ("run_id", start), where, tail)), values)
        rows = cursor.fetchall()
        if len(rows) <= newest or rows[newest][1] != rows[newest - 1][1]:
            return [row[0] for row in rows[:newest]]
        edge = rows[newest - 1][1]
        later = [run_id for run_id, started in rows if started != edge]
        tied_where = " AND ".join([*conditions, f"{start} = :edge"])
        cursor.execute(self.db.sql(sql.select("runs", ("run_id",), tied_where)), {**values, "edge": edge})
        tied = sorted(row[0] for row in cursor.fetchall())
        return later + tied[: newest - len(later)]

    def _run_states_of(self, cursor: Any, run_ids: Sequence[str]) -> list[RunState]:
        """The states of these runs: their rows, their steps', and their last positions, each found
        through its table's key or the events' (run_id, position) index."""
        states: dict[str, RunState] = {}
        last = "(SELECT MAX(position) FROM events WHERE events.run_id = runs.run_id)"
        for chunk in sql.chunks(run_ids):
            values: dict[str, Any] = {}
            where = in_list("run_id", chunk, values)
            cursor.execute(self.db.sql(sql.select("runs", (*RUN_COLUMNS, last), where)), values)
            for row in cursor.fetchall():
                state = run_from_row(self._rows.mapping(RUN_COLUMNS, row[:-1]))
                state.last_position = row[-1] or 0
                states[state.run_id] = state
            query = sql.select("step_states", STEP_COLUMNS, where, "ORDER BY last_position")
            cursor.execute(self.db.sql(query), values)
            self._add_steps(cursor.fetchall(), states)
        return list(states.values())

    def _add_steps(self, rows: Sequence[Any], states: dict[str, RunState]) -> None:
        """Put each `step_states` row into its run's state (rows of other runs are left out)."""
        for t in rows:
            r = self._rows.mapping(STEP_COLUMNS, t)
            if r["run_id"] in states:
                states[r["run_id"]].steps[r["step_id"]] = step_from_row(r)

    # --- leases -------------------------------------------------------------------------------

    def acquire_lease(self, run_id: str, owner: str, ttl: float, host: str = "", pid: int = 0) -> bool:
        now = time.time()
        values = {
            "run_id": run_id,
            "owner": owner,
            "host": host,
            "pid": pid,
            "expires_at": now + ttl,
            "now": now,
        }
        # One conditional statement per step, no read-then-write: on PostgreSQL a concurrent UPDATE
        # re-checks its WHERE against the winner's row, so two takers of an expired lease cannot
        # both succeed; a second INSERT of a free lease hits the primary key.
        taking = (
            "UPDATE run_leases SET owner = :owner, host = :host, pid = :pid, expires_at = :expires_at "
            "WHERE run_id = :run_id AND (owner = :owner OR expires_at <= :now)"
        )
        with translating(self.url):
            with self.db.transaction(Mode.WRITE) as cursor:
                cursor.execute(self.db.sql(taking), values)
                if cursor.rowcount == 1:
                    return True
            try:
                with self.db.transaction(Mode.WRITE) as cursor:
                    del values["now"]
                    cursor.execute(self.db.sql(sql.insert("run_leases", sql.LEASE_COLUMNS)), values)
            except self.db.errors.IntegrityError:
                return False  # held by another live owner
        return True

    def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        query = "UPDATE run_leases SET expires_at = :expires_at WHERE run_id = :run_id AND owner = :owner"
        values = {"run_id": run_id, "owner": owner, "expires_at": time.time() + ttl}
        with translating(self.url), self.db.transaction(Mode.WRITE) as cursor:
            cursor.execute(self.db.sql(query), values)
            return bool(cursor.rowcount == 1)

    def release_lease(self, run_id: str, owner: str) -> None:
        query = "DELETE FROM run_leases WHERE run_id = :run_id AND owner = :owner"
        with translating(self.url), self.db.transaction(Mode.WRITE) as cursor:
            cursor.execute(self.db.sql(query), {"run_id": run_id, "owner": owner})

    def lease_holder(self, run_id: str) -> Lease | None:
        query = "SELECT owner, host, pid, expires_at FROM run_leases WHERE run_id = :run_id"
        rows = self._query(query, {"run_id": run_id})
        if not rows:
            return None
        owner, host, pid, expires_at = rows[0]
        return Lease(owner, host, int(pid), float(expires_at))

    def audit_reading(self) -> AbstractContextManager[AuditReader]:
        from .audit_reads import reading

        return reading(self.db)

    def close(self) -> None:
        self.db.close()


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
