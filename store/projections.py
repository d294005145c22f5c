"""Projections: the `runs` and `step_states` tables, kept current in the transaction of each append.

They are built with `runstate.apply` — the very fold that `status`, `replay` and the reactor use —
so a projection can never disagree with folding the log. A step's row depends on its own stream
only, and a run's row on the run stream only, so an append touches just the rows
of the streams it writes. The projector keeps the states it last committed in memory: a cached
state whose version equals the write's expected version is current (the insert of the next
version succeeding proves nobody else appended), which saves a SELECT per append and doubles as the
"expected version is not ahead of the stream" check.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Table, and_, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect

from stepledger.events import RecordedEvent, StreamWrite, split_stream

from .driver import DriverStatement
from .runstate import RunState, StepState, apply, fold
from .schema import events, runs, step_states

# last_position is the run's newest event: readers take it from the events index (not stored).
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunState) if f.name not in ("steps", "last_position"))
STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepState))
_CACHE_LIMIT = 20_000  # states kept per store; beyond that the cache starts again (a reload is cheap)


class StaleWrite(Exception):
    """A write's expected version does not match the stream: the caller diagnoses and reports it."""


def run_row(run: RunState) -> dict[str, Any]:
    """The `runs` row of a run state."""
    return {name: getattr(run, name) for name in RUN_FIELDS}


def run_from_row(row: Any) -> RunState:
    """The run state (without steps) of a `runs` row (a row read without its workstream gets {})."""
    mapping = row._mapping
    return RunState(**{name: mapping[name] for name in RUN_FIELDS if name in mapping})


def step_row(run_id: str, step: StepState) -> dict[str, Any]:
    """The `step_states` row of a step state."""
    row = {name: getattr(step, name) for name in STEP_FIELDS}
    row["run_id"] = run_id
    return row


def step_from_row(row: Any) -> StepState:
    """The step state of a `step_states` row."""
    return StepState(**{name: getattr(row, name) for name in STEP_FIELDS})


def upsert(dialect: str, table: Table, keys: Sequence[str], columns: Iterable[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO UPDATE of `columns` (same construct on both dialects)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={c: statement.excluded[c] for c in columns}
    )


@dataclass
class Pending:
    """The states an append will write, committed to the cache only once the transaction commits."""

    runs: dict[str, RunState] = field(default_factory=dict)  # run id -> run-level state (no steps)
    steps: dict[tuple[str, str], StepState] = field(default_factory=dict)
    run_streams: set[str] = field(default_factory=set)  # runs whose own stream is written
    known_runs: set[str] = field(default_factory=set)  # runs whose row this append makes sure of


class Projector:
    """Writes the projection rows of each append and rebuilds them from the log."""

    def __init__(self, dialect: Dialect) -> None:
        self._runs: dict[str, RunState] = {}
        self._steps: dict[tuple[str, str], StepState] = {}
        name = dialect.name
        # The workstream (the whole resolved file, megabytes for a big one) is written when the
        # row is created and when a resume takes the current file, never re-written by the other
        # run events: encoding, writing and reading it back cost ~0.1 s per append on a
        # 3,000-step run. So the upsert leaves it out of its SET clause, and the projector reads
        # and caches run rows without it.
        self._upsert_run = DriverStatement(
            upsert(name, runs, ["run_id"], [f for f in RUN_FIELDS[1:] if f != "workstream"]),
            dialect,
            ["workstream", "options"],
        )
        self._set_workstream = runs.update().where(runs.c.run_id == bindparam("rid"))
        self._known_runs: set[str] = set()  # runs whose row exists (committed)
        insert = postgresql.insert if name == "postgresql" else sqlite.insert
        self._ensure_run = insert(runs).on_conflict_do_nothing(index_elements=["run_id"])
        self._upsert_steps = DriverStatement(
            upsert(name, step_states, ["run_id", "step_id"], STEP_FIELDS[1:]), dialect, ["outputs"]
        )

    def prepare(self, conn: Connection, writes: Sequence[StreamWrite]) -> Pending:
        """Load each written stream's current state (cache, else row) and check the expected versions."""
        pending = Pending()
        next_version: dict[str, int] = {}
        missing_runs: list[str] = []
        missing_steps: dict[str, list[str]] = {}
        for w in writes:
            run_id, step_id = split_stream(w.stream)
            if run_id != w.run_id:
                raise ValueError(f"stream {w.stream!r} does not belong to run {w.run_id!r}")
            if w.stream in next_version:  # a second write to a stream in one batch must follow on
                if w.expected_version != next_version[w.stream]:
                    raise StaleWrite(w.stream)
            elif step_id is None:
                pending.run_streams.add(run_id)
                cached = self._runs.get(run_id)
                if w.expected_version == 0:
                    pending.runs[run_id] = RunState(run_id)
                elif cached is not None and cached.version == w.expected_version:
                    pending.runs[run_id] = copy.copy(cached)
                else:
                    missing_runs.append(run_id)
            else:
                key = (run_id, step_id)
                cached_step = self._steps.get(key)
                if w.expected_version == 0:
                    pending.steps[key] = StepState(step_id)
                elif cached_step is not None and cached_step.version == w.expected_version:
                    pending.steps[key] = copy.copy(cached_step)
                else:
                    missing_steps.setdefault(run_id, []).append(step_id)
            next_version[w.stream] = w.expected_version + len(w.events)
        if missing_runs:
            self._load_runs(conn, missing_runs, pending)
        for run_id, step_ids in missing_steps.items():
            self._load_steps(conn, run_id, step_ids, pending)
        expected = {w.stream: w.expected_version for w in reversed(writes)}  # each stream's first write
        for run_id in missing_runs:
            if pending.runs[run_id].version != expected[run_id]:
                raise StaleWrite(run_id)
        for run_id, step_ids in missing_steps.items():
            for step_id in step_ids:
                stream = f"{run_id}/{step_id}"
                if pending.steps[(run_id, step_id)].version != expected[stream]:
                    raise StaleWrite(stream)
        return pending

    def _load_runs(self, conn: Connection, run_ids: list[str], pending: Pending) -> None:
        columns = [c for c in runs.c if c.name != "workstream"]
        query = select(*columns).where(runs.c.run_id.in_(run_ids))
        rows = {r.run_id: r for r in conn.execute(query)}
        for run_id in run_ids:
            row = rows.get(run_id)
            if row is not None:
                pending.runs[run_id] = run_from_row(row)
            else:  # projections missing (never built): fold the run stream itself
                state = fold(run_id, _read_stream(conn, run_id))
                state.steps = {}
                pending.runs[run_id] = state

    def _load_steps(self, conn: Connection, run_id: str, step_ids: list[str], pending: Pending) -> None:
        query = select(step_states).where(
            and_(step_states.c.run_id == run_id, step_states.c.step_id.in_(step_ids))
        )
        rows = {r.step_id: r for r in conn.execute(query)}
        for step_id in step_ids:
            row = rows.get(step_id)
            if row is not None:
                pending.steps[(run_id, step_id)] = step_from_row(row)
            else:
                state = fold(run_id, _read_stream(conn, f"{run_id}/{step_id}"))
                pending.steps[(run_id, step_id)] = state.steps.get(step_id, StepState(step_id))

    def apply(self, conn: Connection, pending: Pending, recorded: Sequence[RecordedEvent]) -> None:
        """Fold the recorded events into the pending states and write their rows."""
        by_run: dict[str, RunState] = {}
        for event in recorded:
            stub = by_run.get(event.run_id)
            if stub is None:
                stub = pending.runs.get(event.run_id) or RunState(event.run_id)
                stub.steps = {s: st for (r, s), st in pending.steps.items() if r == event.run_id}
                by_run[event.run_id] = stub
            apply(stub, event)
        full = [run_row(stub) for run_id, stub in by_run.items() if run_id in pending.run_streams]
        if full:
            self._upsert_run.execute(conn, full)
        replaced = [
            {"rid": e.run_id, "workstream": e.payload["workstream"]}
            for e in recorded
            if e.type == "run.resumed" and e.payload.get("workstream") is not None
        ]
        if replaced:  # a resume that took the current file: the one later change of the workstream
            conn.execute(self._set_workstream, replaced)
        # A step row needs its run's row (foreign key) even before the run stream has an event;
        # `runs.last_position` is not kept here (it would cost a write per append): readers take
        # max(position) from the events index instead.
        bare = [{"run_id": r} for r in by_run if r not in pending.run_streams and r not in self._known_runs]
        if bare:
            conn.execute(self._ensure_run, bare)
        step_rows = [step_row(run_id, s) for run_id, stub in by_run.items() for s in stub.steps.values()]
        if step_rows:
            self._upsert_steps.execute(conn, step_rows)
        pending.known_runs.update(by_run)
        for run_id, stub in by_run.items():
            for step_id, state in stub.steps.items():
                pending.steps[(run_id, step_id)] = state
            if run_id in pending.run_streams:
                pending.runs[run_id] = stub

    def committed(self, pending: Pending) -> None:
        """Remember the states of a committed append (the cache is only ever what the database holds)."""
        if max(len(self._steps), len(self._runs), len(self._known_runs)) > _CACHE_LIMIT:
            self.forget()
        for run_id in pending.run_streams:
            state = copy.copy(pending.runs[run_id])
            state.steps = {}
            state.workstream = {}  # written once (see __init__): the cache need not hold it
            self._runs[run_id] = state
        self._steps.update(pending.steps)
        self._known_runs.update(pending.known_runs)

    def forget(self) -> None:
        """Drop every cached state (after a rebuild, or when the cache grows too big)."""
        self._runs.clear()
        self._steps.clear()
        self._known_runs.clear()

    def rebuild(self, conn: Connection) -> int:
        """Empty the projection tables and fill them again by folding the whole log; returns runs."""
        self.forget()
        conn.execute(step_states.delete())
        conn.execute(runs.delete())
        states: dict[str, RunState] = {}
        for row in conn.execute(select(events).order_by(events.c.position)):
            event = RecordedEvent(*row)
            state = states.get(event.run_id)
            if state is None:
                state = states[event.run_id] = RunState(event.run_id)
            apply(state, event)
        if states:
            conn.execute(runs.insert(), [run_row(s) for s in states.values()])
            rows = [step_row(r, s) for r, state in states.items() for s in state.steps.values()]
            if rows:
                conn.execute(step_states.insert(), rows)
        return len(states)


def _read_stream(conn: Connection, stream: str) -> list[RecordedEvent]:
    query = select(events).where(events.c.stream == stream).order_by(events.c.version)
    return [RecordedEvent(*row) for row in conn.execute(query)]
