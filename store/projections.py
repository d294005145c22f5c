"""Projections: the `runs`, `step_states` and `step_outcomes` tables, kept current in the transaction
of each append.

They are built with `events.state.apply` — the very fold that `status`, `replay` and the reactor use —
so a projection can never disagree with folding the log. A step's row depends on its own stream
only, and a run's row on the run stream only, so an append touches just the rows
of the streams it writes. The projector keeps the states it last committed in memory: a cached
state whose version equals the write's expected version is current (the insert of the next
version succeeding proves nobody else appended), which saves a SELECT per append and doubles as the
"expected version is not ahead of the stream" check. `step_outcomes` gets a row per step.passed and
step.failed event, taken from the event alone.
"""

from __future__ import annotations

import copy
import dataclasses
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from stepledger.events import (
    RecordedEvent,
    RunResumed,
    StepFailed,
    StepPassed,
    StreamWrite,
    dumps,
    split_stream,
)
from stepledger.events.state import RunState, StepState, apply, fold

from . import statements as sql
from .statements import OUTCOME_COLUMNS, RUN_COLUMNS, RUN_COLUMNS_LIGHT, STEP_COLUMNS, Rows, in_list, params

# last_position is the run's newest event: readers take it from the events index (not stored).
RUN_FIELDS = tuple(f.name for f in dataclasses.fields(RunState) if f.name not in ("steps", "last_position"))
STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepState))
ExecuteMany = Callable[[Any, str, Sequence[Any]], None]  # (cursor, statement, rows): Database.execute_many
_CACHE_LIMIT = 20_000  # states kept per store; beyond that the cache starts again (a reload is cheap)


class StaleWrite(Exception):
    """A write's expected version does not match the stream: the caller diagnoses and reports it."""


def run_row(run: RunState) -> dict[str, Any]:
    """The `runs` row of a run state."""
    return {name: getattr(run, name) for name in RUN_FIELDS}


def run_from_row(mapping: dict[str, Any]) -> RunState:
    """The run state (without steps) of a `runs` row (a row read without its workstream gets {})."""
    return RunState(**{name: mapping[name] for name in RUN_FIELDS if name in mapping})


_step_values = operator.attrgetter(*STEP_FIELDS)
_OUTPUTS = STEP_FIELDS.index("outputs")


def step_values(run_id: str, step: StepState) -> tuple[Any, ...]:
    """The `step_states` row of a step state in STEP_COLUMNS order, its outputs as JSON text."""
    values = _step_values(step)
    return (run_id, *values[:_OUTPUTS], dumps(values[_OUTPUTS]), *values[_OUTPUTS + 1 :])


def step_from_row(mapping: dict[str, Any]) -> StepState:
    """The step state of a `step_states` row."""
    return StepState(**{name: mapping[name] for name in STEP_FIELDS})


OUTCOMES = {StepPassed.type_name: "passed", StepFailed.type_name: "failed"}


def outcome_rows(recorded: Sequence[RecordedEvent]) -> list[tuple[Any, ...]]:
    """The `step_outcomes` rows (OUTCOME_COLUMNS) of the step.passed and step.failed events among
    `recorded`."""
    rows = []
    for event in recorded:
        outcome = OUTCOMES.get(event.type)
        if outcome is None:
            continue
        p = event.payload
        failed = outcome == "failed"
        rows.append((
            event.position, event.run_id, event.step_id, outcome, p["attempt"], p.get("started_at"),
            p.get("finished_at"), p.get("reason") if failed else None,
            p.get("error_signature") if failed else None,
        ))  # fmt: skip
    return rows


@dataclass
class Pending:
    """The states an append will write, committed to the cache only once the transaction commits."""

    runs: dict[str, RunState] = field(default_factory=dict)  # run id -> run-level state (no steps)
    steps: dict[tuple[str, str], StepState] = field(default_factory=dict)
    run_streams: set[str] = field(default_factory=set)  # runs whose own stream is written
    known_runs: set[str] = field(default_factory=set)  # runs whose row this append makes sure of


class Projector:
    """Writes the projection rows of each append and rebuilds them from the log."""

    def __init__(
        self,
        rows: Rows,
        dialect_sql: Callable[[str], str],
        positional_sql: Callable[[str], str],
        execute_many: ExecuteMany,
    ) -> None:
        self._runs: dict[str, RunState] = {}
        self._steps: dict[tuple[str, str], StepState] = {}
        self._rows = rows
        # The workstream (the whole resolved file, megabytes for a big one) is written when the
        # row is created and when a resume takes the current file, never re-written by the other
        # run events: encoding, writing and reading it back on every append made big runs slow.
        # So the upsert leaves it out of its SET clause, and the projector reads
        # and caches run rows without it.
        self._upsert_run = dialect_sql(sql.upsert("runs", RUN_COLUMNS, ["run_id"], RUN_COLUMNS_LIGHT[1:]))
        self._set_workstream = dialect_sql("UPDATE runs SET workstream = :workstream!j WHERE run_id = :rid")
        self._known_runs: set[str] = set()  # runs whose row exists (committed)
        self._ensure_run = dialect_sql(sql.upsert("runs", RUN_COLUMNS, ["run_id"], []))
        self._upsert_steps = positional_sql(
            sql.upsert("step_states", STEP_COLUMNS, ["run_id", "step_id"], STEP_COLUMNS[2:])
        )
        self._insert_steps = positional_sql(sql.insert("step_states", STEP_COLUMNS))  # rebuilds
        self._insert_outcomes = positional_sql(sql.insert("step_outcomes", OUTCOME_COLUMNS))
        self._sql = dialect_sql
        self._execute_many = execute_many

    def prepare(self, cursor: Any, writes: Sequence[StreamWrite]) -> Pending:
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
            self._load_runs(cursor, missing_runs, pending)
        for run_id, step_ids in missing_steps.items():
            self._load_steps(cursor, run_id, step_ids, pending)
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

    def _load_runs(self, cursor: Any, run_ids: list[str], pending: Pending) -> None:
        values: dict[str, Any] = {}
        query = sql.select("runs", RUN_COLUMNS_LIGHT, in_list("run_id", run_ids, values))
        cursor.execute(self._sql(query), values)
        rows = {r["run_id"]: r for r in (self._rows.mapping(RUN_COLUMNS_LIGHT, t) for t in cursor.fetchall())}
        for run_id in run_ids:
            row = rows.get(run_id)
            if row is not None:
                pending.runs[run_id] = run_from_row(row)
            else:  # projections missing (never built): fold the run stream itself
                state = fold(run_id, self._read_stream(cursor, run_id))
                state.steps = {}
                pending.runs[run_id] = state

    def _load_steps(self, cursor: Any, run_id: str, step_ids: list[str], pending: Pending) -> None:
        values: dict[str, Any] = {"run_id": run_id}
        where = f"run_id = :run_id AND {in_list('step_id', step_ids, values)}"
        cursor.execute(self._sql(sql.select("step_states", STEP_COLUMNS, where)), values)
        rows = {r["step_id"]: r for r in (self._rows.mapping(STEP_COLUMNS, t) for t in cursor.fetchall())}
        for step_id in step_ids:
            row = rows.get(step_id)
            if row is not None:
                pending.steps[(run_id, step_id)] = step_from_row(row)
            else:
                state = fold(run_id, self._read_stream(cursor, f"{run_id}/{step_id}"))
                pending.steps[(run_id, step_id)] = state.steps.get(step_id, StepState(step_id))

    def _read_stream(self, cursor: Any, stream: str) -> list[RecordedEvent]:
        cursor.execute(
            self._sql(f"{sql.SELECT_EVENTS} WHERE stream = :stream ORDER BY version"), {"stream": stream}
        )
        return [self._rows.event(row) for row in cursor.fetchall()]

    def apply(self, cursor: Any, pending: Pending, recorded: Sequence[RecordedEvent]) -> None:
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
            self._execute(cursor, self._upsert_run, full)
        replaced = [
            {"rid": e.run_id, "workstream": dumps(e.payload["workstream"])}
            for e in recorded
            if e.type == RunResumed.type_name and e.payload.get("workstream") is not None
        ]
        if replaced:  # a resume that took the current file: the one later change of the workstream
            self._execute_many(cursor, self._set_workstream, replaced)
        # A step row needs its run's row (foreign key) even before the run stream has an event;
        # `runs.last_position` is not kept here (it would cost a write per append): readers take
        # max(position) from the events index instead.
        bare = [
            run_row(RunState(r)) for r in by_run if r not in pending.run_streams and r not in self._known_runs
        ]
        if bare:
            self._execute(cursor, self._ensure_run, bare)
        step_rows = [step_values(run_id, s) for run_id, stub in by_run.items() for s in stub.steps.values()]
        if step_rows:
            self._execute_many(cursor, self._upsert_steps, step_rows)
        outcomes = outcome_rows(recorded)
        if outcomes:
            self._execute_many(cursor, self._insert_outcomes, outcomes)
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

    def _execute(self, cursor: Any, statement: str, rows: Sequence[dict[str, Any]]) -> None:
        """Run `statement` for every row (JSON columns encoded), in the cursor's transaction."""
        self._execute_many(cursor, statement, [params(r) for r in rows])

    def rebuild(self, cursor: Any) -> int:
        """Empty the projection tables and fill them again by folding the whole log; returns runs."""
        self.forget()
        for table in ("step_states", "runs", "step_outcomes"):
            cursor.execute(f"DELETE FROM {table}")
        states: dict[str, RunState] = {}
        outcomes: list[tuple[Any, ...]] = []
        cursor.execute(f"{sql.SELECT_EVENTS} ORDER BY position")
        while chunk := cursor.fetchmany(2_000):
            events = [self._rows.event(row) for row in chunk]
            for event in events:
                state = states.get(event.run_id)
                if state is None:
                    state = states[event.run_id] = RunState(event.run_id)
                apply(state, event)
            outcomes += outcome_rows(events)
        if states:
            runs = [run_row(s) for s in states.values()]
            self._execute(cursor, self._sql(sql.insert("runs", RUN_COLUMNS)), runs)
            rows = [step_values(r, s) for r, state in states.items() for s in state.steps.values()]
            if rows:
                self._execute_many(cursor, self._insert_steps, rows)
        if outcomes:
            self._execute_many(cursor, self._insert_outcomes, outcomes)
        return len(states)
